"""Asset checks per entity (unpartitioned: each reads the whole target / state).

- ``reject_ratio``: rejected / fetched of the latest run stays under ``reject_ratio_limit``.
- ``unique_key_hash``: no ``_bridge_key_hash`` appears twice in the target table.
- ``no_overdue_pending``: no child row waits in ``pending_children`` longer than the whole
  retry schedule (`syncflow_core.resolve.retry_horizon`): then the retry sensor is not running.
- ``background_retries``: no slice used up its night's retry budget the last night it ran
  (`syncflow_core.night_retry.attention`): a slice that fails every time needs a person, while
  the night-window schedule goes on with the other slices.
"""


from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    RunsFilter,
    asset_check,
)

from syncflow_core.config import EntityConfig, SyncFlowConfig
from syncflow_core.night_retry import attention
from syncflow_core.resolve import retry_horizon
from syncflow_dagster.background import BACKGROUND_TAG, run_attempt
from syncflow_dagster.ops import RESOURCE_KEY
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, entity_asset

__all__ = ["RECENT_RUNS", "build_all_checks", "build_entity_checks", "latest_run_metadata"]

RECENT_RUNS = 500
"""Background runs of an entity the retry check reads (newest first): nights' worth of them."""


def latest_run_metadata(context: AssetCheckExecutionContext, key: AssetKey) -> dict[str, Any]:
    """Counts summed over the materializations of the asset's most recent run ({} if none)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key), limit=1000, ascending=False
    ).records
    if not records:
        return {}
    run_id = records[0].run_id
    total: dict[str, Any] = {"run_id": run_id}
    for rec in records:
        if rec.run_id != run_id:
            break
        mat = rec.asset_materialization
        if mat is None:
            continue
        for name in ("fetched", "rejected", "rejected_new"):
            mv = mat.metadata.get(name)
            if mv is not None:
                total[name] = total.get(name, 0) + int(mv.value)
    return total


def _not_synced(key: AssetKey) -> AssetCheckResult:
    return AssetCheckResult(
        passed=True, description=f"{key.to_user_string()} has not been synced yet."
    )


def build_entity_checks(
    config: SyncFlowConfig, entity: EntityConfig
) -> list[AssetChecksDefinition]:
    """The four checks of one entity."""
    ent = entity_asset(config, entity)
    key = ent.key
    table = entity.table_name
    name = entity.name
    req = {RESOURCE_KEY}

    @asset_check(asset=key, name="reject_ratio", required_resource_keys=req,
                 description=("Newly rejected share of the latest run <= "
                              f"{entity.reject_ratio_limit}."))
    def reject_ratio(context: AssetCheckExecutionContext) -> AssetCheckResult:
        meta = latest_run_metadata(context, key)
        if not meta:
            return _not_synced(key)
        fetched, rejected = int(meta.get("fetched", 0)), int(meta.get("rejected", 0))
        # Bad rows already on record come back every sync until fixed in the ERP; the ratio
        # counts the new ones (the failed records keep the rest visible).
        new = int(meta.get("rejected_new", rejected))
        ratio = new / fetched if fetched else 0.0
        return AssetCheckResult(
            passed=ratio <= entity.reject_ratio_limit,
            metadata={"fetched": fetched, "rejected": rejected, "rejected_new": new,
                      "ratio": ratio,
                      "limit": entity.reject_ratio_limit, "run_id": meta["run_id"]},
        )

    @asset_check(asset=key, name="unique_key_hash", required_resource_keys=req,
                 description=f"No duplicate _bridge_key_hash in target table {table}.")
    def unique_key_hash(context: AssetCheckExecutionContext) -> AssetCheckResult:
        if context.instance.get_latest_materialization_event(key) is None:
            return _not_synced(key)
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        with resource.runtime() as rt:
            index = rt.target.unique_key_index(table)
            if index is not None:  # the database enforces it: nothing to count
                return AssetCheckResult(passed=True, metadata={"enforced_by_index": index})
            dupes = int(rt.target.duplicate_key_hashes(table))
        return AssetCheckResult(passed=dupes == 0, metadata={
            "duplicate_key_hashes": dupes, "enforced_by_index": "none (counted)"})

    @asset_check(asset=key, name="no_overdue_pending", required_resource_keys=req,
                 description=(f"No {name} row has waited for its parent longer than the whole "
                              "retry schedule (it should have loaded or expired by then)."))
    def no_overdue_pending(context: AssetCheckExecutionContext) -> AssetCheckResult:
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        horizon = retry_horizon()
        cutoff = datetime.now(UTC) - horizon
        with resource.runtime() as rt:
            counts = rt.state.pending_counts(name)
            waiting = rt.state.due_pending(name, None)
        seen = waiting.column("first_seen_at")
        overdue = len(set(waiting.filter(pc.less(seen, cutoff)).column("key_hash").to_pylist()))
        return AssetCheckResult(
            passed=overdue == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "waiting": counts.total,
                "older_than_retry_horizon": overdue,
                "retry_horizon_hours": round(horizon.total_seconds() / 3600, 2),
                "past_retry_time": counts.due,
                "max_attempts_used": counts.max_attempts,
                **{f"waiting_on_{p}": n for p, n in sorted(counts.by_parent.items())},
            },
        )

    sched = entity.schedule

    @asset_check(asset=key, name="background_retries",
                 description=(f"No {name} slice failed all its {sched.retry_attempts} background "
                              "attempts of the last night it ran (it would need a person)."))
    def background_retries(context: AssetCheckExecutionContext) -> AssetCheckResult:
        records = context.instance.get_run_records(
            RunsFilter(tags={ENTITY_TAG: name, BACKGROUND_TAG: "true"}), limit=RECENT_RUNS
        )
        attempts = [a for r in records if (a := run_attempt(r)) is not None]
        stuck = attention(attempts, sched)
        return AssetCheckResult(
            passed=not stuck,
            description=("; ".join(stuck.values()) if stuck else
                         "every slice's last background night ended within its retry budget"),
            metadata={
                "slices_needing_attention": ", ".join(stuck) or "none",
                "retry_attempts_per_night": sched.retry_attempts,
                "background_runs_read": len(attempts),
            },
        )

    return [reject_ratio, unique_key_hash, no_overdue_pending, background_retries]


def build_all_checks(config: SyncFlowConfig) -> list[AssetChecksDefinition]:
    """Checks for every entity."""
    return [c for e in config.entities.values() for c in build_entity_checks(config, e)]
