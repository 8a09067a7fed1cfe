"""The production instance (deploy/dagster-postgres.yaml, unchanged) on the tests' PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.pg import PgCluster

__all__ = ["PROD_INSTANCE_YAML", "production_home"]

REPO = Path(__file__).resolve().parents[2]
PROD_INSTANCE_YAML = REPO / "deploy" / "dagster-postgres.yaml"


def production_home(home: Path, pg: PgCluster, db: str) -> dict[str, str]:
    """Make ``home`` a DAGSTER_HOME holding the production dagster.yaml as shipped, on a fresh
    database ``db``; return the documented DAGSTER_PG_* variables (and DAGSTER_HOME) to set."""
    pg.create_database(db)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROD_INSTANCE_YAML, home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": pg.user,
        "DAGSTER_PG_PASSWORD": "",  # the throw-away cluster trusts loopback
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": db,
    }
