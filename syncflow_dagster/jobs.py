"""Jobs the schedules and sensors launch: an entity's sync job and its resolution job."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from syncflow_core.config import EntityConfig, SyncFlowConfig
from syncflow_dagster.translation import ENTITY_TAG, entity_asset

__all__ = ["entity_job", "entity_job_name"]


def entity_job_name(entity: EntityConfig) -> str:
    """``<entity>_sync``: the job a schedule launches for one slice."""
    return f"{entity.name}_sync"


def entity_job(config: SyncFlowConfig, entity: EntityConfig) -> UnresolvedAssetJobDefinition:
    """Materialize the entity's asset (one slice per run), tagged for the per-entity run limit."""
    names = entity_asset(config, entity)
    return define_asset_job(
        name=entity_job_name(entity),
        selection=AssetSelection.assets(names.key),
        tags={ENTITY_TAG: entity.name},
        description=f"Sync one slice of `{entity.name}` (launched by its night-window schedule).",
    )
