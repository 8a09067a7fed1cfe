"""A small entity factory for the normalization tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from syncflow_core.config import EntityConfig, FieldMapping, FieldOptions


def entity(fields: dict[str, dict[str, Any]] | None = None,
           mappings: list[dict[str, Any]] | None = None, **kw: Any) -> EntityConfig:
    """An `EntityConfig` for order lines with the given field options and mappings."""
    return EntityConfig(
        name="order_lines",
        source={"table": "ORDER_LINES"},
        business_key_fields=("line_no",),
        fields={k: FieldOptions(**v) for k, v in (fields or {}).items()},
        field_mappings=tuple(FieldMapping(**m) for m in (mappings or [])),
        **kw,
    )


def junk_under_nulls(values: list[str | None], junk: str = "0") -> pa.Array:
    """A string array whose null slots still hold bytes (Arrow allows it; kernels make them)."""
    filled = pa.array([junk if v is None else v for v in values], pa.string())
    validity = pa.array([v is not None for v in values]).buffers()[1]
    return pa.Array.from_buffers(pa.string(), len(values),
                                 [validity, *filled.buffers()[1:]],
                                 null_count=sum(v is None for v in values))
