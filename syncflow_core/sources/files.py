"""File source: CSV and Parquet files in one directory.

CSV columns are all read as text (ERP exports are text; normalization types them), and empty
fields stay ``''`` rather than null, because whether ``''`` means NULL is a per-field option
normalization decides. Parquet keeps its Arrow types.

A file is read once, sorted by the key (``pc.sort_indices``) and cached while its size and
modification time stay the same; key ranges are cut with a vectorized tuple comparison.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceError
from syncflow_core.sources.base import KeyTuple, boundary_positions, key_run_end

__all__ = ["FileSource", "key_range_mask"]


def _scalar(col: pa.ChunkedArray | pa.Array, value: Any, what: str) -> pa.Scalar:
    try:
        return pa.scalar(value, type=col.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SourceError(f"{what} value {value!r} does not fit column type {col.type}") from exc


def _tuple_cmp(
    cols: Sequence[pa.ChunkedArray], bound: KeyTuple, strict_gt: bool
) -> pa.ChunkedArray:
    """Lexicographic ``key > bound`` (strict_gt) or ``key <= bound``, vectorized."""
    if len(bound) != len(cols):
        raise SourceError(f"key bound {bound!r} has {len(bound)} values, key has {len(cols)}")
    scalars = [_scalar(c, v, "key bound") for c, v in zip(cols, bound, strict=True)]
    # key > b  <=>  OR_i (k_0 = b_0 AND … AND k_{i-1} = b_{i-1} AND k_i > b_i)
    result: pa.ChunkedArray | None = None
    prefix_eq: pa.ChunkedArray | None = None
    for col, s in zip(cols, scalars, strict=True):
        gt = pc.greater(col, s)
        term = gt if prefix_eq is None else pc.and_(prefix_eq, gt)
        result = term if result is None else pc.or_(result, term)
        eq = pc.equal(col, s)
        prefix_eq = eq if prefix_eq is None else pc.and_(prefix_eq, eq)
    assert result is not None
    return result if strict_gt else pc.invert(result)


def key_range_mask(
    table: pa.Table, key_fields: Sequence[str], lo: KeyTuple | None, hi: KeyTuple | None
) -> pa.ChunkedArray:
    """Boolean mask of rows whose key is in ``(lo, hi]`` (``()`` = bottom, ``None`` = open)."""
    cols = [table.column(k) for k in key_fields]
    mask = pa.chunked_array([pc.fill_null(pa.nulls(table.num_rows, pa.bool_()), hi != ())])
    if hi == ():
        return mask
    if lo:
        mask = pc.and_(mask, _tuple_cmp(cols, tuple(lo), strict_gt=True))
    if hi is not None:
        mask = pc.and_(mask, _tuple_cmp(cols, tuple(hi), strict_gt=False))
    return mask


class FileSource:
    """CSV (all text) and Parquet files under one directory."""

    def __init__(self, directory: str, csv_delimiter: str = ",", encoding: str = "utf-8") -> None:
        """Files are named relative to ``directory``; nothing outside it is read."""
        self._dir = Path(directory).resolve()
        self._delimiter = csv_delimiter
        self._encoding = encoding
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, int], pa.Table, int]] = {}

    # -- files --------------------------------------------------------------------------------

    def _path(self, ref: SourceRef) -> Path:
        if not ref.path:
            raise SourceError("file source: the entity's source names no path")
        raw = ref.path
        for flavour in (PurePosixPath(raw), PureWindowsPath(raw)):
            if flavour.is_absolute() or flavour.drive or ".." in flavour.parts:
                raise SourceError(
                    f"file source: path {raw!r} must be relative to the source directory "
                    "without '..'"
                )
        path = (self._dir / raw).resolve()
        if not path.is_relative_to(self._dir):  # a symlink pointing outside
            raise SourceError(f"file source: path {raw!r} leaves the source directory")
        if not path.is_file():
            raise SourceError(f"file source: file {raw!r} not found in {self._dir}")
        return path

    def _is_parquet(self, path: Path) -> bool:
        return path.suffix.lower() in (".parquet", ".pq")

    def _csv_header(self, path: Path, raw: str) -> list[str]:
        enc = "utf-8-sig" if self._encoding.lower().replace("_", "-") == "utf-8" else self._encoding
        try:
            with path.open(encoding=enc, newline="") as fh:
                header = next(csv.reader(fh, delimiter=self._delimiter), None)
        except (UnicodeDecodeError, csv.Error, LookupError) as exc:
            raise SourceError(f"file source: {raw!r}: cannot read the header: {exc}") from None
        if not header:
            raise SourceError(f"file source: {raw!r} is empty (no header row)")
        return header

    def _load(self, ref: SourceRef) -> pa.Table:
        path = self._path(ref)
        raw = ref.path or ""
        try:
            if self._is_parquet(path):
                return pq.read_table(path)
            names = self._csv_header(path, raw)
            return pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(encoding=self._encoding),
                parse_options=pacsv.ParseOptions(delimiter=self._delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"file source: {raw!r}: {exc}") from None

    def _sorted(self, ref: SourceRef, key_fields: Sequence[str]) -> tuple[pa.Table, int]:
        """The file sorted by key, rows with a null key last; and how many keys are non-null."""
        path = self._path(ref)
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        ck = (str(path), tuple(key_fields))
        hit = self._cache.get(ck)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        table = self._load(ref)
        missing = [k for k in key_fields if k not in table.column_names]
        if not key_fields or missing:
            raise SourceError(
                f"file source: {ref.path!r}: key field(s) {missing or '(none)'} not in the file "
                f"(have: {', '.join(table.column_names)})"
            )
        has_null = pc.is_null(table.column(key_fields[0]))
        for k in key_fields[1:]:
            has_null = pc.or_(has_null, pc.is_null(table.column(k)))
        keyed_rows = table.filter(pc.invert(has_null))
        order = pc.sort_indices(keyed_rows, sort_keys=[(k, "ascending") for k in key_fields])
        keyed = keyed_rows.num_rows
        table = pa.concat_tables([keyed_rows.take(order), table.filter(has_null)])
        self._cache.clear()  # one file at a time: slices of one entity are read in turn
        self._cache[ck] = (stamp, table, keyed)
        return table, keyed

    # -- the Source protocol ------------------------------------------------------------------

    def columns(self, ref: SourceRef) -> dict[str, str]:
        """CSV: every column 'TEXT'; Parquet: the Arrow type's text (e.g. 'decimal128(12, 2)')."""
        path = self._path(ref)
        if self._is_parquet(path):
            try:
                schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(f"file source: {ref.path!r}: {exc}") from None
            return {f.name: str(f.type) for f in schema}
        return dict.fromkeys(self._csv_header(path, ref.path or ""), "TEXT")

    def read(
        self,
        ref: SourceRef,
        key_fields: Sequence[str],
        lo: KeyTuple | None,
        hi: KeyTuple | None,
        chunk_size: int,
        *,
        watermark_field: str | None = None,
        watermark: Any = None,
    ) -> Iterator[pa.Table]:
        """Key-ordered chunks of ``(lo, hi]`` (see `Source.read`)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        table, keyed = self._sorted(ref, key_fields)
        table = table.slice(0, keyed)
        mask = key_range_mask(table, key_fields, lo, hi)
        if watermark_field is not None and watermark is not None:
            if watermark_field not in table.column_names:
                raise SourceError(
                    f"file source: {ref.path!r}: watermark field {watermark_field!r} not in file"
                )
            mask = pc.and_(mask, self._after_watermark(table, watermark_field, watermark))
        picked = table.filter(mask)
        start = 0
        while start < picked.num_rows:
            end = key_run_end(picked, key_fields, start + chunk_size)
            yield picked.slice(start, end - start)
            start = end

    def _after_watermark(self, table: pa.Table, field: str, watermark: Any) -> pa.ChunkedArray:
        col = table.column(field)
        if pa.types.is_string(col.type) and isinstance(watermark, int | float):
            # CSV row versions are text; compare them as numbers, not as strings ('9' > '10').
            target = pa.int64() if isinstance(watermark, int) else pa.float64()
            try:
                col = pc.cast(col, target)
            except pa.ArrowInvalid as exc:
                raise SourceError(
                    f"file source: watermark field {field!r} holds a non-number: {exc}"
                ) from None
        mask = pc.greater(col, _scalar(col, watermark, "watermark"))
        return pc.fill_null(mask, False)

    def read_null_keys(
        self, ref: SourceRef, key_fields: Sequence[str], chunk_size: int
    ) -> Iterator[pa.Table]:
        """Rows with a null in any key field (Parquet only: CSV fields are never null)."""
        table, keyed = self._sorted(ref, key_fields)
        rest = table.slice(keyed)
        for start in range(0, rest.num_rows, chunk_size):
            yield rest.slice(start, chunk_size)

    def key_bounds(self, ref: SourceRef, key_fields: Sequence[str], n: int) -> list[KeyTuple]:
        """Boundaries at every ``count/n``-th key of the sorted file."""
        table, keyed = self._sorted(ref, key_fields)
        cols = [table.column(k) for k in key_fields]
        return [
            tuple(c[p - 1].as_py() for c in cols) if p > 0 else ()
            for p in boundary_positions(keyed, n)
        ]

    def close(self) -> None:
        """Drop the cached file."""
        self._cache.clear()
