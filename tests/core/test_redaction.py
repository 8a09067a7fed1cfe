"""Safe error text: real driver errors lose their values, statements and credentials."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from syncflow_core.errors import SourceDatabaseError, StateStoreError, TargetError
from syncflow_core.redaction import (
    describe_db_error,
    redact_text,
    redact_url,
    register_url,
    safe_message,
)
from syncflow_core.state.store import StateStore
from syncflow_core.targets.sql import SqlTarget

SECRET_VALUE = "Zebulon-Quartz-4711"
PASSWORD = "s3cr@tPart-9"  # an unencoded '@': drivers then resolve 'tPart-9@host'


def test_url_credentials_are_cut_also_from_urls_that_do_not_parse() -> None:
    assert redact_url("postgresql://bob:hunter22@db:5432/x") == "postgresql://bob:***@db:5432/x"
    bad = f"postgresql+psycopg://bob:{PASSWORD}@db.example:5432/erp"
    assert "s3cr" not in redact_url(bad) and "tPart-9" not in redact_url(bad)
    # The driver's view of a mis-parsed URL: the password's tail glued to the host name.
    text = "failed to resolve host 'tPart-9@db.example': [Errno -2] Name or service not known"
    assert redact_text(text) == (
        "failed to resolve host '***@db.example': [Errno -2] Name or service not known"
    )
    assert redact_text("dsn: host=db password=hunter22 user=bob") == (
        "dsn: host=db password=*** user=bob"
    )


def test_registered_secrets_are_cut_anywhere() -> None:
    register_url("postgresql://svc:Rumpelstilz-99@pg/x")
    assert "Rumpelstilz" not in redact_text("auth failed for 'Rumpelstilz-99' (svc)")


def test_sqlite_constraint_error_keeps_names_and_drops_values(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT CHECK (v <> 'x'))")
        c.execute(sa.text("INSERT INTO t VALUES (:k, :v)"), {"k": SECRET_VALUE, "v": "a"})
    with pytest.raises(sa.exc.IntegrityError) as info, engine.begin() as c:
        c.execute(sa.text("INSERT INTO t VALUES (:k, :v)"), {"k": SECRET_VALUE, "v": "b"})
    assert SECRET_VALUE in str(info.value)  # what SQLAlchemy itself says
    text, _ = describe_db_error(info.value)
    assert SECRET_VALUE not in text and "INSERT" not in text
    assert "UNIQUE constraint failed: t.k" in text and "IntegrityError" in text
    engine.dispose()


def test_unknown_errors_lose_quoted_literals() -> None:
    exc = pa.ArrowInvalid(f"Failed to parse string: '{SECRET_VALUE}' as a scalar of type int64")
    msg = safe_message(exc)
    assert SECRET_VALUE not in msg and msg.startswith("ArrowInvalid: Failed to parse string")


def test_target_and_state_store_raise_safe_errors_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    target = SqlTarget(url)
    with target.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
    with pytest.raises(TargetError) as info, target.begin() as c:
        c.execute(sa.text("INSERT INTO t VALUES (:k)"), [{"k": SECRET_VALUE}] * 2)
    assert SECRET_VALUE not in str(info.value) and info.value.__cause__ is None
    assert info.value.__suppress_context__
    target.close()
    store = StateStore(f"sqlite:///{tmp_path / 'missing-dir' / 's.sqlite'}")
    with pytest.raises(StateStoreError, match=r"sqlite state store: OperationalError"):
        store.upgrade()


@pytest.mark.postgres
def test_postgres_check_violation_shows_constraint_not_the_row(pg_url: str) -> None:
    target = SqlTarget(pg_url)
    with target.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (k text PRIMARY KEY, v text CONSTRAINT v_ok "
                          "CHECK (v <> 'forbidden'))")
    with pytest.raises(TargetError) as info, target.begin() as c:
        c.execute(sa.text("INSERT INTO t VALUES (:k, 'forbidden')"), {"k": SECRET_VALUE})
    msg = str(info.value)
    assert SECRET_VALUE not in msg and "forbidden" not in msg and "INSERT" not in msg
    assert "CheckViolation (SQLSTATE 23514)" in msg and "constraint v_ok" in msg
    assert info.value.sqlstate == "23514" and not info.value.transient
    target.close()


@pytest.mark.postgres
def test_unencoded_at_in_password_never_shows(pg_url: str) -> None:
    bad = pg_url.replace("postgres@", f"postgres:{PASSWORD}@")
    target = SqlTarget(bad)
    with pytest.raises(TargetError) as info:
        target.table_exists("t")
    msg = str(info.value)
    assert "s3cr" not in msg and "tPart" not in msg
    assert "***@" in msg  # the operator still sees which host failed
    assert info.value.transient  # a connection failure: worth retrying later
    from syncflow_core.sources.sql import SqlSource

    source = SqlSource(bad)
    with pytest.raises(SourceDatabaseError) as src_info:
        source.key_bounds(_ref("T"), ["k"], 2)
    assert "s3cr" not in str(src_info.value) and "tPart" not in str(src_info.value)


def _ref(table: str) -> object:
    from syncflow_core.config import SourceRef

    return SourceRef(connection="erp", table=table)
