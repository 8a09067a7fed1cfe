"""The one resource ops need: SyncFlow's config plus an opened core `Runtime` per step.

Connection URLs come from the environment variables the config names (``url_env``); a
deployment may instead hand them in as Dagster ``EnvVar`` overrides. Either way they are resolved
at run time and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from syncflow_core.config import SyncFlowConfig, load_config
from syncflow_core.errors import ConfigError
from syncflow_core.runtime import Runtime

__all__ = [
    "CONFIG_ENV",
    "Clock",
    "SyncFlowResource",
    "default_config_path",
    "load_syncflow_config",
]

CONFIG_ENV = "SYNCFLOW_CONFIG"
"""Environment variable naming the syncflow.yaml to serve."""


def default_config_path() -> str:
    """``$SYNCFLOW_CONFIG``, else the bundled demo config."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env
    import syncflow_core

    return str(Path(syncflow_core.__file__).parent / "demo" / "syncflow.yaml")


@cache
def _load(path: str, mtime_ns: int) -> SyncFlowConfig:
    return load_config(path)


def load_syncflow_config(path: str | None = None) -> SyncFlowConfig:
    """Load (and cache until the file changes) the config at ``path`` or the default one."""
    p = path or default_config_path()
    try:
        mtime = Path(p).stat().st_mtime_ns
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (set {CONFIG_ENV} to your syncflow.yaml)") from None
    return _load(p, mtime)


class Clock(ConfigurableResource):  # type: ignore[type-arg]
    """Where background runs read the time to honour their window: the system clock.

    The one seam for time: a test that simulates nights hands `SyncFlowResource` a clock of
    its own, so the window closes in simulated time inside real runs.
    """

    def now(self) -> datetime:
        """The current instant (aware, UTC)."""
        return datetime.now(UTC)


class SyncFlowResource(ConfigurableResource):  # type: ignore[type-arg]
    """Config path and optional connection-URL overrides; opens a core `Runtime`.

    Example: ``SyncFlowResource(erp_url=EnvVar("SYNCFLOW_ERP_URL"))``. An override replaces the
    value of the environment variable the config names for that store (``url_env``).
    """

    config_path: str | None = Field(
        default=None, description=f"syncflow.yaml path; default ${CONFIG_ENV} or the demo config."
    )
    erp_url: str | None = Field(
        default=None, description="URL of the source connection named 'erp' (use an EnvVar)."
    )
    target_url: str | None = Field(default=None, description="Target URL (use an EnvVar).")
    state_url: str | None = Field(default=None, description="State store URL (use an EnvVar).")
    clock: Clock | None = Field(
        default=None, description="Time source of the night window (default: the system clock)."
    )

    def now(self) -> datetime:
        """The current instant from ``clock`` (the system clock unless one was given)."""
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def load_config(self) -> SyncFlowConfig:
        """The validated syncflow.yaml."""
        return load_syncflow_config(self.config_path)

    def environment(self, config: SyncFlowConfig | None = None) -> Mapping[str, str]:
        """The process environment with the URL overrides applied under the configured names."""
        cfg = config or self.load_config()
        env = dict(os.environ)
        overrides: list[tuple[str, str | None, str | None]] = [
            ("target_url", self.target_url, cfg.target.url_env),
            ("state_url", self.state_url, cfg.state_store.url_env),
        ]
        erp = cfg.sources.get("erp")
        overrides.append(("erp_url", self.erp_url, getattr(erp, "url_env", None)))
        for field_name, value, env_name in overrides:
            if value is None:
                continue
            if env_name is None:
                raise ConfigError(
                    f"{cfg.source_file}: {field_name} was given but the config has no url_env for "
                    "that store (it uses a literal url)"
                )
            env[env_name] = value
        return env

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """An opened `Runtime`, closed when the block ends (one per op invocation)."""
        cfg = self.load_config()
        rt = Runtime.open(cfg, self.environment(cfg))
        try:
            yield rt
        finally:
            rt.close()
