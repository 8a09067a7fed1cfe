"""An entity's partitions are its key-range slices (``slice-01`` ... ``slice-NN``)."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition

from syncflow_core.config import EntityConfig
from syncflow_core.slices import slice_keys

__all__ = ["entity_partitions"]


def entity_partitions(entity: EntityConfig) -> StaticPartitionsDefinition:
    """One static partition per slice of the entity's business-key range."""
    return StaticPartitionsDefinition(slice_keys(entity.slice_count))
