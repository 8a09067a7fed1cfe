"""Can a sync run now? Each database the config names is reachable; the state store is migrated.

Every check reports a name, a verdict and a safe detail (`redaction.safe_message`: an error
names what failed, never a credential). The shell adds its own checks (the Dagster instance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from syncflow_core.errors import StateStoreError
from syncflow_core.redaction import safe_message
from syncflow_core.runtime import Runtime

__all__ = ["HealthCheck", "check_health"]


@dataclass(frozen=True)
class HealthCheck:
    """One verdict: ``name`` (e.g. ``source erp``, ``target``), ok, and what was found."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return asdict(self)


def _probe(name: str, fn: Any) -> HealthCheck:
    try:
        return HealthCheck(name, True, str(fn()))
    except Exception as exc:  # every failure is a verdict, reported without secrets
        return HealthCheck(name, False, safe_message(exc))


def check_health(rt: Runtime) -> list[HealthCheck]:
    """Sources (one table each is read for its columns), target, state store, migrations."""
    checks: list[HealthCheck] = []
    first_entity: dict[str, str] = {}
    for name, ent in rt.config.entities.items():
        first_entity.setdefault(ent.source.connection, name)
    for connection, entity in first_entity.items():
        ref = rt.entity(entity).source

        def columns(entity: str = entity, ref: Any = ref) -> str:
            cols = rt.source(entity).columns(ref)
            return f"reachable ({len(cols)} columns in {ref.table or ref.path or ref.endpoint})"

        checks.append(_probe(f"source {connection}", columns))
    checks.append(_probe("target", lambda: rt.target.ping()))
    state = _probe("state store", lambda: rt.state.ping())
    checks.append(state)
    if state.ok:

        def migrations() -> str:
            from syncflow_core.state.store import StateStore

            at, head = rt.state.revision(), StateStore.head_revision()
            if at != head:
                raise StateStoreError(
                    f"at revision {at or 'none'}, head is {head}: run `syncflow migrate`"
                )
            return f"at head ({head})"

        checks.append(_probe("state migrations", migrations))
    return checks
