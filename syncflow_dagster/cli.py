"""``syncflow``: operate SyncFlow from a shell (status, history, failed records, a dry run, ...).

Thin on purpose: every command calls the core (`syncflow_core.status`, `dryrun`, `replay`,
`health`, `config_check`) or reads Dagster's run storage (`run_history`) and prints the result,
as text or, with ``--json``, as JSON. Every command takes ``--config`` (default
``$SYNCFLOW_CONFIG``, else the bundled demo config) and ``--json``.

Exit codes: 0 done; 1 a check found a problem (health, config check, records left open by a
replay); 2 usage error; 3 SyncFlow error (config, database: the message is safe to show);
4 no such entity, record or waiting child.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from syncflow_core.config import SyncFlowConfig
from syncflow_core.redaction import safe_message
from syncflow_core.runtime import Runtime
from syncflow_dagster.resources import (
    CONFIG_ENV,
    DEMO_CONFIG,
    demo_config_path,
    load_syncflow_config,
)

__all__ = ["EXIT_CHECK_FAILED", "EXIT_ERROR", "EXIT_NOT_FOUND", "main"]

EXIT_CHECK_FAILED = 1
EXIT_ERROR = 3
EXIT_NOT_FOUND = 4


class NotFound(Exception):
    """The entity, record or waiting child asked for does not exist."""


class Context:
    """What a command needs: the config, how to print, and runtimes/instances on demand."""

    def __init__(self, config_path: str | None, as_json: bool) -> None:
        self.config_path = config_path
        self.as_json = as_json

    @functools.cached_property
    def config(self) -> SyncFlowConfig:
        """The validated syncflow.yaml."""
        path = self.config_path
        return load_syncflow_config(demo_config_path() if path == DEMO_CONFIG else path)

    @contextmanager
    def runtime(self, *, migrate: bool = False, at_head: bool = True) -> Iterator[Runtime]:
        """A core runtime; read-only commands never migrate the state store, and (``at_head``)
        refuse one that is not at head with a message saying what to run."""
        with Runtime.open(self.config, os.environ, migrate=migrate) as rt:
            if not migrate and at_head:
                from syncflow_core.errors import StateStoreError
                from syncflow_core.state.store import StateStore

                at, head = rt.state.revision(), StateStore.head_revision()
                if at != head:
                    raise StateStoreError(f"state store at revision {at or 'none'}, head is "
                                          f"{head}: run `syncflow migrate`")
            yield rt

    def entity(self, name: str) -> str:
        """``name`` if the config has it."""
        if name not in self.config.entities:
            raise NotFound(f"no entity {name!r} in {self.config.source_file} "
                           f"(have: {', '.join(self.config.entities)})")
        return name

    def emit(self, data: Any, text: Callable[[], list[str]]) -> None:
        """Print ``data`` as JSON, or the lines ``text()`` makes."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            for line in text():
                click.echo(line)


def _command(group: click.Group, name: str, **kwargs: Any) -> Callable[..., Any]:
    """A subcommand with ``--config`` and ``--json``, and SyncFlow's exit codes."""

    def decorate(fn: Callable[..., int | None]) -> Any:
        @group.command(name, **kwargs)
        @click.option("--config", "config_path", envvar=CONFIG_ENV, default=None,
                      help=f"syncflow.yaml (default ${CONFIG_ENV}, else the bundled demo).")
        @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
        @functools.wraps(fn)
        def run(config_path: str | None, as_json: bool, **params: Any) -> None:
            ctx = Context(config_path, as_json)
            where = click.get_current_context().command_path
            try:
                code = fn(ctx, **params) or 0
            except NotFound as exc:
                click.echo(f"{where}: {exc}", err=True)
                code = EXIT_NOT_FOUND
            except click.ClickException:
                raise
            except Exception as exc:  # reported safely: no values, no credentials
                click.echo(f"{where}: {safe_message(exc)}", err=True)
                code = EXIT_ERROR
            sys.exit(code)

        return run

    return decorate


@click.group(help=__doc__.split("\n\n")[0] if __doc__ else None)
def main() -> None:
    """The ``syncflow`` command."""


@main.group("failed")
def failed_group() -> None:
    """Failed records: list, show, replay."""


@main.group("pending")
def pending_group() -> None:
    """Children waiting for a parent: list, why."""


