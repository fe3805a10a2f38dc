"""Deployment test against a real `prefect server start` (SQLite under tmp, loopback).

process work pool -> `prefect deploy --all` (the project's prefect.yaml) -> worker ->
`prefect deployment run 'build/build' --watch` on small real BFCL data; then the
event path: `watch-catalog` (run by hand instead of waiting for its schedule) emits
`toolweaver.catalog.changed`, the `on-catalog-change` trigger starts `rebuild`, and
that rebuild is all cache hits because the build above already ran on the same data.
Everything started here is stopped (whole process groups) in a finally.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.flows.conftest import write_bfcl_subset

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process and everything in its group (worker -> flow-run subprocesses)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.store = tmp / "store"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_CLI_PROMPT": "false",
            # Schedules are not under test here (runs are started by hand) and a
            # scheduled sensor run would race the test's own runs.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "TOOLWEAVER_HOME": str(self.store),
            "PWD": str(ROOT),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [PREFECT, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout_s: float = 300) -> str:
        done = subprocess.run(
            [PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return done.stdout

    def wait_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.procs[0].poll() is None, f"prefect server exited:\n{self.logs()}"
            time.sleep(1)
        raise TimeoutError(f"prefect server not healthy after {timeout_s}s:\n{self.logs()}")

    def post(self, path: str, body: dict) -> list[dict]:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)


@contextmanager
def cluster(tmp: Path) -> Iterator[Cluster]:
    c = Cluster(tmp)
    try:
        c.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(c.port))
        c.wait_healthy()
        yield c
    finally:
        c.stop()


def _task_states(c: Cluster, flow_run_id: str) -> dict[str, str]:
    """Task-run states under a flow run and its subflows."""
    states: dict[str, str] = {}
    frontier = [flow_run_id]
    while frontier:
        for tr in c.post("/task_runs/filter", {"flow_runs": {"id": {"any_": frontier}}}):
            states[tr["name"]] = tr["state"]["name"]
        children = c.post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": frontier}}})
        frontier = [fr["id"] for fr in children]
    return states


def _deployment_runs(c: Cluster, deployment: str) -> list[dict]:
    (dep,) = c.post("/deployments/filter", {"deployments": {"name": {"any_": [deployment]}}})
    return c.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}})


def _wait_terminal(c: Cluster, deployment: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _deployment_runs(c, deployment)
        done = [r for r in runs if r["state"] and r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}]
        if done:
            return done[0]
        time.sleep(2)
    raise TimeoutError(f"no finished run of {deployment} after {timeout_s}s:\n{c.logs()}")


def test_deploy_all_and_run_build_then_catalog_event(tmp_path: Path, tiny_profile) -> None:  # noqa: ANN001
    from storage import Store
    from tasks.prefect_tasks import BuildConfig, planned_stages, resolve_plan

    data = write_bfcl_subset(tmp_path / "bfcl", lines=25)
    sources = [{"source": "bfcl", "path": str(data)}]
    profile = tiny_profile.model_dump(mode="json")
    with cluster(tmp_path) as c:
        c.cli("work-pool", "create", "toolweaver", "--type", "process")
        out = c.cli("deploy", "--all")
        for name in ("build", "nightly-rebuild", "on-catalog-change", "watch-catalog"):
            assert name in out, out
        c.spawn("worker", "worker", "start", "--pool", "toolweaver", "--type", "process")

        config = {"profile": profile, "sources": sources}
        c.cli("deployment", "run", "build/build", "--params", json.dumps({"config": config}), "--watch", timeout_s=400)

        (run,) = _deployment_runs(c, "build")
        assert run["state"]["type"] == "COMPLETED", c.logs()
        stages = planned_stages(resolve_plan(BuildConfig.model_validate(config)))
        assert {k: v for k, v in _task_states(c, run["id"]).items() if k in stages} == dict.fromkeys(stages, "Completed")
        tables = {ref.table: ref for ref in Store(root=c.store).tables()}
        assert tables["tools"].rows > 0 and tables["queries"].rows > 0, tables
        artifacts = c.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["toolweaver-build-summary"]}}})
        assert artifacts and "toolweaver sql" in artifacts[0]["data"]

        # Event path: the sensor sees a new catalog and the trigger starts the rebuild.
        sensor = json.dumps({"sources": sources, "profile": profile})
        c.cli("deployment", "run", "watch-catalog/watch-catalog", "--params", sensor, "--watch", timeout_s=300)
        rebuilt = _wait_terminal(c, "on-catalog-change", timeout_s=300)
        assert rebuilt["state"]["type"] == "COMPLETED", c.logs()
        assert rebuilt["parameters"]["digest"], rebuilt["parameters"]
        states = _task_states(c, rebuilt["id"])
        assert {k: v for k, v in states.items() if k in stages} == dict.fromkeys(stages, "Cached")
        assert {ref.table: ref.version for ref in Store(root=c.store).tables()} == {t: r.version for t, r in tables.items()}
