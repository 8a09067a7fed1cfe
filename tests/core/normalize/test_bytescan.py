"""The numpy byte kernels agree with pyarrow's string kernels (sliced arrays, nulls)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core.normalize.bytescan import delete_byte, to_hex


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="12,.€ab")), max_size=30),
       st.integers(0, 5))
def test_delete_byte_matches_replace_substring(values: list[str | None], skip: int) -> None:
    arr = pa.array(values, pa.string()).slice(min(skip, len(values)))
    expected = pc.replace_substring(pc.replace_substring(arr, ".", ""), ",", ".")
    assert delete_byte(arr, ".", (",", ".")).to_pylist() == expected.to_pylist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary()), max_size=30), st.integers(0, 5))
def test_to_hex_matches_python(values: list[bytes | None], skip: int) -> None:
    arr = pa.array(values, pa.binary()).slice(min(skip, len(values)))
    assert to_hex(arr).to_pylist() == [None if v is None else v.hex()
                                       for v in arr.to_pylist()]