@main.group("config")
def config_group() -> None:
    """The config against the live source."""


@main.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics."""


# ---------------------------------------------------------------------------- the commands


def _instance() -> Any:
    """The Dagster instance of ``$DAGSTER_HOME`` (None when it is not set)."""
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        return None
    return DagsterInstance.get()


def _short(run_id: str | None) -> str:
    return (run_id or "-")[:8]


@_command(main, "status")
def status(ctx: Context) -> int:
    """Per entity: last run and result, pass progress, pending and failed, the window."""
    from syncflow_core.status import entity_progress
    from syncflow_dagster.run_history import last_runs

    instance = _instance()
    runs = last_runs(instance, ctx.config) if instance is not None else {}
    rows: list[dict[str, Any]] = []
    with ctx.runtime() as rt:
        for name in ctx.config.entities:
            progress = entity_progress(rt, name).as_dict()
            last = runs.get(name)
            progress["last_run"] = None if last is None else {
                "run_id": last.run_id, "status": last.status, "ended": last.ended,
                "partitions": last.partitions, "counts": last.counts.get(name, {}),
            }
            rows.append(progress)

    def text() -> list[str]:
        lines = [f"{'entity':<12} {'last run':<24} {'pass progress':<26} {'pending':>7} "
                 f"{'failed':>6}  window"]
        for r in rows:
            last = r["last_run"]
            run = "-" if last is None else f"{_short(last['run_id'])} {last['status']}"
            counts = {} if last is None else last["counts"]
            window = ("open, closes " + r["window_closes"][11:16] if r["window_open"]
                      else "opens " + r["next_window"][:16].replace("T", " "))
            progress = f"{r['done_in_pass']}/{r['slices']} of pass {r['pass_no']}"
            if r["passes_completed"]:
                progress += f" ({r['passes_completed']} done)"
            lines.append(f"{r['entity']:<12} {run:<24} {progress:<26} {r['pending']:>7} "
                         f"{r['failed_open']:>6}  {window} UTC")
            if counts:
                shown = ", ".join(f"{k} {int(v)}" for k, v in counts.items()
                                  if not k.startswith("seconds_") and v)
                lines.append(f"{'':<12} last run: {shown or 'no changes'}")
        if instance is None:
            lines.append("(DAGSTER_HOME is not set: no run history)")
        return lines

    ctx.emit(rows, text)
    return 0


@_command(main, "history")
@click.argument("entity", required=False)
@click.option("--limit", default=20, show_default=True, help="How many runs.")
def history(ctx: Context, entity: str | None, limit: int) -> int:
    """Runs from Dagster's run storage, newest first, with their counts."""
    from syncflow_dagster.run_history import run_history

    if entity is not None:
        ctx.entity(entity)
    instance = _instance()
    if instance is None:
        raise NotFound("DAGSTER_HOME is not set: there is no Dagster instance to read")
    runs = [r.as_dict() for r in run_history(instance, ctx.config, entity, limit)]

    def text() -> list[str]:
        lines = [f"{'run':<9} {'status':<9} {'started':<20} {'secs':>7}  entities / counts"]
        for r in runs:
            started = (r["started"] or "-")[:19].replace("T", " ")
            secs = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
            parts = []
            for name in r["entities"]:
                c = r["counts"].get(name, {})
                shown = " ".join(f"{k[:3]}={int(v)}" for k, v in c.items()
                                 if k in ("fetched", "inserted", "updated", "deleted",
                                          "rejected", "pending"))
                parts.append(f"{name}[{','.join(r['partitions']) or '-'}] {shown}".strip())
            lines.append(f"{_short(r['run_id']):<9} {r['status']:<9} {started:<20} {secs:>7}  "
                         + "; ".join(parts))
        return lines

    ctx.emit(runs, text)
    return 0


@_command(failed_group, "list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--all", "show_all", is_flag=True, help="Closed records too.")
def failed_list(ctx: Context, entity: str | None, show_all: bool) -> int:
    """Failed records (open ones unless --all), oldest first."""
    if entity is not None:
        ctx.entity(entity)
    with ctx.runtime() as rt:
        table = rt.state.list_failed_records(entity, status=None if show_all else "open")
    rows = table.drop_columns(["raw_row", "fingerprint"]).to_pylist()

    def text() -> list[str]:
        lines = [f"{'id':<36} {'entity':<12} {'stage':<10} {'error':<20} {'n':>3} {'status':<8} "
                 "ref"]
        lines += [f"{r['id']:<36} {r['entity']:<12} {r['stage']:<10} {r['error_code']:<20} "
                  f"{r['occurrences']:>3} {r['status']:<8} {r['bridge_ref'] or '-'}" for r in rows]
        lines.append(f"{len(rows)} record(s)")
        return lines

    ctx.emit(rows, text)
    return 0


