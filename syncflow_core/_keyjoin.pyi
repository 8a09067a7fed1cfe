from typing_extensions import Buffer

def join(
    inc_keys: Buffer, inc_data: Buffer, stored_keys: list[Buffer], stored_data: list[Buffer], /
) -> tuple[bytes, bytes, bytes, bytes] | None:
    """(matched incoming, matched stored, stored-only row numbers, data changed), as bytes."""
