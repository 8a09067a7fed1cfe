"""Parent-child resolution over real identified rows (syncflow_core.identity.identify)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.config import SyncFlowConfig, parse_config
from syncflow_core.identity import KEY_HASH, identify
from syncflow_core.keycodec import loads_key
from syncflow_core.resolve import (
    MAX_ATTEMPTS,
    WAITING_SCHEMA,
    ResolveSplit,
    backoff_delay,
    is_exhausted,
    next_retry_at,
    parent_key_columns,
    rows_from_json,
    rows_to_json,
    split_by_parents,
)

NOW = datetime(2026, 1, 14, 20, 0, tzinfo=UTC)


def _src(table: str) -> dict[str, Any]:
    return {"connection": "erp", "table": table}


CFG: SyncFlowConfig = parse_config(
    {
        "sources": {"erp": {"kind": "sql", "url": "sqlite:///erp.sqlite"}},
        "target": {"url": "sqlite:///target.sqlite"},
        "entities": {
            "customers": {"source": _src("C"), "business_key_fields": ["customer_no"]},
            "items": {"source": _src("I"), "business_key_fields": ["item_no"]},
            "orders": {
                "source": _src("O"),
                "business_key_fields": ["order_no"],
                "parent_refs": [{"entity": "customers", "fields": {"customer_no": "customer_no"}}],
            },
            "order_lines": {
                "source": _src("L"),
                "business_key_fields": ["order_no", "line_no"],
                "parent_refs": [
                    {"entity": "orders", "fields": {"order_no": "order_no"}},
                    {"entity": "items", "fields": {"item_no": "item_no"}},
                ],
            },
            "deliveries": {
                "source": _src("D"),
                "business_key_fields": ["delivery_no"],
                "parent_refs": [
                    {"entity": "order_lines", "fields": {"ord": "order_no", "pos": "line_no"}},
                ],
            },
            "employees": {
                "source": _src("E"),
                "business_key_fields": ["emp_no"],
                "parent_refs": [
                    {"entity": "employees", "fields": {"manager_no": "emp_no"}, "required": False}
                ],
            },
        },
    }
)


def ident(entity: str, **columns: pa.Array) -> pa.Table:
    result = identify(pa.table(columns), CFG.entity(entity))
    assert result.rejects.num_rows == 0
    return result.table


class Target:
    """The caller's lookup: which key hashes each parent table holds (a real set, no mock)."""

    def __init__(self, **tables: pa.Table) -> None:
        self.keys = {name: set(t.column(KEY_HASH).to_pylist()) for name, t in tables.items()}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, entity: str, hashes: pa.Array) -> pa.Array:
        self.calls.append((entity, len(hashes)))
        held = self.keys.get(entity, set())
        return pa.array([h in held for h in hashes.to_pylist()], pa.bool_())


def split(rows: pa.Table, entity: str, target: Target) -> ResolveSplit:
    return split_by_parents(rows, CFG.entity(entity), target, now=NOW, run_id="run-1")


def col(t: pa.Table, name: str) -> list[Any]:
    return t.column(name).to_pylist()


def keys(t: pa.Table, name: str) -> set[Any]:
    return set(col(t, name))


CUSTOMERS = ident("customers", customer_no=pa.array(["C1", "C2", "C3"]))
ORDERS = ident(
    "orders",
    order_no=pa.array(["SO-1", "SO-2", "SO-3", "SO-4"]),
    customer_no=pa.array(["C1", "C2", "C9", "C1"]),
    total=pa.array([Decimal("10.50"), None, Decimal("-3.00"), Decimal("0")], pa.decimal128(12, 2)),
)


def test_parent_in_target_loads() -> None:
    target = Target(customers=CUSTOMERS)
    rows = ORDERS.filter(pc.is_in(ORDERS.column("customer_no"), pa.array(["C1", "C2"])))
    s = split(rows, "orders", target)
    assert s.loadable.equals(rows)
    assert s.waiting.num_rows == 0 and s.rejects.num_rows == 0
    assert target.calls == [("customers", 2)]  # asked once per distinct parent key


