"""Property: after every sync each source row is in exactly one place, and only gone keys are
soft-deleted.

Hypothesis generates histories of an HR source (departments and employees, a cycle broken by
an optional reference: department.manager -> employees, employee.department -> departments,
plus the employees' self-reference to their manager): rows inserted, changed, turned bad (a
bad number), fixed, deleted; duplicated keys of both shapes that no single chunk sees whole:

- departments (``hash``, keys spelled ``' 1'``, ``'2'``, chunks of 2 rows, 2 slices): a copy
  with the same spelling, or with another spelling that cleans to the same number (``'01'``,
  ``'001'``), so the copies fall in one chunk, in different chunks or in different slices;
- employees (``rowversion``): a second copy with a higher version (it wins) or the same
  version (neither wins), while the first copy is often below the watermark; fixed by
  keeping either copy (the survivor may be the one never re-read);

syncs of either entity in any order, some interrupted at a chunk boundary (the night window
closing, or a crash raised right after a chunk committed) and resumed; parent-arrival
resolutions. After every completed sync or resolution, on SQLite and on PostgreSQL, against a
plain Python model of the source:

- every source row is in exactly one place: live in the target with its current values,
  waiting in ``pending_children`` with its current values, or open in ``failed_records``;
- a bad row (or each copy of a duplicated key, but for ``rowversion`` the copy with the
  strictly highest version) is an open failed record, and the target keeps whatever it held
  for that key;
- a target row is soft-deleted only when its key is absent from the source, and every live
  target row's key is in the source (deletes arrive within the pass, rowversion included);
- every open failed record stands for a row the source still holds.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncflow_core.pipeline import SyncCounts, resolve_pending, sync_slice
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from tests.core.pipeline.erp import Erp, make_config, sqlite_urls

EMPS = range(1, 10)
DEPTS = range(1, 5)
BAD_NUMBER = "12,3x"


def _entities() -> dict[str, dict[str, Any]]:
    return {
        "departments": {
            "source": {"connection": "erp", "table": "DEPARTMENTS"},
            "business_key_fields": ["dept_no"],
            "fields": {
                "DEPT_NO": {"type": "NUMBER(4)"},
                "MANAGER_NO": {"type": "NUMBER(6)"},
                "BUDGET": {"type": "NUMBER(10,2)", "decimal_separator": "."},
            },
            "field_mappings": [
                {"op": "rename", "field": "DEPT_NO", "to": "dept_no"},
                {"op": "rename", "field": "NAME", "to": "name"},
                {"op": "rename", "field": "MANAGER_NO", "to": "manager_no"},
                {"op": "rename", "field": "BUDGET", "to": "budget"},
            ],
            "parent_refs": [
                {"entity": "employees", "fields": {"manager_no": "emp_no"}, "optional": True}
            ],
            "slices": 2,
            # Small chunks: copies of a key fall in one chunk, several, or both slices.
            "chunk_size": 2,
            "reject_ratio_limit": 1.0,
        },
        "employees": {
            "source": {"connection": "erp", "table": "EMPLOYEES"},
            "business_key_fields": ["emp_no"],
            "delta_strategy": "rowversion",
            "rowversion_field": "rowver",
            "fields": {
                "EMP_NO": {"type": "NUMBER(6)"},
                "DEPT_NO": {"type": "NUMBER(4)"},
                "MANAGER_NO": {"type": "NUMBER(6)"},
                "SALARY": {"type": "NUMBER(10,2)", "decimal_separator": "."},
                "ROWVER": {"type": "NUMBER(19)"},
            },
            "field_mappings": [
                {"op": "rename", "field": "EMP_NO", "to": "emp_no"},
                {"op": "rename", "field": "DEPT_NO", "to": "dept_no"},
                {"op": "rename", "field": "MANAGER_NO", "to": "manager_no"},
                {"op": "rename", "field": "SALARY", "to": "salary"},
                {"op": "rename", "field": "ROWVER", "to": "rowver"},
            ],
            "parent_refs": [
                {"entity": "departments", "fields": {"dept_no": "dept_no"}},
                {"entity": "employees", "fields": {"manager_no": "emp_no"}, "required": False},
            ],
            "slices": 2,
            "chunk_size": 2,
            "reject_ratio_limit": 1.0,
        },
    }


# ------------------------------------------------------------------------- the source model


SPELLINGS = ("{no}", "0{no}", "00{no}")
"""Source spellings of one department number (all clean to it); odd numbers get a space."""


@dataclass
class Dept:
    manager: int | None
    budget: int
    bad: bool = False
    spelling: int = 0

    def raw(self, no: int, copy: int) -> dict[str, Any]:
        key = SPELLINGS[self.spelling].format(no=no)
        return {
            "DEPT_NO": f" {key}" if no % 2 else key,
            "NAME": f"Dept {no}" + (f" copy {copy}" if copy else ""),
            "MANAGER_NO": None if self.manager is None else str(self.manager),
            "BUDGET": BAD_NUMBER if self.bad else f"{self.budget}.50",
        }

    def clean(self, no: int, copy: int) -> dict[str, Any]:
        return {"dept_no": no, "name": f"Dept {no}" + (f" copy {copy}" if copy else ""),
                "manager_no": self.manager, "budget": Decimal(f"{self.budget}.50")}


@dataclass
class Emp:
    dept: int
    manager: int | None
    salary: int
    rowver: int
    bad: bool = False

    def raw(self, no: int) -> dict[str, Any]:
        return {
            "EMP_NO": str(no),
            "DEPT_NO": str(self.dept),
            "MANAGER_NO": None if self.manager is None else f"{self.manager} ",
            "SALARY": BAD_NUMBER if self.bad else f"{self.salary}.25",
            "ROWVER": self.rowver,
        }

    def clean(self, no: int) -> dict[str, Any]:
        return {"emp_no": no, "dept_no": self.dept, "manager_no": self.manager,
                "salary": Decimal(f"{self.salary}.25"), "rowver": self.rowver}


@dataclass
class Source:
    depts: dict[int, list[Dept]] = field(default_factory=dict)
    emps: dict[int, list[Emp]] = field(default_factory=dict)
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def rows(self, entity: str) -> list[tuple[int, dict[str, Any], dict[str, Any] | None]]:
        """(key, raw row, clean values or None when the row must be a failed record)."""
        out: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = []
        if entity == "departments":
            for no, copies in self.depts.items():
                good = [c for c in copies if not c.bad]
                for i, d in enumerate(copies):
                    clean = d.clean(no, i) if not d.bad and len(good) == 1 else None
                    out.append((no, d.raw(no, i), clean))
        else:
            for no, copies_ in self.emps.items():
                # The strictly highest version among the good copies loads; the rest fail.
                top = max((e.rowver for e in copies_ if not e.bad), default=None)
                winners = [e for e in copies_ if not e.bad and e.rowver == top]
                for e in copies_:
                    won = len(winners) == 1 and e is winners[0]
                    out.append((no, e.raw(no), e.clean(no) if won else None))
        return out

    def write(self, erp: Erp) -> None:
        erp.execute('DELETE FROM "DEPARTMENTS"')
        erp.execute('DELETE FROM "EMPLOYEES"')
        depts = [d.raw(no, i) for no, cs in self.depts.items() for i, d in enumerate(cs)]
        if depts:
            erp.execute(
                'INSERT INTO "DEPARTMENTS" VALUES (:DEPT_NO, :NAME, :MANAGER_NO, :BUDGET)', depts
            )
        emps = [e.raw(no) for no, es in self.emps.items() for e in es]
        if emps:
            erp.execute(
                'INSERT INTO "EMPLOYEES" VALUES (:EMP_NO, :DEPT_NO, :MANAGER_NO, :SALARY, '
                ":ROWVER)",
                emps,
            )


# --------------------------------------------------------------------------------- steps

managers = st.one_of(st.none(), st.sampled_from(list(EMPS)))
edit_steps = st.one_of(
    st.tuples(st.just("emp"), st.sampled_from(list(EMPS)), st.sampled_from(list(DEPTS)),
              managers, st.integers(1, 9), st.booleans()),
    st.tuples(st.just("dept"), st.sampled_from(list(DEPTS)), managers, st.integers(1, 9),
              st.booleans()),
    st.tuples(st.just("dup_dept"), st.sampled_from(list(DEPTS)),
              st.sampled_from(range(len(SPELLINGS)))),
    # Weighted up: another spelling of the key (copies apart) is the shape most worth trying.
    st.tuples(st.just("dup_dept"), st.sampled_from(list(DEPTS)),
              st.sampled_from(range(1, len(SPELLINGS)))),
    st.tuples(st.just("fix_dept"), st.sampled_from(list(DEPTS))),
    st.tuples(st.just("dup_emp"), st.sampled_from(list(EMPS)), st.booleans()),
    st.tuples(st.just("fix_emp"), st.sampled_from(list(EMPS)), st.booleans()),
    st.tuples(st.just("del_emp"), st.sampled_from(list(EMPS))),
    st.tuples(st.just("del_dept"), st.sampled_from(list(DEPTS))),
)
sync_steps = st.one_of(
    st.tuples(st.just("sync"), st.sampled_from(["departments", "employees"]),
              st.sampled_from([None, "pause", "crash"]), st.integers(1, 3)),
    st.tuples(st.just("resolve"), st.sampled_from(["departments", "employees"])),
)
histories = st.lists(st.one_of(edit_steps, sync_steps), min_size=3, max_size=12)


class Crash(Exception):
    """A crash right after a chunk committed (the process dies between chunks)."""


def _edit(src: Source, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "emp":
        _, no, dept, mgr, salary, bad = step
        src.emps[no] = [Emp(dept, mgr, salary, next(src.versions), bad)]
    elif kind == "dept":
        _, no, mgr, budget, bad = step
        src.depts[no] = [Dept(mgr, budget, bad)]
    elif kind == "dup_dept" and step[1] in src.depts:
        # The same spelling (one chunk) or another one that cleans alike (chunks apart).
        first = src.depts[step[1]][0]
        src.depts[step[1]] = [first, Dept(first.manager, first.budget + 1, spelling=step[2])]
    elif kind == "fix_dept" and step[1] in src.depts:
        first = src.depts[step[1]][0]
        src.depts[step[1]] = [Dept(first.manager, first.budget)]
    elif kind == "dup_emp" and step[1] in src.emps:
        # A second copy: a newer version (it wins) or the same version (neither does).
        first = src.emps[step[1]][0]
        version = first.rowver if step[2] else next(src.versions)
        src.emps[step[1]] = [first, Emp(first.dept, first.manager, first.salary + 1, version)]
    elif kind == "fix_emp" and step[1] in src.emps:
        copies = src.emps[step[1]]  # keep the first copy or the last one
        src.emps[step[1]] = [copies[0] if step[2] else copies[-1]]
    elif kind == "del_emp":
        src.emps.pop(step[1], None)
    elif kind == "del_dept":
        src.depts.pop(step[1], None)


def _sync(rt: Runtime, entity: str, mode: str | None, after: int, run: str) -> None:
    chunks = 0

    def stop() -> bool:
        return mode == "pause" and chunks >= after

    def counted(_: SyncCounts) -> None:
        nonlocal chunks
        chunks += 1
        if mode == "crash" and chunks == after:
            raise Crash

    try:
        for key in slice_keys(rt.entity(entity).slice_count):
            sync_slice(rt, entity, key, run, stop, after_chunk=counted)
    except Crash:
        pass
    # The next run resumes every slice from its cursor and completes the pass.
    for key in slice_keys(rt.entity(entity).slice_count):
        sync_slice(rt, entity, key, run + "-resume")


# ----------------------------------------------------------------------------- invariant


def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(str(v))
    if isinstance(v, Decimal) and v == v.to_integral_value() and v.as_tuple().exponent >= 0:
        return int(v)
    return v


def _same(values: dict[str, Any], clean: dict[str, Any]) -> bool:
    def norm(k: str, v: Any) -> Any:
        if v is None:
            return None
        if k in ("budget", "salary"):
            return Decimal(str(v)).quantize(Decimal("0.01"))
        if isinstance(v, str) and k not in ("name",):
            return int(Decimal(v))
        return int(v) if isinstance(v, Decimal | float) else v

    return all(norm(k, values.get(k)) == norm(k, v) for k, v in clean.items())


def _same_copy(record: dict[str, Any], raw: dict[str, Any], key_field: str, key: int) -> bool:
    """Whether a duplicate-key record (the identified row) is of this raw copy."""
    if record.get(key_field) is None or int(Decimal(str(record[key_field]))) != key:
        return False
    if key_field == "dept_no":  # each copy has its own name
        return bool(record.get("name") == raw["NAME"])
    return (int(Decimal(str(record["rowver"]))) == raw["ROWVER"]
            and Decimal(str(record["salary"])) == Decimal(raw["SALARY"]))


def _check(rt: Runtime, src: Source, entity: str) -> None:
    key_field = "emp_no" if entity == "employees" else "dept_no"
    table = rt.entity(entity).table_name
    target = rt.target.read_table(table).to_pylist() if rt.target.table_exists(table) else []
    by_key = {int(r[key_field]): r for r in target}
    pending = [json.loads(r) for r in rt.state.due_pending(entity, None)
               .column("row_json").to_pylist()]
    failed = [json.loads(r) for r in rt.state.list_failed_records(entity)
              .column("raw_row").to_pylist()]
    source_keys: set[int] = set()
    good_keys: set[int] = set()
    for key, raw, clean in src.rows(entity):
        source_keys.add(key)
        if clean is not None:
            good_keys.add(key)
        row = by_key.get(key)
        live = (clean is not None and row is not None and row["_bridge_deleted_at"] is None
                and _same(row, clean))
        waiting = clean is not None and any(
            int(p[key_field]) == key and _same(p, clean) for p in pending
        )
        # A normalize reject keeps the raw row; a duplicate-key reject the identified row.
        open_ = any(f == raw or (clean is None and _same_copy(f, raw, key_field, key))
                    for f in failed)
        places = [name for name, here in
                  (("live", live), ("pending", waiting), ("failed", open_)) if here]
        assert len(places) == 1, (entity, key, raw, places)
        if clean is None:
            assert places == ["failed"], (entity, key, raw)
    for f in failed:
        # An open failed record stands for a row the source still holds.
        raw_key = f.get(key_field, f.get(key_field.upper()))
        assert int(str(raw_key).strip()) in source_keys, (entity, f, "failed but gone")
    for key, row in by_key.items():
        # Soft-deleted only when gone from the source (a key that came back as a bad row
        # keeps its target row as it was, deleted or not); live only while in the source.
        if row["_bridge_deleted_at"] is not None:
            assert key not in good_keys, (entity, key, "deleted while in the source")
        else:
            assert key in source_keys, (entity, key, "live while gone from the source")


# ---------------------------------------------------------------------------------- driver


def _run(src_url: str, tgt_url: str, history: list[tuple[Any, ...]]) -> None:
    erp = Erp(src_url)
    erp.execute(
        'CREATE TABLE "DEPARTMENTS" ("DEPT_NO" TEXT, "NAME" TEXT, "MANAGER_NO" TEXT, '
        '"BUDGET" TEXT)'
    )
    intt = "BIGINT" if erp.dialect == "postgresql" else "INTEGER"
    erp.execute(
        'CREATE TABLE "EMPLOYEES" ("EMP_NO" TEXT, "DEPT_NO" TEXT, "MANAGER_NO" TEXT, '
        f'"SALARY" TEXT, "ROWVER" {intt})'
    )
    src = Source()
    # Two departments and employees, synced once: the slice plans have keys to split (fewer
    # keys than slices is issue 13's item 6, not this property).
    src.depts = {1: [Dept(None, 1)], 3: [Dept(2, 3)]}
    src.emps = {1: [Emp(1, None, 1, next(src.versions))], 5: [Emp(3, 1, 5, next(src.versions))]}
    src.write(erp)
    cfg = make_config(src_url, tgt_url, _entities())
    try:
        with Runtime.open(cfg, {}) as rt:
            for entity in ("departments", "employees"):
                _sync(rt, entity, None, 1, "run-first")
                _check(rt, src, entity)
            # Entities whose source changed since their last sync: the invariant is about
            # what a sync leaves, so a resolution alone does not make them checkable.
            stale: set[str] = set()
            for n, step in enumerate(history):
                run = f"run-{n}"
                if step[0] == "sync":
                    _, entity, mode, after = step
                    _sync(rt, entity, mode, after, run)
                    stale.discard(entity)
                    _check(rt, src, entity)
                elif step[0] == "resolve":
                    resolve_pending(rt, step[1], run, parent_arrived=True)
                    if step[1] not in stale:
                        _check(rt, src, step[1])
                else:
                    _edit(src, step)
                    src.write(erp)
                    stale.update(("departments", "employees"))
            for entity in ("departments", "employees"):  # a final pass over everything
                _sync(rt, entity, None, 1, "run-final")
                _check(rt, src, entity)
            resolve_pending(rt, "employees", "run-final-resolve", parent_arrived=True)
            _check(rt, src, "employees")
    finally:
        erp.close()


PROFILE = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same histories in CI and here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.slow
@PROFILE
@given(history=histories)
def test_every_source_row_is_in_exactly_one_place_sqlite(history: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run(*sqlite_urls(Path(tmp)), history)


@contextmanager
def _pg_pair(pg: Any) -> Iterator[tuple[str, str]]:
    tag = f"prop{next(_pg_n)}"
    yield pg.create_database(f"{tag}_erp"), pg.create_database(f"{tag}_tgt")


_pg_n = itertools.count()


@pytest.mark.postgres
@pytest.mark.slow
@settings(PROFILE, max_examples=8)
@given(history=histories)
def test_every_source_row_is_in_exactly_one_place_postgres(
    pg: Any, history: list[tuple[Any, ...]]
) -> None:
    with _pg_pair(pg) as (src_url, tgt_url):
        _run(src_url, tgt_url, history)
