"""The core stays pure: no dagster anywhere, no database or HTTP library in stage modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "syncflow_core"
STAGE_MODULES = [
    "config",
    "normalize",
    "identity",
    "delta",
    "resolve",
    "window",
    "night",
    "rejects",
    "batch",
    "keycodec",
    "parallel",
    "slices",
]
IO_LIBRARIES = {
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "adbc_driver_postgresql",
    "adbc_driver_sqlite",
    "adbc_driver_manager",
    "httpx",
    "requests",
    "sqlite3",
    "alembic",
    "urllib3",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(names: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        if (CORE / name).is_dir():
            out += sorted((CORE / name).rglob("*.py"))
        elif (CORE / f"{name}.py").exists():
            out.append(CORE / f"{name}.py")
    return out


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_never_imports_dagster(path: Path) -> None:
    bad = {n for n in _imports(path) if n.startswith("dagster") or n == "syncflow_dagster"}
    assert not bad, f"{path.relative_to(CORE)} imports {bad}"


@pytest.mark.parametrize("path", _files(STAGE_MODULES), ids=lambda p: str(p.relative_to(CORE)))
def test_stage_modules_do_no_io(path: Path) -> None:
    bad = _imports(path) & IO_LIBRARIES
    assert not bad, f"stage module {path.relative_to(CORE)} imports I/O libraries {bad}"


def test_the_check_sees_stage_modules() -> None:
    # Guard against the parametrization silently matching nothing.
    assert len(_files(STAGE_MODULES)) >= 5
