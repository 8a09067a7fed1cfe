"""Parent-child resolution inside the pipeline: children wait, load when parents arrive, expire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from syncflow_core.pipeline import resolve_pending
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import Erp, make_config, sync_all

ORDERS = 10
LINES_PER_ORDER = 3
ORPHAN = "SO-0099"  # lines of an order that never arrives


def _entities(chunk: int = 7) -> dict[str, dict[str, Any]]:
    return {
        "orders": {
            "source": {"connection": "erp", "table": "ORDERS"},
            "business_key_fields": ["order_no"],
            "fields": {"TOTAL": {"type": "NUMBER(12,2)"}},
            "field_mappings": [
                {"op": "rename", "field": "ORDER_NO", "to": "order_no"},
                {"op": "rename", "field": "TOTAL", "to": "total"},
            ],
            "slices": 2,
            "chunk_size": chunk,
        },
        "order_lines": {
            "source": {"connection": "erp", "table": "ORDER_LINES"},
            "business_key_fields": ["order_no", "line_no"],
            "fields": {"LINE_NO": {"type": "NUMBER(5)"}, "QTY": {"type": "NUMBER(10)"}},
            "field_mappings": [
                {"op": "rename", "field": "ORDER_NO", "to": "order_no"},
                {"op": "rename", "field": "LINE_NO", "to": "line_no"},
                {"op": "rename", "field": "QTY", "to": "qty"},
            ],
            "parent_refs": [{"entity": "orders", "fields": {"order_no": "order_no"}}],
            "slices": 3,
            "chunk_size": chunk,
        },
        "employees": {
            "source": {"connection": "erp", "table": "EMPLOYEES"},
            "business_key_fields": ["emp_no"],
            "fields": {"EMP_NO": {"type": "NUMBER(6)"}, "MANAGER_NO": {"type": "NUMBER(6)"}},
            "field_mappings": [
                {"op": "rename", "field": "EMP_NO", "to": "emp_no"},
                {"op": "rename", "field": "NAME", "to": "name"},
                {"op": "rename", "field": "MANAGER_NO", "to": "manager_no"},
            ],
            "parent_refs": [
                {"entity": "employees", "fields": {"manager_no": "emp_no"}, "required": False}
            ],
            "slices": 1,
            "chunk_size": 50,
        },
    }


def _fill(erp: Erp) -> None:
    erp.execute('CREATE TABLE "ORDERS" ("ORDER_NO" VARCHAR(12), "TOTAL" TEXT)')
    erp.execute(
        'CREATE TABLE "ORDER_LINES" ("ORDER_NO" VARCHAR(12), "LINE_NO" TEXT, "QTY" TEXT)'
    )
    erp.execute('CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "NAME" TEXT, "MANAGER_NO" TEXT)')
    # Padded order numbers in both tables: the parent key matches after trimming.
    erp.execute(
        'INSERT INTO "ORDERS" VALUES (:o, :t)',
        [{"o": f"SO-{i:04d}  ", "t": f"{i * 10}.50"} for i in range(1, ORDERS + 1)],
    )
    lines = [
        {"o": f"SO-{i:04d} ", "l": f" {n}", "q": str(n * i)}
        for i in [*range(1, ORDERS + 1), 99]
        for n in range(1, LINES_PER_ORDER + 1)
    ]
    erp.execute('INSERT INTO "ORDER_LINES" VALUES (:o, :l, :q)', lines)
    # Managers both before and after their reports in key order; 1 is the top (no manager).
    staff = [(1, None), (2, 1), (3, 12), (4, 3), (5, 12), (12, 1), (13, 4)]
    erp.execute(
        'INSERT INTO "EMPLOYEES" VALUES (:e, :n, :m)',
        [{"e": f" {e}", "n": f"Emp {e}", "m": None if m is None else str(m)} for e, m in staff],
    )


def _line_keys(rt: Runtime) -> list[tuple[str, int]]:
    rows = rt.target.read_table("order_lines").to_pylist()
    return sorted((r["order_no"], int(r["line_no"])) for r in rows)


def test_children_wait_for_parents_then_load_or_expire(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _fill(erp)
    cfg = make_config(src_url, tgt_url, _entities())
    n_lines = (ORDERS + 1) * LINES_PER_ORDER
    with Runtime.open(cfg, {}) as rt:
        # Lines before their orders: every line waits, none loads.
        early = sync_all(rt, "order_lines", "run-lines-1")
        assert early.fetched == n_lines and early.pending == n_lines
        assert early.inserted == 0
        assert rt.state.pending_counts("order_lines").total == n_lines
        assert not rt.target.table_exists("order_lines") or _line_keys(rt) == []

        # The orders arrive; the parent sensor's resolution loads their lines.
        orders = sync_all(rt, "orders", "run-orders")
        assert orders.inserted == ORDERS
        res = resolve_pending(rt, "order_lines", "run-resolve", parent_arrived=True)
        assert res.resolved == ORDERS * LINES_PER_ORDER
        assert res.inserted == ORDERS * LINES_PER_ORDER
        assert res.pending == LINES_PER_ORDER
        want = [(f"SO-{i:04d}", n) for i in range(1, ORDERS + 1)
                for n in range(1, LINES_PER_ORDER + 1)]
        assert _line_keys(rt) == want  # none lost, none doubled
        left = rt.state.due_pending("order_lines", None).to_pylist()
        assert {json.loads(r["row_json"])["order_no"] for r in left} == {ORPHAN}
        assert rt.state.pending_counts("order_lines").total == LINES_PER_ORDER

        # A second sync of the lines: loaded ones are unchanged, the orphans wait (once).
        again = sync_all(rt, "order_lines", "run-lines-2")
        assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
        assert again.pending == LINES_PER_ORDER
        assert rt.state.pending_counts("order_lines").total == LINES_PER_ORDER
        assert _line_keys(rt) == want

        # The orphans' order never arrives: five due retries, then they are failed records.
        now = datetime.now(UTC)
        for attempt in range(1, 6):
            now += timedelta(days=2)  # past any backoff step
            step = resolve_pending(rt, "order_lines", f"run-retry-{attempt}", now=now)
            assert step.resolved == 0
            if attempt < 5:
                assert step.pending == LINES_PER_ORDER and step.parent_missing == 0
                assert rt.state.pending_counts("order_lines", now).max_attempts == attempt
            else:
                assert step.parent_missing == LINES_PER_ORDER and step.pending == 0
        assert rt.state.pending_counts("order_lines").total == 0
        failed = rt.state.list_failed_records("order_lines").to_pylist()
        assert len(failed) == LINES_PER_ORDER
        for f in failed:
            assert f["error_code"] == "parent_missing" and f["stage"] == "resolve"
            assert ORPHAN in f["message"] or "SO-0099" in f["raw_row"]
            assert json.loads(f["raw_row"])["order_no"] == ORPHAN
        assert _line_keys(rt) == want
    erp.close()


def test_not_yet_due_children_are_not_retried(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _fill(erp)
    cfg = make_config(src_url, tgt_url, _entities())
    with Runtime.open(cfg, {}) as rt:
        sync_all(rt, "order_lines", "run-1")
        total = rt.state.pending_counts("order_lines").total
        step = resolve_pending(rt, "order_lines", "run-2", now=datetime.now(UTC))
        assert (step.resolved, step.parent_missing) == (0, 0)
        assert rt.state.pending_counts("order_lines").max_attempts == 0
        assert rt.state.pending_counts("order_lines").total == total
    erp.close()


def test_self_reference_in_one_batch_loads_without_waiting(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _fill(erp)
    cfg = make_config(src_url, tgt_url, _entities())
    with Runtime.open(cfg, {}) as rt:
        counts = sync_all(rt, "employees", "run-1")
        assert counts.inserted == 7 and counts.pending == 0 and counts.rejected == 0
        rows = rt.target.read_table("employees").to_pylist()
        got = {int(r["emp_no"]): r["manager_no"] for r in rows}
        assert {k: (None if v is None else int(v)) for k, v in got.items()} == {
            1: None, 2: 1, 3: 12, 4: 3, 5: 12, 12: 1, 13: 4
        }
        assert rt.state.pending_counts("employees").total == 0
    erp.close()


def test_self_reference_across_chunks_resolves(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    _fill(erp)
    # Numeric keys stored as numbers: source order = target order (see test_key_order.py for
    # text-typed numeric keys).
    erp.execute('DELETE FROM "EMPLOYEES"')
    erp.execute('CREATE TABLE "STAFF" ("EMP_NO" INTEGER, "NAME" TEXT, "MANAGER_NO" INTEGER)')
    staff = [(1, None), (2, 1), (3, 12), (4, 3), (5, 12), (12, 1), (13, 4)]
    erp.execute(
        'INSERT INTO "STAFF" VALUES (:e, :n, :m)',
        [{"e": e, "n": f"Emp {e}", "m": m} for e, m in staff],
    )
    ents = _entities()
    ents["employees"] = {
        **ents["employees"], "chunk_size": 2, "source": {"connection": "erp", "table": "STAFF"}
    }
    cfg = make_config(src_url, tgt_url, ents)
    with Runtime.open(cfg, {}) as rt:
        counts = sync_all(rt, "employees", "run-1")
        # Chunks [1,2] [3,4] [5,12] [13]: 3 waits for 12 (a later chunk), 4 for 3 (waiting),
        # 13 for 4 (waiting); 5 loads with 12 in its own chunk.
        assert (counts.inserted, counts.pending, counts.deleted) == (4, 3, 0)
        res = resolve_pending(rt, "employees", "run-2", parent_arrived=True)
        # 12 is loaded now; 3, then 4 and 13 behind it, load in one resolution.
        assert res.resolved == 3 and res.inserted == 3
        assert rt.state.pending_counts("employees").total == 0
        assert rt.target.row_count("employees") == 7
    erp.close()
