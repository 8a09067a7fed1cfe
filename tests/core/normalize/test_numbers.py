"""Layer 3: numbers from text in both locales; bad values are rejects, never NaN."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.normalize import parse_numbers, plan_fields
from syncflow_core.normalize.numbers import _fast_column, _to_number, parse_number_text
from syncflow_core.rejects import ROW_ID
from tests.core.normalize.entities import entity, junk_under_nulls


def _parse(values: list[str | None], type_: str = "NUMBER(14,4)",
           **opts: object) -> tuple[list[object], list[dict[str, object]]]:
    ent = entity({"v": {"type": type_, **opts}})
    r = parse_numbers(pa.table({"v": pa.array(values, pa.string())}), ent)
    return r.table.column("v").to_pylist(), r.rejects.to_pylist()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10,000", Decimal("10000")),
        ("1,234.56", Decimal("1234.56")),
        ("(1,234.50)", Decimal("-1234.5")),
        ("1234-", Decimal("-1234")),
        ("+12", Decimal("12")),
        ("-0.5", Decimal("-0.5")),
        (".5", Decimal("0.5")),
        ("€12.50", Decimal("12.5")),
        ("$ 1,000", Decimal("1000")),
        ("£3", Decimal("3")),
        ("12.00 EUR", Decimal("12")),
        ("USD -7", Decimal("-7")),
        ("12.5%", Decimal("0.125")),
        ("1.5E3", Decimal("1500")),
        ("2e-2", Decimal("0.02")),
        ("1'234.5", Decimal("1234.5")),
        ("1\u00a0234.5", Decimal("1234.5")),
    ],
)
def test_dot_locale(text: str, value: Decimal) -> None:
    got, rej = _parse([text])
    assert rej == []
    assert got == [value]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.234,56", Decimal("1234.56")),
        ("1 234,56", Decimal("1234.56")),
        ("1\u00a0234,56", Decimal("1234.56")),
        ("1\u2009234,56", Decimal("1234.56")),
        ("1\u202f234,56", Decimal("1234.56")),
        ("12,5 €", Decimal("12.5")),
        ("(1.234,50)", Decimal("-1234.5")),
        ("12,5%", Decimal("0.125")),
        ("10.000", Decimal("10000")),
    ],
)
def test_comma_locale(text: str, value: Decimal) -> None:
    got, rej = _parse([text], locale="de_DE")
    assert rej == []
    assert got == [value]


def test_explicit_decimal_separator_wins() -> None:
    got, _ = _parse(["1.234,5"], decimal_separator=",")
    assert got == [Decimal("1234.5")]


@pytest.mark.parametrize("text", ["12x", "1,2,3", "1,5", "--1", "(12", "abc", "1.2.3", "%",
                                  "EUR", "1e99999"])
def test_unparseable_values_are_rejects_naming_column_and_value(text: str) -> None:
    got, rej = _parse(["1", text])
    assert got == [Decimal("1")]
    assert len(rej) == 1
    assert rej[0]["stage"] == "numbers" and rej[0]["error_code"] == "invalid_number"
    assert rej[0][ROW_ID] == 1
    assert str(rej[0]["message"]).startswith("v: ") and repr(text) in str(rej[0]["message"])


def test_int_fields_reject_fractions_and_overflow() -> None:
    got, rej = _parse(["1,000", "12.5", "12.0", "99999999999999999999", "1.5E3"], "NUMBER(10)")
    assert got == [1000, 12, 1500]
    assert [r[ROW_ID] for r in rej] == [1, 3]


def test_decimal_fields_reject_excess_scale_and_precision() -> None:
    got, rej = _parse(["1.25", "1.255", "1000", "1.250"], "NUMBER(5,2)")
    assert got == [Decimal("1.25"), Decimal("1.25")]
    assert sorted(r[ROW_ID] for r in rej) == [1, 2]


def test_float_fields_never_produce_nan_or_inf() -> None:
    got, rej = _parse(["1.5", "nan", "inf", "1e400", "2,500.25"], "BINARY_DOUBLE")
    assert got == [1.5, 2500.25]
    assert sorted(r[ROW_ID] for r in rej) == [1, 2, 3]


def test_nulls_stay_null_and_non_numeric_fields_are_untouched() -> None:
    ent = entity({"v": {"type": "NUMBER(10,2)"}})
    r = parse_numbers(pa.table({"v": [None, "1"], "name": ["1,000", "x"]}), ent)
    assert r.table.column("v").to_pylist() == [None, Decimal("1.00")]
    assert r.table.column("name").to_pylist() == ["1,000", "x"]


def _format(value: Decimal, dec: str, group: str) -> str:
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.2f}"
    text = text.replace(",", "\0").replace(".", dec).replace("\0", group)
    return sign + text


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"),
                places=2, allow_nan=False, allow_infinity=False),
    st.sampled_from([(".", ","), (".", "'"), (".", " "), (",", "."), (",", " "),
                     (",", "\u00a0"), (",", "\u202f")]),
)
def test_formatted_numbers_round_trip_in_both_locales(value: Decimal,
                                                      seps: tuple[str, str]) -> None:
    dec, group = seps
    got, rej = _parse([_format(value, dec, group)], "NUMBER(12,2)", decimal_separator=dec)
    assert rej == []
    assert got == [value]


def _assert_byte_path_agrees(values: list[str | None], type_: str, locale: str) -> None:
    plan = plan_fields(pa.schema([("v", pa.string())]),
                       entity({"v": {"type": type_, "locale": locale}}))["v"]
    dec = plan.options.effective_decimal_separator()
    arr = pa.array(values, pa.string())
    # Null slots that still hold digits must stay null.
    fast = _fast_column(junk_under_nulls(values, "12"), plan, dec)
    assert fast is not None
    canon = parse_number_text(arr, dec)
    out, failed = _to_number(canon, plan)
    unparsed = [v is not None and c is None for v, c in zip(values, canon.to_pylist(), strict=True)]
    assert fast[0].to_pylist() == out.to_pylist()
    assert fast[1].tolist() == unparsed
    assert fast[2].tolist() == failed.tolist()


def test_byte_parsed_numbers_agree_with_the_text_path_on_tricky_shapes() -> None:
    tricky = ["12345,678", ",000", "1,2345", "1,23,456", "12,3456,789", "1,000,", "1.", ".5",
              "+-1", "-", "1,000.5.5", "0000000000000000001", "-0", "+0.00", "9999999999.99",
              "10000000000.00", "1.005", "1.230", "123456789012345678", "1234567890123456789"]
    for type_ in ("NUMBER(12,2)", "NUMBER(6)", "NUMBER(38,4)", "INTEGER"):
        _assert_byte_path_agrees([*tricky, None], type_, "en_US")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789.,+- ", max_size=26),
                          st.from_regex(r"\A[+-]?\d{1,3}(,\d{3}){0,6}(\.\d{0,5})?\Z"),
                          st.from_regex(r"\A[+-]?\d{0,6}([,.]\d{2,4}){0,4}\Z"),
                          st.from_regex(r"\A[+-]?\d{1,20}(,\d{1,6})?\Z")),
                min_size=1, max_size=20),
       st.sampled_from(["NUMBER(12,2)", "NUMBER(14,4)", "NUMBER(6)", "NUMBER(19)", "NUMBER(38,4)",
                        "NUMBER(3,3)", "NUMBER", "INTEGER"]),
       st.sampled_from(["en_US", "de_DE"]))
def test_byte_parsed_numbers_agree_with_the_text_path(values: list[str | None], type_: str,
                                                      locale: str) -> None:
    _assert_byte_path_agrees(values, type_, locale)
