"""A typed JSON encoding of business-key tuples (slice bounds, cursors, batch info).

JSON alone would turn a `Decimal`, a `date` or a `datetime` into text and the key would come
back as a different type, comparing differently in SQL. Each value is stored as ``[tag, text]``.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from syncflow_core.utf8_check import RawText

__all__ = ["decode_key", "dumps_key", "encode_key", "loads_key"]

Key = tuple[Any, ...]


def _enc(v: Any) -> list[Any]:
    if v is None:
        return ["n", None]
    if isinstance(v, bool):
        return ["b", v]
    if isinstance(v, int):
        return ["i", str(v)]
    if isinstance(v, float):
        return ["f", repr(v)]
    if isinstance(v, Decimal):
        return ["d", str(v)]
    if isinstance(v, datetime):
        return ["T", v.isoformat()]
    if isinstance(v, date):
        return ["D", v.isoformat()]
    if isinstance(v, RawText):  # before bytes: it is text whose bytes are not UTF-8
        return ["r", v.hex()]
    if isinstance(v, bytes):
        return ["x", v.hex()]
    if isinstance(v, str):
        return ["s", v]
    raise TypeError(f"cannot encode key value of type {type(v).__name__}")


def _dec(item: list[Any]) -> Any:
    tag, text = item
    if tag == "n":
        return None
    if tag == "b":
        return bool(text)
    if tag == "i":
        return int(text)
    if tag == "f":
        return float(text)
    if tag == "d":
        return Decimal(text)
    if tag == "T":
        return datetime.fromisoformat(text)
    if tag == "D":
        return date.fromisoformat(text)
    if tag == "x":
        return bytes.fromhex(text)
    if tag == "r":
        return RawText(bytes.fromhex(text))
    if tag == "s":
        return str(text)
    raise ValueError(f"unknown key tag {tag!r}")


def encode_key(key: Key | None) -> list[list[Any]] | None:
    """A key tuple as JSON-able ``[[tag, text], ...]`` (None stays None = unbounded)."""
    return None if key is None else [_enc(v) for v in key]


def decode_key(data: list[list[Any]] | None) -> Key | None:
    """Inverse of `encode_key`."""
    return None if data is None else tuple(_dec(i) for i in data)


def dumps_key(key: Key | None) -> str | None:
    """A key tuple as JSON text."""
    enc = encode_key(key)
    return None if enc is None else json.dumps(enc)


def loads_key(text: str | None) -> Key | None:
    """Inverse of `dumps_key`."""
    return None if text is None else decode_key(json.loads(text))
