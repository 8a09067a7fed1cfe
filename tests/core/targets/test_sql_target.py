"""The SQL target on real SQLite files and real PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from syncflow_core.errors import ConfigError, TargetSchemaError
from syncflow_core.targets.sql import SqlTarget

T1 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
T3 = T1 + timedelta(hours=2)
KEYS = ["region", "order_no"]

SCHEMA = pa.schema([
    ("region", pa.string()),
    ("order_no", pa.int64()),
    ("customer", pa.string()),
    ("amount", pa.decimal128(12, 2)),
    ("weight", pa.float64()),
    ("paid", pa.bool_()),
    ("order_date", pa.date32()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("_bridge_key_hash", pa.string()),
    ("_bridge_data_hash", pa.string()),
    ("_bridge_rowversion", pa.int64()),
    ("_bridge_ref", pa.string()),
])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    """An empty target database: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'target.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    t = SqlTarget(url)
    yield t
    t.close()


def _h(*parts: Any) -> str:
    return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()


def _rows(specs: list[tuple[str, int, str]], version: int = 1) -> pa.Table:
    """Order rows from (region, order_no, customer); data hash follows customer + version."""
    rows = []
    for region, no, customer in specs:
        rows.append({
            "region": region,
            "order_no": no,
            "customer": customer,
            "amount": Decimal(f"{no}.{version:02d}"),
            "weight": no / 3,
            "paid": no % 2 == 0,
            "order_date": date(2024, 2, 29) + timedelta(days=no),
            "created_at": datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC) + timedelta(
                seconds=no),
            "_bridge_key_hash": _h(region, no),
            "_bridge_data_hash": _h(customer, version),
            "_bridge_rowversion": 1000 * version + no,
            "_bridge_ref": f"orders[region={region},order_no={no}]",
        })
    return pa.Table.from_pylist(rows, schema=SCHEMA)


NO_DELETES = pa.array([], pa.string())


def _by_key(t: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["_bridge_key_hash"]: r for r in t.to_pylist()}


def test_create_write_and_read_back_exact_types(target: SqlTarget) -> None:
    rows = _rows([("EU", 1, "Ann"), ("EU", 2, "Bob"), ("US", 1, None)])  # type: ignore[list-item]
    target.ensure_table("orders", rows.schema, KEYS)
    assert target.table_exists("orders")
    counts = target.write("orders", rows, NO_DELETES, "run-1", T1)
    assert counts == (3, 0)
    back = target.read_table("orders")
    for name in SCHEMA.names:
        assert back.schema.field(name).type == SCHEMA.field(name).type, name
    got = _by_key(back)
    for r in rows.to_pylist():
        stored = got[r["_bridge_key_hash"]]
        assert {k: stored[k] for k in r} == r
        assert stored["_bridge_batch_id"] == "run-1"
        assert stored["_bridge_synced_at"] == T1
        assert stored["_bridge_deleted_at"] is None
    assert target.row_count("orders") == 3
    assert target.duplicate_key_hashes("orders") == 0


