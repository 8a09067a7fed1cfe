"""Open what one config needs: sources, the target and the state store.

Connection URLs that carry credentials come from environment variables named in the config
(``url_env``); they are resolved here, at run time, and never logged or stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from syncflow_core.config import (
    ApiSmithSourceConfig,
    EntityConfig,
    FileSourceConfig,
    SqlSourceConfig,
    StoreConfig,
    SyncFlowConfig,
)
from syncflow_core.errors import ConfigError
from syncflow_core.redaction import register_url

if TYPE_CHECKING:
    from syncflow_core.sources.base import Source
    from syncflow_core.state.store import StateStore
    from syncflow_core.targets.sql import SqlTarget

__all__ = ["Runtime", "resolve_url"]


def resolve_url(store: StoreConfig, env: Mapping[str, str], where: str, source_file: str) -> str:
    """The store's URL: the literal one, or the value of the environment variable it names.

    Its credentials are remembered for redaction (`redaction.register_url`): whatever a driver
    later quotes of it (even of a URL that does not parse) is cut from error text.
    """
    if store.url is not None:
        register_url(store.url)
        return store.url
    assert store.url_env is not None
    value = env.get(store.url_env)
    if not value:
        raise ConfigError(
            f"{source_file}: {where}: url_env: environment variable {store.url_env} is not set"
        )
    register_url(value)
    return value


class Runtime:
    """Opened source(s), target and state store for one config; close() releases them."""

    def __init__(
        self, config: SyncFlowConfig, env: Mapping[str, str] | None = None, *, migrate: bool = True
    ) -> None:
        self.config = config
        self.migrate = migrate
        """Migrate the state store to head on first use (False: never write, e.g. a dry run)."""
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._sources: dict[str, Source] = {}
        self._target: SqlTarget | None = None
        self._state: StateStore | None = None

    @classmethod
    def open(
        cls, config: SyncFlowConfig, env: Mapping[str, str] | None = None, *, migrate: bool = True
    ) -> Runtime:
        """Open a runtime (connections are made lazily, on first use)."""
        return cls(config, env, migrate=migrate)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entity(self, name: str) -> EntityConfig:
        """The entity's config."""
        return self.config.entity(name)

    @property
    def target_url(self) -> str:
        """The target database URL (resolved from the environment when configured so)."""
        return resolve_url(self.config.target, self.env, "target", self.config.source_file)

    @property
    def state_url(self) -> str:
        """The state store URL (the target's unless configured)."""
        return resolve_url(self.config.state_store, self.env, "state", self.config.source_file)

    @property
    def shares_database(self) -> bool:
        """True when state and target live in one database, so one transaction covers both."""
        return self.state_url == self.target_url

    @property
    def target(self) -> SqlTarget:
        """The SQL target (opened on first use)."""
        if self._target is None:
            from syncflow_core.targets.sql import SqlTarget

            self._target = SqlTarget(
                self.target_url, schema=self.config.target.db_schema,
                ddl_lock_timeout=self.config.target.ddl_lock_timeout_seconds,
            )
        return self._target

    @property
    def state(self) -> StateStore:
        """The state store, migrated to head on first use (unless ``migrate`` is off)."""
        if self._state is None:
            from syncflow_core.state.payloads import PayloadCipher
            from syncflow_core.state.store import StateStore

            cipher = PayloadCipher.from_env(self.env)
            if self.shares_database:
                store = StateStore.from_engine(self.target.engine, cipher)
            else:
                store = StateStore(self.state_url, cipher=cipher)
            if self.migrate:
                store.upgrade()
            self._state = store
        return self._state

    def source(self, entity: str) -> Source:
        """The source an entity reads from (opened once per connection name)."""
        ent = self.entity(entity)
        name = ent.source.connection
        if name not in self._sources:
            self._sources[name] = self._open_source(name)
        return self._sources[name]

    def _open_source(self, name: str) -> Source:
        cfg: Any = self.config.sources[name]
        where = f"sources.{name}"
        if isinstance(cfg, SqlSourceConfig):
            from syncflow_core.sources.sql import SqlSource

            url = resolve_url(cfg.store(), self.env, where, self.config.source_file)
            return SqlSource(url, schema=cfg.db_schema)
        if isinstance(cfg, FileSourceConfig):
            from syncflow_core.sources.files import FileSource

            return FileSource(cfg.directory, csv_delimiter=cfg.csv_delimiter, encoding=cfg.encoding)
        if isinstance(cfg, ApiSmithSourceConfig):
            from syncflow_core.sources.apismith import ApiSmithSource

            secret = self.env.get(cfg.jwt_secret_env)
            if not secret:
                raise ConfigError(
                    f"{self.config.source_file}: {where}: jwt_secret_env: environment variable "
                    f"{cfg.jwt_secret_env} is not set"
                )
            return ApiSmithSource(
                cfg.base_url,
                secret,
                issuer=cfg.jwt_issuer,
                page_size=cfg.page_size,
                timeout=cfg.timeout_seconds,
                max_retries=cfg.max_retries,
            )
        raise ConfigError(f"{self.config.source_file}: {where}: unsupported source kind")

    def close(self) -> None:
        """Close every opened connection."""
        for src in self._sources.values():
            src.close()
        self._sources.clear()
        if self._target is not None:
            self._target.close()
            self._target = None
        self._state = None
