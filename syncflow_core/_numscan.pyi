from typing_extensions import Buffer

def simple_decimals(
    data: Buffer,
    offsets: Buffer,
    candidate: Buffer,
    dec: int,
    grp: int,
    scale: int,
    precision: int,
    /,
) -> tuple[bytes, bytes]:
    """(n int64 values, n bools) of the rows in the common number shape, as bytes."""