@_command(failed_group, "show")
@click.argument("record_id")
def failed_show(ctx: Context, record_id: str) -> int:
    """One failed record with its reason and raw row."""
    with ctx.runtime() as rt:
        rec = rt.state.get_failed_record(record_id)
    if rec is None:
        raise NotFound(f"no failed record {record_id!r} (see `syncflow failed list`)")

    def text() -> list[str]:
        lines = [f"{k:<14} {v}" for k, v in rec.items() if k != "raw_row"]
        raw = json.loads(rec["raw_row"])
        lines.append("raw_row")
        lines += [f"  {k:<12} {v!r}" for k, v in raw.items()]
        return lines

    ctx.emit(rec, text)
    return 0


@_command(failed_group, "replay")
@click.argument("targets", nargs=-1)
def failed_replay(ctx: Context, targets: tuple[str, ...]) -> int:
    """Replay open failed records (all, an entity's, or the given ids) through the current
    config; each is closed when its row loads (or waits for a parent, or left the source)."""
    import uuid6

    from syncflow_core.replay import replay_failed

    entities = [t for t in targets if t in ctx.config.entities]
    ids = [t for t in targets if t not in ctx.config.entities]
    if len(entities) > 1:
        raise click.UsageError("give one entity, or record ids")
    run_id = f"replay-{uuid6.uuid7()}"
    with ctx.runtime(migrate=True) as rt:
        if ids:
            missing = [i for i in ids if rt.state.get_failed_record(i) is None]
            if missing:
                raise NotFound(f"no failed record {missing[0]!r} (see `syncflow failed list`)")
        report = replay_failed(rt, run_id, entity=entities[0] if entities else None,
                               ids=ids or None)
    data = {"run_id": run_id, **report.as_dict()}

    def text() -> list[str]:
        return [
            f"replayed {report.records} record(s) as {run_id}: {report.closed} closed, "
            f"{report.still_open} still open",
            f"  loaded {report.loaded}, unchanged {report.unchanged}, waiting for a parent "
            f"{report.pending}, gone from the source {report.gone}, new failures "
            f"{report.new_failures}",
            *[f"  still open: {i}" for i in report.open_ids],
        ]

    ctx.emit(data, text)
    return EXIT_CHECK_FAILED if report.still_open else 0


@_command(pending_group, "list")
@click.option("--entity", default=None, help="Only this entity.")
def pending_list(ctx: Context, entity: str | None) -> int:
    """Children waiting for a parent, with the parent key, attempts and next retry."""
    names = [ctx.entity(entity)] if entity else list(ctx.config.entities)
    rows: list[dict[str, Any]] = []
    with ctx.runtime() as rt:
        for name in names:
            if rt.entity(name).parent_refs:
                table = rt.state.due_pending(name, None).drop_columns(["row_json"])
                rows += table.to_pylist()

    def text() -> list[str]:
        lines = [f"{'id':<36} {'entity':<12} {'waits for':<32} {'tries':>5}  next retry"]
        lines += [f"{r['id']:<36} {r['entity']:<12} "
                  f"{r['parent_entity'] + ' ' + r['parent_key']:<32} {r['attempts']:>5}  "
                  f"{r['next_retry_at']:%Y-%m-%d %H:%M} UTC" for r in rows]
        lines.append(f"{len(rows)} waiting")
        return lines

    ctx.emit(rows, text)
    return 0


@_command(pending_group, "why")
@click.argument("pending_id")
def pending_why(ctx: Context, pending_id: str) -> int:
    """Which parent a waiting child needs, whether it is there now, and the next retry."""
    from syncflow_core.errors import ConfigError
    from syncflow_core.status import explain_pending

    with ctx.runtime() as rt:
        try:
            why = explain_pending(rt, pending_id)
        except ConfigError as exc:
            raise NotFound(str(exc)) from None
    data = why.as_dict()

    def text() -> list[str]:
        there = ("is in the target now: the parent-arrival sensor or the next retry loads it"
                 if why.parent_present else "is not in the target yet")
        return [
            f"{why.entity} child {why.key_hash} waits for {why.parent_entity} "
            f"{why.parent_key}, which {there}.",
            f"attempts {why.attempts} of {why.max_attempts}; next retry {why.next_retry_at}; "
            f"waiting since {why.first_seen_at}",
        ]

    ctx.emit(data, text)
    return 0


