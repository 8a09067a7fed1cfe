"""Benchmark of the core: five normalization layers + identity + delta on 1M messy rows.

    .venv/bin/python -m bench.core [--rows 1000000] [--workers 2]

Generates (untimed) order lines as an ERP extract sends them: text numbers with thousands
separators in two locales, mixed date formats, padded codes, control characters, some mojibake,
a composite key (order_no, line_no); and the stored identities of a target that holds the same
rows with 10 % changed data, 1 % of the incoming keys missing (inserts) and 1 % extra keys
(deletes). Then times `prepare_parallel` (normalize + identify on ``--workers`` processes) and
`classify`, and prints rows/s, seconds per stage and peak RSS (this process + largest child).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syncflow_core.config import EntityConfig
from syncflow_core.delta import classify
from syncflow_core.hexdigest import hash_hex
from syncflow_core.identity import DATA_HASH, DELETED_AT, KEY_HASH, ROWVERSION
from syncflow_core.parallel import (
    DEFAULT_PART_ROWS,
    map_tables,
    prepare_parallel,
    shutdown_pool,
)

ENTITY = EntityConfig.model_validate(
    {
        "name": "order_lines",
        "source": {"table": "order_lines"},
        "business_key_fields": ["order_no", "line_no"],
        "rowversion_field": "row_version",
        "delta_strategy": "hash",
        "fields": {
            "qty": {"locale": "en_US"},
            "unit_price": {"locale": "de_DE"},
            "order_date": {"day_first": True},
        },
    }
)

SOURCE_TYPES = {
    "order_no": "VARCHAR2(20)",
    "line_no": "NUMBER(6)",
    "item_code": "VARCHAR2(20)",
    "description": "VARCHAR2(200)",
    "qty": "NUMBER(12,2)",
    "unit_price": "NUMBER(14,4)",
    "order_date": "DATE",
    "warehouse": "CHAR(6)",
    "row_version": "NUMBER(19)",
}

WORDS = np.array(["Widget", "Bolt", "Nut", "Gear", "Panel", "Müller", "Straße", "Käse",
                  "Schraube", "Bracket", "Café", "Ventil"])
MOJIBAKE = np.array(["MÃ¼ller GmbH", "StraÃŸe 5", "CafÃ© crÃ¨me", "KÃ¤se"])


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(object), pa.string())


def generate(n: int, seed: int = 7) -> pa.Table:
    """A raw extract of ``n`` messy order lines (all columns text, like a CSV/ERP dump)."""
    rng = np.random.default_rng(seed)
    order = np.arange(n) // 4 + 100_000
    line = np.arange(n) % 4 + 1
    order_no = np.char.add("SO-", order.astype(str))
    pad = rng.random(n) < 0.2
    order_no = np.where(pad, np.char.add(np.char.add("  ", order_no), " "), order_no)
    line_no = np.where(rng.random(n) < 0.1, np.char.add(" 0", line.astype(str)), line.astype(str))
    item = np.char.add("ITEM-", np.char.zfill((rng.integers(0, 50_000, n)).astype(str), 5))
    item = np.where(rng.random(n) < 0.3, np.char.add(np.char.add("   ", item), "  "), item)
    desc = np.char.add(np.char.add(WORDS[rng.integers(0, len(WORDS), n)], " "),
                       WORDS[rng.integers(0, len(WORDS), n)])
    ctrl = rng.random(n) < 0.02
    desc = np.where(ctrl, np.char.add(desc, "\x07\x00"), desc)
    moji = rng.random(n) < 0.01
    desc = np.where(moji, MOJIBAKE[rng.integers(0, len(MOJIBAKE), n)], desc)
    qty_cents = rng.integers(1, 500_000, n)
    q_int, q_frac = qty_cents // 100, qty_cents % 100
    qty = np.char.add(np.char.add(np.char.mod("%d", q_int), "."),
                      np.char.zfill(q_frac.astype(str), 2))
    big = q_int >= 1000
    qty_thousands = np.char.add(
        np.char.add(np.char.mod("%d", q_int // 1000), ","),
        np.char.add(np.char.zfill((q_int % 1000).astype(str), 3),
                    np.char.add(".", np.char.zfill(q_frac.astype(str), 2))),
    )
    qty = np.where(big, qty_thousands, qty)
    p = rng.integers(1, 10_000_000, n)
    p_int, p_frac = p // 10_000, p % 10_000
    price = np.char.add(np.char.add(np.char.mod("%d", p_int), ","),
                        np.char.zfill(p_frac.astype(str), 4))
    pbig = p_int >= 1000
    price_thousands = np.char.add(
        np.char.add(np.char.mod("%d", p_int // 1000), "."),
        np.char.add(np.char.zfill((p_int % 1000).astype(str), 3),
                    np.char.add(",", np.char.zfill(p_frac.astype(str), 4))),
    )
    price = np.where(pbig, price_thousands, price)
    days = rng.integers(0, 3650, n)
    dates = np.datetime64("2015-01-01") + days.astype("timedelta64[D]")
    iso = np.datetime_as_string(dates, unit="D")
    yyyy = np.array([s[:4] for s in iso.tolist()])
    mm = np.array([s[5:7] for s in iso.tolist()])
    dd = np.array([s[8:10] for s in iso.tolist()])
    german = np.char.add(np.char.add(np.char.add(np.char.add(dd, "."), mm), "."), yyyy)
    slash = np.char.add(np.char.add(np.char.add(np.char.add(dd, "/"), mm), "/"), yyyy)
    compact = np.char.add(np.char.add(yyyy, mm), dd)
    kind = rng.integers(0, 4, n)
    order_date = np.select([kind == 0, kind == 1, kind == 2], [iso, german, slash], compact)
    wh = np.array(["WH1   ", "WH2   ", " WH3  ", "HUB-A "])[rng.integers(0, 4, n)]
    rv = rng.integers(1, 10**12, n)
    return pa.table(
        {
            "order_no": _text(order_no),
            "line_no": _text(line_no),
            "item_code": _text(item),
            "description": _text(desc),
            "qty": _text(qty),
            "unit_price": _text(price),
            "order_date": _text(order_date),
            "warehouse": _text(wh),
            "row_version": _text(rv.astype(str)),
        }
    )


def stored_identities(identified: pa.Table, seed: int = 11) -> pa.Table:
    """The target's identities: same rows, 10 % changed data, 1 % missing, 1 % extra keys."""
    rng = np.random.default_rng(seed)
    n = identified.num_rows
    keep = rng.random(n) >= 0.01  # 1 % of incoming keys are new
    keys = identified.column(KEY_HASH).filter(pa.array(keep))
    data = identified.column(DATA_HASH).filter(pa.array(keep)).combine_chunks()
    changed = rng.random(len(data)) < 0.10
    fake = hash_hex(pa.array(np.char.add("changed-", np.arange(len(data)).astype(str))
                             .astype(object), pa.string()), "blake3_128").combine_chunks()
    data = pc.if_else(pa.array(changed), fake, data)
    extra = n // 100  # 1 % of stored keys are gone from the source
    extra_keys = hash_hex(pa.array(np.char.add("gone-", np.arange(extra).astype(str))
                                   .astype(object), pa.string()), "xxh3_128").combine_chunks()
    extra_data = hash_hex(pa.array(np.char.add("d-", np.arange(extra).astype(str))
                                   .astype(object), pa.string()), "blake3_128").combine_chunks()
    all_keys = pa.concat_arrays([keys.combine_chunks(), extra_keys])
    all_data = pa.concat_arrays([data, extra_data])
    order = rng.permutation(len(all_keys))  # a target returns rows in its own order
    total = len(all_keys)
    return pa.table(
        {
            KEY_HASH: all_keys.take(pa.array(order)),
            DATA_HASH: all_data.take(pa.array(order)),
            ROWVERSION: pa.nulls(total, pa.int64()),
            DELETED_AT: pa.nulls(total, pa.timestamp("us", "UTC")),
        }
    )


