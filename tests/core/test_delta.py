"""Delta classification: what gets written, skipped, deleted and rejected per strategy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncflow_core import delta
from syncflow_core.config import EntityConfig
from syncflow_core.delta import STORED_SCHEMA, classify, empty_stored, index_incoming
from syncflow_core.identity import DATA_HASH, DELETED_AT, KEY_HASH, ROWVERSION, identify
from syncflow_core.rejects import ROW_ID

ITEMS = EntityConfig(
    name="items", source={"table": "items"}, business_key_fields=("code",), rowversion_field="rv"
)


def batch(rows: list[tuple[str, int, int]]) -> pa.Table:
    """Identified rows of (code, price, rv)."""
    t = pa.table({"code": [r[0] for r in rows], "price": [r[1] for r in rows],
                  "rv": [r[2] for r in rows]})
    return identify(t, ITEMS).table


def stored_from(
    rows: list[tuple[str, int, int]], deleted: set[str] = frozenset()  # type: ignore[assignment]
) -> pa.Table:
    """What the target would hold after loading ``rows`` (some soft-deleted)."""
    b = batch(rows)
    return pa.table(
        {
            KEY_HASH: b.column(KEY_HASH),
            DATA_HASH: b.column(DATA_HASH),
            ROWVERSION: b.column(ROWVERSION),
            DELETED_AT: pa.array(
                [datetime(2024, 1, 1, tzinfo=UTC) if r[0] in deleted else None for r in rows],
                pa.timestamp("us", "UTC"),
            ),
        }
    )


def codes(t: pa.Table) -> list[str]:
    return t.column("code").to_pylist()


def key_of(code: str) -> str:
    return batch([(code, 0, 0)]).column(KEY_HASH)[0].as_py()


STORED = [("A", 1, 1), ("B", 2, 1), ("C", 3, 1), ("GONE", 9, 1), ("DEAD", 5, 1)]
INCOMING = [("A", 1, 1), ("B", 20, 2), ("C", 3, 2), ("NEW", 7, 1), ("DEAD", 5, 1)]


def test_hash_writes_only_changes_and_deletes_missing_live_keys() -> None:
    r = classify(batch(INCOMING), stored_from(STORED, {"DEAD"}), "hash", rowversion_field="rv")
    assert codes(r.inserts) == ["NEW"]
    assert codes(r.updates) == ["B", "DEAD"]  # B changed; DEAD comes back (un-delete)
    assert r.unchanged == 2  # A, and C whose only change is its row version
    assert r.deletes.to_pylist() == [key_of("GONE")]
    assert r.rejects.num_rows == 0 and r.superseded == 0


def test_full_writes_every_row_and_deletes_missing() -> None:
    r = classify(batch(INCOMING), stored_from(STORED), "full", rowversion_field=None)
    assert codes(r.inserts) == ["NEW"]
    assert codes(r.updates) == ["A", "B", "C", "DEAD"]
    assert r.unchanged == 0
    assert r.deletes.to_pylist() == [key_of("GONE")]


def test_rowversion_compares_versions_and_never_deletes() -> None:
    r = classify(batch(INCOMING), stored_from(STORED, {"DEAD"}), "rowversion",
                 rowversion_field="rv")
    assert codes(r.inserts) == ["NEW"]
    assert codes(r.updates) == ["B", "C", "DEAD"]  # C: new version, same data; DEAD: undelete
    assert r.unchanged == 1
    assert len(r.deletes) == 0


def test_rowversion_compares_across_int_and_text_storage() -> None:
    stored = stored_from(STORED).set_column(
        2, ROWVERSION, pa.array(["1", "1", "2", "1", "1"], pa.string())
    )
    r = classify(batch(INCOMING), stored, "rowversion", rowversion_field="rv")
    assert codes(r.updates) == ["B"]


def test_no_deletes_when_the_stored_scope_is_incomplete() -> None:
    r = classify(batch(INCOMING), stored_from(STORED), "hash", rowversion_field="rv",
                 complete_scope=False)
    assert len(r.deletes) == 0


def test_already_deleted_rows_are_not_deleted_again() -> None:
    r = classify(batch([("A", 1, 1)]), stored_from([("A", 1, 1), ("X", 1, 1)], {"X"}), "hash",
                 rowversion_field=None)
    assert len(r.deletes) == 0


def test_duplicates_without_a_winner_are_all_rejected_naming_the_key() -> None:
    b = batch([("A", 1, 1), ("D", 2, 3), ("D", 3, 3), ("E", 1, 1)])
    r = classify(b, empty_stored(pa.int64()), "hash", rowversion_field="rv")
    assert codes(r.inserts) == ["A", "E"]
    assert r.rejects.column(ROW_ID).to_pylist() == [1, 2]
    assert set(r.rejects.column("error_code").to_pylist()) == {"duplicate_key"}
    assert set(r.rejects.column("stage").to_pylist()) == {"delta"}
    assert "items[code=D]" in r.rejects.column("message")[0].as_py()
    assert r.superseded == 0


def test_the_strictly_highest_rowversion_wins_a_duplicate() -> None:
    b = batch([("D", 1, 1), ("D", 2, 5), ("D", 3, 2), ("A", 1, 1)])
    r = classify(b, STORED_SCHEMA.empty_table(), "hash", rowversion_field="rv")
    assert r.inserts.column("price").to_pylist() == [2, 1]
    assert r.superseded == 2
    # The superseded copies are still source rows: each is a failed record of its own.
    assert sorted(r.rejects.column(ROW_ID).to_pylist()) == [0, 2]
    assert set(r.rejects.column("error_code").to_pylist()) == {"duplicate_key"}
    message = r.rejects.column("message")[0].as_py()
    assert "items[code=D]: 3 rows" in message and "highest row version loads" in message


def test_an_index_built_ahead_classifies_exactly_like_classify_alone() -> None:
    """The pipeline indexes the incoming rows while the stored side is still being read."""
    rows = [*INCOMING, ("D", 1, 1), ("D", 2, 5), ("E", 1, 3), ("E", 2, 3)]
    b = batch(rows)
    stored = stored_from(STORED, deleted={"DEAD"})
    for strategy in ("hash", "full", "rowversion"):
        alone = classify(b, stored, strategy, rowversion_field="rv")
        ahead = classify(b, stored, strategy, rowversion_field="rv",
                         index=index_incoming(b, "rv"))
        assert codes(ahead.inserts) == codes(alone.inserts) == ["NEW", "D"]
        assert codes(ahead.updates) == codes(alone.updates)
        assert ahead.deletes.to_pylist() == alone.deletes.to_pylist()
        # E, E (equal versions) and the superseded D
        assert ahead.rejects.equals(alone.rejects) and ahead.rejects.num_rows == 3
        assert (ahead.unchanged, ahead.superseded) == (alone.unchanged, alone.superseded)


def test_an_index_of_other_rows_is_refused() -> None:
    b = batch(INCOMING)
    other = index_incoming(batch(INCOMING), "rv")
    with pytest.raises(ValueError, match="other rows"):
        classify(b, stored_from(STORED), "hash", rowversion_field="rv", index=other)


def test_without_a_rowversion_field_duplicates_are_rejected() -> None:
    b = batch([("D", 1, 1), ("D", 2, 5)])
    r = classify(b, STORED_SCHEMA.empty_table(), "hash", rowversion_field=None)
    assert r.inserts.num_rows == 0
    assert r.rejects.num_rows == 2


def test_stored_table_with_bad_hashes_is_a_clear_error() -> None:
    bad = pa.table(
        {KEY_HASH: ["nothex"], DATA_HASH: ["x"], ROWVERSION: pa.array([None], pa.string()),
         DELETED_AT: pa.array([None], pa.timestamp("us", "UTC"))},
        schema=STORED_SCHEMA,
    )
    with pytest.raises(ValueError, match="32 hex"):
        classify(batch([("A", 1, 1)]), bad, "hash", rowversion_field=None)


@pytest.fixture(params=["compiled", "numpy"])
def join_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the compiled hash join and on the numpy join it stands in for."""
    if request.param == "compiled":
        assert delta._keyjoin is not None, "the package was built without the compiled join"
    else:
        monkeypatch.setattr(delta, "_keyjoin", None)
    return str(request.param)


