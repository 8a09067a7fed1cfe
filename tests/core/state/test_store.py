"""The state store's behaviour on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncflow_core.keycodec import dumps_key
from syncflow_core.rejects import REJECT_SCHEMA
from syncflow_core.slices import SliceBounds
from syncflow_core.state.store import StateStore

T0 = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)


def _rejects(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def _reject(raw: dict[str, Any], code: str = "bad_number", entity: str = "items") -> dict[str, Any]:
    return {
        "entity": entity,
        "stage": "numbers",
        "error_code": code,
        "message": f"column 'price': value {raw.get('price')!r} is not a number",
        "bridge_ref": None,
        "raw_row": json.dumps(raw),
    }


def test_slice_plan_round_trips_key_types(store: StateStore) -> None:
    plan = [
        SliceBounds("slice-01", None, ("A-100", 7)),
        SliceBounds("slice-02", ("A-100", 7), (Decimal("12.50"), date(2024, 2, 29))),
        SliceBounds("slice-03", (datetime(2024, 1, 1, 12, 30, 0, 123456, tzinfo=UTC),), None),
        SliceBounds("slice-04", None, ()),  # empty slice: ends at the bottom of the key space
    ]
    assert store.get_slice_plan("items") is None
    store.save_slice_plan("items", plan)
    back = store.get_slice_plan("items")
    assert back == plan
    assert back is not None
    assert back[3].hi == () and back[3].is_empty
    assert [type(v) for v in back[1].hi or ()] == [Decimal, date]
    assert back[1].hi == (Decimal("12.50"), date(2024, 2, 29))
    assert str(back[1].hi[0]) == "12.50"  # scale kept
    # Re-planning replaces the plan rather than mixing old and new slices.
    store.save_slice_plan("items", [SliceBounds("slice-01", None, None)])
    assert store.get_slice_plan("items") == [SliceBounds("slice-01", None, None)]


key_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.lists(key_values, min_size=1, max_size=3).map(tuple))
def test_cursor_last_key_comes_back_as_the_same_values(
    store: StateStore, key: tuple[Any, ...]
) -> None:
    store.save_cursor("orders", "slice-02", key, rows_done=10, run_id="run-a")
    cur = store.get_cursor("orders", "slice-02")
    assert cur is not None
    assert cur.last_key == key
    assert [type(v) for v in cur.last_key or ()] == [type(v) for v in key]


def test_cursor_lifecycle_running_paused_done(store: StateStore) -> None:
    assert store.get_cursor("orders", "slice-01") is None
    store.save_cursor("orders", "slice-01", ("SO-1000",), rows_done=1000, run_id="r1")
    cur = store.get_cursor("orders", "slice-01")
    assert cur is not None
    assert (cur.status, cur.pass_no, cur.last_key, cur.rows_done) == (
        "running", 1, ("SO-1000",), 1000)
    assert store.pause_cursor("orders", "slice-01", run_id="r1")
    cur = store.get_cursor("orders", "slice-01")
    assert cur is not None and cur.status == "paused" and cur.last_key == ("SO-1000",)
    store.save_cursor("orders", "slice-01", ("SO-2000",), rows_done=2000, run_id="r2")
    cur = store.get_cursor("orders", "slice-01")
    assert cur is not None and cur.rows_done == 3000  # the pass's rows add up over chunks
    store.finish_slice("orders", "slice-01", run_id="r2", rows_done=500)
    cur = store.get_cursor("orders", "slice-01")
    assert cur is not None
    assert (cur.status, cur.pass_no, cur.last_key, cur.rows_done, cur.run_id) == (
        "done", 2, None, 3500, "r2")
    # The next pass counts from its own first chunk.
    store.save_cursor("orders", "slice-01", ("SO-0100",), rows_done=100, run_id="r3")
    cur = store.get_cursor("orders", "slice-01")
    assert cur is not None and (cur.rows_done, cur.pass_no) == (100, 2)
    assert cur.updated_at.tzinfo is not None
    # A slice finished in a single chunk (no cursor yet) is recorded too.
    store.finish_slice("orders", "slice-02", run_id="r3")
    cur2 = store.get_cursor("orders", "slice-02")
    assert cur2 is not None and cur2.status == "done" and cur2.pass_no == 2
    assert not store.pause_cursor("orders", "slice-02")  # nothing running there


def test_cursor_write_rolls_back_with_the_callers_transaction(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        store.save_cursor("orders", "slice-01", ("SO-1",), rows_done=1, conn=conn)
        raise RuntimeError("target write failed")
    assert store.get_cursor("orders", "slice-01") is None


def test_watermarks_keep_their_type_per_entity_and_slice(store: StateStore) -> None:
    assert store.get_watermark("items") is None
    store.set_watermark("items", None, 41)
    store.set_watermark("items", None, 42)
    store.set_watermark("items", "slice-01", "0x00000000000A1B2C")
    assert store.get_watermark("items") == 42
    assert store.get_watermark("items", "slice-01") == "0x00000000000A1B2C"
    assert store.get_watermark("orders") is None
    with pytest.raises(TypeError):
        store.set_watermark("items", None, 1.5)  # type: ignore[arg-type]


def test_same_bad_row_is_counted_not_doubled(store: StateStore) -> None:
    bad = _reject({"sku": "A-1", "price": "12,5x"})
    other = _reject({"sku": "A-2", "price": "n/a"})
    assert store.add_failed_records(_rejects([bad, other]), "run-1") == 2
    assert store.add_failed_records(_rejects([bad]), "run-2") == 0
    recs = {r["raw_row"]: r for r in store.list_failed_records("items").to_pylist()}
    assert len(recs) == 2
    again = recs[bad["raw_row"]]
    assert again["occurrences"] == 2 and again["last_run_id"] == "run-2"
    assert again["last_seen_at"] >= again["first_seen_at"]
    assert recs[other["raw_row"]]["occurrences"] == 1
    # A different error on the same row is a different record.
    assert store.add_failed_records(_rejects([_reject({"sku": "A-1", "price": "12,5x"},
                                                      code="other")]), "run-3") == 1


def test_failed_records_status_and_reopen(store: StateStore) -> None:
    bad = _reject({"sku": "Ä'; DROP TABLE x;--", "price": "€"})
    store.add_failed_records(_rejects([bad, bad]), "run-1")
    table = store.list_failed_records("items")
    assert table.num_rows == 1 and table.column("occurrences")[0].as_py() == 2
    assert json.loads(table.column("raw_row")[0].as_py())["sku"] == "Ä'; DROP TABLE x;--"
    assert store.set_failed_status(table.column("id"), "resolved") == 1
    assert store.list_failed_records("items").num_rows == 0
    assert store.list_failed_records("items", status="resolved").num_rows == 1
    store.add_failed_records(_rejects([bad]), "run-2")  # it failed again: open again
    assert store.list_failed_records("items").column("occurrences").to_pylist() == [3]


def test_many_failed_records_in_one_call(store: StateStore) -> None:
    rows = [_reject({"sku": f"S{i}", "price": "x"}) for i in range(5000)]
    assert store.add_failed_records(_rejects(rows), "run-1") == 5000
    assert store.add_failed_records(_rejects(rows), "run-2") == 0
    assert store.list_failed_records("items").num_rows == 5000


def _pending(keys: list[str], parent: str = "orders", retry: datetime = T0,
             run_id: str = "r1", version: int = 1) -> pa.Table:
    return pa.table({
        "entity": ["order_lines"] * len(keys),
        "key_hash": keys,
        "parent_entity": [parent] * len(keys),
        "parent_key": [dumps_key((f"SO-{k}",)) for k in keys],
        "parent_key_hash": [f"p{k}" for k in keys],
        "row_json": [json.dumps({"line": k, "v": version}) for k in keys],
        "next_retry_at": pa.array([retry] * len(keys), pa.timestamp("us", tz="UTC")),
        "run_id": [run_id] * len(keys),
    })


def test_pending_children_wait_retry_and_leave(store: StateStore) -> None:
    assert store.upsert_pending(_pending(["a", "b", "c"])) == 3
    # Seen again in a later batch: the newer row replaces, no duplicate, attempts kept.
    store.upsert_pending(_pending(["a"], run_id="r2", version=2))
    waiting = store.due_pending("order_lines", None)
    assert waiting.num_rows == 3
    a = next(r for r in waiting.to_pylist() if r["key_hash"] == "a")
    assert json.loads(a["row_json"])["v"] == 2 and a["run_id"] == "r2"
    assert a["parent_key"] == dumps_key(("SO-a",))
    assert store.due_pending("order_lines", T0 - timedelta(seconds=1)).num_rows == 0
    assert store.due_pending("order_lines", T0).num_rows == 3
    only_b = store.due_pending("order_lines", None, parent_key_hashes=pa.array(["pb"]))
    assert only_b.column("key_hash").to_pylist() == ["b"]

    later = T0 + timedelta(minutes=10)
    first_two = waiting.filter(pa.array([True, True, False])).column("id")
    assert store.bump_pending(first_two, later) == 2
    counts = store.pending_counts("order_lines", now=T0)
    assert counts.total == 3 and counts.due == 1 and counts.by_parent == {"orders": 3}
    assert counts.max_attempts == 1

    assert store.delete_pending("order_lines", pa.array(["a", "c"])) == 2
    assert store.due_pending("order_lines", None).column("key_hash").to_pylist() == ["b"]
    assert store.pending_counts("items").total == 0


def test_pending_bulk_in_callers_transaction(store: StateStore) -> None:
    keys = [f"k{i:05d}" for i in range(3000)]
    with store.begin() as conn:
        store.upsert_pending(_pending(keys), conn=conn)
        gone = pa.chunked_array([keys[:1000]])
        assert store.delete_pending("order_lines", gone, conn=conn) == 1000
    assert store.pending_counts("order_lines").total == 2000
    due = store.due_pending("order_lines", None, parent_key_hashes=[f"p{k}" for k in keys])
    assert due.num_rows == 2000


def test_known_failed_records_counts_rows_already_on_record(store: StateStore) -> None:
    old = _rejects([_reject({"price": "12,3x"}), _reject({"price": "n/a"})])
    assert store.known_failed_records(old) == 0
    store.add_failed_records(old, "run-1")
    # The next sync sees both again plus one new bad row: only the new one is news.
    again = _rejects([_reject({"price": "12,3x"}), _reject({"price": "n/a"}),
                      _reject({"price": "1.2.3"})])
    assert store.known_failed_records(again) == 2
    # Same raw row failing another way is a different record.
    other = _rejects([_reject({"price": "12,3x"}, code="other")])
    assert store.known_failed_records(other) == 0


def test_close_failed_records_by_key_and_reopen(store: StateStore) -> None:
    bad = {**_reject({"sku": "A-1", "price": "12,3x"}), "key_hash": "k" * 32}
    twice = {**_reject({"sku": "A-1", "price": "n/a"}), "key_hash": "k" * 32}
    other = {**_reject({"sku": "B-2", "price": "?"}), "key_hash": "o" * 32}
    keyless = _reject({"sku": None, "price": "1"})
    store.add_failed_records(_rejects([bad, twice, other, keyless]), "run-1")
    # Nothing open for these keys, or another entity: nothing closes.
    assert store.close_failed_records("items", pa.array(["z" * 32]), "run-2") == 0
    assert store.close_failed_records("orders", pa.array(["k" * 32]), "run-2") == 0
    # Both records of the key close (a chunked array, repeated keys: one update).
    keys = pa.chunked_array([["k" * 32], ["k" * 32, "z" * 32]])
    assert store.close_failed_records("items", keys, "run-2") == 2
    open_ = store.list_failed_records("items").to_pylist()
    assert sorted(r["key_hash"] or "-" for r in open_) == ["-", "o" * 32]
    closed = store.list_failed_records("items", status="resolved").to_pylist()
    assert {r["closed_run_id"] for r in closed} == {"run-2"}
    assert all(r["closed_at"] is not None for r in closed)
    # Failing again re-opens the record and clears the closing marks.
    store.add_failed_records(_rejects([bad]), "run-3")
    again = [r for r in store.list_failed_records("items").to_pylist()
             if r["key_hash"] == "k" * 32]
    assert len(again) == 1 and again[0]["closed_at"] is None and again[0]["occurrences"] == 2


def test_records_of_a_refused_batch_are_not_on_record(store: StateStore) -> None:
    rejects = _rejects([_reject({"price": "12,3x"}), _reject({"price": "n/a"})])
    store.add_failed_records(rejects, "run-1", gate_blocked=True)
    assert store.known_failed_records(rejects) == 0  # the retry counts them again
    store.add_failed_records(rejects, "run-2")  # a batch that loaded accepted them
    assert store.known_failed_records(rejects) == 2


def test_a_childs_waiting_rows_are_replaced_together(store: StateStore) -> None:
    two = pa.concat_tables([_pending(["a"], parent="orders"), _pending(["a"], parent="items")])
    assert store.upsert_pending(two) == 2
    waiting = store.due_pending("order_lines", None)
    store.bump_pending(waiting.column("id"), T0 + timedelta(hours=1))
    # A newer version waits only for its order: the stale "items" row goes, attempts stay.
    assert store.upsert_pending(_pending(["a"], parent="orders", version=2)) == 1
    rows = store.due_pending("order_lines", None).to_pylist()
    assert [(r["parent_entity"], r["attempts"]) for r in rows] == [("orders", 1)]
    assert json.loads(rows[0]["row_json"])["v"] == 2
    # Two references to one parent entity (manager and mentor): two rows, both kept.
    mentor = _pending(["b"], parent="employees").set_column(
        4, "parent_key_hash", pa.array(["p-mentor"])
    )
    both = pa.concat_tables([_pending(["b"], parent="employees"), mentor])
    assert store.upsert_pending(both) == 2
    assert store.pending_for("order_lines", ["b"]).num_rows == 2
