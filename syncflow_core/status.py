"""What an operator asks about an entity: pass progress, failed and waiting rows, the window.

Read-only views over the state store and the config (the shell adds Dagster's run history).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from syncflow_core.errors import ConfigError
from syncflow_core.keycodec import loads_key
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys
from syncflow_core.window import in_window, next_window_start, window_end_for

__all__ = ["EntityProgress", "PendingExplanation", "entity_progress", "explain_pending"]


@dataclass(frozen=True)
class EntityProgress:
    """An entity's background pass, its open failed records and waiting children, its window."""

    entity: str
    slices: int
    passes_completed: int
    """Passes over every slice finished so far."""
    pass_no: int
    """The pass in progress (``passes_completed + 1``)."""
    done_in_pass: int
    """Slices of the pass in progress that are done."""
    in_progress: list[str]
    rows_done: int
    failed_open: int
    pending: int
    pending_due: int
    window_open: bool
    window_closes: str | None
    next_window: str

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def entity_progress(rt: Runtime, entity: str, now: datetime | None = None) -> EntityProgress:
    """The entity's progress from its slice cursors (a pass is done slice by slice)."""
    ent = rt.entity(entity)
    now = now or datetime.now(UTC)
    keys = slice_keys(ent.slice_count)
    cursors = {c.slice_key: c for c in rt.state.list_cursors(entity)}
    finished = {k: (cursors[k].pass_no - 1 if k in cursors else 0) for k in keys}
    pass_no = min(finished.values()) if finished else 0
    closes = window_end_for(now, ent.schedule)
    return EntityProgress(
        entity=entity,
        slices=len(keys),
        passes_completed=pass_no,
        pass_no=pass_no + 1,
        done_in_pass=sum(1 for v in finished.values() if v > pass_no),
        in_progress=sorted(k for k, c in cursors.items() if c.status in ("running", "paused")),
        rows_done=sum(c.rows_done for c in cursors.values()),
        failed_open=rt.state.list_failed_records(entity, status="open").num_rows,
        pending=(waiting := rt.state.pending_counts(entity, now)).total,
        pending_due=waiting.due,
        window_open=in_window(now, ent.schedule),
        window_closes=None if closes is None else closes.isoformat(),
        next_window=next_window_start(now, ent.schedule).isoformat(),
    )


@dataclass(frozen=True)
class PendingExplanation:
    """Why a child waits: the parent it needs, whether that parent is there now, the retries."""

    id: str
    entity: str
    key_hash: str
    parent_entity: str
    parent_key: list[Any]
    parent_present: bool
    attempts: int
    max_attempts: int
    next_retry_at: str
    first_seen_at: str

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def explain_pending(rt: Runtime, pending_id: str) -> PendingExplanation:
    """The waiting child ``pending_id`` (a `pending list` id) and what it waits for."""
    import pyarrow as pa

    from syncflow_core.resolve import MAX_ATTEMPTS

    row = rt.state.get_pending(pending_id)
    if row is None:
        raise ConfigError(f"no waiting child with id {pending_id!r} (see `syncflow pending list`)")
    parent = rt.entity(row["parent_entity"])
    present = False
    if rt.target.table_exists(parent.table_name):
        found = rt.target.existing_keys(parent.table_name, pa.array([row["parent_key_hash"]]))
        present = bool(found[0].as_py())
    key = loads_key(row["parent_key"])
    return PendingExplanation(
        id=row["id"],
        entity=row["entity"],
        key_hash=row["key_hash"],
        parent_entity=row["parent_entity"],
        parent_key=list(key) if key is not None else [],
        parent_present=present,
        attempts=int(row["attempts"]),
        max_attempts=MAX_ATTEMPTS,
        next_retry_at=row["next_retry_at"].isoformat(),
        first_seen_at=row["first_seen_at"].isoformat(),
    )
