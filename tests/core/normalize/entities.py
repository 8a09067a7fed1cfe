"""A small entity factory for the normalization tests."""

from __future__ import annotations

from typing import Any

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
