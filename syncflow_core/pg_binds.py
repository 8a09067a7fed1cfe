"""PostgreSQL: bound values as session settings, so a query can take ADBC's COPY path.

ADBC reads a query without parameters through ``COPY (query) TO STDOUT (FORMAT binary)``; once
values are bound it must use a prepared statement and converts rows far more slowly (PostgreSQL's
COPY takes no parameters). Measured: 1M source rows 0.9 s instead of 1.7 s; 500k stored
identities by key range as slow as 1M unbounded. Here the values still travel bound, as the
parameters of one ``set_config`` call, and the query reads them back with ``current_setting``
(a stable function, so an index range on the key still applies). Setting names are ours.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

__all__ = ["binds_as_settings", "set_settings_sql"]

_SETTING = "syncflow.bind_{}"


def _setting_text(value: Any) -> str | None:
    """A bound value as the text a server-side cast turns back into it (None: cannot)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | decimal.Decimal | str):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    return None


def binds_as_settings(stmt: sa.Select[Any]) -> tuple[sa.Select[Any], list[str]]:
    """Move a query's bound values into session settings, so the query itself has none.

    Returns the rewritten query and the values for `set_settings_sql`, to run first on the
    same connection. Values with no exact text form keep their parameter (and the slower path).
    """
    texts: list[str] = []

    def replace(element: Any, **_: Any) -> Any:
        if not isinstance(element, BindParameter) or element.callable is not None:
            return None
        text = _setting_text(element.value)
        if text is None:
            return None
        name: sa.ColumnElement[str] = sa.literal_column(f"'{_SETTING.format(len(texts))}'")
        texts.append(text)
        setting: ExternallyTraversible = sa.func.current_setting(name, type_=sa.Text())
        return setting

    replaced = replacement_traverse(cast(ExternallyTraversible, stmt), {}, replace)
    return cast("sa.Select[Any]", replaced), texts


def set_settings_sql(n: int) -> str:
    """``SELECT set_config('syncflow.bind_0', $1, false), …`` (session scope, autocommit)."""
    return "SELECT " + ", ".join(
        f"set_config('{_SETTING.format(i)}', ${i + 1}, false)" for i in range(n)
    )
