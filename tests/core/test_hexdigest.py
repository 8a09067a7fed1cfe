"""The compiled hash loop against the reference: the xxhash and blake3 Python bindings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core import _hashloops as hashloops
from syncflow_core import hexdigest
from syncflow_core.hexdigest import hash_hex, native_hashing, reference_digests


def _reference_hex(value: str | None, algorithm: str, skip_first_byte: bool) -> str | None:
    if value is None:
        return None
    raw = value.encode()
    if skip_first_byte:
        raw = raw[1:]
    if algorithm == "xxh3_128":
        return xxhash.xxh3_128_hexdigest(raw)
    return blake3(raw).hexdigest(16)


def test_the_package_was_built_with_the_compiled_loop() -> None:
    # Without it every sync silently runs the ~4x slower Python loop.
    assert native_hashing()


# Lengths around the implementations' internal boundaries: XXH3's 16/128/240-byte paths and
# BLAKE3's 64-byte blocks and 1024-byte chunks (several chunks take its SIMD many-chunk path).
EDGE_LENGTHS = [0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 63, 64, 65, 1023, 1024, 1025,
                2048, 4097, 16385]


@pytest.mark.parametrize("algorithm", ["xxh3_128", "blake3_128"])
@pytest.mark.parametrize("skip_first_byte", [False, True])
def test_every_length_boundary_hashes_like_the_bindings(
    algorithm: hexdigest.Algorithm, skip_first_byte: bool
) -> None:
    values = ["".join(chr(97 + (i * 7 + n) % 26) for i in range(n)) for n in EDGE_LENGTHS]
    got = hash_hex(pa.array(values), algorithm, skip_first_byte=skip_first_byte).to_pylist()
    assert got == [_reference_hex(v, algorithm, skip_first_byte) for v in values]


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=1, max_size=40),
    start=st.integers(0, 10),
    skip_first_byte=st.booleans(),
)
def test_any_text_sliced_or_null_hashes_like_the_bindings(
    values: list[str | None], start: int, skip_first_byte: bool
) -> None:
    arr = pa.array(values, pa.string()).slice(min(start, len(values) - 1))
    expected_values = values[min(start, len(values) - 1):]
    for algorithm in ("xxh3_128", "blake3_128"):
        got = hash_hex(arr, algorithm, skip_first_byte=skip_first_byte).to_pylist()
        assert got == [_reference_hex(v, algorithm, skip_first_byte) for v in expected_values]


def test_null_slots_with_bytes_in_them_stay_null() -> None:
    # Arrow lets a null slot span bytes; only valid values may be hashed into the output.
    data = pa.py_buffer(b"abcdefgh")
    offsets = pa.py_buffer(np.array([0, 3, 6, 8], np.int32).tobytes())
    validity = pa.py_buffer(bytes([0b101]))
    arr = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, data], null_count=1)
    got = hash_hex(arr, "blake3_128").to_pylist()
    assert got == [blake3(b"abc").hexdigest(16), None, blake3(b"gh").hexdigest(16)]


@pytest.mark.parametrize("algorithm", [0, 1])
def test_compiled_loop_equals_reference_loop_on_int64_offsets(algorithm: int) -> None:
    arr = pa.array(["x" * n for n in EDGE_LENGTHS], pa.large_string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64, count=len(arr) + 1)
    name: hexdigest.Algorithm = "xxh3_128" if algorithm == 0 else "blake3_128"
    assert hashloops.digests(bufs[2], offsets, algorithm, False) == reference_digests(
        bufs[2].to_pybytes(), offsets, name
    )


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        (np.array([0, 5, 3], np.int32), "must not decrease"),
        (np.array([0, 4, 99], np.int32), "past the end"),
        (np.array([-1, 2], np.int64), "negative"),
        (np.array([0, 2], np.int16), "int32 or int64"),
    ],
)
def test_bad_offsets_are_refused_before_any_read(offsets: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hashloops.digests(b"abcdef", offsets, 1, False)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        hashloops.digests(b"ab", np.array([0, 2], np.int32), 7, False)


def test_without_the_compiled_loop_the_bindings_give_the_same_hex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A build without a C compiler falls back to the Python loops: same output, just slower.
    values = pa.array(["", "a|b", None, "x" * 2000, "Müller"])
    compiled = [hash_hex(values, a, skip_first_byte=True) for a in ("xxh3_128", "blake3_128")]
    monkeypatch.setattr(hexdigest, "_hashloops", None)
    assert not native_hashing()
    fallback = [hash_hex(values, a, skip_first_byte=True) for a in ("xxh3_128", "blake3_128")]
    assert fallback == compiled
