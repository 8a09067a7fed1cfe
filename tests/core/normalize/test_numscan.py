"""The compiled number scan against its numpy reference, value for value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.normalize import numbers
from syncflow_core.normalize.numbers import _candidates, _simple_values, _simple_values_numpy

NUMBERISH = st.one_of(
    st.text(alphabet="0123456789.,+-' x", max_size=26),
    # Mostly well-formed: grouped or plain, with a fraction, a sign, a stray separator.
    st.from_regex(r"[+-]?(\d{1,4}([.,]\d{2,4}){0,5}|\d{1,20})([.,]\d{0,7})?", fullmatch=True),
)


def test_the_package_was_built_with_the_compiled_scan() -> None:
    # Without it every sync parses numbers ~10x slower, silently.
    assert numbers._numscan is not None


def _both(values: pa.Array, dec: str, scale: int, precision: int | None
          ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    compiled = _simple_values(values, dec, scale, precision)
    rb, candidate = _candidates(values)
    return compiled, _simple_values_numpy(rb, candidate, dec, scale, precision)


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), NUMBERISH), min_size=1, max_size=60),
    dec=st.sampled_from([".", ","]),
    scale=st.sampled_from([0, 1, 2, 4, 6, 18]),
    precision=st.sampled_from([None, 3, 10, 12, 18]),
    start=st.integers(0, 5),
)
def test_any_text_reads_like_the_numpy_reference(
    texts: list[str | None], dec: str, scale: int, precision: int | None, start: int
) -> None:
    values = pa.array(texts, pa.string()).slice(min(start, len(texts) - 1))
    (cv, cok), (nv, nok) = _both(values, dec, scale, precision)
    assert cok.tolist() == nok.tolist()
    assert cv[cok].tolist() == nv[nok].tolist()


@pytest.mark.parametrize(
    ("text", "dec", "scale", "expected"),
    [
        ("1,234.5", ".", 2, 123450),
        ("-1.234.567,8912", ",", 4, -12345678912),
        ("+007", ".", 0, 7),
        ("999999999999999999", ".", 0, 999999999999999999),  # 18 digits: the widest
        ("9999999999999999999", ".", 0, None),  # 19 digits: the text path's job
        ("1,23", ".", 2, None),  # groups of two: a wrong separator, not a number
        (",123", ".", 0, None),
        ("1.5", ".", 0, None),  # a fraction in a scale-0 field
        ("12.", ".", 2, None),
        ("-", ".", 0, None),
        ("", ".", 0, None),
    ],
)
def test_edge_shapes(text: str, dec: str, scale: int, expected: int | None) -> None:
    (cv, cok), (nv, nok) = _both(pa.array([text]), dec, scale, None)
    assert bool(cok[0]) == bool(nok[0]) == (expected is not None)
    if expected is not None:
        assert cv[0] == nv[0] == expected


def test_precision_caps_the_value() -> None:
    (cv, cok), _ = _both(pa.array(["999.99", "1,000.00"]), ".", 2, 5)
    assert cok.tolist() == [True, False]
    assert cv[0] == 99999


def test_offsets_outside_the_data_are_refused() -> None:
    from syncflow_core import _numscan

    with pytest.raises(ValueError, match="outside"):
        _numscan.simple_decimals(b"12", np.array([0, 5], np.int64), b"\x01", 46, 44, 0, -1)
