from typing_extensions import Buffer

BLAKE3_VERSION: str
XXH_VERSION: int

def digests(data: Buffer, offsets: Buffer, algorithm: int, skip_first_byte: bool, /) -> bytes:
    """16-byte digests of each ``data[offsets[i]:offsets[i+1]]``, concatenated."""

def row_digests(
    n: int, pieces: list[tuple[Buffer, Buffer, Buffer, Buffer | None]], algorithm: int,
    skip_first_byte: bool, /,
) -> bytes:
    """Per row, the digest of prefix + value over the pieces whose value is valid."""
