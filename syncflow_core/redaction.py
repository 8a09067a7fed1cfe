"""Error text that is safe to show: no row values, no credentials.

Messages reach the Dagster UI, its event log, compute logs and the CLI's output. Database
drivers put the statement, its bound parameters and the server's DETAIL (``Key (x)=(...)``,
``Failing row contains (...)``) into their messages, and a URL whose password holds an
unencoded ``@`` fails as ``failed to resolve host '<password tail>@host'``. So every database
error is translated at the boundary of the source, target and state store (`db_errors`,
`guard_db_errors`) into a `SyncFlowError` whose text carries only what is safe:

- the driver's error class and SQLSTATE, and the identifiers the server names in its
  diagnostics (schema, table, column, constraint, data type);
- the server's primary message only for SQLSTATE classes that describe the connection, the
  schema or the server (never for data exceptions, class 22, or constraint violations, 23,
  whose messages quote values); never its DETAIL, never the statement or its parameters;
- any URL's credentials replaced by ``***``, also in text that is no URL any more (the
  credential pieces of every URL SyncFlow resolved are remembered, `register_url`, and a
  ``token@host`` piece is cut to ``***@host``: a host name never holds ``@``).

`safe_message` is the one function a shell calls on whatever exception reaches it.
"""

from __future__ import annotations

import functools
import inspect
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote

import sqlalchemy as sa

from syncflow_core.errors import DatabaseError, SyncFlowError

__all__ = [
    "SAFE_SQLSTATE_CLASSES",
    "db_errors",
    "describe_db_error",
    "guard_db_errors",
    "is_db_error",
    "redact_text",
    "redact_url",
    "register_url",
    "safe_message",
    "translate_db_error",
]

SAFE_SQLSTATE_CLASSES = frozenset({"08", "0A", "25", "28", "2B", "3D", "3F", "40", "42", "53",
                                   "54", "55", "57", "58"})
"""SQLSTATE classes whose primary message names no row value (connection, authorization,
catalog, syntax/undefined object, resources, locks, server state)."""

