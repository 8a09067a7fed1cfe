"""The slice plan: an entity's key space cut into ``n`` key ranges, one per partition.

A slice is ``(lo, hi]`` (docs/CONTRACTS.md): ``lo`` exclusive, ``hi`` inclusive, tuples of key
values in key order, ``None`` = unbounded, ``()`` = the bottom of the key space (a source with
fewer keys than slices gets empty slices ``(…, ()]``). The first slice starts at ``None`` and
the last ends at ``None``, so every key, also one inserted after planning, is in exactly one
slice. `SliceBounds` here is the canonical type; the state store persists it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncflow_core.config import SourceRef
from syncflow_core.sources.base import KeyTuple, Source

__all__ = ["SliceBounds", "plan_slices", "slice_keys", "slice_of"]


def slice_keys(n: int) -> list[str]:
    """Partition keys ``slice-01`` … ``slice-NN`` (two digits at least, zero-padded)."""
    if n < 1:
        raise ValueError(f"number of slices must be >= 1, got {n}")
    width = max(2, len(str(n)))
    return [f"slice-{i:0{width}d}" for i in range(1, n + 1)]


@dataclass(frozen=True)
class SliceBounds:
    """One slice's key range ``(lo, hi]``."""

    slice_key: str
    lo: KeyTuple | None
    hi: KeyTuple | None

    @property
    def is_empty(self) -> bool:
        """True when no key can fall in the range (it ends at the bottom ``()``)."""
        return self.hi == ()

    def contains(self, key: Sequence[Any]) -> bool:
        """Whether ``key`` (a full key tuple, no nulls) lies in ``(lo, hi]`` (Python order)."""
        k = tuple(key)
        if self.hi is not None and not k <= tuple(self.hi):
            return False
        return not self.lo or k > tuple(self.lo)


def plan_slices(
    source: Source, ref: SourceRef, key_fields: Sequence[str], n: int
) -> list[SliceBounds]:
    """Cut the source's current keys into ``n`` contiguous, roughly equal slices."""
    # One slice is the whole key space: no need to count the source's rows for it.
    interior = [] if n == 1 else source.key_bounds(ref, key_fields, n)
    bounds: list[KeyTuple | None] = [None, *interior, None]
    if len(bounds) != n + 1:
        raise ValueError(f"source returned {len(bounds) - 2} boundaries for {n} slices")
    keys = slice_keys(n)
    return [SliceBounds(keys[i], bounds[i], bounds[i + 1]) for i in range(n)]


def slice_of(plan: Sequence[SliceBounds], slice_key: str) -> SliceBounds:
    """The slice called ``slice_key``; `KeyError` naming the known keys if absent."""
    for s in plan:
        if s.slice_key == slice_key:
            return s
    known = ", ".join(s.slice_key for s in plan) or "(empty plan)"
    raise KeyError(f"no slice {slice_key!r} in the plan (have: {known})")
