"""Bad rows: failed records, the rest loads; too many fail loudly; bad config writes none."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from syncflow_core.errors import ConfigError, RejectRatioExceeded
from syncflow_core.pipeline import sync_slice
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


def _bad_rows(erp: Erp) -> None:
    erp.execute(
        'INSERT INTO "PRODUCTS" ("CODE", "NAME", "PRICE", "QTY", "CREATED", "ROWVER") VALUES '
        "(NULL, 'No key', '1.00', '1', '2023-01-01', 1), "
        "('P0008B', 'Bad price', '12,3x', '1', '2023-01-01', 2), "
        "('P0015B', 'Bad date', '5.00', '1', '31.02.2023', 3)"
    )


def test_bad_rows_become_failed_records_and_the_rest_loads(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    good = products(N)
    erp.create_products(good)
    _bad_rows(erp)
    cfg = make_config(src_url, tgt_url, {"products": entity_config()})
    with Runtime.open(cfg, {}) as rt:
        counts = sync_all(rt, "products", "run-1")
        assert counts.rejected == 3 and counts.inserted == N
        rows = target_rows(rt, "products")
        assert {k: business_values(r) for k, r in rows.items()} == expected(good)

        failed = rt.state.list_failed_records("products").to_pylist()
        assert len(failed) == 3
        by_name = {json.loads(f["raw_row"])["NAME"]: f for f in failed}
        assert set(by_name) == {"No key", "Bad price", "Bad date"}

        nokey = by_name["No key"]
        assert nokey["stage"] == "identity" and "code" in nokey["message"]
        price = by_name["Bad price"]
        assert price["stage"] == "numbers"
        assert "PRICE" in price["message"] and "12,3x" in price["message"]
        date_ = by_name["Bad date"]
        assert date_["stage"] == "datetimes"
        assert "CREATED" in date_["message"] and "31.02.2023" in date_["message"]
        for f in failed:
            assert f["error_code"] and f["occurrences"] == 1 and f["last_run_id"] == "run-1"
            raw = json.loads(f["raw_row"])
            assert set(raw) >= {"CODE", "NAME", "PRICE", "QTY", "CREATED", "ROWVER"}
        assert json.loads(price["raw_row"])["PRICE"] == "12,3x"  # the raw value, unparsed

        # The same bad rows again: no new records, their occurrences grow.
        again = sync_all(rt, "products", "run-2")
        assert again.rejected == 3 and (again.inserted, again.updated) == (0, 0)
        failed2 = rt.state.list_failed_records("products").to_pylist()
        assert len(failed2) == 3
        assert {f["occurrences"] for f in failed2} == {2}
        assert {f["last_run_id"] for f in failed2} == {"run-2"}
    erp.close()


def test_reject_ratio_over_the_limit_fails_loudly_and_loads_nothing(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(100))
    # 10 of 110 rows (9%) have an unparseable price; the limit is 5%.
    erp.execute(
        'UPDATE "PRODUCTS" SET "PRICE" = \'n/a\' WHERE "ROWVER" % 10 = 0'
    )
    with erp.engine.connect() as conn:
        bad = conn.execute(
            sa.text('SELECT COUNT(*) FROM "PRODUCTS" WHERE "PRICE" = \'n/a\'')
        ).scalar_one()
    assert bad / 100 > 0.05
    ent = entity_config(extra={"slices": 1, "chunk_size": 500})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(RejectRatioExceeded, match=r"products.*rejected.*limit 5\.0%"):
            sync_slice(rt, "products", "slice-01", "run-1")
        assert not rt.target.table_exists("products") or rt.target.row_count("products") == 0
        assert rt.state.get_cursor("products", "slice-01") is None
        # The reasons are kept: every bad row is a failed record naming the value.
        failed = rt.state.list_failed_records("products").to_pylist()
        assert len(failed) == bad
        assert all("n/a" in f["message"] for f in failed)
    erp.close()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"fields": {"NOPE": {"type": "DATE"}}}, "NOPE"),
        ({"business_key_fields": ["nope"]}, "nope"),
        ({"delta_strategy": "rowversion", "rowversion_field": "nope"}, "nope"),
        (
            {
                "field_mappings": [
                    {"op": "rename", "field": "CODE", "to": "code"},
                    {"op": "rename", "field": "DESCR", "to": "description"},
                ]
            },
            "DESCR",
        ),
    ],
    ids=["fields", "business_key", "rowversion", "mapping"],
)
def test_config_naming_a_missing_column_writes_nothing(
    engine_urls: tuple[str, str], extra: dict[str, Any], field: str
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(5))
    cfg = make_config(src_url, tgt_url, {"products": entity_config(extra=extra)})
    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(ConfigError) as err:
            sync_slice(rt, "products", "slice-01", "run-1")
        msg = str(err.value)
        assert "test.yaml" in msg and "entity 'products'" in msg and repr(field) in msg
        assert not rt.target.table_exists("products")
        assert rt.state.get_cursor("products", "slice-01") is None
        assert rt.state.get_slice_plan("products") is None
    erp.close()