_MAX_LEN = 500
_REDACTED = "***"

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"]*)@")
_AT_TOKEN = re.compile(r"[^\s'\"()<>\[\],;=/:@]+@(?=[\w\[.\-])")
_DSN_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)")
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def _url_password(url: str) -> str | None:
    """The password of a URL, found by hand so that a malformed URL (an unencoded ``@`` or
    ``:`` in the password) still yields all of it."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    rest = rest.split("?", 1)[0]
    at = rest.rfind("@")
    if at < 0:
        return None
    userinfo = rest[:at]
    _user, colon, password = userinfo.partition(":")
    return password if colon and password else None


def register_url(url: str) -> None:
    """Remember the credential pieces of a URL SyncFlow uses, so `redact_text` removes them
    from any later text (also the pieces a driver quotes after mis-parsing the URL)."""
    password = _url_password(url)
    if not password:
        return
    pieces = {password, unquote(password)}
    for p in list(pieces):
        # A driver that split the URL at an '@' inside the password sees its parts apart.
        pieces.update(part for part in re.split(r"[@:]", p) if len(part) >= 3)
    with _secrets_lock:
        _secrets.update(pieces)


def redact_url(url: str) -> str:
    """The URL with its password (or whole user info, when it does not parse) as ``***``."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """``text`` without credentials: URL user info, DSN passwords, remembered secrets and the
    ``<piece>@`` a mis-parsed URL leaves in a host name."""

    def url_sub(m: re.Match[str]) -> str:
        user, colon, _ = m.group("userinfo").partition(":")
        if not colon or "@" in user:
            return f"{m.group('scheme')}{_REDACTED}@"
        return f"{m.group('scheme')}{user}:{_REDACTED}@"

    text = _URL_CREDENTIALS.sub(url_sub, text)
    text = _DSN_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return _AT_TOKEN.sub(f"{_REDACTED}@", text)


def _elide_literals(text: str) -> str:
    """Quoted literals (where drivers and libraries put values) become ``'…'``."""
    return _QUOTED.sub("'…'", text)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LEN else text[: _MAX_LEN - 1] + "…"


def _driver_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [sa.exc.SQLAlchemyError, sqlite3.Error]
    try:
        import psycopg

        classes.append(psycopg.Error)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    try:
        import psycopg2

        classes.append(psycopg2.Error)
    except ImportError:  # pragma: no cover - optional (dagster-postgres brings it)
        pass
    try:
        import adbc_driver_manager

        classes.append(adbc_driver_manager.Error)
    except ImportError:  # pragma: no cover - ADBC is a dependency
        pass
    return tuple(classes)


_DB_ERRORS = _driver_classes()


def is_db_error(exc: BaseException) -> bool:
    """True for errors of SQLAlchemy and the database drivers SyncFlow uses."""
    return isinstance(exc, _DB_ERRORS)


def _sqlstate(orig: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        value = getattr(orig, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


_DIAG_FIELDS = (("schema", "schema_name"), ("table", "table_name"), ("column", "column_name"),
                ("constraint", "constraint_name"), ("type", "datatype_name"))


def _primary(orig: BaseException) -> str:
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if isinstance(primary, str) and primary:
        return primary
    line = _first_line(str(orig))
    # ADBC: "INVALID_ARGUMENT: [libpq] Failed to execute query: ERROR:  relation ... "
    return re.sub(r"^.*?\bERROR:\s+", "", line)


def describe_db_error(exc: BaseException) -> tuple[str, str | None]:
    """A value-free description of a database error, and its SQLSTATE (when known)."""
    orig: BaseException = exc
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
    name = type(orig).__name__
    sqlstate = _sqlstate(orig)
    parts = [name if sqlstate is None else f"{name} (SQLSTATE {sqlstate})"]
    diag = getattr(orig, "diag", None)
    if diag is not None:
        names = [f"{label} {value}" for label, attr in _DIAG_FIELDS
                 if isinstance(value := getattr(diag, attr, None), str) and value]
        if names:
            parts.append(", ".join(names))
    if isinstance(orig, sqlite3.Error):
        # SQLite names tables and columns, never bound values; quoted bits may still be data.
        errname = getattr(orig, "sqlite_errorname", None)
        if errname:
            parts[0] = f"{name} ({errname})"
        parts.append(_elide_literals(_first_line(str(orig))))
    elif sqlstate is None or sqlstate[:2] in SAFE_SQLSTATE_CLASSES:
        text = _primary(orig) if orig is not exc else _first_line(str(exc).split("[SQL:")[0])
        if sqlstate is None:
            text = _elide_literals(text) if not _looks_like_connection(text) else text
        parts.append(text)
    elif isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError):
        parts.append("statement failed")
    return _clip(redact_text(": ".join(p for p in parts if p))), sqlstate


def _looks_like_connection(text: str) -> bool:
    # Connection failures quote the host, which is what an operator needs to see (redacted).
    lowered = text.lower()
    return any(w in lowered for w in ("connect", "host", "resolve", "server", "socket", "timeout",
                                      "authentication", "database"))


E = TypeVar("E", bound=DatabaseError)


def translate_db_error(exc: BaseException, kind: type[E], where: str) -> E:
    """``exc`` (a driver/SQLAlchemy error) as a ``kind`` error with a safe message."""
    text, sqlstate = describe_db_error(exc)
    return kind(f"{where}: {text}", sqlstate=sqlstate, driver_error=_driver_name(exc))


def _driver_name(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    return type(orig).__name__


@contextmanager
def db_errors(kind: type[DatabaseError], where: str) -> Iterator[None]:
    """Translate database errors raised inside the block into ``kind`` (context dropped, so
    neither the statement nor its parameters travel on in ``__cause__``/``__context__``)."""
    try:
        yield
    except SyncFlowError:
        raise
    except _DB_ERRORS as exc:
        raise translate_db_error(exc, kind, where) from None


T = TypeVar("T")


def guard_db_errors(kind: type[DatabaseError]) -> Callable[[type[T]], type[T]]:
    """Class decorator: every public method (generators included) translates database errors
    into ``kind``, naming the instance's ``_where`` (e.g. ``postgresql target``)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
                with db_errors(kind, _where(self)):
                    yield from fn(self, *args, **kwargs)

            return gen

        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with db_errors(kind, _where(self)):
                return fn(self, *args, **kwargs)

        return call

    def decorate(cls: type[T]) -> type[T]:
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            if getattr(member, "__wrapped__", None) is not None:
                continue  # contextmanager methods translate inside their own body
            setattr(cls, name, wrap(member))
        return cls

    return decorate


def _where(obj: Any) -> str:
    where = getattr(obj, "_where", None)
    if callable(where):
        where = where()
    return str(where) if where else type(obj).__name__


def safe_message(exc: BaseException) -> str:
    """Text about ``exc`` that may be shown anywhere: class name and a value-free message.

    SyncFlow's own errors keep their message (written to name config, entity and field, never
    a row value); database errors are described by `describe_db_error`; anything else keeps
    its first line with quoted literals elided (where libraries put values).
    """
    if isinstance(exc, SyncFlowError):
        return _clip(f"{type(exc).__name__}: {redact_text(str(exc))}")
    if is_db_error(exc):
        return f"{type(exc).__name__}: {describe_db_error(exc)[0]}"
    text = _elide_literals(redact_text(_first_line(str(exc))))
    return _clip(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


