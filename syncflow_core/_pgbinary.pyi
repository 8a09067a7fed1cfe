from typing import Any

def encode(n: int, columns: list[tuple[int, Any, Any, Any, int]], header: bool, /) -> bytes:
    """``n`` rows of binary COPY tuples (the file header first when ``header``)."""
