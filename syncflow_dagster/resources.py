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

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from syncflow_core.config import SyncFlowConfig, load_config
from syncflow_core.errors import ConfigError
from syncflow_core.parallel import start_pool
from syncflow_core.pipeline import ReadAhead, read_ahead, uses_workers
from syncflow_core.runtime import Runtime
from syncflow_dagster.storage_pool import pool_storage_connections

__all__ = [
    "CONFIG_ENV",
    "DEMO_CONFIG",
    "REQUIRE_CONFIG_ENV",
    "Clock",
    "SyncFlowResource",
    "default_config_path",
    "demo_config_path",
    "load_syncflow_config",
]

CONFIG_ENV = "SYNCFLOW_CONFIG"
"""Environment variable naming the syncflow.yaml to serve."""
DEMO_CONFIG = "demo"
"""``SYNCFLOW_CONFIG=demo`` asks for the bundled demo config explicitly."""
REQUIRE_CONFIG_ENV = "SYNCFLOW_REQUIRE_CONFIG"
"""Set (to 1) in the image: an unset SYNCFLOW_CONFIG is then an error, not the demo config."""


def demo_config_path() -> str:
    """The bundled demo config (what ``dagster dev`` in a checkout and the demo serve)."""
    import syncflow_core

    return str(Path(syncflow_core.__file__).parent / "demo" / "syncflow.yaml")


def _required() -> bool:
    return os.environ.get(REQUIRE_CONFIG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def default_config_path() -> str:
    """``$SYNCFLOW_CONFIG`` (``demo`` names the bundled demo config); unset, the demo config.

    Where ``$SYNCFLOW_REQUIRE_CONFIG`` is set (the image sets it), an unset ``SYNCFLOW_CONFIG``
    is a `ConfigError` instead: a production deployment must not sync the demo config by
    accident.
    """
    env = os.environ.get(CONFIG_ENV, "").strip()
    if env == DEMO_CONFIG:
        return demo_config_path()
    if env:
        return env
    if _required():
        raise ConfigError(
            f"{CONFIG_ENV} is not set: this deployment requires your own syncflow.yaml "
            f"({REQUIRE_CONFIG_ENV} is set). Set {CONFIG_ENV} to its path, e.g. a mounted "
            f"ConfigMap, or {CONFIG_ENV}={DEMO_CONFIG} to serve the bundled demo config."
        )
    return demo_config_path()


@cache
def _load(path: str, mtime_ns: int) -> SyncFlowConfig:
    return load_config(path)


def load_syncflow_config(path: str | None = None) -> SyncFlowConfig:
    """Load (and cache until the file changes) the config at ``path`` or the default one."""
    p = path or default_config_path()
    if p == DEMO_CONFIG:
        p = demo_config_path()
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
        default=None,
        description=f"syncflow.yaml path ('{DEMO_CONFIG}': the bundled demo); "
        f"default ${CONFIG_ENV}.",
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

    _run_runtime: Runtime | None = PrivateAttr(default=None)
    _read_aheads: dict[tuple[str, str], ReadAhead] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Open one `Runtime` for the run: its steps run one after another in this process
        (in-process executor), so they share connections, the state store's migration check
        and the source's reflected columns instead of each opening its own. In a run, also
        pool the storage connections and start the worker processes."""
        cfg = self.load_config()
        self._run_runtime = Runtime.open(cfg, self.environment(cfg))
        if context.run is None:
            return  # a sensor or schedule tick in a long-lived process: nothing to speed up
        if context.instance is not None:
            pool_storage_connections(context.instance)  # the run's event writes that follow
        if any(uses_workers(ent) for ent in cfg.entities.values()):
            # The workers import their modules (~0.7 s) while the plan ops run, not while
            # the first chunk waits for them.
            start_pool()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Drop the reads ahead no op took (the run failed before its load) and close the
        run's `Runtime`."""
        while self._read_aheads:
            self._read_aheads.popitem()[1].drop()
        if self._run_runtime is not None:
            self._run_runtime.close()
            self._run_runtime = None

    def start_read(self, entity: str, slice_key: str) -> None:
        """Start reading the slice's first chunk for the run's load op (`take_read`), so the
        read and the workers' first chunk overlap the ops in between. Only inside a run (the
        ops share its `Runtime`); elsewhere nothing would take it."""
        if self._run_runtime is None:
            return
        old = self._read_aheads.pop((entity, slice_key), None)
        if old is not None:
            old.drop()
        self._read_aheads[(entity, slice_key)] = read_ahead(self._run_runtime, entity, slice_key)

    def take_read(self, entity: str, slice_key: str) -> ReadAhead | None:
        """The read `start_read` began for the slice (None: none, e.g. a re-executed load)."""
        return self._read_aheads.pop((entity, slice_key), None)

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """The run's `Runtime`; outside a run (a schedule or sensor tick), one opened and
        closed for the block."""
        if self._run_runtime is not None:
            yield self._run_runtime
            return
        cfg = self.load_config()
        rt = Runtime.open(cfg, self.environment(cfg))
        try:
            yield rt
        finally:
            rt.close()
