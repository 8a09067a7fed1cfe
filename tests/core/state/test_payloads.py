"""AES-256-GCM payloads at rest: ciphertext in the tables, plain rows for callers, key rotation."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncflow_core.errors import ConfigError, PayloadKeyError
from syncflow_core.rejects import REJECT_SCHEMA
from syncflow_core.state.payloads import PayloadCipher
from syncflow_core.state.store import StateStore

SECRET = "Zebulon-Quartz-4711"
K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(os.urandom(32)).decode()
# Golden vector: the stored format (base64 of nonce || ciphertext+tag, AAD table/entity).
GOLDEN = "T/tFZx90DI3B6hoOe/8MdG8Q61kG0VMdqKf4wjriUzTTUNeEuEY293Mjyawqs2E="


def _cipher(ring: str) -> PayloadCipher:
    cipher = PayloadCipher.from_env({"SYNCFLOW_PAYLOAD_KEYS": ring})
    assert cipher is not None
    return cipher


def test_stored_format_is_stable() -> None:
    assert _cipher(f"k1:{K1}").decrypt(GOLDEN, "k1", "sf_failed_records/customers") == (
        '{"NAME": "Zebulon"}')
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        _cipher(f"k1:{K1}").decrypt(GOLDEN, "k1", "sf_failed_records/orders")  # other entity


def test_configuration_errors_are_clear() -> None:
    assert PayloadCipher.from_env({}) is None
    with pytest.raises(ConfigError, match="16 bytes; AES-256 needs 32"):
        PayloadCipher.from_env({"SYNCFLOW_PAYLOAD_KEY": base64.b64encode(b"x" * 16).decode()})
    with pytest.raises(ConfigError, match="not 'id:base64key'"):
        PayloadCipher.from_env({"SYNCFLOW_PAYLOAD_KEYS": K1})
    single = PayloadCipher.from_env({"SYNCFLOW_PAYLOAD_KEY": K1})
    assert single is not None and single.active == "k1"


def _rejects() -> pa.Table:
    raw = json.dumps({"CUSTOMER_NO": "C1", "NAME": SECRET, "CREDIT_LIMIT": "12,3x"})
    row = {"entity": "customers", "stage": "numbers", "error_code": "invalid_number",
           "message": "CREDIT_LIMIT: not a number: '12,3x'", "bridge_ref": None, "raw_row": raw}
    return pa.Table.from_pylist([{n: row.get(n) for n in REJECT_SCHEMA.names}],
                                schema=REJECT_SCHEMA)


def _pending() -> pa.Table:
    return pa.table({
        "entity": ["order_lines"], "key_hash": ["a" * 32], "parent_entity": ["orders"],
        "parent_key": ['[["s", "SO-1"]]'], "parent_key_hash": ["b" * 32],
        "row_json": [json.dumps({"order_no": "SO-1", "note": SECRET})],
        "next_retry_at": pa.array([datetime.now(UTC) - timedelta(minutes=1)],
                                  pa.timestamp("us", tz="UTC")),
        "run_id": ["r1"],
    })


def _table_text(store: StateStore, table: str) -> str:
    with store.engine.connect() as conn:
        return repr(conn.execute(sa.text(f"SELECT * FROM {table}")).all())


def test_payloads_are_ciphertext_at_rest_and_plain_for_callers(db_url: str) -> None:
    store = StateStore(db_url, cipher=_cipher(f"k1:{K1}"))
    store.upgrade()
    store.add_failed_records(_rejects(), "r1")
    store.upsert_pending(_pending())
    for table in ("sf_failed_records", "sf_pending_children"):
        text = _table_text(store, table)
        assert SECRET not in text and "12,3x" not in text and "'k1'" in text
    (record,) = store.list_failed_records("customers").to_pylist()
    assert SECRET in record["raw_row"] and "12,3x" in record["message"]
    assert SECRET in store.get_failed_record(record["id"])["raw_row"]
    (waiting,) = store.due_pending("order_lines", datetime.now(UTC)).to_pylist()
    assert json.loads(waiting["row_json"])["note"] == SECRET  # resolution reads plain rows
    # Rotation: a new active key; old payloads still open, a payload seen again is re-sealed.
    rotated = StateStore(db_url, cipher=_cipher(f"k2:{K2},k1:{K1}"))
    assert SECRET in rotated.list_failed_records("customers").column("raw_row")[0].as_py()
    rotated.add_failed_records(_rejects(), "r2")
    assert "'k2'" in _table_text(rotated, "sf_failed_records")
    # A wrong key under a known id, or no key at all: refused, saying why.
    wrong = StateStore(db_url, cipher=_cipher(f"k2:{K1}"))
    with pytest.raises(PayloadKeyError, match="payload key 'k2' does not decrypt"):
        wrong.list_failed_records("customers")
    with pytest.raises(PayloadKeyError, match="no payload key is configured"):
        StateStore(db_url).due_pending("order_lines", None)
    for s in (store, rotated, wrong):
        s.close()
