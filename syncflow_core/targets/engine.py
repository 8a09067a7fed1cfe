"""Engines for SyncFlow's databases (target and state store), with SQLite made transactional.

Python's sqlite3 driver does not emit BEGIN before DDL and starts transactions lazily, so a
"transaction" could silently commit a CREATE TABLE on its own. The standard SQLAlchemy recipe
(driver autocommit off, our own BEGIN on `begin`) makes one `engine.begin()` one SQLite
transaction. WAL + a busy timeout let parallel runs share a file.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from syncflow_core.errors import ConfigError
from syncflow_core.redaction import register_url

__all__ = ["create_sql_engine", "is_postgres", "is_sqlite"]

_SQLITE_BUSY_MS = 30_000


def create_sql_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for ``url``; SQLite gets real transactions, WAL and a busy timeout.

    The URL's credentials are remembered for redaction (`redaction.register_url`) before
    anything can fail and quote them.
    """
    if isinstance(url, str):
        register_url(url)
    else:
        register_url(url.render_as_string(hide_password=False))
    try:
        engine = sa.create_engine(url, **kwargs)
    except sa.exc.ArgumentError:
        raise ConfigError(
            "a database URL does not parse (check its scheme, and %-encode special characters "
            "of the password: @ as %40, : as %3A, / as %2F)"
        ) from None
    if engine.dialect.name == "sqlite":
        _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: sa.Engine) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def is_sqlite(bind: sa.Engine | sa.Connection) -> bool:
    """True for SQLite."""
    return bind.dialect.name == "sqlite"


def is_postgres(bind: sa.Engine | sa.Connection) -> bool:
    """True for PostgreSQL."""
    return bind.dialect.name == "postgresql"
