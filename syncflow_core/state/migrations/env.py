"""Alembic environment for SyncFlow's state store (run in code by `StateStore.upgrade`).

The caller passes an open connection in ``config.attributes["connection"]``; the migrations
run inside the caller's transaction. A URL (``sqlalchemy.url``) works too, for the CLI.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from syncflow_core.state.tables import VERSION_TABLE, metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the state migrations")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
