"""Config checks of ``parent_refs`` that need the normalization plans: a child's reference must
normalize to the same hashed type as the parent's key, or no parent is ever found.

A child's reference is hashed like the parent's business key, type tag included (see
`syncflow_core.identity`): ``NUMBER`` (no precision: a decimal) against ``INTEGER`` (an int)
gives different hashes for the same number, and the child would wait for a parent that is
there. When both sides declare a type under ``fields:`` loading the config refuses it; a sync
checks again with the source's reflected types (`check_reference_types` with ``reflected``),
before anything is read. Errors name the file, the entity and the field.
"""

from __future__ import annotations

from collections.abc import Mapping

from syncflow_core.config import EntityConfig, FieldOptions, SyncFlowConfig
from syncflow_core.errors import ConfigError
from syncflow_core.identity import type_tag
from syncflow_core.normalize.plan import TEMPORAL_KINDS, FieldPlan, parse_declared_type

__all__ = ["check_reference_types"]


def _declared(
    ent: EntityConfig, output: str, reflected: Mapping[str, str] | None = None
) -> str | None:
    """The declared source type of output field ``output`` (``fields:`` first, then the
    source's reflected type), or None when unknown or a cast/computed mapping decides it."""
    name = output
    for m in reversed(ent.field_mappings):
        if m.op == "cast" and m.field == name:
            return None
        if m.op in ("constant", "concat", "value_map") and m.field == name:
            return None
        if m.op == "rename" and m.to == name:
            name = m.field
    opts = ent.fields.get(name)
    if opts is not None and opts.type is not None:
        return opts.type
    return None if reflected is None else reflected.get(name)


def _hashed_as(declared: str) -> str | None:
    """The identity type tag a declared type normalizes to; None if unknown or temporal (DATE
    may become a date or a timestamp depending on the column's physical type)."""
    parsed = parse_declared_type(declared)
    if parsed is None or parsed[0] in TEMPORAL_KINDS:
        return None
    kind, precision, scale = parsed
    # The Arrow type of a plan depends only on its kind and digits, not on its options.
    plan = FieldPlan(kind, FieldOptions(), precision, scale)
    return type_tag(plan.arrow_type)


def check_reference_types(
    cfg: SyncFlowConfig,
    reflected: Mapping[str, Mapping[str, str]] | None = None,
    only: str | None = None,
) -> None:
    """Refuse a reference whose type hashes differently from the parent key's.

    At load time only types declared under ``fields:`` are known; a sync passes
    ``reflected`` (entity -> source column -> reflected type) and ``only`` (the entity it
    syncs) to check against the source's own types as well.
    """
    types = reflected or {}
    for name, ent in cfg.entities.items():
        if only is not None and name != only:
            continue
        for i, ref in enumerate(ent.parent_refs):
            parent = cfg.entities.get(ref.entity)
            if parent is None:
                continue
            for child_field, parent_field in ref.fields.items():
                child_decl = _declared(ent, child_field, types.get(name))
                parent_decl = _declared(parent, parent_field, types.get(ref.entity))
                if child_decl is None or parent_decl is None:
                    continue
                child_tag, parent_tag = _hashed_as(child_decl), _hashed_as(parent_decl)
                if child_tag is None or parent_tag is None or child_tag == parent_tag:
                    continue
                raise ConfigError(
                    f"{cfg.source_file}: entity '{name}': parent_refs.{i}.fields: field "
                    f"{child_field!r} is declared {child_decl!r} but the key field "
                    f"{parent_field!r} of '{ref.entity}' is declared {parent_decl!r}: they "
                    "normalize to different types, so no parent would ever be found; declare "
                    "both alike under 'fields:' (e.g. NUMBER(10) for both)"
                )
