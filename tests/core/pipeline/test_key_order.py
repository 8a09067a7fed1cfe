"""A business key whose source order differs from its normalized order is refused loudly.

Keyset chunks are cut in the *source's* key order, while a chunk's deletes are found from the
target's rows in the chunk's *normalized* key range. A numeric key held as text in the ERP
(' 1' < ' 12' < ' 2' as text, 1 < 2 < 12 as numbers) would make a chunk's normalized range
hold rows that other chunks carry, and soft-delete them although the source still has them.
The pipeline checks every chunk and stops with a clear error instead (the first load already
stops, before anything could be deleted).
"""

from __future__ import annotations

import pytest

from syncflow_core.errors import ConfigError
from syncflow_core.runtime import Runtime
from tests.core.pipeline.erp import Erp, make_config, sync_all


def test_text_numeric_key_is_refused_before_any_false_delete(engine_urls: tuple[str, str]) -> None:
    src_url, tgt_url = engine_urls
    erp = Erp(src_url)
    erp.execute('CREATE TABLE "EMPS" ("EMP_NO" TEXT, "NAME" TEXT)')
    erp.execute(
        'INSERT INTO "EMPS" VALUES (:e, :n)', [{"e": f" {e}", "n": f"E{e}"} for e in range(1, 14)]
    )
    ent = {
        "source": {"connection": "erp", "table": "EMPS"},
        "business_key_fields": ["EMP_NO"],
        "fields": {"EMP_NO": {"type": "NUMBER(6)"}},
        "slices": 1,
        "chunk_size": 3,
    }
    cfg = make_config(src_url, tgt_url, {"emps": ent})
    with Runtime.open(cfg, {}) as rt:
        with pytest.raises(ConfigError, match="normalization changes the order"):
            sync_all(rt, "emps", "run-1")
        # Nothing was soft-deleted: whatever loaded before the check fired is live.
        assert rt.target.row_count("emps", live_only=False) == rt.target.row_count("emps")
    erp.close()
