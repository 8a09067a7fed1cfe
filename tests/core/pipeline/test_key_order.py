"""Business keys whose cleaned order differs from the source's order load exactly.

Keyset chunks are cut in the source's key order, while a chunk's deletes normally come from
the target's rows in the chunk's cleaned key range. Leading spaces and control characters
(``' z'`` before ``'a'`` in the source, after it once trimmed), a number held as text (' 12' <
' 2') and a date held as ``DD.MM.YYYY`` text in a composite key all reorder keys. The pipeline
notices the first such chunk, marks the entity unordered and from then on finds deletes
without key ranges (`syncflow_core.key_scope`): nothing is refused, nothing wrongly deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.core.pipeline.erp import Erp
from tests.core.pipeline.keyed_source import check_sync_exact, keyed_entity


def test_spaces_and_control_characters_in_text_keys(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "CODES" ("K" VARCHAR(20), "V" TEXT)')
    # source key -> the key the target holds (trimmed, control characters removed)
    rows = {
        (" z1",): ("z1",), ("  y2",): ("y2",), ("a3",): ("a3",), ("b4 ",): ("b4",),
        ("\tc5",): ("c5",), ("d\x016",): ("d6",), ("e7  ",): ("e7",), (" f8 ",): ("f8",),
        ("g9",): ("g9",), ("\x02h10",): ("h10",), ("i11",): ("i11",), (" j12",): ("j12",),
        ("k13",): ("k13",), ("l14\x03",): ("l14",), ("m15",): ("m15",), ("  n16",): ("n16",),
    }
    unordered = check_sync_exact(
        erp, tgt_url, "CODES", keyed_entity("CODES", ["K"]), rows,
        update=[(" z1",), ("a3",)], delete=[("  y2",), ("\tc5",), ("m15",)],
        insert={(" a0",): ("a0",), ("zz",): ("zz",)},
    )
    assert unordered
    erp.close()


def test_numeric_key_held_as_text(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "EMPS" ("EMP_NO" TEXT, "V" TEXT)')
    rows = {(f" {e}",): (e,) for e in range(1, 20)}
    unordered = check_sync_exact(
        erp, tgt_url, "EMPS",
        keyed_entity("EMPS", ["EMP_NO"], EMP_NO={"type": "NUMBER(6)"}), rows,
        update=[(" 2",), (" 12",)], delete=[(" 1",), (" 10",), (" 19",)],
        insert={(" 100",): (100,), (" 3000",): (3000,)},
    )
    assert unordered
    erp.close()


def test_text_date_inside_a_composite_key(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "RATES" ("CUR" TEXT, "DAY" TEXT, "V" TEXT)')
    # Oracle's DATE carries a time: the target holds midnight UTC.
    days = [datetime(2023, m, d, tzinfo=UTC) for m in (1, 6, 12) for d in (1, 15, 28)]
    rows = {(c, d.strftime("%d.%m.%Y")): (c, d) for c in ("EUR", "USD") for d in days}
    unordered = check_sync_exact(
        erp, tgt_url, "RATES",
        keyed_entity("RATES", ["CUR", "DAY"],
                     DAY={"type": "DATE", "date_formats": ["%d.%m.%Y"]}),
        rows,
        update=[("EUR", "15.06.2023")],
        delete=[("USD", "01.01.2023"), ("EUR", "28.12.2023")],
        insert={("CHF", "02.01.2024"): ("CHF", datetime(2024, 1, 2, tzinfo=UTC))},
    )
    assert unordered
    erp.close()
