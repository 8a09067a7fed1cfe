"""PostgreSQL write fast paths: bulk load into an empty table, the insert hint, concurrency."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from syncflow_core.targets.sql import SqlTarget

pytestmark = pytest.mark.postgres

T1 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
NONE = pa.array([], pa.string())
BULK = 12_000  # above the bulk threshold


@pytest.fixture
def target(pg_url: str) -> Iterator[SqlTarget]:
    """A target on a fresh PostgreSQL database."""
    t = SqlTarget(pg_url)
    yield t
    t.close()


def _h(*parts: object) -> str:
    return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()


def _rows(lo: int, hi: int, version: int = 1) -> pa.Table:
    nos = list(range(lo, hi))
    return pa.table({
        "order_no": pa.array(nos, pa.int64()),
        "customer": pa.array([f"c{n}'\"\n,{version}" if n % 7 != 1 else None for n in nos]),
        "amount": pa.array([Decimal(f"{n}.{version:02d}") for n in nos], pa.decimal128(12, 2)),
        "created_at": pa.array([T1 + timedelta(microseconds=n) for n in nos],
                               pa.timestamp("us", tz="UTC")),
        "_bridge_key_hash": pa.array([_h(n) for n in nos]),
        "_bridge_data_hash": pa.array([_h(n, version) for n in nos]),
        "_bridge_rowversion": pa.array([version * 1_000_000 + n for n in nos], pa.int64()),
        "_bridge_ref": pa.array([f"orders[order_no={n}]" for n in nos]),
    })


def _indexes(target: SqlTarget) -> dict[str, str]:
    with target.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders'")).all()
    return {r[0]: r[1] for r in rows}


def _stored(target: SqlTarget) -> dict[int, dict[str, object]]:
    return {r["order_no"]: r for r in target.read_table("orders").to_pylist()}


def test_bulk_load_into_empty_table_keeps_values_and_indexes(target: SqlTarget) -> None:
    rows = _rows(0, BULK)
    target.ensure_table("orders", rows.schema, ["order_no"])
    with target.engine.begin() as conn:  # an index added by hand survives the bulk load
        conn.execute(sa.text("CREATE INDEX orders_customer_ix ON orders (customer)"))
    before = _indexes(target)
    with target.begin() as conn:
        assert target.write("orders", rows, NONE, "run-1", T1, conn) == (BULK, 0)
        # The caller's session settings are left alone.
        assert conn.execute(sa.text("SHOW maintenance_work_mem")).scalar_one() == "64MB"
    assert _indexes(target) == before
    with target.engine.connect() as conn:  # the marks went in as temporary column defaults
        defaults = conn.execute(sa.text(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
            "AND column_default IS NOT NULL")).scalar_one()
    assert defaults == 0
    got = _stored(target)
    for r in rows.to_pylist():
        stored = got[r["order_no"]]
        assert {k: stored[k] for k in r} == r
        assert stored["_bridge_batch_id"] == "run-1" and stored["_bridge_synced_at"] == T1
        assert stored["_bridge_deleted_at"] is None
    assert target.duplicate_key_hashes("orders") == 0
    # The unique index is really there again: a second row with a stored key is refused.
    with pytest.raises(sa.exc.IntegrityError), target.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders (order_no, _bridge_key_hash) VALUES (-1, :h)"),
                     {"h": _h(0)})


def test_bulk_load_rolls_back_with_the_callers_transaction(target: SqlTarget) -> None:
    rows = _rows(0, BULK)
    target.ensure_table("orders", rows.schema, ["order_no"])
    before = _indexes(target)
    with pytest.raises(RuntimeError), target.begin() as conn:
        target.write("orders", rows, NONE, "run-1", T1, conn)
        raise RuntimeError("state write failed")
    assert target.row_count("orders", live_only=False) == 0
    assert _indexes(target) == before  # dropped and rebuilt indexes come back as they were


def test_big_write_into_a_filled_table_updates_and_inserts(target: SqlTarget) -> None:
    target.ensure_table("orders", _rows(0, 1).schema, ["order_no"])
    target.write("orders", _rows(0, BULK), NONE, "run-1", T1)
    target.write("orders", _rows(0, 1), pa.array([_h(5)]), "run-d", T1)  # soft-delete key 5
    # Keys 0..BULK-1 become version 2 (5 comes back), BULK..BULK+999 are new.
    changed = _rows(0, BULK + 1000, version=2)
    assert target.write("orders", changed, NONE, "run-2", T2) == (BULK + 1000, 0)
    got = _stored(target)
    assert len(got) == BULK + 1000
    assert all(r["_bridge_rowversion"] == 2_000_000 + n for n, r in got.items())
    assert got[5]["_bridge_deleted_at"] is None and got[5]["_bridge_batch_id"] == "run-2"
    assert got[BULK + 10]["amount"] == Decimal(f"{BULK + 10}.02")


@pytest.mark.parametrize("hint_right", [True, False])
def test_insert_hint_speeds_up_but_never_changes_the_result(
    target: SqlTarget, hint_right: bool
) -> None:
    target.ensure_table("orders", _rows(0, 1).schema, ["order_no"])
    target.write("orders", _rows(0, 100), NONE, "run-1", T1)
    target.write("orders", _rows(0, 1), pa.array([_h(3)]), "run-d", T1)  # soft-deleted
    changes = _rows(50, 150, version=2)  # 50..99 stored, 100..149 new
    is_new = pc.greater_equal(changes.column("order_no"), 100)
    # A wrong hint claims every row is new, stored (and soft-deleted) keys included.
    mask = is_new if hint_right else pa.array([True] * changes.num_rows)
    if not hint_right:
        changes = pa.concat_tables([changes, _rows(3, 4, version=2)])
        mask = pa.array([True] * changes.num_rows)
    with target.begin() as conn:
        counts = target.write("orders", changes, NONE, "run-2", T2, conn, insert_mask=mask)
    assert counts == (changes.num_rows, 0)
    got = _stored(target)
    assert len(got) == 150
    for n in range(50, 150):
        assert got[n]["_bridge_rowversion"] == 2_000_000 + n and got[n]["_bridge_synced_at"] == T2
    assert got[10]["_bridge_batch_id"] == "run-1"
    if not hint_right:
        assert got[3]["_bridge_deleted_at"] is None and got[3]["_bridge_batch_id"] == "run-2"
    assert target.duplicate_key_hashes("orders") == 0


def test_insert_hint_of_the_wrong_length_is_refused(target: SqlTarget) -> None:
    target.ensure_table("orders", _rows(0, 1).schema, ["order_no"])
    with pytest.raises(ValueError, match="insert_mask has 1 values for 3 upserts"):
        target.write("orders", _rows(0, 3), NONE, "run-1", T1, insert_mask=pa.array([True]))


def test_two_writers_racing_for_an_empty_table_both_land(target: SqlTarget) -> None:
    """The second writer waits for the first one's lock, then sees rows and upserts."""
    target.ensure_table("orders", _rows(0, 1).schema, ["order_no"])
    first_has_lock = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with target.begin() as conn:
                target.write("orders", _rows(0, BULK), NONE, "run-a", T1, conn)
                first_has_lock.set()
                release.wait(30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            first_has_lock.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_has_lock.wait(30)
    second = SqlTarget(str(target.engine.url.render_as_string(hide_password=False)))
    b = threading.Thread(
        target=lambda: second.write("orders", _rows(BULK - 100, 2 * BULK, 2), NONE, "run-b", T2)
    )
    b.start()
    b.join(0.5)
    assert b.is_alive()  # waiting for the first writer's lock
    release.set()
    a.join(30)
    b.join(30)
    second.close()
    assert not errors
    got = _stored(target)
    assert len(got) == 2 * BULK
    assert got[0]["_bridge_batch_id"] == "run-a"
    assert got[BULK - 1]["_bridge_batch_id"] == "run-b"  # overlap updated by the second
    assert target.duplicate_key_hashes("orders") == 0


def test_new_tables_compare_hashes_bytewise(target: SqlTarget) -> None:
    """Hash columns use the "C" collation whatever the database's (fast index comparisons)."""
    target.ensure_table("orders", _rows(0, 1).schema, ["order_no"])
    with target.engine.connect() as conn:
        got = dict(conn.execute(sa.text(
            "SELECT column_name, collation_name FROM information_schema.columns "
            "WHERE table_name = 'orders' AND column_name LIKE '_bridge_%_hash'")).all())
    assert got == {"_bridge_key_hash": "C", "_bridge_data_hash": "C"}


def test_updates_stay_on_their_page_and_leave_the_indexes_alone(target: SqlTarget) -> None:
    """Tables keep room per page, so a changed row is rewritten without new index entries."""
    rows = _rows(0, 2_000)
    target.ensure_table("orders", rows.schema, ["order_no"])
    with target.begin() as conn:
        target.write("orders", rows, NONE, "run-1", T1, conn)
    changed = _rows(0, 2_000, version=2).filter(pc.equal(pc.bit_wise_and(
        pc.cast(pa.array(range(2_000)), pa.int64()), 15), 0))
    with target.begin() as conn:
        target.write("orders", changed, NONE, "run-2", T2, conn)
        # This transaction's own counters (the statistics views lag behind).
        upd, hot = conn.execute(sa.text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relname = 'orders'")).one()
    assert upd == changed.num_rows
    assert hot >= 0.9 * upd
    assert _stored(target)[16]["_bridge_data_hash"] == _h(16, 2)


def test_analyze_of_named_columns_still_counts_the_rows(target: SqlTarget) -> None:
    """The staging table's ANALYZE samples the key only; the planner still gets its size."""
    from syncflow_core.targets import pg_copy

    with target.begin() as conn:
        raw = conn.connection.driver_connection
        raw.execute("CREATE TEMP TABLE st (k text, v text) ON COMMIT DROP")
        raw.execute("INSERT INTO st SELECT md5(i::text), repeat('x', 50) "
                    "FROM generate_series(1, 20000) i")
        pg_copy.analyze(raw, "st", ["k"])
        tuples = raw.execute("SELECT reltuples FROM pg_class WHERE relname = 'st'").fetchone()
        stats = raw.execute("SELECT attname, n_distinct FROM pg_stats "
                            "WHERE tablename = 'st' ORDER BY attname").fetchall()
    assert tuples[0] == 20_000
    assert stats == [("k", -1.0)]  # every key distinct; v was not sampled