def test_missing_parent_waits_with_the_parents_own_key_hash() -> None:
    s = split(ORDERS, "orders", Target(customers=CUSTOMERS))
    assert col(s.loadable, "order_no") == ["SO-1", "SO-2", "SO-4"]
    assert s.loadable_mask.to_pylist() == [True, True, False, True]
    assert s.waiting_mask.to_pylist() == [False, False, True, False]
    assert s.waiting.schema == WAITING_SCHEMA
    (w,) = s.waiting.to_pylist()
    c9 = ident("customers", customer_no=pa.array(["C9"]))
    assert w["parent_key_hash"] == c9.column(KEY_HASH)[0].as_py()  # what C9 will hash to
    assert w["entity"] == "orders" and w["parent_entity"] == "customers"
    assert loads_key(w["parent_key"]) == ("C9",)
    assert w["key_hash"] == ORDERS.column(KEY_HASH)[2].as_py()
    assert w["bridge_ref"] == "orders[order_no=SO-3]"
    assert w["next_retry_at"] == NOW + timedelta(minutes=5)
    assert w["run_id"] == "run-1"
    assert json.loads(w["row_json"])["total"] == "-3.00"


def test_waiting_row_rebuilds_to_the_original_row() -> None:
    s = split(ORDERS, "orders", Target(customers=CUSTOMERS))
    rebuilt = rows_from_json(
        s.waiting.column("row_json"),
        ORDERS.schema.remove(ORDERS.schema.get_field_index("__sf_row")),
    )
    original = ORDERS.filter(s.waiting_mask).drop_columns(["__sf_row"])
    assert rebuilt.equals(original)
    # ... and resolving it again once the parent exists loads it.
    late = ident("customers", customer_no=pa.array(["C9"]))
    again = split(rebuilt, "orders", Target(customers=pa.concat_tables([CUSTOMERS, late])))
    assert again.loadable.num_rows == 1 and again.waiting.num_rows == 0


def test_required_null_reference_is_a_reject_naming_the_field() -> None:
    rows = ident(
        "orders",
        order_no=pa.array(["SO-1", "SO-2"]),
        customer_no=pa.array(["C1", None]),
    )
    s = split(rows, "orders", Target(customers=CUSTOMERS))
    assert col(s.loadable, "order_no") == ["SO-1"]
    assert s.waiting.num_rows == 0
    (r,) = s.rejects.to_pylist()
    assert r["__sf_row"] == 1 and r["stage"] == "resolve"
    assert r["error_code"] == "null_parent_reference"
    assert "orders[order_no=SO-2]" in r["message"] and "'customer_no'" in r["message"]
    assert s.waiting_mask.to_pylist() == [False, False]


def test_several_parents_wait_for_all() -> None:
    orders = ident("orders", order_no=pa.array(["SO-1"]), customer_no=pa.array(["C1"]))
    items = ident("items", item_no=pa.array(["A", "B"]))
    lines = ident(
        "order_lines",
        order_no=pa.array(["SO-1", "SO-1", "SO-2", "SO-3"]),
        line_no=pa.array([1, 2, 1, 1], pa.int64()),
        item_no=pa.array(["A", "Z", "B", "Z"]),
    )
    s = split(lines, "order_lines", Target(orders=orders, items=items))
    assert col(s.loadable, "line_no") == [1] and col(s.loadable, "order_no") == ["SO-1"]
    assert s.waiting_mask.to_pylist() == [False, True, True, True]
    waits = sorted(
        (loads_key(w["parent_key"]), w["parent_entity"], w["key_hash"])
        for w in s.waiting.to_pylist()
    )
    h = col(lines, KEY_HASH)
    assert waits == [
        (("SO-2",), "orders", h[2]),
        (("SO-3",), "orders", h[3]),
        (("Z",), "items", h[1]),
        (("Z",), "items", h[3]),
    ]
    assert parent_key_columns(
        CFG.entity("order_lines"), CFG.entity("order_lines").parent_refs[0]
    ) == ["order_no"]


