"""Layer 4: datetime text in many formats -> UTC; impossible dates are rejects."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.config import FieldOptions
from syncflow_core.normalize import parse_datetimes, rr_year
from syncflow_core.normalize.datetimes import _parse_text, parse_datetime_text
from syncflow_core.rejects import ROW_ID
from tests.core.normalize.entities import entity, junk_under_nulls

UTC = dt.UTC


def _parse(values: list[str | None], type_: str = "TIMESTAMP", reference_year: int = 2024,
           **opts: object) -> tuple[list[object], list[dict[str, object]]]:
    ent = entity({"v": {"type": type_, **opts}})
    r = parse_datetimes(pa.table({"v": pa.array(values, pa.string())}), ent,
                        reference_year=reference_year)
    assert r.table.schema.field("v").type == (
        pa.date32() if type_ == "DATE32" else pa.timestamp("us", tz="UTC"))
    return r.table.column("v").to_pylist(), r.rejects.to_pylist()


def ts(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2024-01-31", ts(2024, 1, 31)),
        ("2024-01-31 10:20:30", ts(2024, 1, 31, 10, 20, 30)),
        ("2024-01-31T10:20:30", ts(2024, 1, 31, 10, 20, 30)),
        ("2024-01-31T10:20:30.123456", ts(2024, 1, 31, 10, 20, 30, 123456)),
        ("2024-01-31T10:20:30.5Z", ts(2024, 1, 31, 10, 20, 30, 500000)),
        ("2024-01-31T10:20:30+02:00", ts(2024, 1, 31, 8, 20, 30)),
        ("2024-01-31T10:20:30-0500", ts(2024, 1, 31, 15, 20, 30)),
        ("2024-01-31 10:20", ts(2024, 1, 31, 10, 20)),
        ("31.01.2024", ts(2024, 1, 31)),
        ("31.01.2024 08:15:00", ts(2024, 1, 31, 8, 15)),
        ("05-JAN-24", ts(2024, 1, 5)),
        ("05-jan-2024", ts(2024, 1, 5)),
        ("5-Jan-99 13:14:15", ts(1999, 1, 5, 13, 14, 15)),
        ("20240131", ts(2024, 1, 31)),
        ("1706659200", ts(2024, 1, 31)),
        ("1706659200123", ts(2024, 1, 31, 0, 0, 0, 123000)),
    ],
)
def test_formats(text: str, value: dt.datetime) -> None:
    got, rej = _parse([text])
    assert rej == []
    assert got == [value]


def test_slashes_follow_day_first() -> None:
    assert _parse(["02/03/2024"])[0] == [ts(2024, 2, 3)]
    assert _parse(["02/03/2024"], day_first=True)[0] == [ts(2024, 3, 2)]
    assert _parse(["2/3/2024 9:05"], day_first=True)[0] == [ts(2024, 3, 2, 9, 5)]


def test_zero_date_is_null_not_a_reject() -> None:
    assert _parse(["00000000", None]) == ([None, None], [])


@pytest.mark.parametrize("text", ["31/02/2024", "2024-13-01", "2023-02-29", "32.01.2024",
                                  "05-FOO-24", "20241301", "yesterday", "2024/01/31",
                                  "12345"])
def test_impossible_or_unknown_values_are_rejects(text: str) -> None:
    got, rej = _parse(["2024-01-01", text], day_first=True)
    assert got == [ts(2024, 1, 1)]
    assert len(rej) == 1
    assert rej[0][ROW_ID] == 1
    assert rej[0]["stage"] == "datetimes" and rej[0]["error_code"] == "invalid_datetime"
    assert str(rej[0]["message"]).startswith("v: ") and repr(text) in str(rej[0]["message"])


@pytest.mark.parametrize(
    ("yy", "reference", "year"),
    [(24, 2024, 2024), (49, 2024, 2049), (50, 2024, 1950), (99, 2024, 1999),
     (0, 2024, 2000), (10, 2060, 2110), (60, 2060, 2060), (99, 2099, 2099),
     (49, 1999, 2049), (51, 1999, 1951)],
)
def test_oracle_rr_rule(yy: int, reference: int, year: int) -> None:
    assert rr_year(pa.array([yy]), reference).to_pylist() == [year]
    got, _ = _parse([f"01-MAR-{yy:02d}"], reference_year=reference)
    assert got == [ts(year, 3, 1)]


def test_naive_values_are_localized_dst_correctly() -> None:
    got, rej = _parse(
        ["2024-01-15 12:00:00", "2024-07-15 12:00:00", "2024-10-27 02:30:00",
         "2024-03-31 02:30:00", "2024-07-15T12:00:00Z", "1721044800"],
        timezone="Europe/Berlin",
    )
    assert got == [ts(2024, 1, 15, 11), ts(2024, 7, 15, 10),
                   ts(2024, 10, 27, 0, 30),  # ambiguous: the earliest (summer time) instant
                   ts(2024, 7, 15, 12), ts(2024, 7, 15, 12)]
    assert [r[ROW_ID] for r in rej] == [3]
    assert "Europe/Berlin" in str(rej[0]["message"])


def test_epoch_unit_option() -> None:
    assert _parse(["86400", "0"], epoch_unit="s")[0] == [ts(1970, 1, 2), ts(1970, 1, 1)]
    assert _parse(["86400000"], epoch_unit="ms")[0] == [ts(1970, 1, 2)]


def test_user_formats_are_tried_after_built_ins_and_validate_days() -> None:
    got, rej = _parse(["2024|01|31", "2024|02|31", "2024-02-01", "2024|2|3"],
                      date_formats=("%Y|%m|%d",))
    assert got == [ts(2024, 1, 31), ts(2024, 2, 1), ts(2024, 2, 3)]
    assert [r[ROW_ID] for r in rej] == [1]


def test_date_fields_keep_the_calendar_date() -> None:
    got, rej = _parse(["2024-02-29", "29.02.2024 00:00:00", "2024-02-29 10:00"], "DATE32")
    assert got == [dt.date(2024, 2, 29)] * 2
    assert [r[ROW_ID] for r in rej] == [2]


def test_naive_timestamp_columns_are_localized() -> None:
    ent = entity({"v": {"type": "DATE", "timezone": "America/New_York"}})
    t = pa.table({"v": pa.array([dt.datetime(2024, 1, 1, 12)], pa.timestamp("us"))})
    r = parse_datetimes(t, ent)
    assert r.table.column("v").to_pylist() == [ts(2024, 1, 1, 17)]


def test_large_iso_column_takes_one_cast() -> None:
    values = [f"2024-01-{d:02d} 10:00:00" for d in range(1, 29)] * 100 + [None]
    got, rej = _parse(values)
    assert rej == [] and got[0] == ts(2024, 1, 1, 10) and got[-1] is None


_SHAPES = ["{y:04d}-{m:02d}-{d:02d}", "{d:02d}.{m:02d}.{y:04d}", "{d:02d}/{m:02d}/{y:04d}",
           "{y:04d}{m:02d}{d:02d}", "{d}.{m}.{y}", "{y:04d}-{m:02d}-{d:02d} 10:00"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.none(),
    st.builds(lambda f, y, m, d: f.format(y=y, m=m, d=d), st.sampled_from(_SHAPES),
              st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)),
    st.text(alphabet="0123456789-./ ", max_size=11)), min_size=1, max_size=25),
    st.booleans(), st.sampled_from([None, "s"]))
def test_byte_parsed_dates_agree_with_the_regex_path(values: list[str | None], day_first: bool,
                                                      epoch_unit: str | None) -> None:
    opts = FieldOptions(day_first=day_first, epoch_unit=epoch_unit)
    arr = pa.array(values, pa.string())
    # Null slots that still hold a date must stay null.
    fast = parse_datetime_text(junk_under_nulls(values, "2024-01-31"), opts, 2024)
    slow = _parse_text(arr, opts, 2024)
    # As integers: year 0 (which Arrow's ISO cast accepts) has no Python datetime.
    assert fast[0].cast(pa.int64()).to_pylist() == slow[0].cast(pa.int64()).to_pylist()
    assert fast[1].tolist() == slow[1].tolist()
    assert fast[2].tolist() == slow[2].tolist()
