"""Correlation ids for log lines: run id, entity, slice, chunk, batch id.

The code that runs a stage sets them for the block it runs (`log_context`); any log record
made inside (SyncFlow's, a library's, Dagster's) can carry them: `CorrelationFilter` copies them
onto records, `JsonFormatter` writes one JSON object per line with them. Context variables, so
threads and tasks started inside see their parent's values only when they copy the context.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from syncflow_core.redaction import redact_text

__all__ = ["FIELDS", "CorrelationFilter", "JsonFormatter", "current", "log_context"]

FIELDS = ("run_id", "entity", "slice", "chunk", "batch_id")

_vars: dict[str, ContextVar[Any]] = {name: ContextVar(f"syncflow_{name}", default=None)
                                     for name in FIELDS}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Set correlation fields (a subset of `FIELDS`) for the block; restored afterwards."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields {sorted(unknown)}")
    tokens = [(_vars[k], _vars[k].set(v)) for k, v in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, Any]:
    """The correlation fields set now (unset ones left out)."""
    return {k: v for k, var in _vars.items() if (v := var.get()) is not None}


class CorrelationFilter(logging.Filter):
    """Copies the current correlation fields onto each record (never filters one out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the correlation fields.

    The message is redacted (`redaction.redact_text`) on the way out: no credentials in logs.
    """

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """Correlation fields of ``record`` (its attributes, else the current context)."""
        ctx = current()
        return {k: getattr(record, k, None) or ctx.get(k) for k in FIELDS}

    def message(self, record: logging.LogRecord) -> str:
        """The record's message text."""
        return record.getMessage()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(self.message(record)),
            **self.fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, default=str, ensure_ascii=False)