def _vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    # Hand the generator's freed memory back to the OS first (glibc and Arrow's allocator keep
    # it otherwise), then "5" resets VmHWM to the current RSS (Linux >= 4.0): data generation
    # is not measured, the data it made (raw rows, stored identities) is.
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def _noop(part: pa.Table) -> int:
    return part.num_rows


def _stage_breakdown(raw: pa.Table, stored: pa.Table) -> dict[str, float]:
    """Seconds of each stage run serially in this process (where the time goes)."""
    from syncflow_core.identity import identify
    from syncflow_core.normalize import (
        apply_mappings,
        clean_strings,
        coerce_types,
        parse_datetimes,
        parse_numbers,
        plan_fields,
    )
    from syncflow_core.rejects import with_row_ids

    out: dict[str, float] = {}
    t = time.perf_counter()
    table = with_row_ids(raw).combine_chunks()
    plans = plan_fields(table.schema, ENTITY, SOURCE_TYPES)
    for name, layer in [("1 type_coercion", coerce_types), ("2 strings", clean_strings),
                        ("3 numbers", parse_numbers), ("4 datetimes", parse_datetimes)]:
        table = layer(table, ENTITY, plans=plans).table
        out[name] = time.perf_counter() - t
        t = time.perf_counter()
    table = apply_mappings(table, ENTITY).table
    out["5 field_mapping"] = time.perf_counter() - t
    t = time.perf_counter()
    table = identify(table, ENTITY).table
    out["identity"] = time.perf_counter() - t
    t = time.perf_counter()
    classify(table, stored, "hash", rowversion_field=ENTITY.rowversion_field)
    out["delta"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs (best is reported)")
    ap.add_argument("--breakdown", action="store_true", help="also time each stage serially")
    ap.add_argument("--part-rows", type=int, default=DEFAULT_PART_ROWS,
                    help="rows per part handed to a worker")
    args = ap.parse_args()

    # Fork the workers while this process is small, so they do not inherit the test data.
    map_tables(_noop, pa.table({"x": list(range(4))}), workers=args.workers, min_rows=0)
    t0 = time.perf_counter()
    raw = generate(args.rows)
    print(f"generated {raw.num_rows:,} raw rows in {time.perf_counter() - t0:.1f} s (untimed)")
    stored = stored_identities(prepare_parallel(raw, ENTITY, SOURCE_TYPES, workers=args.workers,
                                                part_rows=args.part_rows).table)
    _reset_peak()

    best: dict[str, float] | None = None
    counts = ""
    for _ in range(args.repeat):
        times: dict[str, float] = {}
        t = time.perf_counter()
        prepared = prepare_parallel(raw, ENTITY, SOURCE_TYPES, workers=args.workers,
                                    part_rows=args.part_rows)
        times["normalize+identity (parallel)"] = time.perf_counter() - t
        t = time.perf_counter()
        delta = classify(prepared.table, stored, "hash", rowversion_field=ENTITY.rowversion_field)
        times["delta (classify)"] = time.perf_counter() - t
        times["total"] = sum(times.values())
        if best is None or times["total"] < best["total"]:
            best = times
        counts = (f"inserts: {delta.inserts.num_rows:,}, updates: {delta.updates.num_rows:,}, "
                  f"unchanged: {delta.unchanged:,}, deletes: {len(delta.deletes):,}, "
                  f"duplicate rejects: {delta.rejects.num_rows:,}")
        del prepared, delta  # a sync holds one batch at a time, not the previous one's delta
    assert best is not None
    from syncflow_core import parallel

    pool = parallel._pool
    worker_pids = list(pool._processes) if pool is not None else []
    main_mb = _vm_hwm_mb()
    worker_mb = [_vm_hwm_mb(pid) for pid in worker_pids]
    print(f"rows: {args.rows:,}, workers: {args.workers}")
    for stage, secs in best.items():
        print(f"  {stage:32s} {secs:7.3f} s")
    print(f"core throughput: {args.rows / best['total']:,.0f} rows/s")
    print(counts)
    print(f"peak RSS during the timed runs: main {main_mb:,.0f} MB, workers "
          f"{', '.join(f'{m:,.0f}' for m in worker_mb)} MB, sum {main_mb + sum(worker_mb):,.0f} MB")
    if args.breakdown:
        print("serial breakdown (one process, whole table):")
        for stage, secs in _stage_breakdown(raw, stored).items():
            print(f"  {stage:32s} {secs:7.3f} s  ({args.rows / secs:,.0f} rows/s)")
    shutdown_pool()


if __name__ == "__main__":
    main()
