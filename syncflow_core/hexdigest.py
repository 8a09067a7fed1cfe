"""Hash every value of an Arrow string column and return the digests as lowercase hex.

The Python bindings of the hash libraries (``xxhash``, ``blake3``) have no batch API: one call
per value costs ~0.3 us (XXH3-128) and ~0.85 us (BLAKE3) of overhead, more than half of the
identity stage. So the loop runs in C (`syncflow_core._hashloops`, built from the vendored
upstream C implementations) straight over the Arrow data and offsets buffers, with the GIL
released. Hex is produced by a numpy lookup table into a new Arrow string buffer (no per-row
``hexdigest`` strings).

The per-value loops over the Python bindings stay as the reference implementation (the tests
check the C loop against them) and as the fallback where the extension was not built; with
them one hasher is reused (creating a blake3 object costs more than hashing a short value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from blake3 import blake3

from syncflow_core.compiled import compiled_module

_hashloops = compiled_module("_hashloops")  # None: the (slower) reference loops below

__all__ = [
    "DIGEST_BYTES",
    "HEX_CHARS",
    "Algorithm",
    "hash_hex",
    "hash_rows",
    "hex_to_digests",
    "native_hashing",
    "reference_digests",
]

Algorithm = Literal["xxh3_128", "blake3_128"]

DIGEST_BYTES = 16
HEX_CHARS = 2 * DIGEST_BYTES

# Byte -> two ASCII hex chars, as one uint16 so a single fancy-index does the whole buffer.
_HEX_LUT = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)
# ASCII hex char -> nibble value (255 = not a hex digit).
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF", start=10):
    _NIBBLE[_c] = _i


def _xxh3_digests(data: bytes, starts: list[int], ends: list[int]) -> bytes:
    h = xxhash.xxh3_128_digest
    return b"".join([h(data[a:b]) for a, b in zip(starts, ends, strict=True)])


def _blake3_digests(data: bytes, starts: list[int], ends: list[int]) -> bytes:
    # One reused hasher: constructing a blake3 object per value costs more than hashing it.
    hasher = blake3()
    update, digest, reset = hasher.update, hasher.digest, hasher.reset
    out: list[bytes] = []
    append = out.append
    for a, b in zip(starts, ends, strict=True):
        update(data[a:b])
        append(digest(DIGEST_BYTES))
        reset()
    return b"".join(out)


_LOOPS: dict[str, Callable[[bytes, list[int], list[int]], bytes]] = {
    "xxh3_128": _xxh3_digests,
    "blake3_128": _blake3_digests,
}
_NATIVE_ALGORITHM = {"xxh3_128": 0, "blake3_128": 1}


def native_hashing() -> bool:
    """Whether the compiled hash loop is in use (it is wherever the package was built)."""
    return _hashloops is not None


def reference_digests(
    data: bytes, offsets: np.ndarray, algorithm: Algorithm, skip_first_byte: bool = False
) -> bytes:
    """The 16-byte digests of ``data[offsets[i]:offsets[i+1]]`` through the Python bindings.

    The reference the compiled loop is tested against; also the fallback without it.
    """
    starts, ends = offsets[:-1], offsets[1:]
    if skip_first_byte:
        starts = np.minimum(starts + 1, ends)
    return _LOOPS[algorithm](data, starts.tolist(), ends.tolist())


def _hex_array(digests: bytes, n: int, validity: pa.Buffer | None) -> pa.Array:
    """Turn ``n`` concatenated 16-byte digests into a 32-char lowercase hex string array."""
    hexed = _HEX_LUT[np.frombuffer(digests, dtype=np.uint8)]
    offsets = np.arange(0, HEX_CHARS * (n + 1), HEX_CHARS, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(hexed)]
    )


def _hash_chunk(arr: pa.Array, algorithm: Algorithm, skip_first_byte: bool) -> pa.Array:
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    if arr.type != pa.string() and arr.type != pa.binary():
        arr = arr.cast(pa.string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    if _hashloops is not None:
        data_buf: pa.Buffer | bytes = b"" if bufs[2] is None else bufs[2]
        digests = _hashloops.digests(data_buf, offsets, _NATIVE_ALGORITHM[algorithm],
                                     skip_first_byte)
    else:
        lo = int(offsets[0])
        data = b"" if bufs[2] is None else bufs[2].slice(lo, int(offsets[-1]) - lo).to_pybytes()
        digests = reference_digests(data, offsets - lo, algorithm, skip_first_byte)
    validity = None
    if arr.null_count:
        # Nulls stay null; the digest computed for the (empty) null slot is masked out.
        validity = pc.is_valid(arr).buffers()[1]
    return _hex_array(digests, n, validity)


def hash_hex(
    values: pa.Array | pa.ChunkedArray, algorithm: Algorithm, *, skip_first_byte: bool = False
) -> pa.ChunkedArray:
    """Hash each UTF-8 value with ``algorithm`` into 32 lowercase hex chars; null stays null.

    ``xxh3_128`` is XXH3-128 with seed 0 in canonical (big-endian) byte order, i.e. what
    ``xxhash.xxh3_128_hexdigest`` prints; ``blake3_128`` is the first 16 bytes of the BLAKE3
    output (unkeyed), i.e. ``blake3(v).hexdigest(16)``. With ``skip_first_byte`` the first
    byte of each non-empty value is not hashed (a leading separator; saves a string copy).
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    hashed = [_hash_chunk(c, algorithm, skip_first_byte) for c in chunks]
    return pa.chunked_array(hashed, pa.string())


def hash_rows(
    n: int,
    pieces: list[tuple[bytes, pa.Buffer | bytes, np.ndarray, np.ndarray | None]],
    algorithm: Algorithm,
    *,
    skip_first_byte: bool = False,
) -> pa.ChunkedArray:
    """Per row, the hash of ``prefix + value`` over the pieces whose value is valid, as hex.

    ``pieces``: ``(prefix, data, offsets, valid)`` of string columns of ``n`` rows (int32
    offsets into data, ``valid`` one byte per row or None). Equal to `hash_hex` of the joined
    strings, without building them. Needs the compiled loop (`native_hashing`).
    """
    if _hashloops is None:
        raise RuntimeError("hash_rows needs the compiled hash loop (syncflow_core._hashloops)")
    digests = _hashloops.row_digests(n, pieces, _NATIVE_ALGORITHM[algorithm], skip_first_byte)
    return pa.chunked_array([_hex_array(digests, n, None)], pa.string())


def hex_to_digests(hexes: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Decode 32-char hex strings to ``fixed_size_binary(16)`` (nulls stay null).

    Raises ``ValueError`` if a non-null value is not exactly 32 hex digits.
    """
    arr = hexes.combine_chunks() if isinstance(hexes, pa.ChunkedArray) else hexes
    n = len(arr)
    arr = arr.cast(pa.string())
    filled = pc.fill_null(arr, "0" * HEX_CHARS) if arr.null_count else arr
    bufs = filled.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=filled.offset * 4)
    if n and not np.all(np.diff(offsets) == HEX_CHARS):
        raise ValueError("hash values must be 32 hex characters")
    raw = np.frombuffer(bufs[2], dtype=np.uint8)[offsets[0] : offsets[-1]] if n else np.zeros(0)
    nib = _NIBBLE[raw.astype(np.uint8)]
    if n and (nib == 255).any():
        raise ValueError("hash values must be hexadecimal")
    packed = ((nib[0::2] << 4) | nib[1::2]).astype(np.uint8)
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pa.Array.from_buffers(
        pa.binary(DIGEST_BYTES), n, [validity, pa.py_buffer(packed.tobytes())]
    )
