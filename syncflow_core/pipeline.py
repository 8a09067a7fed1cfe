"""Sync one slice of one entity end to end: source -> normalize -> identity -> delta -> resolve -> load.

Each stage is a plain function over `Batch`es so the Dagster shell can run them as ops (and
re-execute from a failed one), while `sync_slice` composes them chunk by chunk for scripts.

WORK IN PROGRESS: signatures are the agreed contract; bodies land with the I/O issue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from syncflow_core.batch import Batch

__all__ = [
    "Runtime",
    "SyncCounts",
    "delta_batch",
    "extract",
    "identify_batch",
    "load_batch",
    "normalize_batch",
    "resolve_batch",
    "resolve_pending",
    "sync_slice",
]


@dataclass
class SyncCounts:
    """What one sync did; every field is what the UI plots over time."""

    fetched: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    pending: int = 0
    resolved: int = 0
    superseded: int = 0
    paused: bool = False
    durations: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (durations included)."""
        return asdict(self)


class Runtime:
    """Opened source(s), target and state store for one config (secrets from the environment)."""


def extract(rt: Runtime, entity: str, slice_key: str) -> Batch:
    """Read the slice's remaining key range (after its cursor). tables: raw."""
    raise NotImplementedError


def normalize_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """Five layers. tables: rows, rejects (materialized)."""
    raise NotImplementedError


def identify_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """Add `_bridge_*` identity columns. tables: rows, rejects."""
    raise NotImplementedError


def delta_batch(rt: Runtime, entity: str, slice_key: str, batch: Batch) -> Batch:
    """Classify against the target. tables: inserts, updates, deletes, rejects."""
    raise NotImplementedError


def resolve_batch(rt: Runtime, entity: str, batch: Batch) -> Batch:
    """Hold back children whose parent is missing. tables: inserts, updates, deletes, pending, rejects."""
    raise NotImplementedError


def load_batch(
    rt: Runtime,
    entity: str,
    slice_key: str,
    batch: Batch,
    run_id: str,
    should_stop: Callable[[], bool] | None = None,
) -> SyncCounts:
    """Write chunk by chunk, committing the slice cursor with each chunk."""
    raise NotImplementedError


def sync_slice(
    rt: Runtime,
    entity: str,
    slice_key: str,
    run_id: str,
    should_stop: Callable[[], bool] | None = None,
) -> SyncCounts:
    """All stages for one slice, chunk by chunk, resumable."""
    raise NotImplementedError


def resolve_pending(
    rt: Runtime, entity: str, run_id: str, parent_entity: str | None = None
) -> SyncCounts:
    """Load waiting children whose parents now exist; back off the rest."""
    raise NotImplementedError