def test_unique_index_on_key_hash_and_business_key_index(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    indexes = sa.inspect(target.engine).get_indexes("orders")
    unique = [i for i in indexes if i["unique"]]
    assert [i["column_names"] for i in unique] == [["_bridge_key_hash"]]
    assert KEYS in [i["column_names"] for i in indexes]
    # ensure_table again with the same schema is a no-op.
    target.ensure_table("orders", SCHEMA, KEYS)
    assert len(sa.inspect(target.engine).get_indexes("orders")) == len(indexes)


def test_new_column_is_added_and_old_rows_keep_null(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows([("EU", 1, "Ann")]), NO_DELETES, "run-1", T1)
    wider = _rows([("EU", 2, "Bob")]).append_column("channel", pa.array(["web"]))
    target.ensure_table("orders", wider.schema, KEYS)
    target.write("orders", wider, NO_DELETES, "run-2", T2)
    got = {r["order_no"]: r["channel"] for r in target.read_table("orders").to_pylist()}
    assert got == {1: None, 2: "web"}
    # A schema without the column later does not drop it.
    target.ensure_table("orders", SCHEMA, KEYS)
    assert "channel" in target.arrow_schema("orders").names


@pytest.mark.parametrize(
    ("column", "old", "new"),
    [
        ("amount", pa.decimal128(12, 2), pa.int64()),
        ("customer", pa.string(), pa.int64()),
        ("amount", pa.decimal128(12, 2), pa.decimal128(12, 4)),  # integer digits shrink
    ],
)
def test_type_change_that_loses_data_is_refused(
    target: SqlTarget, column: str, old: pa.DataType, new: pa.DataType
) -> None:
    schema = SCHEMA.set(SCHEMA.get_field_index(column), pa.field(column, old))
    target.ensure_table("orders", schema, KEYS)
    target.write("orders", _rows([("EU", 1, "Ann")]).cast(schema), NO_DELETES, "run-1", T1)
    changed = schema.set(schema.get_field_index(column), pa.field(column, new))
    with pytest.raises(TargetSchemaError) as err:
        target.ensure_table("orders", changed, KEYS)
    msg = str(err.value)
    assert "'orders'" in msg and repr(column) in msg
    assert "NUMERIC" in msg or "TEXT" in msg
    assert "BIGINT" in msg or "NUMERIC(12,4)" in msg
    assert target.read_table("orders").num_rows == 1  # nothing lost


def test_widening_is_applied_and_values_keep_their_scale(target: SqlTarget) -> None:
    narrow = SCHEMA.set(SCHEMA.get_field_index("amount"), pa.field("amount", pa.decimal128(10, 2)))
    target.ensure_table("orders", narrow, KEYS)
    target.write("orders", _rows([("EU", 1, "Ann")]).cast(narrow), NO_DELETES, "run-1", T1)
    wide = SCHEMA.set(SCHEMA.get_field_index("amount"), pa.field("amount", pa.decimal128(14, 4)))
    wide = wide.set(wide.get_field_index("order_no"), pa.field("order_no", pa.int64()))
    target.ensure_table("orders", wide, KEYS)
    assert target.arrow_schema("orders").field("amount").type == pa.decimal128(14, 4)
    row = _rows([("EU", 2, "Bob")]).cast(wide)
    row = row.set_column(row.schema.get_field_index("amount"), "amount",
                         pa.array([Decimal("1234567890.1234")], pa.decimal128(14, 4)))
    target.write("orders", row, NO_DELETES, "run-2", T2)
    got = {r["order_no"]: r["amount"] for r in target.read_table("orders").to_pylist()}
    assert got == {1: Decimal("1.0100"), 2: Decimal("1234567890.1234")}
    # Narrower data into the wider column is fine: no change, no error.
    target.ensure_table("orders", narrow, KEYS)
    assert target.arrow_schema("orders").field("amount").type == pa.decimal128(14, 4)


def test_update_rewrites_only_the_rows_passed(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows([("EU", 1, "Ann"), ("EU", 2, "Bob")]), NO_DELETES, "run-1", T1)
    # Run 2: EU-2 changed, EU-3 is new; EU-1 unchanged so the caller does not pass it.
    changes = _rows([("EU", 2, "Bobby"), ("EU", 3, "Cid")], version=2)
    assert target.write("orders", changes, NO_DELETES, "run-2", T2) == (2, 0)
    got = {r["order_no"]: r for r in target.read_table("orders").to_pylist()}
    assert got[1]["_bridge_batch_id"] == "run-1" and got[1]["_bridge_synced_at"] == T1
    assert got[1]["customer"] == "Ann"
    assert got[2]["customer"] == "Bobby" and got[2]["_bridge_batch_id"] == "run-2"
    assert got[2]["_bridge_synced_at"] == T2 and got[2]["_bridge_rowversion"] == 2002
    assert got[2]["amount"] == Decimal("2.02")
    assert got[3]["_bridge_batch_id"] == "run-2"
    assert target.row_count("orders") == 3


def test_soft_delete_and_undelete(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows([("EU", 1, "Ann"), ("EU", 2, "Bob")]), NO_DELETES, "run-1", T1)
    gone = pa.array([_h("EU", 2), _h("EU", 99)])  # 99 was never there
    assert target.write("orders", _rows([])[:0], gone, "run-2", T2) == (0, 1)
    got = {r["order_no"]: r for r in target.read_table("orders").to_pylist()}
    assert got[2]["_bridge_deleted_at"] == T2 and got[2]["_bridge_batch_id"] == "run-2"
    assert got[2]["customer"] == "Bob"  # soft: the row stays
    assert got[1]["_bridge_deleted_at"] is None
    assert target.row_count("orders") == 1 and target.row_count("orders", live_only=False) == 2
    # Deleting again does not move the deletion time.
    assert target.write("orders", _rows([])[:0], gone, "run-3", T3) == (0, 0)
    assert target.read_identities("orders", KEYS, None, None).filter(
        pc.equal(pc.field("_bridge_key_hash"), _h("EU", 2))
    ).column("_bridge_deleted_at").to_pylist() == [T2]
    # The row comes back: un-deleted by the write.
    target.write("orders", _rows([("EU", 2, "Bob")], version=2), NO_DELETES, "run-4", T3)
    row = next(r for r in target.read_table("orders").to_pylist() if r["order_no"] == 2)
    assert row["_bridge_deleted_at"] is None and row["_bridge_synced_at"] == T3


def test_read_identities_key_range_bounds(target: SqlTarget) -> None:
    specs = [(r, n, f"c{n}") for r in ("EU", "US", "ZA") for n in (1, 2, 10)]
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows(specs), NO_DELETES, "run-1", T1)
    target.write("orders", _rows([])[:0], pa.array([_h("US", 2)]), "run-2", T2)

    def keys(lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> set[tuple[str, int]]:
        ids = target.read_identities("orders", KEYS, lo, hi)
        assert ids.column_names == [
            "_bridge_key_hash", "_bridge_data_hash", "_bridge_rowversion", "_bridge_deleted_at"]
        assert ids.schema.field("_bridge_rowversion").type == pa.int64()
        assert ids.schema.field("_bridge_deleted_at").type == pa.timestamp("us", tz="UTC")
        back = {_h(r, n): (r, n) for r, n, _ in specs}
        return {back[h] for h in ids.column("_bridge_key_hash").to_pylist()}

    everything = {(r, n) for r, n, _ in specs}
    assert keys(None, None) == everything  # soft-deleted US-2 included
    # (lo, hi]: lower exclusive, upper inclusive, compared as row values (2 < 10 as numbers).
    assert keys(("EU", 2), ("US", 2)) == {("EU", 10), ("US", 1), ("US", 2)}
    assert keys(None, ("EU", 10)) == {("EU", 1), ("EU", 2), ("EU", 10)}
    assert keys(("US", 10), None) == {("ZA", 1), ("ZA", 2), ("ZA", 10)}
    assert keys(("ZA", 10), None) == set()
    ids = target.read_identities("orders", KEYS, ("US", 1), ("US", 2))
    assert ids.column("_bridge_deleted_at").to_pylist() == [T2]
    assert ids.column("_bridge_data_hash").to_pylist() == [_h("c2", 1)]


def test_read_identities_single_key_of_every_bound_type(target: SqlTarget) -> None:
    schema = pa.schema([("d", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("amt", pa.decimal128(10, 2)), ("_bridge_key_hash", pa.string())])
    days = [date(2024, 1, d) for d in (1, 2, 3)]
    stamps = [datetime(2024, 1, 1, 0, 0, 0, us, tzinfo=UTC) for us in (1, 2, 3)]
    amts = [Decimal("9.99"), Decimal("10.00"), Decimal("100.5")]
    data = pa.table([pa.array(days), pa.array(stamps, schema.field("ts").type),
                     pa.array(amts, pa.decimal128(10, 2)), pa.array(["a", "b", "c"])],
                    schema=schema)
    for key, values in (("d", days), ("ts", stamps), ("amt", amts)):
        table = f"by_{key}"
        target.ensure_table(table, schema, [key])
        target.write(table, data, NO_DELETES, "run-1", T1)
        got = target.read_identities(table, [key], (values[0],), (values[1],))
        assert got.column("_bridge_key_hash").to_pylist() == ["b"], key


def test_existing_keys_sees_live_rows_only(target: SqlTarget) -> None:
    specs = [("EU", n, "x") for n in range(3000)]
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows(specs), pa.array([], pa.string()), "run-1", T1)
    target.write("orders", _rows([])[:0], pa.array([_h("EU", 5)]), "run-2", T2)
    asked = [_h("EU", n) for n in range(0, 6000, 5)] + [None]
    found = target.existing_keys("orders", pa.chunked_array([asked[:500], asked[500:]]))
    assert len(found) == len(asked)
    expected = [h is not None and h != _h("EU", 5) and int(i * 5) < 3000
                for i, h in enumerate(asked)]
    assert found.to_pylist() == expected


def test_values_that_need_binding_round_trip(target: SqlTarget) -> None:
    nasty = ["O'Brien", 'say "hi"', "x'); DROP TABLE orders; --", "Zürich ∑ 日本 🙂",
             "back\\slash", "tab\tand\nnewline", "", "%s %(x)s $1 ?", "NULL"]
    specs = [(region, i, region) for i, region in enumerate(nasty)]
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows(specs), NO_DELETES, "run'; --", T1)
    got = {r["order_no"]: r for r in target.read_table("orders").to_pylist()}
    for i, s in enumerate(nasty):
        assert got[i]["region"] == s and got[i]["customer"] == s
        assert got[i]["_bridge_batch_id"] == "run'; --"
    # Nasty values as key bounds are bound too.
    ids = target.read_identities("orders", KEYS, ("x'); DROP TABLE orders; --", 2), None)
    assert set(ids.column("_bridge_key_hash").to_pylist()) == {
        _h(r, i) for r, i, _ in specs if (r, i) > ("x'); DROP TABLE orders; --", 2)}
    assert target.row_count("orders") == len(nasty)


