"""The Alembic migrations build the state tables on an empty database, once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncflow_core.state.store import MIGRATIONS_DIR, StateStore
from syncflow_core.state.tables import VERSION_TABLE, metadata, watermarks

STATE_TABLES = {
    "sf_slice_plans": {("entity", "slice_key")},
    "sf_slice_cursors": {("entity", "slice_key")},
    "sf_failed_records": {("fingerprint",)},
    "sf_pending_children": {("entity", "key_hash", "parent_entity", "parent_key_hash")},
    "sf_watermarks": set(),
}


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


pytestmark = pytest.mark.filterwarnings(
    "ignore:.*expression-based index:UserWarning",
    "ignore:.*expression-based index:sqlalchemy.exc.SAWarning",
)


def test_upgrade_creates_tables_with_unique_constraints(db_url: str) -> None:
    store = StateStore(db_url)
    store.upgrade()
    insp = sa.inspect(store.engine)
    names = set(insp.get_table_names())
    assert set(STATE_TABLES) <= names
    assert VERSION_TABLE in names
    for table, uniques in STATE_TABLES.items():
        found = {tuple(u["column_names"]) for u in insp.get_unique_constraints(table)}
        assert uniques <= found, (table, found)
    # The entity-wide watermark (slice_key NULL) is unique through an expression index, which
    # SQLite cannot reflect: check it by behaviour.
    row = {"entity": "items", "slice_key": None, "value": "1", "value_type": "int",
           "updated_at": datetime.now(UTC)}
    with store.engine.begin() as conn:
        conn.execute(sa.insert(watermarks), {"id": "a", **row})
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(watermarks), {"id": "b", **row})
    store.close()


def test_upgrade_twice_is_a_noop_and_at_head(db_url: str) -> None:
    store = StateStore(db_url)
    store.upgrade()
    store.save_cursor("items", "slice-01", (5,), rows_done=5, run_id="r1")
    store.upgrade()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert ctx.get_current_revision() == _head()
        assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
    # State written between the two upgrades survives.
    cur = store.get_cursor("items", "slice-01")
    assert cur is not None and cur.last_key == (5,)
    store.close()


def test_migrated_schema_matches_the_code_metadata(db_url: str) -> None:
    """Like `alembic check`: autogenerate finds nothing between migrations and tables.py."""
    store = StateStore(db_url)
    store.upgrade()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        diff = compare_metadata(ctx, metadata)
    # Expression indexes cannot be reflected/compared on every backend; ignore only those.
    diff = [d for d in diff if not (isinstance(d, tuple) and "watermarks" in str(d))]
    assert diff == []
    store.close()
