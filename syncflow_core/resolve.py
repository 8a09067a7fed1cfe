"""Parent-child resolution: which identified rows can load now, which wait, and when to retry.

For every ``parent_refs`` entry of an entity the child's reference columns are hashed like the
parent's business key (`syncflow_core.identity.key_hashes`; field names are not part of the
hash, the Arrow types are). **The child's reference columns must have the same types as the
parent's key fields** after normalization (declare both with the same source type, e.g.
``NUMBER(6)`` for ``EMP_NO`` and ``MANAGER_NO``), otherwise the type tags differ and no parent
is ever found; pass ``parent_key_types`` to cast them to the parent's types here.

Rules (`split_by_parents`):

- A reference whose columns are all null needs no parent when ``required: false`` (an
  employee without a manager is the top). With ``required: true`` a null in any reference
  column is a reject (stage ``resolve``, code ``null_parent_reference``): waiting cannot fix it.
  A composite reference that is only partly null is a reject either way.
- A parent is present when the target already has its key (``parent_exists``, the caller's
  lookup, e.g. the target's ``existing_keys``). For a *self*-reference (the parent entity is
  the entity itself) a parent in the same batch counts too, provided that parent row is itself
  loadable; chains and cycles inside one batch load together.
- An ``optional: true`` reference is never waited for: the child loads with the reference as
  the source has it, and the parent may arrive later (this is what makes a cycle of
  references loadable: department.manager -> employees, employee.department -> departments).
- A child that needs several parents loads only when all of them are present. It waits with
  one `WAITING_SCHEMA` row per missing parent (the ``pending_children`` layout), so the parent
  sensor can find it by ``(parent_entity, parent_key_hash)``.

Backoff (`next_retry_at`): ``attempts`` counts the retries already made (0 when a child is first
held back). The delay before the next retry is ``base * factor**attempts`` capped at ``cap``;
with the defaults (5 min, x4, 24 h cap): +5 min, +20 min, +1 h 20, +5 h 20, +21 h 20. After
`MAX_ATTEMPTS` failed retries (about 28 h 45 after the child was held back, so the next night's
sync of the parent is still in time) the child becomes a failed record with reason
``parent_missing``. A parent's arrival triggers resolution at once (sensor), independent of
this schedule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig, ParentRef
from syncflow_core.errors import ConfigError
from syncflow_core.identity import KEY_HASH, REF, key_hashes
from syncflow_core.keycodec import dumps_key
from syncflow_core.rejects import (
    REJECT_SCHEMA,
    ROW_ID,
    concat_reject_specs,
    empty_reject_specs,
    reject_specs,
)

__all__ = [
    "MAX_ATTEMPTS",
    "NULL_PARENT_REFERENCE",
    "PARENT_MISSING",
    "STAGE",
    "WAITING_SCHEMA",
    "ParentExists",
    "ResolveSplit",
    "backoff_delay",
    "exhausted_children",
    "is_exhausted",
    "keep_schedule",
    "next_retry_at",
    "parent_key_columns",
    "parent_missing_rejects",
    "retry_horizon",
    "retry_or_give_up",
    "rows_from_json",
    "rows_to_json",
    "split_by_parents",
    "waiting_children",
]

STAGE = "resolve"
MAX_ATTEMPTS = 5
"""Retries before a waiting child becomes a ``parent_missing`` failed record."""
PARENT_MISSING = "parent_missing"
NULL_PARENT_REFERENCE = "null_parent_reference"

DEFAULT_BASE = timedelta(minutes=5)
DEFAULT_FACTOR = 4.0
DEFAULT_CAP = timedelta(hours=24)

ParentExists = Callable[[str, pa.Array], pa.Array]
"""``(parent_entity, key_hashes) -> bool array``: which parent keys the target already holds."""

WAITING_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("key_hash", pa.string(), nullable=False),
        pa.field("bridge_ref", pa.string()),
        pa.field("parent_entity", pa.string(), nullable=False),
        pa.field("parent_key", pa.string(), nullable=False),
        pa.field("parent_key_hash", pa.string(), nullable=False),
        pa.field("row_json", pa.string(), nullable=False),
        pa.field("next_retry_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string()),
    ]
)
"""One row per (waiting child, missing parent). ``parent_key`` is `keycodec.dumps_key` JSON
(a typed list of the parent key values); ``row_json`` rebuilds with `rows_from_json`."""


class ResolveSplit(NamedTuple):
    """The outcome of `split_by_parents`.

    ``loadable`` keeps the input schema and order; ``waiting`` follows `WAITING_SCHEMA` (a child
    missing two parents has two rows); the masks are aligned with the input rows; ``rejects``
    are reject specs (`syncflow_core.rejects.REJECT_SPEC_SCHEMA`) for null required references.
    """

    loadable: pa.Table
    waiting: pa.Table
    loadable_mask: pa.Array
    waiting_mask: pa.Array
    rejects: pa.Table


# --------------------------------------------------------------------------------- backoff


def backoff_delay(
    attempts: int,
    base: timedelta = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    cap: timedelta = DEFAULT_CAP,
) -> timedelta:
    """``min(base * factor**attempts, cap)``: the wait before the next retry."""
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    try:
        seconds = base.total_seconds() * float(factor) ** attempts
    except OverflowError:  # a huge attempt count: certainly past the cap
        return cap
    if seconds >= cap.total_seconds():
        return cap
    return timedelta(seconds=seconds)


def retry_horizon() -> timedelta:
    """How long a child may wait in all, at most: the sum of its backoff waits (~28 h 45).

    A child still waiting after that was never retried (the retry sensor is off or failing).
    """
    return sum((backoff_delay(a) for a in range(MAX_ATTEMPTS)), timedelta())


def next_retry_at(
    attempts: int,
    now: datetime,
    base: timedelta = DEFAULT_BASE,
    factor: float = DEFAULT_FACTOR,
    cap: timedelta = DEFAULT_CAP,
) -> datetime:
    """When to retry a child that has had ``attempts`` retries (0 = just held back), in UTC.

    Defaults give +5 min, +20 min, +1 h 20, +5 h 20, +21 h 20 (see the module docstring); use
    `is_exhausted` to know when to stop retrying.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return (now + backoff_delay(attempts, base, factor, cap)).astimezone(UTC)