def test_names_are_quoted_not_refused(target: SqlTarget) -> None:
    """ERP names with spaces, quotes or semicolons are tables and columns as written."""
    nasty = {"region": "Ship Region", "order_no": 'Order "No"', "customer": "x; DROP TABLE y"}
    schema = pa.schema([pa.field(nasty.get(f.name, f.name), f.type) for f in SCHEMA])
    keys = [nasty[k] for k in KEYS]
    rows = _rows([("EU", 1, "Ann"), ("EU", 2, "Bob")]).rename_columns(schema.names)
    target.ensure_table("Order Details", schema, keys)
    assert target.write("Order Details", rows, NO_DELETES, "run-1", T1) == (2, 0)
    # The bulk path (COPY into an empty table, indexes dropped and rebuilt) quotes them too.
    many = _rows([("EU", i, f"c{i}") for i in range(10_500)]).rename_columns(schema.names)
    target.ensure_table("Order Lines", schema, keys)
    assert target.write("Order Lines", many, NO_DELETES, "run-1", T1).upserted == 10_500
    # A new column with a space (ALTER TABLE ADD COLUMN) and an update through staging.
    wider = rows.append_column("Unit Price", pa.array([Decimal("1.50"), None],
                                                      pa.decimal128(12, 2)))
    target.ensure_table("Order Details", wider.schema, keys)
    target.write("Order Details", wider, NO_DELETES, "run-2", T2)
    back = {r["Ship Region"] + str(r['Order "No"']): r for r in
            target.read_table("Order Details").to_pylist()}
    assert back["EU1"]["Unit Price"] == Decimal("1.50")
    assert back["EU2"]["x; DROP TABLE y"] == "Bob"
    assert target.row_count("Order Lines") == 10_500
    assert sorted(sa.inspect(target.engine).get_table_names()) == ["Order Details",
                                                                   "Order Lines"]
    with pytest.raises(ConfigError, match="control character"):
        target.ensure_table("orders\x00", SCHEMA, KEYS)
    with pytest.raises(ConfigError, match="longer than 63 bytes"):
        target.ensure_table("o" * 64, SCHEMA, KEYS)
    with pytest.raises(ConfigError, match="control character"):
        target.read_identities("orders", ["a\nb"], None, None)


