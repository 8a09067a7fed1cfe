"""Exceptions SyncFlow raises on purpose; each message says what to fix."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "RejectRatioExceeded",
    "SourceError",
    "SyncFlowError",
    "SyncPaused",
    "TargetSchemaError",
]


class SyncFlowError(Exception):
    """Base class of SyncFlow's own errors."""


class ConfigError(SyncFlowError):
    """Configuration is invalid; the message names file, entity and field."""


class SourceError(SyncFlowError):
    """The source (ERP database, file, HTTP API) failed or returned something unusable."""


class TargetSchemaError(SyncFlowError):
    """The target table cannot take the data without losing some (e.g. a narrowing type change)."""


class RejectRatioExceeded(SyncFlowError):
    """Too many rows of a batch were rejected; loading a half-empty entity would be worse."""


class SyncPaused(SyncFlowError):
    """A background sync stopped at a chunk boundary because its window closed (not a failure)."""
