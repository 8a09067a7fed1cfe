"""Write identity_v1.json: inputs of every encoded type and the hashes identity gives them.

Run once (``python -m tests.core.golden.make_identity_v1``) when the encoding is designed; the
file is then a frozen contract that test_identity checks. Refuses to overwrite it: changing
the encoding of persisted hashes needs a new version and a re-hash migration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from syncflow_core.identity import data_fields, data_inputs, identify, key_inputs
from tests.core.golden.identity_cases import ENTITY, ROWS, SCHEMA, build_table

OUT = Path(__file__).with_name("identity_v1.json")


def main() -> None:
    if OUT.exists() and "--force" not in sys.argv:
        sys.exit(f"{OUT} exists: it is a frozen contract (use --force only for a new design)")
    table = build_table(ROWS)
    result = identify(table, ENTITY)
    out = result.table
    keys = key_inputs(out, ENTITY.business_key_fields).to_pylist()
    datas = data_inputs(out, data_fields(out.column_names, ENTITY)).to_pylist()
    ids = out.column("__sf_row").to_pylist()
    expected = []
    for pos, row_id in enumerate(ids):
        expected.append(
            {
                "row": row_id,
                "key_input": keys[pos],
                "key_hash": out.column("_bridge_key_hash")[pos].as_py(),
                "data_input": datas[pos],
                "data_hash": out.column("_bridge_data_hash")[pos].as_py(),
                "rowversion": out.column("_bridge_rowversion")[pos].as_py(),
                "ref": out.column("_bridge_ref")[pos].as_py(),
            }
        )
    rejects = result.rejects.to_pylist()
    doc = {
        "encoding_version": 1,
        "entity": ENTITY.model_dump(mode="json", include={"name", "business_key_fields",
                                                          "rowversion_field"}),
        "schema": SCHEMA,
        "rows": ROWS,
        "expected": expected,
        "rejects": rejects,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(expected)} rows, {len(rejects)} rejects")


if __name__ == "__main__":
    main()
