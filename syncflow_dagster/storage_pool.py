"""One pooled connection per Dagster storage for the rest of a run.

dagster-postgres opens a new PostgreSQL connection for every storage call (its engines use
``NullPool``, so that long-lived processes never pile up idle connections). A SyncFlow run
writes ~70 events (every step's start, output and success, log lines, materializations,
check evaluations), and each paid a connection set-up: ~0.7 s of a 1M-row run measured on
one machine with a local server, more with TLS or a remote database. A run worker is
short-lived and writes events one after another, so `pool_storage_connections` switches the
instance's storages to the pooled engines Dagster's webserver uses (one connection held,
no statement timeout) once per instance. SQLite storages ignore it.
"""

import weakref

from dagster import DagsterInstance

__all__ = ["pool_storage_connections"]

_pooled: "weakref.WeakSet[DagsterInstance]" = weakref.WeakSet()

_RECYCLE_SECONDS = 3600
_EXTRA_CONNECTIONS = 2  # beyond the held one, for a storage call from another thread


def pool_storage_connections(instance: DagsterInstance) -> None:
    """Keep one connection per storage of ``instance`` open for its life (once per instance:
    a second engine would leave the first one's connection behind)."""
    if instance in _pooled:
        return
    _pooled.add(instance)
    instance.optimize_for_webserver(
        statement_timeout=0, pool_recycle=_RECYCLE_SECONDS, max_overflow=_EXTRA_CONNECTIONS
    )