@_command(main, "diff")
@click.argument("entity")
@click.option("--slice", "slice_key", default=None, help="One slice (default: all).")
@click.option("--sample", default=5, show_default=True, help="Example rows per kind.")
def diff(ctx: Context, entity: str, slice_key: str | None, sample: int) -> int:
    """Dry run: what a sync would insert, update, delete, reject and hold back. Writes nothing."""
    from syncflow_core.dryrun import KINDS, diff_entity

    ctx.entity(entity)
    with ctx.runtime() as rt:
        report = diff_entity(rt, entity, [slice_key] if slice_key else None, sample=sample)
    data = report.as_dict()

    def text() -> list[str]:
        lines = [f"{entity} ({', '.join(report.slices)}): fetched {report.fetched}; would "
                 f"insert {report.insert}, update {report.update}, delete {report.delete}, "
                 f"reject {report.reject}, hold back {report.pending} (waiting for a parent); "
                 f"{report.unchanged} unchanged"]
        for kind in KINDS:
            for row in report.samples[kind]:
                lines.append(f"  {kind:<7} {json.dumps(row, default=str, ensure_ascii=False)}")
        return lines

    ctx.emit(data, text)
    return 0


@_command(main, "health")
def health(ctx: Context) -> int:
    """Source(s), target, state store and Dagster instance reachable; migrations at head."""
    from syncflow_core.health import HealthCheck, check_health

    with ctx.runtime(at_head=False) as rt:
        checks = check_health(rt)
    checks.append(_dagster_health(HealthCheck))
    data = {"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]}

    def text() -> list[str]:
        return [f"{'ok  ' if c.ok else 'DOWN'} {c.name:<18} {c.detail}" for c in checks]

    ctx.emit(data, text)
    return 0 if data["ok"] else EXIT_CHECK_FAILED


def _dagster_health(check: Any) -> Any:
    if not os.environ.get("DAGSTER_HOME"):
        return check("dagster instance", False, "DAGSTER_HOME is not set")
    try:
        instance = _instance()
        instance.get_run_records(limit=1)
        return check("dagster instance", True, f"reachable ({os.environ['DAGSTER_HOME']})")
    except Exception as exc:  # a verdict, reported without secrets
        return check("dagster instance", False, safe_message(exc))


@_command(main, "migrate")
def migrate(ctx: Context) -> int:
    """Upgrade the state store to the newest migration (runs also do this on first use)."""
    from syncflow_core.state.store import StateStore

    with ctx.runtime(at_head=False) as rt:
        before = rt.state.revision()
        rt.state.upgrade()
        after = rt.state.revision()
    data = {"from": before, "to": after, "head": StateStore.head_revision()}
    ctx.emit(data, lambda: [f"state store: {before or 'empty'} -> {after} (head)"
                            if before != after else f"state store already at head ({after})"])
    return 0


@_command(config_group, "check")
@click.option("--sample", default=10_000, show_default=True, help="Rows sampled per entity.")
def config_check(ctx: Context, sample: int) -> int:
    """The config against the live source: columns, declared types, key uniqueness on a
    sample, parent/child key types."""
    from syncflow_core.config_check import check_config

    with ctx.runtime(at_head=False) as rt:
        findings = check_config(rt, sample)
    data = [f.as_dict() for f in findings]
    ctx.emit(data, lambda: [f"{f.level:<7} {f.entity:<12} {f.message}" for f in findings])
    return EXIT_CHECK_FAILED if any(f.level == "error" for f in findings) else 0


@_command(metrics_group, "serve")
@click.option("--port", default=9464, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
def metrics_serve(ctx: Context, port: int, host: str) -> int:
    """Serve Prometheus metrics (state store + Dagster instance) at http://HOST:PORT/metrics."""
    from syncflow_dagster.metrics import serve

    serve(ctx.config, host, port, lambda: ctx.runtime(), _instance)
    return 0
