"""A sync stopped between chunks (an exception, or kill -9) resumes without losing or doubling."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncflow_core.pipeline import SyncCounts, sync_slice
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import (
    CHUNK,
    Erp,
    business_values,
    entity_config,
    expected,
    key_hashes_unique,
    make_config,
    products,
    target_rows,
)

N = 30  # 5 chunks of 7 in one slice
ROOT = Path(__file__).resolve().parents[3]


class Boom(RuntimeError):
    """The failure injected between chunks."""


def _entities(strategy: str) -> dict[str, dict[str, Any]]:
    return {"products": entity_config(strategy=strategy, extra={"slices": 1})}


def _assert_complete(rt: Runtime, runs: set[str]) -> None:
    rows = target_rows(rt, "products")
    assert {k: business_values(r) for k, r in rows.items()} == expected(products(N))
    assert rt.target.row_count("products", live_only=False) == N  # nothing doubled
    assert key_hashes_unique(rt, "products")
    assert {r["_bridge_batch_id"] for r in rows.values()} == runs
    cur = rt.state.get_cursor("products", "slice-01")
    assert cur is not None and cur.status == "done" and cur.pass_no == 2
    assert cur.last_key is None
    ent = rt.entity("products")
    if ent.delta_strategy == "rowversion":
        # The watermark is the lowest of the pass's chunk maxima, across both runs (and not
        # the last chunk's): an edit behind the cursor stays above it.
        ordered = sorted(products(N), key=lambda p: p.code)
        chunks = [ordered[i:i + ent.chunk_size] for i in range(0, N, ent.chunk_size)]
        assert rt.state.get_watermark("products", "slice-01") == min(
            max(p.rowver for p in chunk) for chunk in chunks
        )


@pytest.mark.parametrize("strategy", ["hash", "rowversion"])
def test_exception_between_chunks_resumes(engine_urls: tuple[str, str], strategy: str) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(N))
    cfg = make_config(src_url, tgt_url, _entities(strategy))
    seen: list[SyncCounts] = []

    def fail_after_second(counts: SyncCounts) -> None:
        seen.append(counts)
        if len(seen) == 2:
            raise Boom("injected")

    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(Boom):
            sync_slice(rt, "products", "slice-01", "run-1", after_chunk=fail_after_second)
        # Two chunks committed, cursor says where, nothing beyond it.
        assert rt.target.row_count("products") == 2 * CHUNK
        cur = rt.state.get_cursor("products", "slice-01")
        assert cur is not None and cur.status == "running" and cur.pass_no == 1
        assert cur.last_key is not None and cur.last_key[0].strip() == "P0014"

        resumed = sync_slice(rt, "products", "slice-01", "run-2")
        assert resumed.complete
        assert resumed.fetched == N - 2 * CHUNK and resumed.inserted == N - 2 * CHUNK
        assert resumed.updated == 0 and resumed.deleted == 0
        _assert_complete(rt, {"run-1", "run-2"})
        # Another pass changes nothing and advances the pass number.
        again = sync_slice(rt, "products", "slice-01", "run-3")
        assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
        cur = rt.state.get_cursor("products", "slice-01")
        assert cur is not None and cur.pass_no == 3
    erp.close()


CHILD = """
import json, os, signal, sys
from syncflow_core.config import parse_config
from syncflow_core.pipeline import sync_slice
from syncflow_core.runtime import Runtime

cfg = parse_config(json.loads(sys.argv[1]), source_file="test.yaml")
kill_after = int(sys.argv[2])
done = []

def after_chunk(counts):
    done.append(counts)
    if len(done) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no rollback handlers, no flush

rt = Runtime.open(cfg, {})
sync_slice(rt, "products", "slice-01", "child-run", after_chunk=after_chunk)
sys.exit(3)  # never reached: the kill comes first
"""


@pytest.mark.parametrize("strategy", ["hash", "rowversion"])
def test_kill_9_between_chunks_resumes(engine_urls: tuple[str, str], strategy: str) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.create_products(products(N))
    raw = {
        "version": 1,
        "sources": {"erp": {"kind": "sql", "url": src_url}},
        "target": {"url": tgt_url},
        "entities": _entities(strategy),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(raw), "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    cfg = make_config(src_url, tgt_url, _entities(strategy))
    with Runtime.open(cfg, {}) as rt:
        assert rt.target.row_count("products") == 3 * CHUNK
        cur = rt.state.get_cursor("products", "slice-01")
        assert cur is not None and cur.status == "running" and cur.run_id == "child-run"
        resumed = sync_slice(rt, "products", "slice-01", "parent-run")
        assert resumed.complete and resumed.inserted == N - 3 * CHUNK
        assert resumed.updated == 0
        _assert_complete(rt, {"child-run", "parent-run"})
    erp.close()
