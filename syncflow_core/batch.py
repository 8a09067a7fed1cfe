"""What flows between pipeline stages (and between Dagster ops).

A `Batch` is a few named Arrow tables plus small JSON-able facts (counts, key range, source
types, durations). Keeping it this plain lets an IO manager persist any stage's output as
Arrow IPC files + one JSON document, so a failed run re-executes from the failed stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

__all__ = ["Batch", "StageResult"]


class StageResult(NamedTuple):
    """A stage's cleaned rows and its reject specs (see `syncflow_core.rejects`)."""

    table: pa.Table
    rejects: pa.Table


@dataclass(frozen=True)
class Batch:
    """Named Arrow tables plus JSON-able ``info``."""

    tables: Mapping[str, pa.Table]
    info: Mapping[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> pa.Table:
        """The table called ``name``; a clear error if the stage did not produce it."""
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"batch has no table {name!r} (has {sorted(self.tables)})") from None

    def with_(self, tables: Mapping[str, pa.Table] | None = None, **info: Any) -> Batch:
        """A copy with some tables replaced/added and some info keys updated."""
        return Batch({**self.tables, **(tables or {})}, {**self.info, **info})
