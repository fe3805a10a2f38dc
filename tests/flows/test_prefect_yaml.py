"""Every deployment in prefect.yaml loads, and its parameters validate against its flow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
EXPECTED = {"build", "nightly-rebuild", "on-catalog-change", "watch-catalog"}


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    return {d["name"]: d for d in spec["deployments"]}


def _flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(entrypoint)


def _render(template: Any, event: dict[str, Any]) -> Any:
    """Enough of the trigger's jinja for `{{ event.payload.X }}` placeholders (a single
    expression keeps its JSON type, as Prefect renders it)."""
    if isinstance(template, dict):
        return {k: _render(v, event) for k, v in template.items()}
    if not isinstance(template, str) or "{{" not in template:
        return template
    m = re.fullmatch(r"\{\{\s*event\.payload\.(\w+)\s*\}\}", template)
    assert m, f"unsupported trigger template {template!r}"
    return event["payload"][m.group(1)]


def test_prefect_yaml_has_the_four_deployments(deployments: dict[str, dict[str, Any]]) -> None:
    assert set(deployments) == EXPECTED
    assert len(deployments) == 4


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_deployment_parameters_validate_against_the_flow(deployments: dict[str, dict[str, Any]], name: str) -> None:
    d = deployments[name]
    flow = _flow(d["entrypoint"])
    validated = flow.validate_parameters(d.get("parameters", {}))
    assert set(validated) <= set(flow.parameters.properties)
    assert d["work_pool"]["name"] == "toolweaver"
    assert d["work_pool"]["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"].startswith("toolweaver")


def test_build_flow_names(deployments: dict[str, dict[str, Any]]) -> None:
    # `prefect deployment run 'build/build'` needs the flow called build.
    assert _flow(deployments["build"]["entrypoint"]).name == "build"
    assert _flow(deployments["watch-catalog"]["entrypoint"]).name == "watch-catalog"
    assert _flow(deployments["nightly-rebuild"]["entrypoint"]).name == "rebuild"


def test_writers_are_limited_to_one(deployments: dict[str, dict[str, Any]]) -> None:
    for name in ("build", "nightly-rebuild", "on-catalog-change"):
        assert deployments[name]["concurrency_limit"]["limit"] == 1, name


def test_schedules(deployments: dict[str, dict[str, Any]]) -> None:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    (nightly,) = deployments["nightly-rebuild"]["schedules"]
    assert CronSchedule(cron=nightly["cron"], timezone=nightly["timezone"]).cron == "0 3 * * *"
    (sensor,) = deployments["watch-catalog"]["schedules"]
    assert IntervalSchedule(interval=sensor["interval"]).interval.total_seconds() > 0
    for source in deployments["watch-catalog"]["parameters"]["sources"]:
        assert set(source) <= {"source", "path"}


def test_catalog_trigger_passes_the_digest(deployments: dict[str, dict[str, Any]]) -> None:
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    from tasks.prefect.sensor import CATALOG_EVENT

    d = deployments["on-catalog-change"]
    (raw,) = d["triggers"]
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(raw)
    assert trigger.expect == {CATALOG_EVENT}
    assert trigger.enabled
    # The sensor's resource id matches the trigger's pattern.
    pattern = raw["match"]["prefect.resource.id"]
    assert re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), "toolweaver.catalog.toolweaver-catalog-0123")
    event = {
        "payload": {
            "digest": "ab" * 32,
            "sources": [{"source": "openapi", "path": "/data/tools", "snapshot": True}],
            "profile": "quick",
            "store": "/data/store",
            "changes": {"counts": {"added": 1, "changed": 0, "retired": 2}, "added": ["a&&b"], "changed": []},
        }
    }
    params = {**d["parameters"], **_render(raw["parameters"], event)}
    validated = _flow(d["entrypoint"]).validate_parameters(params)
    assert validated["digest"] == "ab" * 32
    assert validated["changes"]["counts"] == {"added": 1, "changed": 0, "retired": 2}
    sources = [(s.source, str(s.path), s.snapshot) for s in validated["config"].sources]
    assert sources == [("openapi", "/data/tools", True)]
    assert validated["config"].profile == "quick" and validated["config"].store == "/data/store"


def test_nightly_rebuild_applies_retention(deployments: dict[str, dict[str, Any]]) -> None:
    d = deployments["nightly-rebuild"]
    config = _flow(d["entrypoint"]).validate_parameters(d["parameters"])["config"]
    assert config.retention is not None and config.retention.keep_checkpoints >= 1
    # The manual build keeps everything unless asked.
    build = _flow(deployments["build"]["entrypoint"]).validate_parameters(deployments["build"]["parameters"])["config"]
    assert build.retention is None