def is_exhausted(attempts: int) -> bool:
    """Whether a child with ``attempts`` failed retries becomes ``parent_missing``."""
    return attempts >= MAX_ATTEMPTS


# ------------------------------------------------------------------------------ resolving


def parent_key_columns(entity: EntityConfig, ref: ParentRef) -> list[str]:
    """The child's columns holding ``ref``'s parent key, in the parent's key order.

    Config validation guarantees ``ref.fields`` maps onto the parent key in order.
    """
    del entity  # part of the signature so callers need not know how refs are stored
    return list(ref.fields.keys())


def _row_ids(rows: pa.Table) -> pa.Array:
    if ROW_ID in rows.column_names:
        return rows.column(ROW_ID).combine_chunks()
    return pa.array(np.arange(rows.num_rows, dtype=np.int64))


def _any(masks: Sequence[pa.Array], n: int) -> pa.Array:
    return reduce(pc.or_, masks) if masks else pa.array([False] * n, pa.bool_())


def _all(masks: Sequence[pa.Array], n: int) -> pa.Array:
    return reduce(pc.and_, masks) if masks else pa.array([True] * n, pa.bool_())


class _Ref(NamedTuple):
    ref: ParentRef
    columns: list[str]
    hashes: pa.Array  # parent key hash per row; null where no parent is needed or rejected
    present: pa.Array  # bool: no parent needed, or the target holds it
    self_ref: bool