def test_composite_parent_key_hash_matches_the_parents_identity() -> None:
    lines = ident(
        "order_lines",
        order_no=pa.array(["SO-1", "SO-1"]),
        line_no=pa.array([10, 20], pa.int64()),
        item_no=pa.array(["A", "A"]),
    )
    deliveries = ident(
        "deliveries",
        delivery_no=pa.array(["D1", "D2"]),
        ord=pa.array(["SO-1", "SO-1"]),
        pos=pa.array([10, 30], pa.int64()),
    )
    s = split(deliveries, "deliveries", Target(order_lines=lines))
    assert col(s.loadable, "delivery_no") == ["D1"]
    (w,) = s.waiting.to_pylist()
    assert loads_key(w["parent_key"]) == ("SO-1", 30)
    future = ident(
        "order_lines", order_no=pa.array(["SO-1"]), line_no=pa.array([30]), item_no=pa.array(["A"])
    )
    assert w["parent_key_hash"] == future.column(KEY_HASH)[0].as_py()


def test_parent_key_types_cast_the_child_columns() -> None:
    # The child's key is text, the parent's an integer: different type tags, never equal...
    lines = ident(
        "order_lines", order_no=pa.array(["SO-1"]), line_no=pa.array([30]), item_no=pa.array(["A"])
    )
    deliveries = ident(
        "deliveries", delivery_no=pa.array(["D1"]), ord=pa.array(["SO-1"]), pos=pa.array(["30"])
    )
    assert split(deliveries, "deliveries", Target(order_lines=lines)).loadable.num_rows == 0
    # ... unless cast to the parent's key types.
    types = {"order_lines": pa.schema([("order_no", pa.string()), ("line_no", pa.int64())])}
    s = split_by_parents(
        deliveries,
        CFG.entity("deliveries"),
        Target(order_lines=lines),
        now=NOW,
        parent_key_types=types,
    )
    assert s.loadable.num_rows == 1
    bad = ident(
        "deliveries", delivery_no=pa.array(["D1"]), ord=pa.array(["SO-1"]), pos=pa.array(["x30"])
    )
    with pytest.raises(ValueError, match="'pos'"):
        split_by_parents(bad, CFG.entity("deliveries"), Target(), parent_key_types=types)


EMPLOYEES = ident(
    "employees",
    emp_no=pa.array([1, 2, 3, 4, 5, 6, 7], pa.int64()),
    manager_no=pa.array([None, 1, 2, 99, 4, 7, 6], pa.int64()),
    name=pa.array(["Boss", "Anna", "Jörg", "Orphan", "Under orphan", "Ping", "Pong"]),
)


def test_self_reference_resolves_inside_one_batch() -> None:
    s = split(EMPLOYEES, "employees", Target())
    # The top (null manager, not required) and its chain load together; 6 and 7 manage each
    # other and load together; 4's manager 99 is nowhere, so 4 and 5 (under 4) wait.
    assert col(s.loadable, "emp_no") == [1, 2, 3, 6, 7]
    waits = {loads_key(w["parent_key"]): w for w in s.waiting.to_pylist()}
    assert set(waits) == {(99,), (4,)}
    assert waits[(4,)]["parent_key_hash"] == col(EMPLOYEES, KEY_HASH)[3]
    assert waits[(4,)]["key_hash"] == col(EMPLOYEES, KEY_HASH)[4]
    assert s.rejects.num_rows == 0


def test_self_reference_manager_in_target() -> None:
    boss = ident(
        "employees",
        emp_no=pa.array([99], pa.int64()),
        manager_no=pa.array([None], pa.int64()),
        name=pa.array(["Old boss"]),
    )
    s = split(EMPLOYEES, "employees", Target(employees=boss))
    assert s.loadable.num_rows == EMPLOYEES.num_rows and s.waiting.num_rows == 0


def test_empty_batch_and_entity_without_parents() -> None:
    empty = ORDERS.slice(0, 0)
    s = split(empty, "orders", Target())
    assert s.loadable.num_rows == 0 and s.waiting.num_rows == 0
    s = split(CUSTOMERS, "customers", Target())
    assert s.loadable.equals(CUSTOMERS)


def test_rows_must_be_identified() -> None:
    with pytest.raises(ValueError, match="_bridge_key_hash"):
        split(pa.table({"order_no": ["SO-1"], "customer_no": ["C1"]}), "orders", Target())


# -------------------------------------------------------------------------------- backoff


