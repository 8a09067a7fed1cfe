"""Exceptions SyncFlow raises on purpose; each message says what to fix."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseError",
    "PayloadKeyError",
    "RejectRatioExceeded",
    "SourceDatabaseError",
    "SourceError",
    "StateStoreError",
    "SyncFlowError",
    "SyncPaused",
    "TargetError",
    "TargetSchemaError",
]


class SyncFlowError(Exception):
    """Base class of SyncFlow's own errors."""


class ConfigError(SyncFlowError):
    """Configuration is invalid; the message names file, entity and field."""


class SourceError(SyncFlowError):
    """The source (ERP database, file, HTTP API) failed or returned something unusable."""


class DatabaseError(SyncFlowError):
    """A database (source, target or state store) failed; the message is safe to show (no
    row values, no statement, no credentials: `syncflow_core.redaction`)."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, driver_error: str | None = None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        """The SQLSTATE the server reported, when it did."""
        self.driver_error = driver_error
        """The driver's exception class name, e.g. ``CheckViolation``."""

    @property
    def transient(self) -> bool:
        """True when the same work may succeed later: connection lost or refused, deadlock or
        serialization failure, resources exhausted, server shutting down, lock not available.
        False for what retrying cannot fix (a constraint, a type, a missing table)."""
        if self.sqlstate:
            return self.sqlstate[:2] in ("08", "40", "53", "57") or self.sqlstate == "55P03"
        return self.driver_error in ("OperationalError", "InterfaceError")


class SourceDatabaseError(SourceError, DatabaseError):
    """The source database failed (connection, query)."""


class TargetError(DatabaseError):
    """The target database failed (connection, write, read)."""


class StateStoreError(DatabaseError):
    """The state store's database failed."""


class PayloadKeyError(SyncFlowError):
    """An encrypted payload cannot be read: its key is not configured or is the wrong one."""


class TargetSchemaError(SyncFlowError):
    """The target table cannot take the data without losing some (e.g. a narrowing type change)."""


class RejectRatioExceeded(SyncFlowError):
    """Too many rows of a batch were rejected; loading a half-empty entity would be worse."""


class SyncPaused(SyncFlowError):
    """A background sync stopped at a chunk boundary because its window closed (not a failure)."""
