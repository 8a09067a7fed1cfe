"""Identity: the canonical encoding is a persisted contract, so it is pinned three ways:
golden vectors, hand-written encodings checked against the hash libraries directly, and
hypothesis properties (order, null columns, separators, chunking)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import blake3
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncflow_core.config import EntityConfig
from syncflow_core.errors import ConfigError
from syncflow_core.identity import (
    BRIDGE_COLUMNS,
    DATA_HASH,
    KEY_HASH,
    REF,
    ROWVERSION,
    data_fields,
    data_hashes,
    data_inputs,
    encode_column,
    identify,
    key_hashes,
    key_inputs,
)
from syncflow_core.rejects import ROW_ID
from tests.core.golden.identity_cases import build_table

GOLDEN = Path(__file__).parent / "golden" / "identity_v1.json"


def entity(
    bk: tuple[str, ...] = ("code",), rv: str | None = None, name: str = "items"
) -> EntityConfig:
    return EntityConfig(
        name=name, source={"table": name}, business_key_fields=bk, rowversion_field=rv
    )


def xxh(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(text.encode())


def b3(text: str) -> str:
    return blake3.blake3(text.encode()).hexdigest(16)


# --- golden vectors ---------------------------------------------------------------------


def test_golden_vectors_still_hash_the_same() -> None:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert doc["encoding_version"] == 1
    ent = EntityConfig(source={"table": "x"}, **doc["entity"])
    result = identify(build_table(doc["rows"], doc["schema"]), ent)
    out = result.table
    keys = key_inputs(out, ent.business_key_fields).to_pylist()
    datas = data_inputs(out, data_fields(out.column_names, ent)).to_pylist()
    got = [
        {
            "row": out.column(ROW_ID)[i].as_py(),
            "key_input": keys[i],
            "key_hash": out.column(KEY_HASH)[i].as_py(),
            "data_input": datas[i],
            "data_hash": out.column(DATA_HASH)[i].as_py(),
            "rowversion": out.column(ROWVERSION)[i].as_py(),
            "ref": out.column(REF)[i].as_py(),
        }
        for i in range(out.num_rows)
    ]
    assert got == doc["expected"]
    assert result.rejects.to_pylist() == doc["rejects"]


def test_golden_hashes_are_the_libraries_hashes_of_the_documented_inputs() -> None:
    # Independent of the Arrow hashing loop: hash the frozen input strings directly.
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert len(doc["expected"]) >= 18
    for row in doc["expected"]:
        assert xxh(row["key_input"]) == row["key_hash"]
        assert b3(row["data_input"]) == row["data_hash"]


def test_hand_written_encoding_of_a_composite_key_and_its_data() -> None:
    t = pa.table(
        {
            "order_no": ["SO-1001"],
            "line_no": pa.array([3], pa.int32()),
            "amount": pa.array([Decimal("10.50")], pa.decimal128(10, 2)),
            "shipped": pa.array([datetime(2024, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))],
                                pa.timestamp("s", "Europe/Berlin")),
            "rv": [7],
        }
    )
    out = identify(t, entity(("order_no", "line_no"), rv="rv", name="order_lines")).table
    assert out.column(KEY_HASH).to_pylist() == [xxh("s:SO-1001|i:3")]
    assert out.column(DATA_HASH).to_pylist() == [
        b3("amount=n:10.5|shipped=t:2024-01-31T12:00:00.000000Z")
    ]
    assert out.column(REF).to_pylist() == ["order_lines[order_no=SO-1001,line_no=3]"]
    assert out.column(ROWVERSION).to_pylist() == [7]


# --- canonical text per type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (pa.array([Decimal("10.50"), Decimal("-0.00"), Decimal("10.00"), Decimal("-3.25"), None],
                  pa.decimal128(8, 2)), ["10.5", "0", "10", "-3.25", None]),
        (pa.array([Decimal("0E-12"), Decimal("1E-10"), Decimal("-0.000000500000")],
                  pa.decimal128(20, 12)), ["0", "0.0000000001", "-0.0000005"]),
        (pa.array([Decimal("12300")], pa.decimal128(9, 0)), ["12300"]),
        (pa.array([0.1, -0.0, 1.0, 1e20, float("nan")]), ["0.1", "0", "1", "1e+20", "nan"]),
        (pa.array([1, -2, None], pa.int8()), ["1", "-2", None]),
        (pa.array([2**64 - 1], pa.uint64()), ["18446744073709551615"]),
        (pa.array([True, False, None]), ["true", "false", None]),
        (pa.array([date(2024, 2, 29)]), ["2024-02-29"]),
        (pa.array([datetime(2024, 1, 1, 0, 0, 0, 5)], pa.timestamp("us")),
         ["2024-01-01T00:00:00.000005Z"]),
        (pa.array([datetime(2024, 7, 1, 2, 0, tzinfo=UTC)], pa.timestamp("ms", "America/New_York")),
         ["2024-07-01T02:00:00.000000Z"]),
        (pa.array([b"\x00\xab", b"", None]), ["00ab", "", None]),
        (pa.array([b"\x01\x02"], pa.binary(2)), ["0102"]),
        (pa.array(["e\u0301", "ok"]), ["e\u0301", "ok"]),
        (pa.array(["a", "b", "a"]).dictionary_encode(), ["a", "b", "a"]),
        (pa.nulls(2), [None, None]),
    ],
)
def test_encode_column_gives_canonical_text(arr: pa.Array, expected: list[Any]) -> None:
    assert encode_column(arr).to_pylist() == expected


def test_decimals_of_different_scale_but_equal_value_hash_equal() -> None:
    a = pa.table({"code": ["x"], "amount": pa.array([Decimal("10.5")], pa.decimal128(10, 1))})
    b = pa.table({"code": ["x"], "amount": pa.array([Decimal("10.5000")], pa.decimal128(18, 4))})
    ha = identify(a, entity()).table.column(DATA_HASH)
    hb = identify(b, entity()).table.column(DATA_HASH)
    assert ha.to_pylist() == hb.to_pylist()


def test_a_type_without_canonical_text_is_a_clear_error() -> None:
    t = pa.table({"code": ["x"], "tags": pa.array([["a"]], pa.list_(pa.string()))})
    with pytest.raises(TypeError, match="column 'tags'"):
        identify(t, entity())


# --- identify() behaviour ----------------------------------------------------------------


def test_null_business_key_is_a_reject_naming_the_field() -> None:
    t = pa.table({"order_no": ["A", None, "C"], "line_no": [1, 2, None], "x": [1, 2, 3]})
    r = identify(t, entity(("order_no", "line_no")))
    assert r.table.column("order_no").to_pylist() == ["A"]
    assert r.rejects.column(ROW_ID).to_pylist() == [1, 2]
    assert set(r.rejects.column("stage").to_pylist()) == {"identity"}
    assert set(r.rejects.column("error_code").to_pylist()) == {"null_business_key"}
    assert r.rejects.column("message").to_pylist() == [
        "null business key field: 'order_no'",
        "null business key field: 'line_no'",
    ]


def test_keeps_row_ids_and_replaces_stale_bridge_columns() -> None:
    t = pa.table({"code": ["a", "b"], ROW_ID: pa.array([10, 11], pa.int64()),
                  KEY_HASH: ["old", "old"]})
    out = identify(t, entity()).table
    assert out.column(ROW_ID).to_pylist() == [10, 11]
    assert out.column(KEY_HASH).to_pylist() == [xxh("s:a"), xxh("s:b")]
    assert out.column_names.count(KEY_HASH) == 1


def test_missing_key_column_names_entity_and_field() -> None:
    with pytest.raises(ConfigError, match="entity 'items': field 'code'"):
        identify(pa.table({"other": [1]}), entity())


def test_data_hash_ignores_key_rowversion_and_bridge_columns() -> None:
    ent = entity(rv="rv")
    a = pa.table({"code": ["a"], "rv": [1], "price": [5], "_bridge_batch_id": ["r1"]})
    b = pa.table({"code": ["zz"], "rv": [99], "price": [5], "_bridge_batch_id": ["r2"]})
    def h(t: pa.Table) -> list[str]:
        return identify(t, ent).table.column(DATA_HASH).to_pylist()

    assert h(a) == h(b)
    assert h(a) != h(a.set_column(2, "price", pa.array([6])))


def test_rowversion_keeps_int64_or_string_and_is_null_string_without_one() -> None:
    ints = identify(pa.table({"code": ["a"], "rv": pa.array([5], pa.int32())}), entity(rv="rv"))
    assert ints.table.schema.field(ROWVERSION).type == pa.int64()
    text = identify(pa.table({"code": ["a"], "rv": ["0x0A"]}), entity(rv="rv"))
    assert text.table.column(ROWVERSION).to_pylist() == ["0x0A"]
    stamp = identify(
        pa.table({"code": ["a"], "rv": pa.array([datetime(2024, 1, 1)], pa.timestamp("us"))}),
        entity(rv="rv"),
    )
    assert stamp.table.column(ROWVERSION).to_pylist() == ["2024-01-01T00:00:00.000000Z"]
    none = identify(pa.table({"code": ["a"]}), entity())
    assert none.table.schema.field(ROWVERSION).type == pa.string()
    assert none.table.column(ROWVERSION).to_pylist() == [None]


def test_child_columns_hash_like_the_parent_key() -> None:
    parents = identify(pa.table({"order_no": ["SO-1", "SO-2"]}), entity(("order_no",))).table
    children = pa.table({"parent_order": ["SO-2", None, "SO-1"], "line": [1, 2, 3]})
    hashes = key_hashes(children, ["parent_order"]).to_pylist()
    own = parents.column(KEY_HASH).to_pylist()
    assert hashes == [own[1], None, own[0]]


def test_empty_batch_gets_empty_bridge_columns() -> None:
    t = pa.table({"code": pa.array([], pa.string()), "x": pa.array([], pa.int64())})
    r = identify(t, entity())
    assert r.table.num_rows == 0
    assert set(BRIDGE_COLUMNS[:4]) <= set(r.table.column_names)
    assert r.rejects.num_rows == 0


# --- properties ---------------------------------------------------------------------------

SEP_TEXT = st.text(alphabet=st.sampled_from(["a", "b", "|", "\\", "=", ":", "é"]), max_size=6)

rows_strategy = st.lists(
    st.tuples(
        st.text(max_size=8),
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        st.one_of(st.none(), st.decimals(min_value=-10**6, max_value=10**6, places=3)),
        st.one_of(st.none(), st.floats(allow_nan=False, width=64)),
        st.one_of(st.none(), SEP_TEXT),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda r: r[0],
)


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "code": pa.array(cols[0], pa.string()),
            "qty": pa.array(cols[1], pa.int64()),
            "amount": pa.array(cols[2], pa.decimal128(12, 3)),
            "ratio": pa.array(cols[3], pa.float64()),
            "note": pa.array(cols[4], pa.string()),
            "flag": pa.array(cols[5], pa.bool_()),
        }
    )


def _hashes(t: pa.Table) -> tuple[list[str], list[str]]:
    out = identify(t, entity()).table
    return out.column(KEY_HASH).to_pylist(), out.column(DATA_HASH).to_pylist()


@given(rows_strategy, st.randoms())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_column_order_does_not_change_hashes(rows: list[tuple[Any, ...]], rnd: Any) -> None:
    t = _table(rows)
    names = t.column_names[:]
    rnd.shuffle(names)
    assert _hashes(t) == _hashes(t.select(names))


@given(rows_strategy, st.sampled_from([pa.string(), pa.int64(), pa.null(), pa.decimal128(5, 2)]))
@settings(max_examples=40, deadline=None)
def test_an_all_null_column_changes_no_hash(
    rows: list[tuple[Any, ...]], t_new: pa.DataType
) -> None:
    t = _table(rows)
    wider = t.append_column("added_later", pa.nulls(t.num_rows, t_new))
    assert _hashes(t) == _hashes(wider)


@given(st.tuples(SEP_TEXT, SEP_TEXT), st.tuples(SEP_TEXT, SEP_TEXT))
@settings(max_examples=300, deadline=None)
def test_separator_characters_cannot_make_two_keys_collide(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    t = pa.table({"k1": [a[0], b[0]], "k2": [a[1], b[1]]})
    inputs = key_inputs(t, ["k1", "k2"]).to_pylist()
    hashes = key_hashes(t, ["k1", "k2"]).to_pylist()
    assert (inputs[0] == inputs[1]) == (a == b)
    assert (hashes[0] == hashes[1]) == (a == b)


@given(st.dictionaries(st.sampled_from(["x", "x|y", "y", "x=", "x\\"]), SEP_TEXT, min_size=1))
@settings(max_examples=200, deadline=None)
def test_data_input_is_unambiguous_even_with_odd_column_names(values: dict[str, str]) -> None:
    # Split on unescaped '|' and '=' must give back exactly the (name, tagged value) pairs.
    t = pa.table({k: [v] for k, v in values.items()})
    text = data_inputs(t, list(values)).to_pylist()[0]
    pairs, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == "|":
            pairs.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    pairs.append(cur)

    def unescape(s: str) -> str:
        out, j = "", 0
        while j < len(s):
            if s[j] == "\\":
                out += s[j + 1]
                j += 2
            else:
                out += s[j]
                j += 1
        return out

    decoded = {}
    for p in pairs:
        j = 0
        while p[j] != "=" or (j and p[j - 1] == "\\" and not p[: j - 1].endswith("\\")):
            j += 1
        decoded[unescape(p[:j])] = unescape(p[j + 1 :].removeprefix("s:"))
    assert decoded == values


@given(rows_strategy, st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_chunking_does_not_change_hashes(rows: list[tuple[Any, ...]], parts: int) -> None:
    t = _table(rows)
    size = max(1, t.num_rows // parts)
    chunked = pa.concat_tables([t.slice(i, size) for i in range(0, t.num_rows, size)])
    assert _hashes(t) == _hashes(chunked)
    # ... and hashing one row alone gives that row's hash in the batch.
    keys, datas = _hashes(t)
    last = t.num_rows - 1
    assert _hashes(t.slice(last, 1)) == ([keys[last]], [datas[last]])


@given(rows_strategy, st.data())
@settings(max_examples=30, deadline=None)
def test_a_null_key_is_always_a_reject(rows: list[tuple[Any, ...]], data: Any) -> None:
    t = _table(rows)
    holes = data.draw(st.sets(st.integers(0, t.num_rows - 1)))
    mask = pa.array([i in holes for i in range(t.num_rows)])
    t = t.set_column(0, "code", pc.if_else(mask, pa.scalar(None, pa.string()), t.column("code")))
    r = identify(t, entity())
    assert sorted(r.rejects.column(ROW_ID).to_pylist()) == sorted(holes)
    assert r.table.num_rows == t.num_rows - len(holes)
    assert r.table.column(KEY_HASH).null_count == 0


def test_data_hashes_equals_identify_for_given_fields() -> None:
    t = pa.table({"code": ["a", "b"], "x": [1, None], "y": ["p", None]})
    assert data_hashes(t, ["y", "x"]).to_pylist() == [b3("x=i:1|y=s:p"), b3("")]


@given(
    rows=st.lists(
        st.tuples(st.one_of(st.none(), SEP_TEXT), st.one_of(st.none(), st.integers(-5, 10**12)),
                  st.one_of(st.none(), st.text(max_size=600))),
        min_size=1, max_size=30,
    ),
    start=st.integers(0, 4),
)
@settings(max_examples=150, deadline=None)
def test_data_hashes_hashed_piecewise_equal_the_joined_inputs(
    rows: list[tuple[Any, ...]], start: int
) -> None:
    """The compiled path never builds the DATA input strings; it must hash the same bytes."""
    from syncflow_core import identity

    t = pa.table({"a|b": pa.array([r[0] for r in rows], pa.string()),
                  "n": pa.array([r[1] for r in rows], pa.int64()),
                  "long": pa.array([r[2] for r in rows], pa.string()),
                  "gone": pa.nulls(len(rows), pa.string())})
    t = t.slice(min(start, len(rows) - 1))
    fields = ["long", "gone", "n", "a|b"]
    assert identity.native_hashing()
    piecewise = data_hashes(t, fields).to_pylist()
    expected = [b3(s) for s in data_inputs(t, fields).to_pylist()]
    assert piecewise == expected