def test_backoff_schedule_is_documented_monotonic_and_capped() -> None:
    delays = [backoff_delay(a) for a in range(MAX_ATTEMPTS)]
    assert delays == [timedelta(minutes=m) for m in (5, 20, 80, 320, 1280)]
    longer = [backoff_delay(a) for a in range(200)]
    assert all(a <= b for a, b in itertools.pairwise(longer))
    assert max(longer) == timedelta(hours=24) == backoff_delay(10**6)
    assert backoff_delay(3, factor=2) == timedelta(minutes=40)
    assert next_retry_at(0, NOW) == NOW + timedelta(minutes=5)
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert next_retry_at(1, berlin) == NOW + timedelta(minutes=20)
    assert next_retry_at(1, berlin).tzinfo is UTC
    assert [is_exhausted(a) for a in range(7)] == [False] * 5 + [True] * 2
    with pytest.raises(ValueError, match="aware"):
        next_retry_at(0, datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        backoff_delay(-1)


# ------------------------------------------------------------------------------- row JSON


def _same(a: Iterable[Any], b: Iterable[Any]) -> bool:
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


def test_row_json_round_trip_keeps_types() -> None:
    t = pa.table(
        {
            "s": pa.array(['a|b "q" \\ ü', "", None]),
            "i": pa.array([2**62, -1, None], pa.int64()),
            "d": pa.array([Decimal("10.50"), Decimal("-0.01"), None], pa.decimal128(12, 2)),
            "big": pa.array(
                [Decimal("12345678901234567890.123456789"), None, Decimal(0)], pa.decimal128(38, 9)
            ),
            "f": pa.array([0.1, math.nan, -math.inf], pa.float64()),
            "ts": pa.array(
                [
                    datetime(2024, 3, 31, 1, 30, 0, 123456, tzinfo=UTC),
                    None,
                    datetime(1970, 1, 1, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "naive": pa.array(
                [datetime(2024, 1, 1, 12), None, datetime(2000, 2, 29)], pa.timestamp("us")
            ),
            "day": pa.array([date(2024, 2, 29), None, date(1, 1, 1)], pa.date32()),
            "at": pa.array([time(23, 59, 59, 999999), None, time(0)], pa.time64("us")),
            "b": pa.array([True, False, None]),
            "x": pa.array([b"\x00\xff", b"", None], pa.binary()),
            "__sf_row": pa.array([0, 1, 2], pa.int64()),
        }
    )
    js = rows_to_json(t)
    assert all(json.loads(s) is not None for s in js.to_pylist())  # strict JSON (no NaN token)
    assert "__sf_row" not in js[0].as_py()
    schema = t.drop_columns(["__sf_row"]).schema
    back = rows_from_json(js, schema)
    assert back.schema == schema
    for name in schema.names:
        assert _same(back.column(name).to_pylist(), t.column(name).to_pylist()), name
    assert str(back.column("d")[0].as_py()) == "10.50"


def test_row_json_tolerates_schema_evolution() -> None:
    js = rows_to_json(pa.table({"a": [1], "gone": ["x"]}))
    back = rows_from_json(js, pa.schema([("a", pa.int64()), ("new", pa.string())]))
    assert back.to_pylist() == [{"a": 1, "new": None}]
    with pytest.raises(ValueError, match="'a'"):
        rows_from_json(rows_to_json(pa.table({"a": ["x"]})), pa.schema([("a", pa.date32())]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text()),
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            st.one_of(
                st.none(),
                st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False),
            ),
            st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
            st.one_of(st.none(), st.floats()),
        ),
        max_size=8,
    )
)
def test_property_row_json_round_trip(rows: list[tuple[Any, ...]]) -> None:
    schema = pa.schema(
        [
            ("s", pa.string()),
            ("i", pa.int64()),
            ("d", pa.decimal128(20, 3)),
            ("t", pa.timestamp("us", tz="UTC")),
            ("f", pa.float64()),
        ]
    )
    t = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema=schema)
    back = rows_from_json(rows_to_json(t), schema)
    for name in schema.names:
        assert _same(back.column(name).to_pylist(), t.column(name).to_pylist()), name
