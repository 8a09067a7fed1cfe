"""The image never serves the bundled demo config by accident; a checkout still does."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from dagster import Definitions

from syncflow_core.errors import ConfigError
from syncflow_dagster.resources import (
    CONFIG_ENV,
    REQUIRE_CONFIG_ENV,
    default_config_path,
    demo_config_path,
    load_syncflow_config,
)

REPO = Path(__file__).resolve().parents[2]
# runpy warns that it runs a fresh copy of an imported module: that copy is the point here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'syncflow_dagster.definitions' found in sys.modules:RuntimeWarning")


def _run_code_location_module() -> dict[str, object]:
    """Execute syncflow_dagster.definitions afresh, as `dagster api grpc -m` loads it."""
    return runpy.run_module("syncflow_dagster.definitions", run_name="syncflow_dagster.defs_t")


def test_the_image_requires_syncflow_config() -> None:
    # The Dockerfile sets the switch for every container of the image (code server, run pods).
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"{REQUIRE_CONFIG_ENV}=1" in dockerfile
    assert "three C extensions" in dockerfile


def test_code_location_refuses_to_load_without_syncflow_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv(REQUIRE_CONFIG_ENV, "1")
    with pytest.raises(ConfigError) as err:
        _run_code_location_module()
    assert str(err.value).startswith("SYNCFLOW_CONFIG is not set")
    assert "SYNCFLOW_CONFIG=demo" in str(err.value)


def test_code_location_serves_the_demo_when_asked_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "demo")
    monkeypatch.setenv(REQUIRE_CONFIG_ENV, "1")
    defs = _run_code_location_module()["defs"]
    assert isinstance(defs, Definitions)
    assert {k.path[-1] for k in defs.resolve_asset_graph().get_all_asset_keys()} == set(
        load_syncflow_config(demo_config_path()).entities)


def test_paths_resolve_as_documented(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(REQUIRE_CONFIG_ENV, raising=False)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert default_config_path() == demo_config_path()  # a checkout: `dagster dev` just works
    monkeypatch.setenv(CONFIG_ENV, "demo")
    assert default_config_path() == demo_config_path()
    own = tmp_path / "syncflow.yaml"
    monkeypatch.setenv(CONFIG_ENV, str(own))
    monkeypatch.setenv(REQUIRE_CONFIG_ENV, "1")
    assert default_config_path() == str(own)
    monkeypatch.delenv(CONFIG_ENV)
    with pytest.raises(ConfigError, match="SYNCFLOW_CONFIG is not set"):
        load_syncflow_config()
    monkeypatch.setenv(REQUIRE_CONFIG_ENV, "0")
    demo = load_syncflow_config(demo_config_path())
    assert load_syncflow_config().source_file == demo.source_file
    assert load_syncflow_config("demo").source_file == demo.source_file
