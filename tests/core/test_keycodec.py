"""Key tuples as the state store keeps them (slice bounds, cursors): a persisted format.

The expected texts are written out by hand: changing them breaks every stored slice plan and
cursor, so a change here must come with a migration.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from syncflow_core.keycodec import dumps_key, loads_key
from syncflow_core.utf8_check import RawText

GOLDEN = [
    (None, None),
    ((), "[]"),
    (("SO-1", 7), '[["s", "SO-1"], ["i", "7"]]'),
    ((Decimal("10.50"), 1.5, True), '[["d", "10.50"], ["f", "1.5"], ["b", true]]'),
    ((date(2024, 2, 29), datetime(2024, 2, 29, 8, 30)),
     '[["D", "2024-02-29"], ["T", "2024-02-29T08:30:00"]]'),
    ((b"\x00\xff",), '[["x", "00ff"]]'),
    ((RawText(b"B-\xff"),), '[["r", "422dff"]]'),  # text whose bytes are not UTF-8
]


@pytest.mark.parametrize(("key", "text"), GOLDEN)
def test_key_text_is_stable_and_round_trips(key: tuple[object, ...] | None,
                                            text: str | None) -> None:
    assert dumps_key(key) == text
    back = loads_key(text)
    assert back == key
    assert [type(v) for v in back or ()] == [type(v) for v in key or ()]
