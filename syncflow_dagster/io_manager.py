"""Hand `ChunkStream`s from one stage op to the next without storing anything.

A stream is the plan of a sync (the entity and the stages added so far), never its rows, so
there is nothing worth a file: a run writes no stage files, whatever its size, and
re-executing a run (from failure, or any step) rebuilds its inputs from the op graph. The
engine then starts each slice from its committed cursor, against today's source and target,
so re-execution never writes rows computed before another run moved the slice on.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext

from syncflow_core.stream import STAGES, ChunkStream

__all__ = ["StreamIOManager"]


def _stage_of(op_name: str) -> tuple[str, str]:
    """``orders__delta`` -> (``orders``, ``delta``): ops are named ``<entity>__<stage>``."""
    entity, _, stage = op_name.rpartition("__")
    if not entity or stage not in STAGES:
        raise TypeError(f"{op_name!r} is not a SyncFlow stage op (<entity>__<stage>)")
    return entity, stage


class StreamIOManager(ConfigurableIOManager):
    """Passes `ChunkStream`s between an entity's stage ops; persists nothing."""

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        """Check the output is a stream of this op's entity that ends with this op's stage."""
        if not isinstance(obj, ChunkStream):
            raise TypeError(f"StreamIOManager passes ChunkStreams, got {type(obj).__name__}")
        entity, stage = _stage_of(context.op_def.name)
        if obj.entity != entity or obj.stages[-1:] != (stage,):
            raise TypeError(f"{context.op_def.name} returned a stream of {obj}")

    def load_input(self, context: InputContext) -> ChunkStream:
        """The upstream op's stream: its entity with every stage up to and including its own."""
        upstream = context.upstream_output
        if upstream is None:
            raise TypeError(f"input {context.name!r} has no upstream output")
        entity, stage = _stage_of(upstream.op_def.name)
        stages = STAGES[: STAGES.index(stage) + 1]
        stream = ChunkStream(entity)
        for s in stages:
            stream = stream.then(s)
        return stream