def _reference_table(
    rows: pa.Table, entity: EntityConfig, ref: ParentRef, types: pa.Schema | None
) -> pa.Table:
    columns = parent_key_columns(entity, ref)
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise ConfigError(
            f"entity '{entity.name}': parent_refs to '{ref.entity}': field(s) {missing} are "
            "not columns of the batch"
        )
    sub = rows.select(columns).rename_columns(list(ref.fields.values()))
    if types is None:
        return sub
    cols = []
    for name, col in zip(sub.column_names, sub.columns, strict=True):
        if name in types.names and col.type != types.field(name).type:
            target = types.field(name).type
            try:
                col = col.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                child = columns[sub.column_names.index(name)]
                raise ValueError(
                    f"entity '{entity.name}': cannot cast {child!r} ({col.type}) to the type of "
                    f"'{ref.entity}'.{name} ({target}): {exc}"
                ) from None
        cols.append(col)
    return pa.table(cols, names=sub.column_names)


def _prepare(
    rows: pa.Table,
    entity: EntityConfig,
    ref: ParentRef,
    parent_exists: ParentExists,
    types: pa.Schema | None,
    row_ids: pa.Array,
) -> tuple[_Ref, pa.Table, pa.Array]:
    """Hash one reference, ask the target once per distinct key; also its null rejects."""
    n = rows.num_rows
    sub = _reference_table(rows, entity, ref, types)
    nulls = [pc.is_null(c).combine_chunks() for c in sub.columns]
    any_null, all_null = _any(nulls, n), _all(nulls, n)
    # An optional reference is never waited for, so a null in it is no reason to reject.
    must = ref.required and not ref.optional
    bad = any_null if must else pc.and_(any_null, pc.invert(all_null))
    hashes = key_hashes(sub, sub.column_names).combine_chunks() if n else pa.array([], pa.string())
    hashes = pc.if_else(bad, pa.scalar(None, pa.string()), hashes)
    distinct = pc.unique(hashes.drop_null())
    if ref.optional:
        in_target = pa.array([True] * n, pa.bool_())  # loads now; the parent may come later
    elif len(distinct):
        found = parent_exists(ref.entity, distinct)
        if len(found) != len(distinct):
            raise ValueError(
                f"parent_exists('{ref.entity}') returned {len(found)} flags for "
                f"{len(distinct)} keys"
            )
        existing = distinct.filter(pc.fill_null(found, False))
        in_target = pc.fill_null(pc.is_in(hashes, value_set=existing), False)
    else:
        in_target = pa.array([False] * n, pa.bool_())
    present = pc.or_(pc.is_null(hashes), in_target)
    rejects = empty_reject_specs()
    if pc.any(bad).as_py():
        rejects = reject_specs(
            row_ids.filter(bad),
            STAGE,
            NULL_PARENT_REFERENCE,
            _null_ref_messages(rows.filter(bad), entity, ref, sub.filter(bad)),
        )
    columns = parent_key_columns(entity, ref)
    return _Ref(ref, columns, hashes, present, ref.entity == entity.name), rejects, bad


def _null_ref_messages(
    rows: pa.Table, entity: EntityConfig, ref: ParentRef, sub: pa.Table
) -> pa.Array:
    # Only the rejected rows: a small subset, built per row for a readable message.
    child_cols = list(ref.fields.keys())
    refs = rows.column(REF).to_pylist() if REF in rows.column_names else [None] * rows.num_rows
    nulls = [c.to_pylist() for c in sub.columns]
    msgs = []
    for i, bridge_ref in enumerate(refs):
        names = [child_cols[j] for j in range(len(child_cols)) if nulls[j][i] is None]
        who = f"{bridge_ref}: " if bridge_ref else ""
        need = "required " if ref.required and not ref.optional else "partly null composite "
        msgs.append(
            f"{who}{need}reference to '{ref.entity}' has null in field(s) "
            f"{', '.join(repr(c) for c in names)}"
        )
    return pa.array(msgs, pa.string())


