"""The multi-core runner: same answers as the inline path, rejects still point at raw rows."""

from __future__ import annotations

import os
from functools import partial

import pyarrow as pa
import pytest

from syncflow_core.config import EntityConfig
from syncflow_core.identity import identify
from syncflow_core.normalize import normalize
from syncflow_core.parallel import PartFeeder, map_tables, prepare_parallel, split_rows
from syncflow_core.rejects import ROW_ID, with_row_ids

ENTITY = EntityConfig.model_validate(
    {
        "name": "order_lines",
        "source": {"table": "order_lines"},
        "business_key_fields": ["order_no", "line_no"],
        "fields": {"qty": {"locale": "de_DE"}},
    }
)
TYPES = {"order_no": "VARCHAR2(20)", "line_no": "NUMBER(6)", "qty": "NUMBER(12,2)"}


def raw_lines(n: int) -> pa.Table:
    order_no = [f" SO-{i // 3} " if i % 7 else f"SO-{i // 3}" for i in range(n)]
    line_no = [str(i % 3 + 1) for i in range(n)]
    qty = [f"{i % 1000}.{i % 10},5" if i % 2 else f"{i % 100},25" for i in range(n)]
    for bad in (5, n // 2 + 1, n - 2):  # one bad number and one null key per part, roughly
        qty[bad] = "twelve"
    order_no[n // 3] = None  # type: ignore[call-overload]
    return pa.table({"order_no": order_no, "line_no": line_no, "qty": qty})


def _rows(part: pa.Table, factor: int) -> tuple[int, int]:
    return part.num_rows * factor, os.getpid()


def test_split_rows_covers_every_row_once() -> None:
    assert split_rows(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert split_rows(2, 5) == [(0, 1), (1, 1)]
    assert split_rows(0, 2) == []


def test_map_tables_runs_parts_in_workers_in_row_order() -> None:
    t = pa.table({"x": list(range(1000))})
    out = map_tables(partial(_rows, factor=2), t, workers=2, min_rows=10)
    assert [n for n, _ in out] == [1000, 1000]
    assert all(pid != os.getpid() for _, pid in out)


def test_small_tables_run_inline() -> None:
    out = map_tables(partial(_rows, factor=1), pa.table({"x": [1, 2, 3]}), workers=2)
    assert out == [(3, os.getpid())]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_prepare_parallel_equals_the_serial_path(workers: int) -> None:
    raw = raw_lines(3000)
    norm = normalize(raw, ENTITY, TYPES)
    ident = identify(norm.table, ENTITY)
    got = prepare_parallel(raw, ENTITY, TYPES, workers=workers, min_rows=100)
    assert got.table.equals(ident.table)
    want = sorted(zip(*(pa.concat_tables([norm.rejects, ident.rejects]).column(c).to_pylist()
                        for c in (ROW_ID, "stage", "error_code")), strict=True))
    have = sorted(zip(*(got.rejects.column(c).to_pylist() for c in (ROW_ID, "stage", "error_code")),
                      strict=True))
    assert have == want
    # Rejects name raw positions: row n // 3 has the null key, rows 5 and n - 2 bad numbers.
    assert (1000, "identity", "null_business_key") in have
    assert {5, 2998} <= {r for r, _, _ in have}


def _echo(part: pa.Table) -> tuple[pa.Table, int]:
    return part, part.num_rows


def _fail_on_second_part(part: pa.Table) -> int:
    if part.column("x")[0].as_py() > 0:
        raise ValueError("bad part")
    return part.num_rows


def _leftovers() -> list[str]:
    return [f for f in os.listdir("/dev/shm") if f.startswith(f"syncflow-{os.getpid()}-")] \
        if os.path.isdir("/dev/shm") else []


def test_big_results_come_back_whole_in_order_and_leave_no_files() -> None:
    t = pa.table({"x": list(range(300_000)), "s": [f"value {i}" for i in range(300_000)]})
    out = map_tables(_echo, t, workers=2, min_rows=10, part_rows=50_000)
    assert [n for _, n in out] == [50_000] * 6
    assert pa.concat_tables([p for p, _ in out]).equals(t)
    assert _leftovers() == []


def test_a_failing_part_raises_and_leaves_no_files() -> None:
    t = pa.table({"x": list(range(1000))})
    with pytest.raises(ValueError, match="bad part"):
        map_tables(_fail_on_second_part, t, workers=2, min_rows=10, part_rows=100)
    assert _leftovers() == []


WORKERS_OF_KILLED_PARENT = """
import multiprocessing, operator, os, signal, sys
import pyarrow as pa
from syncflow_core.parallel import map_tables

# (Workers run functions of importable modules: they do not import this script.)
rows = operator.attrgetter("num_rows")
assert sum(map_tables(rows, pa.table({"x": list(range(200_000))}), workers=2)) == 200_000
# Every worker of the pool, busy or not (one may have taken all the parts).
pids = [p.pid for p in multiprocessing.active_children()]
print(" ".join(map(str, sorted(pids))), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no atexit: the pool is never shut down
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped-late zombie counts as gone: it runs no code and holds no pipe.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].split()[0] != "Z"


def test_workers_leave_when_their_parent_is_killed() -> None:
    """A run killed with -9 must not leave idle workers behind holding its output pipes."""
    import subprocess
    import sys
    import time

    proc = subprocess.run(
        [sys.executable, "-c", WORKERS_OF_KILLED_PARENT],
        capture_output=True, text=True, timeout=60,  # orphans holding stdout would hang this
    )
    workers = [int(p) for p in proc.stdout.split()]
    assert len(workers) == 2 and proc.returncode == -9, proc.stderr
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def _first_and_rows(part: pa.Table) -> tuple[int, int]:
    ids = part.column(ROW_ID)
    return ids[0].as_py(), part.num_rows


def test_feeder_cuts_pieces_into_parts_in_row_order() -> None:
    """Pieces of any size in, parts of the set size out, results in the order rows came."""
    feeder = PartFeeder(_first_and_rows, workers=2, part_rows=1_000)
    fed = 0
    for size in (1, 999, 2_500, 0, 17, 3_000):
        piece = with_row_ids(pa.table({"x": list(range(size))}), fed)
        feeder.feed(piece)
        fed += size
    assert feeder.rows == fed == 6_517
    got = feeder.results()
    assert got == [(i * 1_000, 1_000) for i in range(6)] + [(6_000, 517)]


NO_TEMP_DIR = """
import operator, os, tempfile
import pyarrow as pa
from syncflow_core import parallel

tempfile.tempdir = "/nonexistent/syncflow-test"  # no socket for a forkserver can go here
rows = operator.attrgetter("num_rows")
parts = parallel.map_tables(rows, pa.table({"x": list(range(200_000))}), workers=2)
print(sum(parts), parallel._pool._mp_context.get_start_method())
"""


def test_workers_start_without_a_writable_temporary_directory() -> None:
    """A container with no writable /tmp gets forked workers instead of a forkserver's."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", NO_TEMP_DIR], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["200000", "fork"]
