from typing_extensions import Buffer

def join(
    inc_keys: Buffer, inc_data: Buffer, stored_keys: Buffer, stored_data: Buffer, /
) -> tuple[bytes, bytes, bytes, bytes] | None:
    """(matched incoming, matched stored, stored-only row numbers, data changed), as bytes."""
