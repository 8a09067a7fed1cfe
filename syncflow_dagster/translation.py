"""How a configured entity appears in Dagster: asset key, group, kinds, description.

One function so assets, checks, jobs and sensors agree on every name.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey

from syncflow_core.config import EntityConfig, SyncFlowConfig

__all__ = [
    "ENTITY_POOL_PREFIX",
    "ENTITY_TAG",
    "KEY_PREFIX",
    "EntityAsset",
    "entity_asset",
    "entity_pool",
]

KEY_PREFIX = "erp"
ENTITY_TAG = "syncflow/entity"
"""Run tag naming the entity a run syncs (schedules and sensors set it; a label, not a limit)."""
ENTITY_POOL_PREFIX = "syncflow_entity_"


def entity_pool(entity: str) -> str:
    """Pool of every op that works on ``entity``'s data, e.g. ``syncflow_entity_orders``.

    The pool, not a run tag, is what keeps one run per entity: a pool is part of the op, so
    every run of the entity carries it however it was launched (UI, backfill, schedule, sensor,
    re-execution), and with ``concurrency.pools.granularity: run`` and ``default_limit: 1`` the
    run queue holds a run until no other run of its entity is in progress (`pools` creates
    the pools' limits before the first run needs them).
    """
    return f"{ENTITY_POOL_PREFIX}{entity}"


@dataclass(frozen=True)
class EntityAsset:
    """The Dagster-facing names of one entity."""

    name: str
    key: AssetKey
    group: str
    kinds: frozenset[str]
    description: str

    def op_name(self, stage: str) -> str:
        """Name of the op running ``stage`` for this entity, e.g. ``orders__extract``."""
        return f"{self.name}__{stage}"


def _source_kind(config: SyncFlowConfig, entity: EntityConfig) -> str:
    source = config.sources[entity.source.connection]
    return {"sql": "sql", "files": "file", "apismith": "api"}[source.kind]


def entity_asset(config: SyncFlowConfig, entity: EntityConfig | str) -> EntityAsset:
    """Asset key ``erp/<name>``, group (``entity.group`` or ``erp``), kinds and description."""
    ent = config.entity(entity) if isinstance(entity, str) else entity
    parents = config.parents_of(ent.name)
    where = ent.source.table or ent.source.path or ent.source.endpoint or ent.name
    desc = (
        f"ERP entity `{ent.name}` from `{ent.source.connection}:{where}` into target table "
        f"`{ent.table_name}`; delta `{ent.delta_strategy}`, key "
        f"({', '.join(ent.business_key_fields)}), {ent.slice_count} key-range slices."
    )
    if parents:
        desc += f" Children of: {', '.join(parents)}."
    return EntityAsset(
        name=ent.name,
        key=AssetKey([KEY_PREFIX, ent.name]),
        group=ent.group or KEY_PREFIX,
        kinds=frozenset({_source_kind(config, ent), "sql", "arrow"}),
        description=desc,
    )