def test_compiled_join_refuses_a_key_twice_and_odd_buffers() -> None:
    from syncflow_core import _keyjoin

    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    got = _keyjoin.join(a + b, a + b, [c + b, a], [c + c, b])  # stored in two chunks
    assert got is not None
    mi, ms, only, changed = (np.frombuffer(x, t) for x, t in
                             zip(got, (np.int64, np.int64, np.int64, np.bool_), strict=True))
    assert (mi.tolist(), ms.tolist(), only.tolist()) == ([1, 0], [1, 2], [0])
    assert changed.tolist() == [True, True]  # b's data c vs b, a's data b vs a
    assert _keyjoin.join(a + a, a + b, [b], [b]) is None  # incoming twice
    assert _keyjoin.join(a + b, a + b, [a, a], [a, b]) is None  # stored twice, across chunks
    with pytest.raises(ValueError, match="32-byte"):
        _keyjoin.join(a, a, [b"short"], [b"short"])
    with pytest.raises(ValueError, match="32-byte"):
        _keyjoin.join(a, a, [a], [a + a])


def test_a_stored_key_twice_is_a_clear_error_either_way(join_impl: str) -> None:
    inc = batch([("A", 1, 1)])
    twice = stored_from([("A", 1, 1), ("A", 1, 1)])
    with pytest.raises(ValueError, match="duplicate"):
        classify(inc, twice, "hash", rowversion_field=None)


