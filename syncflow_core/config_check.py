"""The config against the live source: columns, declared types, key uniqueness, parent keys.

`check_source_columns` (what every sync checks first) reports the first missing column; this
looks at everything and reports every finding, on a sample of each entity's rows:

- every column the config names exists in the source;
- every declared type in ``fields:`` is one the normalizer understands, and the source column's
  own declared type is noted beside it when they disagree in kind;
- the business key is unique in the sample (after normalization: keys that differ only by
  padding or case collapse there);
- a child's reference columns normalize to the same Arrow types as the parent's key (else its
  parent key hashes never match and the child waits forever).

Reads only; nothing is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.batch import Batch
from syncflow_core.identity import KEY_HASH, REF
from syncflow_core.normalize.plan import parse_declared_type
from syncflow_core.pipeline import _source_keys, prepare_batch
from syncflow_core.redaction import safe_message
from syncflow_core.rejects import with_row_ids
from syncflow_core.runtime import Runtime

__all__ = ["Finding", "check_config"]

Level = Literal["error", "warning", "ok"]


@dataclass(frozen=True)
class Finding:
    """One result: the entity, how bad, and what was found (naming file, entity and field)."""

    entity: str
    level: Level
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def _sample(rt: Runtime, entity: str, rows: int) -> tuple[pa.Table, dict[str, str]]:
    ent = rt.entity(entity)
    source = rt.source(entity)
    types = source.columns(ent.source)
    first = next(iter(source.read(ent.source, _source_keys(ent), None, None, rows)), None)
    raw = first if first is not None else pa.table({c: pa.array([], pa.string()) for c in types})
    batch = Batch({"raw": with_row_ids(raw)},
                  {"entity": entity, "slice_key": "sample", "source_types": dict(types),
                   "fetched": raw.num_rows, "durations": {}})
    return prepare_batch(rt, entity, batch).table("rows"), dict(types)


def check_config(rt: Runtime, sample_rows: int = 10_000) -> list[Finding]:
    """Every finding for every entity (an empty error list means the config fits the source)."""
    from syncflow_core.config import check_source_columns

    out: list[Finding] = []
    samples: dict[str, pa.Table] = {}
    f = rt.config.source_file
    for name, ent in rt.config.entities.items():
        try:
            rows, types = _sample(rt, name, sample_rows)
            check_source_columns(rt.config, ent, list(types))
        except Exception as exc:  # a finding, not a crash: the other entities still get checked
            out.append(Finding(name, "error", safe_message(exc)))
            continue
        samples[name] = rows
        for column, opts in ent.fields.items():
            if opts.type is None:
                continue
            mine = parse_declared_type(opts.type)
            if mine is None:
                out.append(Finding(name, "error", f"{f}: entity '{name}': fields.{column}.type: "
                                   f"{opts.type!r} is not a type the normalizer knows"))
                continue
            theirs = parse_declared_type(types.get(column, "")) if types.get(column) else None
            # Text columns are what the declared types are for (parsing): only a typed source
            # column of another kind is worth a word.
            kinds = {theirs[0], mine[0]} if theirs is not None else set()
            if (theirs is not None and theirs[0] not in ("string", "char")
                    and len(kinds) > 1 and kinds != {"timestamp", "date"}):  # DATE: either
                out.append(Finding(name, "warning", f"{f}: entity '{name}': fields.{column}.type: "
                                   f"declared {opts.type!r} ({mine[0]}), the source says "
                                   f"{types[column]!r} ({theirs[0]})"))
        if rows.num_rows:
            counts = rows.group_by(KEY_HASH).aggregate([(REF, "min"), (REF, "count")])
            dup = counts.filter(pc.greater(counts.column(f"{REF}_count"), 1))
            if dup.num_rows:
                out.append(Finding(name, "error", f"{f}: entity '{name}': business_key_fields: "
                                   f"{dup.num_rows} key(s) occur more than once in a sample of "
                                   f"{rows.num_rows} rows, e.g. {dup.column(f'{REF}_min')[0]}"))
    for name, ent in rt.config.entities.items():
        for i, ref in enumerate(ent.parent_refs):
            child, parent = samples.get(name), samples.get(ref.entity)
            if child is None or parent is None:
                continue
            for child_field, parent_field in ref.fields.items():
                if child_field not in child.column_names or parent_field not in parent.column_names:
                    continue
                ct = child.schema.field(child_field).type
                pt = parent.schema.field(parent_field).type
                if ct != pt and not (pa.types.is_null(ct) or pa.types.is_null(pt)):
                    out.append(Finding(name, "error", f"{f}: entity '{name}': parent_refs.{i}: "
                                       f"{child_field!r} normalizes to {ct}, but {ref.entity}'s "
                                       f"key {parent_field!r} is {pt}: parent keys never match"))
    for name in rt.config.entities:
        if not any(x.entity == name and x.level == "error" for x in out):
            n = samples[name].num_rows if name in samples else 0
            out.append(Finding(name, "ok", f"columns, types and keys fit ({n} rows sampled)"))
    return out


