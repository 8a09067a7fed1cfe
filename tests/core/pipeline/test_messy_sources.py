"""Messy real sources end to end: real names, dropped columns, text row versions, bare NUMBER."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from syncflow_core.errors import TargetSchemaError
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    Erp,
    business_values,
    entity_config,
    expected,
    make_config,
    products,
    sync_all,
    target_rows,
)

N = 20


def test_names_with_spaces_sync_end_to_end(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "Order Details" ("Order ID" INTEGER, "Product ID" INTEGER, '
                '"Unit Price" TEXT, "Ship Note" TEXT)')
    rows = [{"o": o, "p": p, "u": f"{o}.{p}0", "n": f"note {o}-{p}"}
            for o in range(1, 8) for p in range(1, 4)]
    erp.execute('INSERT INTO "Order Details" VALUES (:o, :p, :u, :n)', rows)
    cfg = make_config(src_url, tgt_url, {"order_details": {
        "source": {"connection": "erp", "table": "Order Details"},
        "target_table": "Order Details",
        "business_key_fields": ["Order ID", "Product ID"],
        "fields": {"Unit Price": {"type": "NUMBER(12,2)"}},
        "slices": 2, "chunk_size": 5,
    }})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "order_details", "r1").inserted == len(rows)
        assert sync_all(rt, "order_details", "r2").unchanged == len(rows)
        erp.execute('UPDATE "Order Details" SET "Unit Price" = \'9.99\' WHERE "Order ID" = 3')
        erp.execute('DELETE FROM "Order Details" WHERE "Order ID" = 7')
        counts = sync_all(rt, "order_details", "r3")
        assert (counts.updated, counts.deleted) == (3, 3)
        got = {(r["Order ID"], r["Product ID"]): r
               for r in rt.target.read_table("Order Details").to_pylist()}
    assert got[(3, 2)]["Unit Price"] == Decimal("9.99")
    assert got[(2, 3)]["Unit Price"] == Decimal("2.30") and got[(2, 3)]["Ship Note"] == "note 2-3"
    assert got[(7, 1)]["_bridge_deleted_at"] is not None
    erp.close()


def test_a_dropped_source_column_ends_null_in_every_row(engine_urls: tuple[str, str]) -> None:
    """Rows whose stored hash held the value are rewritten (with NULL); the others already
    were NULL: afterwards the column is NULL everywhere and a rerun writes nothing."""
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    source = products(N)
    erp.create_products(source)
    erp.execute('ALTER TABLE "PRODUCTS" ADD COLUMN "COLOR" TEXT')
    erp.execute('UPDATE "PRODUCTS" SET "COLOR" = \'red\' WHERE "ROWVER" % 2 = 0')
    colored = sum(1 for p in source if p.rowver % 2 == 0)
    cfg = make_config(src_url, tgt_url, {"products": entity_config()})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "products", "r1").inserted == N
    erp.execute('ALTER TABLE "PRODUCTS" DROP COLUMN "COLOR"')
    with Runtime.open(cfg, {}) as rt:  # the next run sees the source's new shape
        counts = sync_all(rt, "products", "r2")
        assert (counts.updated, counts.unchanged) == (colored, N - colored)
        rows = target_rows(rt, "products")
        assert {r["COLOR"] for r in rows.values()} == {None}
        assert {k: business_values(r) for k, r in rows.items()} == expected(source)
        assert sync_all(rt, "products", "r3").unchanged == N
    erp.close()


def test_a_renamed_key_column_is_a_clear_error(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(N))
    with Runtime.open(make_config(src_url, tgt_url, {"products": entity_config()}), {}) as rt:
        assert sync_all(rt, "products", "r1").inserted == N
    renamed: dict[str, Any] = entity_config()
    renamed["field_mappings"][0] = {"op": "rename", "field": "CODE", "to": "product_code"}
    renamed["business_key_fields"] = ["product_code"]
    with Runtime.open(make_config(src_url, tgt_url, {"products": renamed}), {}) as rt, \
            pytest.raises(TargetSchemaError, match=r"\['product_code'\] are not columns .* "
                                                   r"Was a key column renamed"):
        sync_all(rt, "products", "r2")
    erp.close()


def _versioned(erp: Erp, versions: dict[str, str]) -> None:
    erp.execute('CREATE TABLE "ITEMS" ("CODE" VARCHAR(10), "NAME" TEXT, "VER" VARCHAR(20))')
    erp.execute('INSERT INTO "ITEMS" VALUES (:c, :n, :v)',
                [{"c": c, "n": f"item {c}", "v": v} for c, v in versions.items()])


def _rowversion_items(src_url: str, tgt_url: str, chunk_size: int = 50) -> Any:
    return make_config(src_url, tgt_url, {"items": {
        "source": {"connection": "erp", "table": "ITEMS"},
        "business_key_fields": ["CODE"], "delta_strategy": "rowversion",
        "rowversion_field": "VER", "fields": {"VER": {"type": "NUMBER(19)"}}, "slices": 1,
        "chunk_size": chunk_size,
    }})


def test_a_text_rowversion_declared_a_number_compares_as_a_number(
    engine_urls: tuple[str, str],
) -> None:
    """'100' < '99' as text: the edit to version 100 must still be read above watermark 99."""
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _versioned(erp, {"A": "97", "B": "98", "C": "99"})
    with Runtime.open(_rowversion_items(src_url, tgt_url), {}) as rt:
        assert sync_all(rt, "items", "r1").inserted == 3
        erp.execute('UPDATE "ITEMS" SET "NAME" = \'renamed\', "VER" = \'100\' WHERE "CODE" = \'A\'')
        counts = sync_all(rt, "items", "r2")
        assert (counts.fetched, counts.updated) == (1, 1)
        names = {r["CODE"]: r["NAME"] for r in rt.target.read_table("items").to_pylist()}
        assert names["A"] == "renamed"
        assert sync_all(rt, "items", "r3").fetched == 0
    erp.close()


def test_a_rowversion_going_backwards_is_written_and_counted(
    engine_urls: tuple[str, str],
) -> None:
    """A restore puts B back to an older version above the watermark's floor: the source
    is the truth, so B is updated, and the run says how many versions went backwards."""
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _versioned(erp, {"A": "10", "B": "50"})
    # One row a chunk: the pass's watermark is the lowest chunk maximum, 10.
    with Runtime.open(_rowversion_items(src_url, tgt_url, chunk_size=1), {}) as rt:
        assert sync_all(rt, "items", "r1").inserted == 2
        erp.execute('UPDATE "ITEMS" SET "NAME" = \'restored\', "VER" = \'20\' WHERE "CODE" = \'B\'')
        # The slice's watermark is the pass's floor (10): version 20 is read again.
        counts = sync_all(rt, "items", "r2")
        assert (counts.updated, counts.rowversion_backwards) == (1, 1)
        names = {r["CODE"]: r["NAME"] for r in rt.target.read_table("items").to_pylist()}
        assert names["B"] == "restored"
    erp.close()


def test_bare_number_keys_stay_integral_in_the_target(engine_urls: tuple[str, str]) -> None:
    """Oracle's NUMBER without precision: integer keys stay 10 (not 10.0000000000); a column
    with fractions is written at the fewest digits its values need."""
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "RATES" ("ID" TEXT, "RATE" TEXT)')
    erp.execute('INSERT INTO "RATES" VALUES (:i, :r)',
                [{"i": str(i), "r": r} for i, r in ((10, "2.5"), (11, "3"), (12, "0.125"))])
    cfg = make_config(src_url, tgt_url, {"rates": {
        "source": {"connection": "erp", "table": "RATES"}, "business_key_fields": ["ID"],
        "fields": {"ID": {"type": "NUMBER"}, "RATE": {"type": "NUMBER"}}, "slices": 1,
    }})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "rates", "r1").inserted == 3
        with rt.target.engine.connect() as conn:
            text = conn.execute(sa.text(
                'SELECT CAST("ID" AS TEXT), CAST("RATE" AS TEXT) FROM rates ORDER BY 1'
            )).all()
        assert [r[0] for r in text] == ["10", "11", "12"]
        assert [Decimal(r[1]) for r in text] == [Decimal("2.5"), Decimal(3), Decimal("0.125")]
        assert all(len(r[1].partition(".")[2]) <= 3 for r in text)  # not 10 fraction digits
        if rt.target.dialect == "postgresql":
            assert str(rt.target._columns("rates", refresh=True)["ID"]) == "NUMERIC"
        assert sync_all(rt, "rates", "r2").unchanged == 3
    erp.close()


def test_eleven_digits_in_a_number_10_are_a_failed_record(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    source = products(N)
    erp.create_products(source)
    erp.execute('UPDATE "PRODUCTS" SET "QTY" = \'12345678901\' WHERE "CODE" LIKE \'P0003%\'')
    cfg = make_config(src_url, tgt_url, {"products": entity_config()})
    with Runtime.open(cfg, {}) as rt:
        counts = sync_all(rt, "products", "r1")
        assert (counts.inserted, counts.rejected) == (N - 1, 1)
        failed = rt.state.list_failed_records("products").to_pylist()
        assert failed[0]["stage"] == "numbers"
        assert "QTY" in failed[0]["message"] and "NUMBER(10)" in failed[0]["message"]
        assert json.loads(failed[0]["raw_row"])["QTY"] == "12345678901"
    erp.close()