def test_prefix_collisions_fall_back_to_full_keys(join_impl: str) -> None:
    # Two different stored keys sharing the first 64 bits with incoming keys: the uint64 join
    # pairs them wrongly; classify must notice and still give the right answer.
    inc = batch([("A", 1, 1), ("B", 2, 1)])
    ka, kb = inc.column(KEY_HASH).to_pylist()
    fake_a = ka[:16] + ("0" * 16 if ka[16:] != "0" * 16 else "1" * 16)
    stored = pa.table({
        KEY_HASH: [fake_a, kb], DATA_HASH: ["x", inc.column(DATA_HASH)[1].as_py()],
        ROWVERSION: pa.array([1, 1]), DELETED_AT: pa.array([None, None], pa.timestamp("us", "UTC")),
    })
    r = classify(inc, stored, "hash", rowversion_field=None)
    assert codes(r.inserts) == ["A"]
    assert r.unchanged == 1
    assert r.deletes.to_pylist() == [fake_a]


@given(
    st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 3), max_size=25),
    st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 3), max_size=25),
)
@settings(max_examples=80, deadline=None)
def test_hash_strategy_matches_a_dictionary_model(inc: dict[str, int], old: dict[str, int]) -> None:
    for compiled in (delta._keyjoin, None):
        _check_against_model(inc, old, compiled)


def _check_against_model(inc: dict[str, int], old: dict[str, int], compiled: Any) -> None:
    saved, delta._keyjoin = delta._keyjoin, compiled  # both joins, same expectations
    try:
        r = classify(batch([(k, v, 1) for k, v in inc.items()]),
                     stored_from([(k, v, 1) for k, v in old.items()]), "hash",
                     rowversion_field="rv")
    finally:
        delta._keyjoin = saved
    assert sorted(codes(r.inserts)) == sorted(k for k in inc if k not in old)
    assert sorted(codes(r.updates)) == sorted(k for k in inc if k in old and old[k] != inc[k])
    assert r.unchanged == sum(1 for k in inc if k in old and old[k] == inc[k])
    assert sorted(r.deletes.to_pylist()) == sorted(key_of(k) for k in old if k not in inc)


def _big(n: int, seed: int) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    # Key hashes whose first 64 bits are all zero: the prefix join must not go quadratic.
    rng = np.random.default_rng(seed)
    keys = [f"{i:032x}" for i in rng.integers(0, 2**62, n, dtype=np.int64)]
    data = [f"{i:032x}" for i in rng.integers(0, 2**62, n, dtype=np.int64)]
    inc = pa.table({KEY_HASH: keys, DATA_HASH: data, ROW_ID: pa.array(np.arange(n))})
    stored = pa.table({KEY_HASH: keys[::-1], DATA_HASH: data[::-1],
                       ROWVERSION: pa.nulls(n, pa.string()),
                       DELETED_AT: pa.nulls(n, pa.timestamp("us", "UTC"))})
    return inc, stored, {}


def test_keys_sharing_one_prefix_still_join_in_linear_memory(join_impl: str) -> None:
    inc, stored, _ = _big(50_000, 1)
    r = classify(inc, stored, "hash", rowversion_field=None)
    assert r.unchanged == 50_000 and r.inserts.num_rows == 0 and len(r.deletes) == 0
