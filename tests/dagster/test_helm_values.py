"""helm/values.yaml fits Dagster's chart and renders to what we mean.

No cluster runs here. The schema test checks every key we set against the chart's own schema
(a copy in fixtures/helm, see its README). The intent tests read the values the way the chart
and dagster-k8s use them: the chart's concurrency and run-coordinator templates map our keys
onto dagster.yaml keys, and dagster-k8s's own `K8sContainerContext` merges what run pods get.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from syncflow_core.config import SyncFlowConfig
from syncflow_dagster.definitions import build_definitions
from syncflow_dagster.io_manager import StreamIOManager
from syncflow_dagster.ops import STREAM_IO_MANAGER_KEY

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "helm"
K8S_SCHEMAS = "https://kubernetesjsonschema.dev/"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "helm" / "values.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def instance_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO / "deploy" / "dagster-postgres.yaml").read_text())
    return loaded


def _k8s_registry(schema: Any) -> Registry[Any]:
    """Kubernetes object schemas are not fetched (no network in tests): every object the chart
    schema points to under kubernetesjsonschema.dev resolves to ``{}``, so any object passes."""
    documents: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith(K8S_SCHEMAS):
                uri, _, pointer = ref.partition("#")
                doc = documents.setdefault(uri, {})
                for part in pointer.strip("/").split("/"):
                    doc = doc.setdefault(part, {})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT7))
        for uri, doc in documents.items()
    )


def _ignore_required(*_: Any) -> Iterator[ValidationError]:
    return iter(())


# values.yaml is an override file: Helm validates it merged with the chart's defaults, which
# supply every `required` key. So check types, enums and unknown keys, not required-ness.
OverrideValidator = validators.extend(Draft7Validator, {"required": _ignore_required})


def _errors(schema_file: str, instance: Any) -> list[str]:
    schema = json.loads((FIXTURES / schema_file).read_text())
    validator = OverrideValidator(schema, registry=_k8s_registry(schema))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(instance)]


def test_values_fit_the_charts_schema(values: dict[str, Any]) -> None:
    assert _errors("values.schema.json", values) == []
    assert _errors("concurrency.schema.json", values["concurrency"]) == []


def test_the_schema_check_catches_a_misplaced_key(values: dict[str, Any]) -> None:
    # The check can fail: a key the chart does not know (here a typo) is reported.
    bad = json.loads(json.dumps(values))
    bad["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "x"}]
    bad["concurrency"]["pools"]["defaultlimit"] = 1
    errors = _errors("values.schema.json", bad) + _errors("concurrency.schema.json",
                                                          bad["concurrency"])
    assert any("envSecret" in e for e in errors), errors
    assert any("defaultlimit" in e for e in errors), errors


def test_concurrency_is_enabled_and_renders_to_the_production_instance_config(
    values: dict[str, Any], instance_yaml: dict[str, Any]
) -> None:
    conc = values["concurrency"]
    assert conc["enabled"] is True  # the chart ignores the block otherwise
    # The chart's `dagsterYaml.concurrency` template: camelCase keys -> dagster.yaml keys.
    rendered = {
        "pools": {"default_limit": conc["pools"]["defaultLimit"],
                  "granularity": conc["pools"]["granularity"]},
        "runs": {"max_concurrent_runs": conc["runs"]["maxConcurrentRuns"]},
    }
    assert rendered == instance_yaml["concurrency"]
    assert rendered["pools"] == {"default_limit": 1, "granularity": "run"}  # one run per entity
    qrc = values["dagsterDaemon"]["runCoordinator"]
    assert qrc["enabled"] and qrc["type"] == "QueuedRunCoordinator"
    threads = qrc["config"]["queuedRunCoordinator"]
    assert instance_yaml["run_coordinator"]["config"] == {
        "dequeue_use_threads": threads["dequeueUseThreads"],
        "dequeue_num_workers": threads["dequeueNumWorkers"],
    }
    assert "runMonitoring" in values["dagsterDaemon"]  # the place for issue #14's settings


def test_webserver_daemon_and_run_pods_get_the_psycopg2_scheme(
    values: dict[str, Any], instance_yaml: dict[str, Any]
) -> None:
    # One instance ConfigMap serves the webserver, the daemon and (mounted) every run pod.
    scheme = instance_yaml["storage"]["postgres"]["postgres_db"]["scheme"]
    assert scheme == "postgresql+psycopg2"
    assert values["postgresql"]["postgresqlScheme"] == scheme


def _snake(value: Any) -> Any:
    """The chart's `snakeCaseDictRecursive`, applied to runK8sConfig before dagster-k8s."""
    if isinstance(value, Mapping):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _launcher_context(values: Mapping[str, Any]) -> K8sContainerContext:
    """What the chart's K8sRunLauncher config contributes to every run pod."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    return K8sContainerContext().merge(K8sContainerContext(
        env_secrets=[s["name"] for s in launcher.get("envSecrets", [])],
        env_vars=launcher.get("envVars", []),
        volumes=launcher.get("volumes", []),
        volume_mounts=launcher.get("volumeMounts", []),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            _snake(launcher.get("runK8sConfig", {}))),
    ))


def _code_server_context(deployment: Mapping[str, Any]) -> K8sContainerContext:
    """What the chart hands run pods from a code server with includeConfigInLaunchedRuns."""
    return K8sContainerContext(
        env_secrets=[s["name"] for s in deployment.get("envSecrets", [])],
        volumes=deployment.get("volumes", []),
        volume_mounts=deployment.get("volumeMounts", []),
        resources=deployment.get("resources", {}),
    )


def _run_pod(values: Mapping[str, Any]) -> UserDefinedDagsterK8sConfig:
    """dagster-k8s's merge for a run (`K8sContainerContext.create_for_run`, no run tags)."""
    context = _launcher_context(values)
    for deployment in values["dagster-user-deployments"]["deployments"]:
        if deployment.get("includeConfigInLaunchedRuns", {}).get("enabled", True):
            context = context.merge(_code_server_context(deployment))
    return context.run_k8s_config


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * units.get(unit, 1)


