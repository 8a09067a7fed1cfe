"""Conservation: every source row ends in exactly one place, and good rows are never deleted.

A child missing two parents loads when both arrive; a row that turns bad keeps its target row
beside an open failed record, which closes when the source is fixed; the reject-ratio gate
refuses the retry of a refused batch.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncflow_core.errors import ConfigError, RejectRatioExceeded
from syncflow_core.keycodec import loads_key
from syncflow_core.pipeline import resolve_pending, sync_slice
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    Erp,
    business_values,
    entity_config,
    expected,
    live,
    make_config,
    products,
    sync_all,
    target_rows,
)


def _hr_entities() -> dict[str, dict[str, Any]]:
    return {
        "departments": {
            "source": {"connection": "erp", "table": "DEPARTMENTS"},
            "business_key_fields": ["dept_no"],
            "fields": {"DEPT_NO": {"type": "NUMBER(4)"}},
            "field_mappings": [
                {"op": "rename", "field": "DEPT_NO", "to": "dept_no"},
                {"op": "rename", "field": "NAME", "to": "name"},
            ],
            "slices": 1,
        },
        "employees": {
            "source": {"connection": "erp", "table": "EMPLOYEES"},
            "business_key_fields": ["emp_no"],
            "fields": {
                "EMP_NO": {"type": "NUMBER(6)"},
                "MANAGER_NO": {"type": "NUMBER(6)"},
                "DEPT_NO": {"type": "NUMBER(4)"},
            },
            "field_mappings": [
                {"op": "rename", "field": "EMP_NO", "to": "emp_no"},
                {"op": "rename", "field": "MANAGER_NO", "to": "manager_no"},
                {"op": "rename", "field": "DEPT_NO", "to": "dept_no"},
            ],
            "parent_refs": [
                {"entity": "departments", "fields": {"dept_no": "dept_no"}},
                {"entity": "employees", "fields": {"manager_no": "emp_no"}, "required": False},
            ],
            "slices": 2,
            "chunk_size": 3,
        },
    }


def test_a_child_missing_two_parents_loads_when_both_arrive(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "DEPARTMENTS" ("DEPT_NO" TEXT, "NAME" TEXT)')
    erp.execute('CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "MANAGER_NO" TEXT, "DEPT_NO" TEXT)')
    # 1 is the top; 7 and 8 work for 0, who arrives (with department 30) only later, in
    # another slice than theirs (so only the resolution can load them).
    staff = [(1, None, 10), (2, 1, 10), (3, 1, 20), (4, 2, 20), (7, 0, 30), (8, 0, 10)]
    erp.execute(
        'INSERT INTO "EMPLOYEES" VALUES (:e, :m, :d)',
        [{"e": str(e), "m": None if m is None else str(m), "d": str(d)} for e, m, d in staff],
    )
    erp.execute('INSERT INTO "DEPARTMENTS" VALUES (\'10\', \'Sales\'), (\'20\', \'Ops\')')
    cfg = make_config(src_url, tgt_url, _hr_entities())
    with Runtime.open(cfg, {}) as rt:
        # Employees first: none of their departments exists yet, everyone waits.
        first = sync_all(rt, "employees", "run-e1")
        assert first.pending == 6 and first.inserted == 0
        sync_all(rt, "departments", "run-d1")
        # Departments 10 and 20 arrived; 7 still misses department 30 and manager 0,
        # 8 misses manager 0 only.
        res = resolve_pending(rt, "employees", "run-r1", parent_arrived=True)
        assert res.inserted == 4 and res.pending == 2
        waiting = rt.state.due_pending("employees", None).to_pylist()
        by_child: dict[int, set[tuple[str, str]]] = {}
        for w in waiting:
            emp = json.loads(w["row_json"])["emp_no"]
            parent = (w["parent_entity"], loads_key(w["parent_key"]))
            by_child.setdefault(int(emp), set()).add(parent)
        assert by_child == {
            7: {("departments", (30,)), ("employees", (0,))},
            8: {("employees", (0,))},
        }
        # Both missing parents arrive: 0 (in department 30) and department 30.
        erp.execute('INSERT INTO "DEPARTMENTS" VALUES (\'30\', \'R&D\')')
        erp.execute('INSERT INTO "EMPLOYEES" VALUES (\'0\', NULL, \'30\')')
        sync_all(rt, "departments", "run-d2")
        again = sync_slice(rt, "employees", "slice-01", "run-e2")
        assert again.inserted == 1 and again.pending == 0  # employee 0 alone
        res = resolve_pending(rt, "employees", "run-r2", parent_arrived=True)
        assert res.inserted == 2 and res.pending == 0
        rows = {int(r["emp_no"]): r for r in rt.target.read_table("employees").to_pylist()}
        assert sorted(rows) == [0, 1, 2, 3, 4, 7, 8]  # nobody vanished
        assert {e: int(rows[e]["dept_no"]) for e in (0, 7, 8)} == {0: 30, 7: 30, 8: 10}
        assert rt.state.pending_counts("employees").total == 0
        assert rt.state.list_failed_records("employees").num_rows == 0
    erp.close()


def _set(erp: Erp, code: str, column: str, value: str) -> None:
    sql = f'UPDATE "PRODUCTS" SET "{column}" = :v WHERE TRIM("CODE") = :c'
    erp.execute(sql, {"v": value, "c": code})


def test_a_row_that_turns_bad_keeps_its_target_row_until_fixed(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    good = products(20)
    erp.create_products(good)
    cfg = make_config(src_url, tgt_url, {"products": entity_config()})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "products", "run-1").inserted == 20
        # P0005 gets a bad price, P0009 a bad date, P0012 a second copy (a duplicate key),
        # and P0016's key turns bad (a NULL code): that row's old key left the source.
        _set(erp, "P0005", "PRICE", "12,3x")
        _set(erp, "P0009", "CREATED", "31.02.2023")
        erp.execute(
            'INSERT INTO "PRODUCTS" SELECT "CODE", \'Twin\', "PRICE", "QTY", "CREATED", "ROWVER" '
            'FROM "PRODUCTS" WHERE TRIM("CODE") = \'P0012\''
        )
        erp.execute('UPDATE "PRODUCTS" SET "CODE" = NULL WHERE TRIM("CODE") = \'P0016\'')
        second = sync_all(rt, "products", "run-2")
        assert second.rejected == 5 and second.deleted == 1
        rows = target_rows(rt, "products")
        # The rejected keys keep their rows exactly as they were; only P0016 is deleted.
        assert set(rows) - set(live(rows)) == {"P0016"}
        want = expected(good)
        for code in ("P0005", "P0009", "P0012"):
            assert business_values(rows[code]) == want[code]
            assert rows[code]["_bridge_batch_id"] == "run-1"
        failed = rt.state.list_failed_records("products").to_pylist()
        assert len(failed) == 5
        keyed = {f["key_hash"] for f in failed if f["key_hash"] is not None}
        assert keyed == {rows[c]["_bridge_key_hash"] for c in ("P0005", "P0009", "P0012")}
        assert [f["stage"] for f in failed if f["key_hash"] is None] == ["identity"]

        # The source is fixed: the rows load and their failed records close; the NULL key
        # stays a failed record (the row is still bad).
        _set(erp, "P0005", "PRICE", "77.00")
        _set(erp, "P0009", "CREATED", "2023-02-28")
        erp.execute('DELETE FROM "PRODUCTS" WHERE "NAME" = \'Twin\'')
        third = sync_all(rt, "products", "run-3")
        assert (third.updated, third.rejected, third.deleted) == (2, 1, 0)
        rows = target_rows(rt, "products")
        assert str(rows["P0005"]["price"]).startswith("77")
        assert rows["P0012"]["_bridge_batch_id"] == "run-1"  # unchanged all along
        still = rt.state.list_failed_records("products").to_pylist()
        assert [f["stage"] for f in still] == ["identity"]
        closed = rt.state.list_failed_records("products", status="resolved").to_pylist()
        assert len(closed) == 4 and {f["closed_run_id"] for f in closed} == {"run-3"}
        assert all(f["closed_at"] is not None for f in closed)
    erp.close()


def test_the_reject_gate_refuses_the_retry_of_a_refused_batch(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(120))
    erp.execute('UPDATE "PRODUCTS" SET "PRICE" = \'n/a\'')  # every row is bad
    ent = entity_config(extra={"slices": 1, "chunk_size": 500})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        for attempt in (1, 2, 3):
            with pytest.raises(RejectRatioExceeded, match="120 of 120"):
                sync_slice(rt, "products", "slice-01", f"run-{attempt}")
            assert rt.state.get_cursor("products", "slice-01") is None
        assert rt.state.list_failed_records("products").num_rows == 120
        # Fixed at the source: the batch loads and the records close.
        erp.execute('UPDATE "PRODUCTS" SET "PRICE" = \'1.00\'')
        counts = sync_slice(rt, "products", "slice-01", "run-4")
        assert counts.inserted == 120 and counts.rejected == 0
        assert rt.state.list_failed_records("products").num_rows == 0
    erp.close()


def test_rejects_already_accepted_do_not_trip_the_gate_again(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(200))
    # 4 % bad: under the 5 % limit, so the batch loads and its rejects are accepted.
    erp.execute('UPDATE "PRODUCTS" SET "PRICE" = \'n/a\' WHERE "ROWVER" % 25 = 0')
    ent = entity_config(extra={"slices": 1, "chunk_size": 500, "reject_ratio_limit": 0.05})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        first = sync_slice(rt, "products", "slice-01", "run-1")
        assert 0 < first.rejected <= 10
        # Now 2 % more go bad: 6 % in all, but only the new 2 % count.
        erp.execute('UPDATE "PRODUCTS" SET "QTY" = \'many\' WHERE "ROWVER" % 50 = 1')
        second = sync_slice(rt, "products", "slice-01", "run-2")
        assert second.rejected > first.rejected and second.rejected_new < 0.05 * 200
    erp.close()


def _cycle_entities() -> dict[str, dict[str, Any]]:
    ents = _hr_entities()
    ents["employees"]["parent_refs"] = [
        {"entity": "departments", "fields": {"dept_no": "dept_no"}},
    ]
    ents["departments"]["fields"]["MANAGER_NO"] = {"type": "NUMBER(6)"}
    ents["departments"]["field_mappings"].append(
        {"op": "rename", "field": "MANAGER_NO", "to": "manager_no"}
    )
    # The cycle departments.manager -> employees -> departments, broken by an optional ref.
    ents["departments"]["parent_refs"] = [
        {"entity": "employees", "fields": {"manager_no": "emp_no"}, "optional": True},
    ]
    return ents


@pytest.mark.parametrize("first", ["departments", "employees"])
def test_a_cycle_with_an_optional_reference_loads_both_ways(
    engine_urls: tuple[str, str], first: str
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "DEPARTMENTS" ("DEPT_NO" TEXT, "NAME" TEXT, "MANAGER_NO" TEXT)')
    erp.execute('CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "MANAGER_NO" TEXT, "DEPT_NO" TEXT)')
    erp.execute(
        'INSERT INTO "DEPARTMENTS" VALUES (\'10\', \'Sales\', \'2\'), (\'20\', \'Ops\', \'3\'),'
        " ('30', 'New', NULL)"
    )
    erp.execute(
        'INSERT INTO "EMPLOYEES" VALUES (\'1\', NULL, \'10\'), (\'2\', \'1\', \'10\'),'
        " ('3', '1', '20')"
    )
    cfg = make_config(src_url, tgt_url, _cycle_entities())
    with Runtime.open(cfg, {}) as rt:
        if first == "departments":
            # Departments never wait for their managers; then employees find their department.
            assert sync_all(rt, "departments", "run-d").inserted == 3
            assert sync_all(rt, "employees", "run-e").inserted == 3
        else:
            # Employees wait for their departments, which load and wake them.
            assert sync_all(rt, "employees", "run-e").pending == 3
            assert sync_all(rt, "departments", "run-d").inserted == 3
            assert resolve_pending(rt, "employees", "run-r", parent_arrived=True).inserted == 3
        depts = {int(r["dept_no"]): r for r in rt.target.read_table("departments").to_pylist()}
        emps = {int(r["emp_no"]): r for r in rt.target.read_table("employees").to_pylist()}
        managers = {d: r["manager_no"] and int(r["manager_no"]) for d, r in depts.items()}
        assert managers == {10: 2, 20: 3, 30: None}
        assert {e: int(r["dept_no"]) for e, r in emps.items()} == {1: 10, 2: 10, 3: 20}
        for entity in ("departments", "employees"):
            assert rt.state.pending_counts(entity).total == 0
            assert rt.state.list_failed_records(entity).num_rows == 0
    erp.close()


@pytest.mark.parametrize("every", [1, 0])
def test_rowversion_deletes_reach_the_target_within_one_pass(
    engine_urls: tuple[str, str], every: int
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    good = products(30)
    erp.create_products(good)
    ent = entity_config(strategy="rowversion", extra={"reconcile_deletes_every": every})
    cfg = make_config(src_url, tgt_url, {"products": ent})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "products", "run-1").inserted == 30
        # Deleted rows in every slice, one row turned bad (its key is still there), one
        # changed row (its version moves the watermark, so it is the only row read).
        gone = ["P0001", "P0013", "P0014", "P0030"]
        erp.delete_products(gone)
        _set(erp, "P0020", "PRICE", "12,3x")
        erp.execute('UPDATE "PRODUCTS" SET "ROWVER" = 99999 WHERE TRIM("CODE") = \'P0020\'')
        second = sync_all(rt, "products", "run-2")
        rows = target_rows(rt, "products")
        if every:
            assert second.deleted == len(gone) and second.rejected == 1
            assert set(rows) - set(live(rows)) == set(gone)
            assert rows["P0020"]["_bridge_batch_id"] == "run-1"  # bad now, kept as it was
            # A quiet pass finds nothing more.
            assert sync_all(rt, "products", "run-3").deleted == 0
        else:
            assert second.deleted == 0 and live(rows).keys() == rows.keys()
        assert len(rows) == 30
    erp.close()


def test_a_waiting_child_deleted_from_the_source_stops_waiting(
    engine_urls: tuple[str, str],
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "DEPARTMENTS" ("DEPT_NO" TEXT, "NAME" TEXT)')
    erp.execute('CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "MANAGER_NO" TEXT, "DEPT_NO" TEXT)')
    erp.execute('INSERT INTO "DEPARTMENTS" VALUES (\'10\', \'Sales\')')
    staff = [(1, None, 10), (2, 1, 10), (3, 1, 90), (4, 1, 90), (5, 1, 10), (6, 1, 90)]
    erp.execute(
        'INSERT INTO "EMPLOYEES" VALUES (:e, :m, :d)',
        [{"e": str(e), "m": None if m is None else str(m), "d": str(d)} for e, m, d in staff],
    )
    cfg = make_config(src_url, tgt_url, _hr_entities())
    with Runtime.open(cfg, {}) as rt:
        sync_all(rt, "departments", "run-d1")
        first = sync_all(rt, "employees", "run-e1")
        assert (first.inserted, first.pending) == (3, 3)  # 3, 4 and 6 wait for department 90
        erp.execute('DELETE FROM "EMPLOYEES" WHERE "EMP_NO" IN (\'4\', \'6\')')
        sync_all(rt, "employees", "run-e2")
        waiting = rt.state.due_pending("employees", None).to_pylist()
        assert [json.loads(w["row_json"])["emp_no"] for w in waiting] == [3]
        # Department 90 arrives: only 3 loads; 4 and 6 are gone and stay gone.
        erp.execute('INSERT INTO "DEPARTMENTS" VALUES (\'90\', \'New\')')
        sync_all(rt, "departments", "run-d2")
        assert resolve_pending(rt, "employees", "run-r", parent_arrived=True).inserted == 1
        emps = sorted(int(r["emp_no"]) for r in rt.target.read_table("employees").to_pylist())
        assert emps == [1, 2, 3, 5]
    erp.close()


def test_a_reference_typed_unlike_its_parent_key_is_a_config_error_at_sync(
    engine_urls: tuple[str, str],
) -> None:
    """The child's DEPT_NO is NUMERIC without precision in the source (a decimal), the
    parent's key an integer: no hash could ever match, so the sync refuses before reading."""
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "DEPARTMENTS" ("DEPT_NO" TEXT, "NAME" TEXT)')
    erp.execute(
        'CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "MANAGER_NO" TEXT, "DEPT_NO" NUMERIC)'
    )
    ents = _hr_entities()
    del ents["employees"]["fields"]["DEPT_NO"]  # left to the source's own type
    cfg = make_config(src_url, tgt_url, ents)
    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(ConfigError) as err:
            sync_all(rt, "employees", "run-e1")
        msg = str(err.value)
        assert msg.startswith("test.yaml: entity 'employees': parent_refs.0.fields: field")
        assert "'dept_no'" in msg and "'departments'" in msg
        assert rt.state.get_cursor("employees", "slice-01") is None
    erp.close()


@pytest.mark.parametrize("strategy", ["hash", "rowversion"])
def test_a_bad_row_deleted_before_it_ever_loaded_closes_its_record(
    engine_urls: tuple[str, str], strategy: str
) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(20))
    _set(erp, "P0007", "PRICE", "12,3x")  # bad from the start: never in the target
    _set(erp, "P0016", "QTY", "lots")
    cfg = make_config(src_url, tgt_url, {"products": entity_config(strategy=strategy)})
    with Runtime.open(cfg, {}) as rt:
        assert sync_all(rt, "products", "run-1").rejected == 2
        erp.delete_products(["P0007"])
        sync_all(rt, "products", "run-2")
        still = rt.state.list_failed_records("products").to_pylist()
        assert [json.loads(f["raw_row"])["CODE"].strip() for f in still] == ["P0016"]
        closed = rt.state.list_failed_records("products", status="resolved").to_pylist()
        assert [f["closed_run_id"] for f in closed] == ["run-2"]
        assert "P0007" not in target_rows(rt, "products")
    erp.close()
