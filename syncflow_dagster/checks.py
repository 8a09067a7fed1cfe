"""Asset checks per entity (unpartitioned: each reads the whole target / state), evaluated
together by one multi-check step per entity, so a sync run pays for one step, not four.

- ``reject_ratio``: rejected / fetched of the latest run stays under ``reject_ratio_limit``.
- ``unique_key_hash``: no ``_bridge_key_hash`` appears twice in the target table.
- ``no_overdue_pending``: no child row waits in ``pending_children`` longer than the whole
  retry schedule (`syncflow_core.resolve.retry_horizon`): then the retry sensor is not running.
- ``background_retries``: no slice used up its night's retry budget the last night it ran
  (`syncflow_core.night_retry.attention`): a slice that fails every time needs a person, while
  the night-window schedule goes on with the other slices.
"""


from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    RunsFilter,
    multi_asset_check,
)

from syncflow_core.config import EntityConfig, SyncFlowConfig
from syncflow_core.night_retry import attention
from syncflow_core.resolve import retry_horizon
from syncflow_core.runtime import Runtime
from syncflow_dagster.background import BACKGROUND_TAG, run_attempt
from syncflow_dagster.ops import RESOURCE_KEY
from syncflow_dagster.resources import SyncFlowResource
from syncflow_dagster.translation import ENTITY_TAG, entity_asset

__all__ = ["CHECKS", "RECENT_RUNS", "build_all_checks", "build_entity_checks",
           "latest_run_metadata"]

RECENT_RUNS = 500
"""Background runs of an entity the retry check reads (newest first): nights' worth of them."""


def latest_run_metadata(
    context: AssetCheckExecutionContext, key: AssetKey, slices: int
) -> dict[str, Any]:
    """Counts summed over the materializations of the asset's most recent run ({} if none).

    A run materializes each of the asset's ``slices`` partitions at most once, so that many
    records, newest first, hold all of its materializations: the read does not grow with the
    asset's history (1,000 records cost ~0.14 s on every sync's checks).
    """
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key), limit=max(slices, 1), ascending=False
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


CHECKS = ("reject_ratio", "unique_key_hash", "no_overdue_pending", "background_retries")
"""The checks of every entity, evaluated together in one step after its sync."""


def build_entity_checks(
    config: SyncFlowConfig, entity: EntityConfig
) -> list[AssetChecksDefinition]:
    """The four checks of one entity, as one multi-check (one step per run, not four)."""
    ent = entity_asset(config, entity)
    key = ent.key
    table = entity.table_name
    name = entity.name
    sched = entity.schedule

    def result(check: str, **kwargs: Any) -> AssetCheckResult:
        return AssetCheckResult(asset_key=key, check_name=check, **kwargs)

    def not_synced(check: str) -> AssetCheckResult:
        return result(check, passed=True,
                      description=f"{key.to_user_string()} has not been synced yet.")

    def reject_ratio(context: AssetCheckExecutionContext) -> AssetCheckResult:
        meta = latest_run_metadata(context, key, entity.slice_count)
        if not meta:
            return not_synced("reject_ratio")
        fetched, rejected = int(meta.get("fetched", 0)), int(meta.get("rejected", 0))
        # Bad rows already on record come back every sync until fixed in the ERP; the ratio
        # counts the new ones (the failed records keep the rest visible).
        new = int(meta.get("rejected_new", rejected))
        ratio = new / fetched if fetched else 0.0
        return result(
            "reject_ratio",
            passed=ratio <= entity.reject_ratio_limit,
            metadata={"fetched": fetched, "rejected": rejected, "rejected_new": new,
                      "ratio": ratio,
                      "limit": entity.reject_ratio_limit, "run_id": meta["run_id"]},
        )

    def unique_key_hash(context: AssetCheckExecutionContext, rt: Runtime) -> AssetCheckResult:
        if context.instance.get_latest_materialization_event(key) is None:
            return not_synced("unique_key_hash")
        index = rt.target.unique_key_index(table)
        if index is not None:  # the database enforces it: nothing to count
            return result("unique_key_hash", passed=True, metadata={"enforced_by_index": index})
        dupes = int(rt.target.duplicate_key_hashes(table))
        return result("unique_key_hash", passed=dupes == 0, metadata={
            "duplicate_key_hashes": dupes, "enforced_by_index": "none (counted)"})

    def no_overdue_pending(rt: Runtime) -> AssetCheckResult:
        horizon = retry_horizon()
        cutoff = datetime.now(UTC) - horizon
        counts = rt.state.pending_counts(name)
        waiting = rt.state.due_pending(name, None)
        seen = waiting.column("first_seen_at")
        overdue = len(set(waiting.filter(pc.less(seen, cutoff)).column("key_hash").to_pylist()))
        return result(
            "no_overdue_pending",
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

    def background_retries(context: AssetCheckExecutionContext) -> AssetCheckResult:
        records = context.instance.get_run_records(
            RunsFilter(tags={ENTITY_TAG: name, BACKGROUND_TAG: "true"}), limit=RECENT_RUNS
        )
        attempts = [a for r in records if (a := run_attempt(r)) is not None]
        stuck = attention(attempts, sched)
        return result(
            "background_retries",
            passed=not stuck,
            description=("; ".join(stuck.values()) if stuck else
                         "every slice's last background night ended within its retry budget"),
            metadata={
                "slices_needing_attention": ", ".join(stuck) or "none",
                "retry_attempts_per_night": sched.retry_attempts,
                "background_runs_read": len(attempts),
            },
        )

    specs = [
        AssetCheckSpec("reject_ratio", asset=key, description=(
            f"Newly rejected share of the latest run <= {entity.reject_ratio_limit}.")),
        AssetCheckSpec("unique_key_hash", asset=key, description=(
            f"No duplicate _bridge_key_hash in target table {table}.")),
        AssetCheckSpec("no_overdue_pending", asset=key, description=(
            f"No {name} row has waited for its parent longer than the whole retry schedule "
            "(it should have loaded or expired by then).")),
        AssetCheckSpec("background_retries", asset=key, description=(
            f"No {name} slice failed all its {sched.retry_attempts} background attempts of "
            "the last night it ran (it would need a person).")),
    ]

    @multi_asset_check(specs=specs, name=f"{name}_checks", required_resource_keys={RESOURCE_KEY},
                       description=f"The checks of {name}, evaluated together after a sync.")
    def entity_checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        resource: SyncFlowResource = getattr(context.resources, RESOURCE_KEY)
        yield reject_ratio(context)
        with resource.runtime() as rt:
            yield unique_key_hash(context, rt)
            yield no_overdue_pending(rt)
        yield background_retries(context)

    return [entity_checks]


def build_all_checks(config: SyncFlowConfig) -> list[AssetChecksDefinition]:
    """Checks for every entity."""
    return [c for e in config.entities.values() for c in build_entity_checks(config, e)]