def test_write_joins_the_callers_transaction(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    with pytest.raises(RuntimeError), target.begin() as conn:
        target.write("orders", _rows([("EU", 1, "Ann")]), NO_DELETES, "run-1", T1, conn)
        raise RuntimeError("state write failed")
    assert target.row_count("orders", live_only=False) == 0


def test_duplicate_keys_in_one_write_are_refused(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    rows = _rows([("EU", 1, "Ann"), ("EU", 1, "Ann2")])
    with pytest.raises(ValueError, match="duplicate _bridge_key_hash"):
        target.write("orders", rows, NO_DELETES, "run-1", T1)


def test_identities_for_given_hashes(target: SqlTarget) -> None:
    target.ensure_table("orders", SCHEMA, KEYS)
    target.write("orders", _rows([("EU", n, "x") for n in range(10)]), NO_DELETES, "r", T1)
    got = target.identities_for("orders", pa.array([_h("EU", 3), _h("EU", 42)]))
    assert got.column("_bridge_key_hash").to_pylist() == [_h("EU", 3)]
    assert got.column("_bridge_rowversion").to_pylist() == [1003]


@pytest.mark.postgres
def test_timestamps_exact_whatever_the_session_time_zone(pg_url: str) -> None:
    with sa.create_engine(pg_url).connect() as conn:
        db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(sa.text(f'ALTER DATABASE "{db}" SET timezone = \'America/New_York\''))
        conn.commit()
    target = SqlTarget(pg_url)
    with target.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "America/New_York"
    rows = _rows([("EU", 1, "Ann"), ("EU", 2, "Bob")])
    target.ensure_table("orders", SCHEMA, KEYS)
    with target.begin() as conn:
        target.write("orders", rows, NO_DELETES, "run-1", T1, conn)
        # The caller's session zone is left as it was.
        assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "America/New_York"
    got = _by_key(target.read_table("orders"))
    for r in rows.to_pylist():
        assert got[r["_bridge_key_hash"]]["created_at"] == r["created_at"]
        assert got[r["_bridge_key_hash"]]["_bridge_synced_at"] == T1
    target.close()


def test_key_hash_uniqueness_is_known_from_the_index_and_counted_without_it(
    target: SqlTarget,
) -> None:
    """The check's two ways: the database's unique index proves it; without it, count."""
    target.ensure_table("orders", SCHEMA, KEYS)
    rows = _rows([("EU", 1, "a"), ("EU", 2, "b")])
    with target.begin() as conn:
        target.write("orders", rows, pa.array([], pa.string()), "run-1", T1, conn)
    index = target.unique_key_index("orders")
    assert index is not None and "orders" in index
    with target.engine.begin() as conn:  # someone drops the index and a duplicate slips in
        conn.execute(sa.text(f'DROP INDEX "{index}"'))
        conn.execute(sa.text(
            "INSERT INTO orders (region, order_no, _bridge_key_hash, _bridge_data_hash) "
            "SELECT region, order_no + 100, _bridge_key_hash, _bridge_data_hash FROM orders "
            "WHERE order_no = 1"))
    assert target.unique_key_index("orders") is None
    assert target.duplicate_key_hashes("orders") == 1


def test_columns_equal_up_to_case_are_refused(target: SqlTarget) -> None:
    schema = SCHEMA.append(pa.field("Customer", pa.string()))
    with pytest.raises(TargetSchemaError, match="'customer' and 'Customer' differ only in case"):
        target.ensure_table("orders", schema, KEYS)
    assert not target.table_exists("orders")
