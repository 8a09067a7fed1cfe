"""A chunk's stored identities come from an index range scan, also once the table has statistics.

PostgreSQL keeps no statistics for a row comparison ``(a, b) > (x, y)``: once the target was
ANALYZEd (autovacuum does it after a first load) it guessed a quarter of the table for each
chunk's composite-key range and scanned all of it, so a pass grew with the rows squared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from syncflow_core.targets.sql import SqlTarget

pytestmark = pytest.mark.postgres

ROWS = 120_000
KEYS = ["order_no", "line_no"]


@pytest.fixture
def target(pg_url: str) -> Iterator[SqlTarget]:
    """A target holding ``ROWS`` order lines (four per order), ANALYZEd."""
    t = SqlTarget(pg_url)
    n = range(ROWS)
    rows = pa.table({
        "order_no": pa.array([f"SO-{i // 4:07d}" for i in n]),
        "line_no": pa.array([i % 4 + 1 for i in n], pa.int32()),
        "_bridge_key_hash": pa.array([hashlib.md5(str(i).encode()).hexdigest() for i in n]),
        "_bridge_data_hash": pa.array([hashlib.md5(f"d{i}".encode()).hexdigest() for i in n]),
    })
    t.ensure_table("lines", rows.schema, KEYS)
    t.write("lines", rows, pa.array([], pa.string()), "load", datetime(2026, 1, 5, tzinfo=UTC))
    with t.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE lines"))
    yield t
    t.close()


def _plan(target: SqlTarget, q: Any) -> tuple[str, int]:
    """The plan's text and the rows the planner expects."""
    sql = str(q.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with target.engine.connect() as conn:
        plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
    return json.dumps(plan), int(plan[0]["Plan"]["Plan Rows"])


def test_a_chunk_range_reads_by_index_after_analyze(target: SqlTarget) -> None:
    lo, hi = ("SO-0010000", 2), ("SO-0010500", 1)  # ~2,000 of 120,000 rows
    q = target.identities_query("lines", KEYS, lo, hi)
    assert q is not None
    plan, expected = _plan(target, q)
    got = target.read_identities("lines", KEYS, lo, hi)
    # Keys (SO-0010000, 3..4), SO-0010001 .. SO-0010499 (4 each), (SO-0010500, 1).
    assert got.num_rows == 2 + 499 * 4 + 1
    # The planner sees the chunk's size (it guessed 27,692 rows from the row comparisons
    # alone; on a bigger table such a guess is a full scan per chunk).
    assert expected < 3 * got.num_rows, plan
    assert "Index" in plan and "Seq Scan" not in plan, plan


def test_a_single_column_bound_reads_by_index_too(target: SqlTarget) -> None:
    q = target.identities_query("lines", KEYS, ("SO-0029000", 4), None)  # the last 4,000 rows
    assert q is not None
    plan, expected = _plan(target, q)
    assert target.read_identities("lines", KEYS, ("SO-0029000", 4), None).num_rows == 3_996
    assert expected < 3 * 3_996 and "Seq Scan" not in plan, plan