def test_run_pods_get_the_run_launchers_memory(values: dict[str, Any]) -> None:
    resources = _run_pod(values).container_config["resources"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert resources == launcher["containerConfig"]["resources"]
    request, limit = _bytes(resources["requests"]["memory"]), _bytes(resources["limits"]["memory"])
    # docs/DEPLOY.md: ~1.2 GB peak at the default chunk_size; the request covers it.
    assert 1.2e9 <= request <= limit
    # Why includeConfigInLaunchedRuns is off: left on, dagster-k8s merges the code server's
    # context over the run launcher's and its 1Gi limit would win.
    with_code_server = json.loads(json.dumps(values))
    for deployment in with_code_server["dagster-user-deployments"]["deployments"]:
        deployment["includeConfigInLaunchedRuns"] = {"enabled": True}
    code_resources = with_code_server["dagster-user-deployments"]["deployments"][0]["resources"]
    assert _run_pod(with_code_server).container_config["resources"] == code_resources


def _env(pod: UserDefinedDagsterK8sConfig) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod.container_config.get("env", [])}


def _mounts(pod: UserDefinedDagsterK8sConfig) -> dict[str, dict[str, Any]]:
    volumes = {v["name"]: v for v in pod.pod_spec_config.get("volumes", [])}
    return {m["mount_path"]: volumes[m["name"]]
            for m in pod.container_config.get("volume_mounts", [])}


def _under(path: str, mounts: Mapping[str, Any]) -> dict[str, Any]:
    for mount, volume in mounts.items():
        if PurePosixPath(path).is_relative_to(mount):
            return dict(volume)
    raise AssertionError(f"{path} is on no mounted volume")


def test_run_pods_get_the_connection_secrets_and_the_config(values: dict[str, Any]) -> None:
    pod = _run_pod(values)
    server = values["dagster-user-deployments"]["deployments"][0]
    secrets = {e["secret_ref"]["name"] for e in pod.container_config.get("env_from", [])}
    assert {s["name"] for s in server["envSecrets"]} <= secrets  # the SYNCFLOW_*_URL keys
    env = _env(pod)
    server_env = {e["name"]: e["value"] for e in server["env"]}
    assert env["SYNCFLOW_CONFIG"] == server_env["SYNCFLOW_CONFIG"]  # same file, both places
    config_volume = _under(env["SYNCFLOW_CONFIG"], _mounts(pod))
    assert config_volume["config_map"]["name"] == "syncflow-config"


def test_run_pods_need_no_stage_storage_and_run_as_the_images_user(
    values: dict[str, Any], demo_config: SyncFlowConfig
) -> None:
    # Stage ops hand each other a plan, never rows: the IO manager has nowhere to write.
    defs = build_definitions(demo_config)
    io_manager = defs.resources[STREAM_IO_MANAGER_KEY]
    assert isinstance(io_manager, StreamIOManager)
    assert not type(io_manager).model_fields  # no base_dir / URL to configure
    pod = _run_pod(values)
    assert not any(k.startswith("SYNCFLOW_BATCH") for k in _env(pod))  # no stale knob
    assert set(_mounts(pod)) == {"/opt/syncflow/config"}  # only the read-only config
    security = pod.pod_spec_config["security_context"]
    assert security["run_as_non_root"] is True
    assert security["run_as_user"] == 10001
    assert "useradd --create-home --uid 10001 syncflow" in (REPO / "Dockerfile").read_text()
