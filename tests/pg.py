"""A throw-away PostgreSQL cluster on a free loopback port, for tests and benchmarks.

`initdb` refuses to run as root, so when we are root the cluster is run as the `postgres`
system user (via ``runuser``) with its data directory owned by that user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgCluster", "find_pg_bin", "pg_cluster"]


def find_pg_bin() -> Path | None:
    """Directory holding initdb/pg_ctl, or None."""
    for cand in [os.environ.get("PG_BIN"), "/usr/lib/postgresql/15/bin"]:
        if cand and (Path(cand) / "initdb").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    host: str
    port: int
    user: str = "postgres"

    def url(self, db: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """Create a database; return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """Start a cluster (C locale, trust auth on loopback); stop and remove it afterwards."""
    bindir = find_pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb) not found")
    root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="syncflow-pg-"))
    data = tmp / "data"
    sock = tmp / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if root:
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(tmp, 0o755)
    port = _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "--locale=C", "--encoding=UTF8"],
                   check=True, capture_output=True)
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -k {sock} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=256MB")
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w",
                    "-l", str(tmp / "log"), "start"], check=True, capture_output=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        yield PgCluster("127.0.0.1", port)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
