"""The code location as Dagster sees it: assets, lineage, graphs, partitions, checks, jobs."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, BackfillPolicy, Definitions, GraphDefinition, OpDefinition

from syncflow_core.config import SyncFlowConfig
from syncflow_core.slices import slice_keys
from syncflow_dagster.checks import CHECKS, build_entity_checks
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.jobs import entity_job_name
from syncflow_dagster.ops import ERP_POOL, STAGES
from syncflow_dagster.translation import ENTITY_TAG, entity_asset, entity_pool

pytestmark = pytest.mark.dagster
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def defs(demo_config: SyncFlowConfig) -> Definitions:
    return build_definitions(demo_config)


def test_every_entity_is_one_asset_under_erp(defs: Definitions, demo_config: SyncFlowConfig
                                             ) -> None:
    keys = set(defs.resolve_all_asset_keys())
    assert keys == {AssetKey(["erp", name]) for name in demo_config.entities}
    spec = {s.key: s for s in defs.resolve_all_asset_specs()}[AssetKey(["erp", "customers"])]
    assert spec.group_name == "master_data"
    assert "sql" in spec.kinds
    assert "CUSTOMERS" in (spec.description or "")


def test_lineage_follows_parent_refs_without_self_references(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    parents = {k.path[-1]: {p.path[-1] for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert parents["order_lines"] == {"orders", "items"}
    assert parents["orders"] == {"customers"}
    assert parents["customers"] == set()
    assert parents["employees"] == set()  # manager_no -> emp_no is a self-reference


def test_each_asset_is_a_graph_of_the_six_stage_ops(defs: Definitions,
                                                    demo_config: SyncFlowConfig) -> None:
    for name in demo_config.entities:
        asset = defs.resolve_assets_def(AssetKey(["erp", name]))
        node = asset.node_def
        assert isinstance(node, GraphDefinition)
        assert {n.name for n in node.nodes} == {f"{name}__{stage}" for stage in STAGES}
        # Each stage feeds the next: extract -> normalize -> ... -> load.
        for upstream, downstream in itertools.pairwise(STAGES):
            deps = node.dependency_structure.input_to_upstream_outputs_for_node(
                f"{name}__{downstream}")
            assert {o.node_name for outs in deps.values() for o in outs} == {
                f"{name}__{upstream}"}
        # One run per entity: every op but extract is in the entity's pool, the writing load
        # op above all (a re-execution of the load alone still holds the entity); extract puts
        # each full run in the ERP readers' pool.
        pools = {stage: node.node_named(f"{name}__{stage}").definition.pool for stage in STAGES}
        assert pools == {stage: ERP_POOL if stage == "extract" else entity_pool(name)
                         for stage in STAGES}
        load = node.node_named(f"{name}__load").definition
        assert isinstance(load, OpDefinition)
        assert load.tags[ENTITY_TAG] == name


def test_partitions_are_the_slices_and_backfill_policy_follows_config(
    defs: Definitions, demo_config: SyncFlowConfig
) -> None:
    for name, ent in demo_config.entities.items():
        asset = defs.resolve_assets_def(AssetKey(["erp", name]))
        assert asset.partitions_def is not None
        assert asset.partitions_def.get_partition_keys() == slice_keys(ent.slice_count)
        want = (BackfillPolicy.single_run() if ent.backfill_policy == "single_run"
                else BackfillPolicy.multi_run(max_partitions_per_run=1))
        assert asset.backfill_policy == want


def test_four_checks_per_entity(defs: Definitions, demo_config: SyncFlowConfig) -> None:
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.path[-1], k.name) for k in graph.asset_check_keys}
    for name in demo_config.entities:
        for check in ("reject_ratio", "unique_key_hash", "no_overdue_pending",
                      "background_retries"):
            assert (name, check) in checks
        # Evaluated in one step per run (each step costs a sync run its own overhead).
        (together,) = build_entity_checks(demo_config, demo_config.entity(name))
        assert {k.name for k in together.check_keys} == set(CHECKS)


def test_entity_jobs_carry_the_entity_run_tag(defs: Definitions,
                                              demo_config: SyncFlowConfig) -> None:
    for ent in demo_config.entities.values():
        job = defs.resolve_job_def(entity_job_name(ent))
        assert job.tags[ENTITY_TAG] == ent.name
        assert entity_asset(demo_config, ent).key in job.asset_layer.executable_asset_keys


@pytest.mark.slow
def test_dagster_definitions_validate_passes() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate",
         "-m", "syncflow_dagster.definitions"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
