"""What an entity's stage ops hand each other: the plan of a chunk stream, never its rows.

Theory of operation. A sync streams a slice chunk by chunk through one engine
(`syncflow_core.pipeline.sync_slice`): read a chunk, normalize, identify, classify, resolve,
load, commit the cursor, next chunk. Rows live only in memory, a few chunks at a time, and the
committed cursor is the only progress there is. Whatever launches the sync (a script, a
Dagster op, a re-execution) goes through that loop.

The Dagster shell shows the stages as ops. Each stage op checks what its stage needs before
any row moves (extract: the slice plan and the source's columns; normalize and identify: the
config against those columns; delta: the target; resolve: the parents) and adds its stage to
a `ChunkStream`. The last op drives the stream. Because the stream carries no rows, nothing
is persisted between ops, and a re-executed run can never write rows computed against an
older state: it always starts from the slice's committed cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from syncflow_core.config import check_source_columns
from syncflow_core.errors import ConfigError
from syncflow_core.identity import identify
from syncflow_core.normalize import normalize
from syncflow_core.pipeline import ensure_slice_plan
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_of

__all__ = [
    "STAGES",
    "ChunkStream",
    "check_delta",
    "check_extract",
    "check_identify",
    "check_normalize",
    "check_resolve",
]

STAGES = ("extract", "normalize", "identify", "delta", "resolve", "load")
"""The engine's stages, in the order every chunk passes them."""


@dataclass(frozen=True)
class ChunkStream:
    """The stages planned so far for one entity's chunk stream (JSON-able, row-free)."""

    entity: str
    stages: tuple[str, ...] = ()

    def then(self, stage: str) -> ChunkStream:
        """This stream with ``stage`` added; stages come in `STAGES` order, each once."""
        expected = STAGES[len(self.stages)] if len(self.stages) < len(STAGES) else None
        if stage != expected:
            raise ValueError(
                f"{self.entity}: stage {stage!r} cannot follow {list(self.stages)} "
                f"(expected {expected!r})"
            )
        return ChunkStream(self.entity, (*self.stages, stage))

    @property
    def ready(self) -> bool:
        """True when every stage before load is planned (the stream can be driven)."""
        return self.stages == STAGES[:-1]


def check_extract(rt: Runtime, entity: str, slice_keys: list[str]) -> list[str]:
    """The slices' plan exists and the source has the configured columns; one line per slice.

    The lines say where each slice's read starts (counts only, never a key: keys are row
    values and these lines reach the logs).
    """
    ent = rt.entity(entity)
    check_source_columns(rt.config, ent, list(rt.source(entity).columns(ent.source)))
    plan = ensure_slice_plan(rt, entity)
    lines = []
    for key in slice_keys:
        slice_of(plan, key)  # an unknown slice key is a clear error here
        cursor = rt.state.get_cursor(entity, key)
        if cursor is None:
            lines.append(f"{key}: first pass, from the slice's start")
        elif cursor.status in ("running", "paused") and cursor.last_key is not None:
            lines.append(
                f"{key}: pass {cursor.pass_no} resumes after {cursor.rows_done:,} rows "
                f"({cursor.status})"
            )
        else:
            lines.append(f"{key}: pass {cursor.pass_no}, from the slice's start")
    return lines


def _empty_source(rt: Runtime, entity: str) -> tuple[pa.Table, dict[str, str]]:
    ent = rt.entity(entity)
    types = dict(rt.source(entity).columns(ent.source))
    return pa.table({c: pa.array([], pa.string()) for c in types}), types


def check_normalize(rt: Runtime, entity: str) -> str:
    """The five layers accept the source's columns and declared types (no row needed)."""
    empty, types = _empty_source(rt, entity)
    result = normalize(empty, rt.entity(entity), types)
    return f"normalizes {len(types)} source columns into {result.table.num_columns}"


def check_identify(rt: Runtime, entity: str) -> str:
    """Every business-key field comes out of normalization (identity can hash it)."""
    ent = rt.entity(entity)
    empty, types = _empty_source(rt, entity)
    cleaned = normalize(empty, ent, types).table
    missing = [f for f in ent.business_key_fields if f not in cleaned.column_names]
    if missing:
        raise ConfigError(
            f"{rt.config.source_file}: entity '{entity}': business_key_fields: {missing} "
            "are not produced by normalization and field_mappings"
        )
    identify(cleaned, ent)
    return f"business key ({', '.join(ent.business_key_fields)})"


def check_delta(rt: Runtime, entity: str) -> str:
    """What the target holds: a first load (bulk path) or a table to classify against."""
    ent = rt.entity(entity)
    table = ent.table_name
    if not rt.target.table_exists(table) or rt.target.is_empty(table):
        return f"{table} is empty: a first load, every chunk takes the bulk path"
    return f"{ent.delta_strategy} delta against {table}"


def check_resolve(rt: Runtime, entity: str) -> str:
    """The entity's parents and how many of its children wait for one."""
    ent = rt.entity(entity)
    parents = sorted({ref.entity for ref in ent.parent_refs})
    if not parents:
        return "no parents"
    waiting = rt.state.pending_counts(entity).total
    return f"parents {', '.join(parents)}; {waiting:,} children waiting"
