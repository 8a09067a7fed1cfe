"""Benchmark the five normalization layers on messy order lines.

    .venv/bin/python bench/normalize.py [rows]

Generates ``rows`` (default 1,000,000) order lines (cached as Arrow IPC in the temp dir) with
padded CHAR codes, text numbers with thousands separators in two locales, mixed date formats,
control characters and a few mojibake values, then prints seconds per layer and rows/s for
`normalize` as a whole, on one core. CPU time is printed beside wall time because a shared
machine makes wall time noisy.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig, FieldOptions
from syncflow_core.normalize import (
    apply_mappings,
    clean_strings,
    coerce_types,
    normalize,
    parse_datetimes,
    parse_numbers,
    plan_fields,
)
from syncflow_core.rejects import with_row_ids

SOURCE_TYPES = {
    "line_no": "NUMBER(10,0)", "order_no": "CHAR(12)", "item_code": "CHAR(10)",
    "description": "VARCHAR2(200)", "qty": "NUMBER(12,3)", "price": "NUMBER(12,2)",
    "amount": "NUMBER(14,2)", "order_date": "DATE", "shipped_at": "TIMESTAMP", "status": "CHAR(1)",
}


def _s(a: np.ndarray) -> pa.Array:
    return pa.array(a).cast(pa.string())


def _pad(a: pa.Array, w: int, ch: str = "0") -> pa.Array:
    return pc.utf8_lpad(a, width=w, padding=ch)


def _grouped(n: np.ndarray, sep: str) -> pa.Array:
    """Integers with thousands separators, vectorized ('1,234,567')."""
    millions, rest = np.divmod(n, 1_000_000)
    thousands, units = np.divmod(rest, 1000)
    full = pc.binary_join_element_wise(_s(millions), _pad(_s(thousands), 3), _pad(_s(units), 3),
                                       sep)
    mid = pc.binary_join_element_wise(_s(thousands), _pad(_s(units), 3), sep)
    return pc.if_else(pa.array(millions > 0), full, pc.if_else(pa.array(thousands > 0), mid,
                                                              _s(units)))


def generate(rows: int, seed: int = 7) -> pa.Table:
    """Messy order lines, built with vectorized kernels (generation is not measured)."""
    rng = np.random.default_rng(seed)
    line_no = np.arange(1, rows + 1, dtype=np.int64)
    order_no = pc.utf8_rpad(pc.binary_join_element_wise(
        "SO-", _pad(_s(line_no // 5), 7), ""), width=12, padding=" ")
    item_code = pc.utf8_rpad(pc.binary_join_element_wise(
        "IT", _pad(_s(rng.integers(0, 99999, rows)), 5), ""), width=10, padding=" ")
    words = np.array(["Bolt M8", "Nut M8", "Washer", "Steel beam", "Cable 3m", "Pipe DN50"])
    desc = pa.array(words[rng.integers(0, len(words), rows)])
    # Sprinkle dirt: control characters, NBSP padding, mojibake.
    dirt = rng.random(rows)
    desc = pc.if_else(pa.array(dirt < 0.01), pc.binary_join_element_wise(desc, "\x07x", ""), desc)
    desc = pc.if_else(pa.array((dirt >= 0.01) & (dirt < 0.02)),
                      pc.binary_join_element_wise("\u00a0", desc, "\u00a0", ""), desc)
    desc = pc.if_else(pa.array(dirt >= 0.999), "Lieferung MÃ¼nchen", desc)
    qty_int = rng.integers(0, 5_000_000, rows)
    qty = pc.binary_join_element_wise(_grouped(qty_int, ","), _pad(_s(rng.integers(0, 999, rows)),
                                                                   3), ".")
    price_int = rng.integers(0, 2_000_000, rows)
    price = pc.binary_join_element_wise(_grouped(price_int, "."),
                                        _pad(_s(rng.integers(0, 99, rows)), 2), ",")
    price = pc.if_else(pa.array(rng.random(rows) < 0.1),
                       pc.replace_substring(price, ".", " "), price)  # '1 234,56'
    amount = pc.binary_join_element_wise(_grouped(rng.integers(0, 900_000, rows), ","),
                                         _pad(_s(rng.integers(0, 99, rows)), 2), ".")
    kind = rng.random(rows)
    amount = pc.if_else(pa.array(kind < 0.02), pc.binary_join_element_wise("(", amount, ")", ""),
                        amount)
    amount = pc.if_else(pa.array((kind >= 0.02) & (kind < 0.04)),
                        pc.binary_join_element_wise("€", amount, ""), amount)
    amount = pc.if_else(pa.array(kind > 0.9999), "n/a", amount)  # a few rejects
    days = rng.integers(0, 3 * 365, rows)
    base = np.datetime64("2022-01-01", "D") + days
    secs = rng.integers(0, 86400, rows)
    stamp = pa.array(base.astype("datetime64[s]") + secs.astype("timedelta64[s]"))
    iso = pc.strftime(stamp, format="%Y-%m-%d %H:%M:%S")
    de = pc.strftime(pa.array(base), format="%d.%m.%Y")
    ora = pc.utf8_upper(pc.strftime(pa.array(base), format="%d-%b-%y"))
    compact = pc.strftime(pa.array(base), format="%Y%m%d")
    fmt = rng.random(rows)
    order_date = pc.if_else(pa.array(fmt < 0.7), iso, pc.if_else(
        pa.array(fmt < 0.85), de, pc.if_else(pa.array(fmt < 0.95), ora, compact)))
    shipped = pc.strftime(pa.array(base.astype("datetime64[s]") + (secs + 86400).astype(
        "timedelta64[s]")), format="%Y-%m-%dT%H:%M:%S")
    status = pa.array(np.array(["O", "C", "X"])[rng.integers(0, 3, rows)])
    return pa.table({
        "line_no": line_no, "order_no": order_no, "item_code": item_code, "description": desc,
        "qty": qty, "price": price, "amount": amount, "order_date": order_date,
        "shipped_at": shipped, "status": status,
    })


ENTITY = EntityConfig(
    name="order_lines",
    source={"table": "ORDER_LINES"},
    business_key_fields=("line_no",),
    fields={"price": FieldOptions(locale="de_DE"),
            "order_date": FieldOptions(timezone="Europe/Berlin", day_first=True)},
)


def main() -> None:
    """Print seconds per layer and overall rows/s."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    pa.set_cpu_count(1)  # the budget is for one core
    cache = Path(tempfile.gettempdir()) / f"syncflow_bench_normalize_{rows}.arrow"
    if cache.exists():
        raw = pa.ipc.open_file(cache).read_all()
    else:
        t0 = time.perf_counter()
        raw = with_row_ids(generate(rows)).combine_chunks()
        print(f"generated {rows:,} rows in {time.perf_counter() - t0:.1f} s (cached in {cache})")
        with pa.ipc.new_file(cache, raw.schema) as w:
            w.write_table(raw)
    plans = plan_fields(raw.schema, ENTITY, SOURCE_TYPES)
    table = raw
    for name, layer in (("1 type_coercion", coerce_types), ("2 strings", clean_strings),
                        ("3 numbers", parse_numbers), ("4 datetimes", parse_datetimes)):
        t, c = time.perf_counter(), time.process_time()
        r = layer(table, ENTITY, plans=plans)
        print(f"layer {name:16s} {time.perf_counter() - t:6.3f} s wall "
              f"{time.process_time() - c:6.3f} s cpu  rejects {r.rejects.num_rows}")
        table = r.table
    t = time.perf_counter()
    r = apply_mappings(table, ENTITY)
    print(f"layer {'5 field_mapping':16s} {time.perf_counter() - t:6.3f} s")
    best = best_cpu = float("inf")
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        result = normalize(raw, ENTITY, SOURCE_TYPES)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    print(f"normalize(): {best:.3f} s wall ({best_cpu:.3f} s cpu) for {rows:,} rows = "
          f"{rows / best:,.0f} rows/s ({result.table.num_rows:,} kept, "
          f"{result.rejects.num_rows:,} rejected)")


if __name__ == "__main__":
    main()
