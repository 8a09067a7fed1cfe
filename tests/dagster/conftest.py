"""Fixtures for the Dagster shell: the demo config, a small generated demo ERP, real instances."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.resources import CONFIG_ENV, default_config_path, load_syncflow_config

DEMO_SCALE = 0.02  # ~200 customers, ~3k order lines: every code path, seconds per sync


@dataclass
class DemoEnv:
    """A generated demo ERP plus the environment the demo config reads its URLs from."""

    root: Path
    erp: Path
    target: Path
    config: SyncFlowConfig
    env: dict[str, str]


@pytest.fixture
def demo_config() -> SyncFlowConfig:
    """The bundled demo config (what the code location serves by default)."""
    return load_syncflow_config(default_config_path())


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoEnv]:
    """A fresh demo ERP at DEMO_SCALE, target+state SQLite, env vars set for this test."""
    from syncflow_core.demo.erp import generate_demo_erp

    erp, target = tmp_path / "erp.sqlite", tmp_path / "target.sqlite"
    generate_demo_erp(erp, seed=7, scale=DEMO_SCALE)
    env = {
        CONFIG_ENV: default_config_path(),
        "SYNCFLOW_ERP_URL": f"sqlite:///{erp}",
        "SYNCFLOW_TARGET_URL": f"sqlite:///{target}",
        "SYNCFLOW_STATE_URL": f"sqlite:///{target}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield DemoEnv(tmp_path, erp, target, load_syncflow_config(env[CONFIG_ENV]),
                  {**os.environ, **env})