def split_by_parents(
    rows: pa.Table,
    entity: EntityConfig,
    parent_exists: ParentExists,
    *,
    now: datetime | None = None,
    run_id: str | None = None,
    parent_key_types: Mapping[str, pa.Schema] | None = None,
) -> ResolveSplit:
    """Split identified rows into those whose parents are present and those that must wait.

    ``rows`` carry ``_bridge_key_hash`` (from `syncflow_core.identity.identify`). ``now`` sets
    ``next_retry_at`` of waiting rows (first retry, `next_retry_at(0, now)`; default: the current
    time); ``run_id`` is recorded with them. ``parent_key_types`` maps a parent entity to the
    schema of its key fields, to cast the child's reference columns to (see module docstring).
    """
    if KEY_HASH not in rows.column_names:
        raise ValueError(f"rows lack {KEY_HASH}: run identity first")
    n = rows.num_rows
    row_ids = _row_ids(rows)
    prepared: list[_Ref] = []
    reject_parts: list[pa.Table] = []
    bad_masks: list[pa.Array] = []
    for ref in entity.parent_refs:
        types = None if parent_key_types is None else parent_key_types.get(ref.entity)
        r, rej, bad = _prepare(rows, entity, ref, parent_exists, types, row_ids)
        prepared.append(r)
        reject_parts.append(rej)
        bad_masks.append(bad)
    rejected = _any(bad_masks, n)
    candidate = pc.and_(
        pc.invert(rejected), _all([r.present for r in prepared if not r.self_ref], n)
    )
    own = rows.column(KEY_HASH).combine_chunks()
    self_refs = [r for r in prepared if r.self_ref]

    def satisfied(r: _Ref, loadable: pa.Array) -> pa.Array:
        if not r.self_ref:
            return r.present
        in_batch = pc.fill_null(pc.is_in(r.hashes, value_set=own.filter(loadable)), False)
        return pc.or_(r.present, in_batch)

    # Greatest fixed point: start from every candidate, drop rows whose in-batch parent is not
    # loadable, repeat. Each round removes at least one level of a chain; org charts are shallow.
    loadable = candidate
    while self_refs:
        nxt = pc.and_(candidate, _all([satisfied(r, loadable) for r in self_refs], n))
        if nxt.equals(loadable):
            break
        loadable = nxt
    waiting_mask = pc.and_(pc.invert(loadable), pc.invert(rejected))
    waiting = _waiting_rows(rows, entity, prepared, loadable, waiting_mask, satisfied, now, run_id)
    return ResolveSplit(
        loadable=rows.filter(loadable),
        waiting=waiting,
        loadable_mask=loadable,
        waiting_mask=waiting_mask,
        rejects=concat_reject_specs(reject_parts),
    )


def _waiting_rows(
    rows: pa.Table,
    entity: EntityConfig,
    prepared: Sequence[_Ref],
    loadable: pa.Array,
    waiting_mask: pa.Array,
    satisfied: Callable[[_Ref, pa.Array], pa.Array],
    now: datetime | None,
    run_id: str | None,
) -> pa.Table:
    if not pc.any(waiting_mask).as_py():
        return WAITING_SCHEMA.empty_table()
    retry = next_retry_at(0, now or datetime.now(UTC))
    parts: list[pa.Table] = []
    for r in prepared:
        missing = pc.and_(waiting_mask, pc.invert(satisfied(r, loadable)))
        if not pc.any(missing).as_py():
            continue
        child = rows.filter(missing)
        k = child.num_rows
        key_values = child.select(r.columns).to_pylist()
        parent_keys = [dumps_key(tuple(v[c] for c in r.columns)) for v in key_values]
        refs = child.column(REF) if REF in child.column_names else pa.nulls(k, pa.string())
        parts.append(
            pa.table(
                [
                    pa.array([entity.name] * k, pa.string()),
                    child.column(KEY_HASH),
                    refs.cast(pa.string()),
                    pa.array([r.ref.entity] * k, pa.string()),
                    pa.array(parent_keys, pa.string()),
                    r.hashes.filter(missing),
                    rows_to_json(child),
                    pa.array([retry] * k, pa.timestamp("us", tz="UTC")),
                    pa.array([run_id] * k, pa.string()),
                ],
                schema=WAITING_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else WAITING_SCHEMA.empty_table()


# --------------------------------------------------------------------- waiting children


def waiting_children(waiting: pa.Table) -> pa.Table:
    """One row per waiting child of ``waiting`` (`state.store.PENDING_SCHEMA` rows).

    A child missing several parents waits with one row per missing parent; all of them carry
    the same child row (the store replaces a child's rows together). Columns: ``key_hash``,
    ``row_json`` (of the child's first row), ``attempts`` (the highest) and ``next_retry_at``
    (the earliest), in order of first appearance.
    """
    keys = waiting.column("key_hash").combine_chunks()
    distinct = pc.unique(keys)
    first = pc.index_in(distinct, value_set=keys)
    agg = waiting.select(["key_hash", "attempts", "next_retry_at"]).group_by("key_hash").aggregate(
        [("attempts", "max"), ("next_retry_at", "min")]
    )
    pos = pc.index_in(distinct, value_set=agg.column("key_hash"))
    return pa.table(
        {
            "key_hash": distinct,
            "row_json": waiting.column("row_json").take(first),
            "attempts": agg.column("attempts_max").take(pos),
            "next_retry_at": agg.column("next_retry_at_min").take(pos),
        }
    )


def _per_child(still: pa.Table, children: pa.Table, column: str) -> pa.ChunkedArray:
    pos = pc.index_in(still.column("key_hash"), value_set=children.column("key_hash"))
    return children.column(column).take(pos)


def keep_schedule(still: pa.Table, children: pa.Table) -> pa.Table:
    """``still`` (`WAITING_SCHEMA`) with each child's retry time as it was (a parent arrived:
    no attempt is used)."""
    if still.num_rows == 0:
        return still
    field = WAITING_SCHEMA.field("next_retry_at")
    due = _per_child(still, children, "next_retry_at").cast(field.type)
    return still.set_column(still.schema.get_field_index("next_retry_at"), field, due)


def retry_or_give_up(
    still: pa.Table, children: pa.Table, now: datetime
) -> tuple[pa.Table, pa.Table]:
    """A backoff retry found ``still`` (`WAITING_SCHEMA`) children missing parents: each uses an
    attempt. Returns (those that wait on, with their next retry time; those out of attempts).
    ``children`` is `waiting_children` of the rows the retry started from."""
    if still.num_rows == 0:
        return still, WAITING_SCHEMA.empty_table()
    attempts = pc.add(_per_child(still, children, "attempts"), 1)
    out = pc.greater_equal(attempts, MAX_ATTEMPTS)
    keep = pc.invert(out)
    retry_at = [next_retry_at(int(a), now) for a in attempts.filter(keep).to_pylist()]
    on = still.filter(keep)
    i = on.schema.get_field_index("next_retry_at")
    on = on.set_column(
        i, WAITING_SCHEMA.field("next_retry_at"), pa.array(retry_at, pa.timestamp("us", tz="UTC"))
    )
    return on, still.filter(out)


def exhausted_children(exhausted: pa.Table) -> int:
    """How many children the `WAITING_SCHEMA` rows ``exhausted`` hold."""
    return len(pc.unique(exhausted.column("key_hash"))) if exhausted.num_rows else 0


def parent_missing_rejects(entity: str, exhausted: pa.Table) -> pa.Table:
    """One ``parent_missing`` reject (`rejects.REJECT_SCHEMA`) per child out of attempts, naming
    every parent it still missed; the raw row is the child row as it waited."""
    by_child: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    # Per child, not per row of data: a few waiting children at most per retry.
    for i, (k, p, pk) in enumerate(
        zip(
            exhausted.column("key_hash").to_pylist(),
            exhausted.column("parent_entity").to_pylist(),
            exhausted.column("parent_key").to_pylist(),
            strict=True,
        )
    ):
        first.setdefault(k, i)
        by_child.setdefault(k, []).append(f"{p}{pk}")
    take = pa.array(list(first.values()), pa.int64())
    msgs = [
        f"parent {', '.join(ps)} never arrived after {MAX_ATTEMPTS} attempts"
        for ps in by_child.values()
    ]
    n = len(first)
    return pa.table(
        [
            pa.array([entity] * n, pa.string()),
            pa.array([STAGE] * n, pa.string()),
            pa.array([PARENT_MISSING] * n, pa.string()),
            pa.array(msgs, pa.string()),
            exhausted.column("bridge_ref").take(take).cast(pa.string()),
            exhausted.column("row_json").take(take).cast(pa.string()),
            pa.array(list(first), pa.string()),
        ],
        schema=REJECT_SCHEMA,
    )


# ------------------------------------------------------------------------------ row JSON

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _json_value(v: Any, t: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_floating(t):
        f = float(v)
        return f if math.isfinite(f) else ("nan" if math.isnan(f) else ("inf" if f > 0 else "-inf"))
    if isinstance(v, Decimal):
        return str(v)  # keeps the scale: '10.50'
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            return v.astimezone(UTC).replace(tzinfo=None).isoformat("T", "microseconds") + "Z"
        return v.isoformat("T", "microseconds")
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return v


def _json_column(col: pa.ChunkedArray, name: str) -> list[Any]:
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_nested(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        raise TypeError(f"column {name!r}: type {t} is not supported in row JSON")
    if pa.types.is_timestamp(t) and t.unit == "ns":
        try:
            col = col.cast(pa.timestamp("us", tz=t.tz))  # safe: fails instead of truncating
        except pa.ArrowInvalid as exc:
            raise ValueError(f"column {name!r}: sub-microsecond timestamps: {exc}") from None
    return [_json_value(v, t) for v in col.to_pylist()]


def rows_to_json(table: pa.Table) -> pa.Array:
    """Each row as a JSON object text (column order kept; hidden ``__sf_*`` columns left out).

    Decimals keep their scale as strings, timestamps are ISO 8601 (aware ones in UTC with
    ``Z``), dates/times ISO, binary hex, non-finite floats ``"nan"``/``"inf"``/``"-inf"``.
    Rebuild with `rows_from_json` and the table's schema.
    """
    names = [c for c in table.column_names if not c.startswith("__sf_")]
    columns = [_json_column(table.column(c), c) for c in names]
    out = (
        [
            json.dumps(
                dict(zip(names, values, strict=True)),
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan=False,
            )
            for values in zip(*columns, strict=True)
        ]
        if names
        else ["{}"] * table.num_rows
    )
    return pa.array(out, pa.string())


def _from_json(v: Any, t: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_dictionary(t):
        return _from_json(v, t.value_type)
    if pa.types.is_decimal(t):
        return Decimal(str(v))
    if pa.types.is_floating(t):
        return _NON_FINITE[v] if isinstance(v, str) and v in _NON_FINITE else float(v)
    if pa.types.is_integer(t):
        return int(v)
    if pa.types.is_timestamp(t):
        dt = datetime.fromisoformat(v) if isinstance(v, str) else v
        if t.tz is None and dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        return dt
    if pa.types.is_date(t):
        return date.fromisoformat(v[:10]) if isinstance(v, str) else v
    if pa.types.is_time(t):
        return time.fromisoformat(v) if isinstance(v, str) else v
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return bytes.fromhex(v) if isinstance(v, str) else v
    if pa.types.is_boolean(t):
        return bool(v)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return v if isinstance(v, str) else json.dumps(v)
    return v


def rows_from_json(json_array: pa.Array | pa.ChunkedArray, schema: pa.Schema) -> pa.Table:
    """Rebuild rows written by `rows_to_json` with ``schema``'s column types.

    A column of ``schema`` missing from a row's JSON is null (added since the row was held
    back); JSON keys not in ``schema`` are ignored (columns dropped since).
    """
    objects = [json.loads(s) if s is not None else {} for s in json_array.to_pylist()]
    arrays = []
    for field in schema:
        try:
            values = [_from_json(o.get(field.name), field.type) for o in objects]
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError, ArithmeticError) as exc:
            raise ValueError(
                f"row JSON: column {field.name!r} does not fit {field.type}: {exc}"
            ) from None
    return pa.Table.from_arrays(arrays, schema=schema)
