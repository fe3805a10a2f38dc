"""Deployment tests against one real `prefect server start` (SQLite under tmp, loopback).

One server session for the module (starting one costs tens of seconds on 2 cores):
process work pool -> `prefect deploy --all` (the project's prefect.yaml) -> a worker.

1. `prefect deployment run 'build/build' --watch` on small real BFCL data; then the event
   path: `watch-catalog` (run by hand instead of waiting for its schedule) emits
   `toolweaver.catalog.changed`, the `on-catalog-change` trigger starts `rebuild`, which
   is all cache hits because the build above already ran on the same data.
2. A worker SIGKILLed while the finetune task trains: the next deployment run (new
   worker) resumes from the last registered training checkpoint.
3. 20 tool files added to a watched source: the sensor emits, `on-catalog-change` embeds
   only them, keeps every old code and continues the last model; each new tool is in
   the top 5 of `toolweaver retrieve` for its own documentation.
4. Two build flow runs started together (two processes) leave the store consistent.

Everything started here is stopped (whole process trees) in a finally.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from tests.flows.conftest import N_BASE_TOOLBENCH, write_bfcl_subset, write_tool_files

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
UUID_RE = re.compile(r"UUID: ([0-9a-f-]{36})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process and everything in its group and below it (worker -> flow-run
    subprocesses, which may run in sessions of their own)."""
    if proc.poll() is not None:
        return
    try:
        below = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        below = []
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        for child in below:
            try:
                child.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
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
            [PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode == 0, (
            f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        )
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

    def run_deployment(self, name: str, params: dict, *, watch: bool = True, timeout_s: float = 600) -> dict:
        """`prefect deployment run NAME --params ...` (--watch: until it ends); the flow run."""
        out = self.cli(
            "deployment",
            "run",
            name,
            "--params",
            json.dumps(params),
            *(["--watch"] if watch else []),
            timeout_s=timeout_s,
        )
        match = UUID_RE.search(out)
        assert match, out
        return self.flow_run(match.group(1))

    def flow_run(self, flow_run_id: str) -> dict:
        response = httpx.get(f"{self.api}/flow_runs/{flow_run_id}", timeout=30)
        response.raise_for_status()
        return response.json()

    def crash(self, flow_run_id: str, message: str) -> None:
        """Mark a flow run whose process was killed as Crashed, as Prefect's heartbeat-based
        zombie detection would (minutes later); this also releases its deployment
        concurrency slot, so the next run of the deployment is not queued behind it."""
        body = {"state": {"type": "CRASHED", "name": "Crashed", "message": message}, "force": True}
        response = httpx.post(f"{self.api}/flow_runs/{flow_run_id}/set_state", json=body, timeout=30)
        response.raise_for_status()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

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


def _wait_terminal(c: Cluster, deployment: str, timeout_s: float, known: set[str] = frozenset()) -> dict:
    """The first finished run of `deployment` that is not in `known` (runs seen before)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in _deployment_runs(c, deployment) if r["id"] not in known]
        done = [r for r in runs if r["state"] and r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}]
        if done:
            return done[0]
        time.sleep(2)
    raise TimeoutError(f"no finished run of {deployment} after {timeout_s}s:\n{c.logs()}")


def _run_ids(c: Cluster, deployment: str) -> set[str]:
    return {r["id"] for r in _deployment_runs(c, deployment)}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server with the process work pool, every deployment of prefect.yaml, one worker."""
    with cluster(tmp_path_factory.mktemp("cluster")) as c:
        c.cli("work-pool", "create", "toolweaver", "--type", "process")
        out = c.cli("deploy", "--all")
        for name in ("build", "nightly-rebuild", "on-catalog-change", "watch-catalog"):
            assert name in out, out
        c.spawn("worker", "worker", "start", "--pool", "toolweaver", "--type", "process")
        yield c


def test_deploy_all_and_run_build_then_catalog_event(deployed: Cluster, tmp_path: Path, tiny_profile) -> None:
    from storage import Store
    from tasks.prefect.plan import BuildConfig, resolve_plan
    from tasks.prefect.registry import planned_stages

    c = deployed
    data = write_bfcl_subset(tmp_path / "bfcl", lines=25)
    sources = [{"source": "bfcl", "path": str(data)}]
    profile = tiny_profile.model_dump(mode="json")
    config = {"profile": profile, "sources": sources}
    run = c.run_deployment("build/build", {"config": config}, timeout_s=400)
    assert run["state"]["type"] == "COMPLETED", c.logs()
    stages = planned_stages(resolve_plan(BuildConfig.model_validate(config)))
    assert {k: v for k, v in _task_states(c, run["id"]).items() if k in stages} == dict.fromkeys(stages, "Completed")
    tables = {ref.table: ref for ref in Store(root=c.store).tables()}
    assert tables["tools"].rows > 0 and tables["queries"].rows > 0, tables
    artifacts = c.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["toolweaver-build-summary"]}}})
    assert artifacts and "toolweaver sql" in artifacts[0]["data"]
    progress = c.post(
        "/artifacts/filter", {"artifacts": {"key": {"any_": ["toolweaver-finetune-memorization-progress"]}}}
    )
    assert progress and progress[0]["type"] == "progress" and float(progress[0]["data"]) == 100.0

    # Event path: the sensor sees a new catalog and the trigger starts the rebuild.
    known = _run_ids(c, "on-catalog-change")
    c.run_deployment("watch-catalog/watch-catalog", {"sources": sources, "profile": profile}, timeout_s=300)
    rebuilt = _wait_terminal(c, "on-catalog-change", timeout_s=300, known=known)
    assert rebuilt["state"]["type"] == "COMPLETED", c.logs()
    assert rebuilt["parameters"]["digest"], rebuilt["parameters"]
    assert rebuilt["parameters"]["config"]["store"] == str(c.store)
    states = _task_states(c, rebuilt["id"])
    assert {k: v for k, v in states.items() if k in stages} == dict.fromkeys(stages, "Cached")
    assert {ref.table: ref.version for ref in Store(root=c.store).tables()} == {t: r.version for t, r in tables.items()}


# --------------------------------------------------------------------------- SIGKILL during fine-tuning


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and every process below it (its flow-run subprocesses), like a
    machine going away: no handler runs, the kernel drops their file locks."""
    root = psutil.Process(proc.pid)
    victims = [*root.children(recursive=True), root]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)
    proc.wait(timeout=30)


def _first_llm_checkpoint(store: Path, run: dict, c: Cluster, timeout_s: float) -> None:
    """Wait until the build registered a training checkpoint (while it still trains)."""
    from storage import Store

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (store / "tables" / "checkpoints").is_dir() and Store(root=store).checkpoints(kind="llm").num_rows:
            return
        state = c.flow_run(run["id"])["state"]["type"]
        assert state in {"SCHEDULED", "PENDING", "RUNNING"}, (
            f"build ended ({state}) before any training checkpoint:\n{c.logs()}"
        )
        time.sleep(0.2)
    raise TimeoutError(f"no training checkpoint after {timeout_s}s:\n{c.logs()}")


@pytest.mark.slow  # ~3 min each on 2 cores: run by `make test-slow` and by .ci/run after `make test`
def test_worker_killed_while_finetuning_resumes_from_last_checkpoint(
    deployed: Cluster, tmp_path: Path, tiny_profile
) -> None:
    from storage import Store
    from toolweaver.align.train import TrainConfig

    c = deployed
    store = tmp_path / "store"
    data = write_bfcl_subset(tmp_path / "bfcl", lines=25)
    # Long enough to be caught training: 200 steps, a checkpoint every 10.
    train = TrainConfig(max_steps=200, batch_size=8, save_every=10, keep_last=2, device="cpu")
    profile = tiny_profile.model_copy(update={"finetune": tiny_profile.finetune.model_copy(update={"train": train})})
    config = {
        "profile": profile.model_dump(mode="json"),
        "sources": [{"source": "bfcl", "path": str(data)}],
        "store": str(store),
    }

    killed = c.run_deployment("build/build", {"config": config}, watch=False)
    _first_llm_checkpoint(store, killed, c, timeout_s=400)
    (worker,) = [p for p in c.procs if p.args[1:3] == ["worker", "start"] and p.poll() is None]
    _kill_tree(worker)
    c.crash(killed["id"], "worker SIGKILLed by the test")
    c.spawn("worker-2", "worker", "start", "--pool", "toolweaver", "--type", "process")

    resumed = c.run_deployment("build/build", {"config": config}, timeout_s=500)
    assert resumed["state"]["type"] == "COMPLETED", c.logs()
    st = Store(root=store)
    metrics = st.read("train_metrics", columns=["run_id", "step"]).to_pylist()
    steps_by_run: dict[str, list[int]] = {}
    for row in metrics:
        steps_by_run.setdefault(row["run_id"], []).append(row["step"])
    first, second = sorted(steps_by_run.values(), key=min)
    checkpoints = st.checkpoints(kind="llm").to_pylist()
    killed_run = next(r for r, steps in steps_by_run.items() if steps is first)
    last_saved = max(json.loads(r["meta"])["step"] for r in checkpoints if r["run_id"] == killed_run)
    # The new run started right after the last checkpoint the killed one registered and
    # ran only the remaining optimizer steps.
    assert 10 <= last_saved < 200 and min(first) == 1
    assert sorted(second) == list(range(last_saved + 1, 201))
    final = [json.loads(r["meta"]) for r in checkpoints if r["present"]]
    assert max(m["step"] for m in final) == 200


# --------------------------------------------------------------------------- 20 new tools through the event path


@pytest.mark.slow  # ~3 min each on 2 cores: run by `make test-slow` and by .ci/run after `make test`
def test_twenty_new_tool_files_trigger_an_incremental_rebuild(
    deployed: Cluster, tmp_path: Path, memorizing_profile, one_api_tool_files
) -> None:
    from storage import Store
    from tests.flows.test_update import codes_of, memorization_prompts, top5

    c = deployed
    store = tmp_path / "store"
    data = write_bfcl_subset(tmp_path / "bfcl", lines=25)
    watched = tmp_path / "tools"
    names = sorted(one_api_tool_files)
    write_tool_files(watched, {n: one_api_tool_files[n] for n in names[:N_BASE_TOOLBENCH]})
    sources = [{"source": "bfcl", "path": str(data)}, {"source": "toolbench", "path": str(watched)}]
    sensor = {"sources": sources, "profile": memorizing_profile.model_dump(mode="json"), "store": str(store)}

    def sense_and_rebuild() -> dict:
        known = _run_ids(c, "on-catalog-change")
        c.run_deployment("watch-catalog/watch-catalog", sensor, timeout_s=300)
        run = _wait_terminal(c, "on-catalog-change", timeout_s=600, known=known)
        assert run["state"]["type"] == "COMPLETED", c.logs()
        return run

    first = sense_and_rebuild()  # the first look at a catalog counts as a change: a full build
    st = Store(root=store)
    old_codes, old_vectors = codes_of(store), st.latest("embeddings").rows
    (base_model,) = [
        r["checkpoint_id"] for r in st.checkpoints(kind="llm").to_pylist() if json.loads(r["meta"])["step"] == 300
    ]

    write_tool_files(watched, {n: one_api_tool_files[n] for n in names[N_BASE_TOOLBENCH:]})
    second = sense_and_rebuild()
    assert second["parameters"]["digest"] != first["parameters"]["digest"]

    new_codes = codes_of(store)
    added = set(new_codes) - set(old_codes)
    assert len(added) == 20
    assert {t: new_codes[t] for t in old_codes} == old_codes  # 0 old codes changed
    vectors = st.history("embeddings")
    assert st.latest("embeddings").rows - old_vectors == 20  # only the new docs were embedded
    assert vectors[0].mode == "append" and vectors[0].lineage.rows - vectors[1].lineage.rows == 20
    # The rebuild continued the last model (its checkpoints start from it).
    updated = [json.loads(r["meta"]) for r in st.checkpoints(kind="llm").to_pylist()]
    assert {m["init"] for m in updated if m["init"] != "base"} == {base_model}
    for tool_id, prompt in memorization_prompts(store, added).items():
        assert tool_id in top5(store, prompt), tool_id


# --------------------------------------------------------------------------- two builds at once


BUILD_SCRIPT = (
    "import json, sys\n"
    "from flows.build import build\n"
    "from tasks.prefect.plan import BuildConfig\n"
    "build(BuildConfig.model_validate(json.loads(sys.argv[1])))\n"
)


def test_two_builds_started_together_leave_the_store_consistent(
    deployed: Cluster, tmp_path: Path, tiny_profile
) -> None:
    c = deployed
    store = tmp_path / "store"
    data = write_bfcl_subset(tmp_path / "bfcl", lines=25)
    config = {
        "profile": tiny_profile.model_dump(mode="json"),
        "sources": [{"source": "bfcl", "path": str(data)}],
        "store": str(store),
    }
    procs = []
    for i in range(2):
        log = (tmp_path / f"build-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", BUILD_SCRIPT, json.dumps(config)],
                cwd=ROOT,
                env=c.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = "\n".join((tmp_path / f"build-{i}.log").read_text(errors="replace")[-3000:] for i in range(2))
    assert codes == [0, 0], logs
    assert_store_consistent(store)


def assert_store_consistent(root: Path) -> None:
    """Every table's log is a gapless line of versions, each readable with the rows its
    lineage record states; the lineage mirror has each version once, equal to the log;
    no key is stored twice where the pipeline keeps one row per key."""
    from storage import Store

    st = Store(root=root)
    mirror = st.read("lineage").to_pylist()
    pairs = [(r["table"], r["version"]) for r in mirror]
    assert len(pairs) == len(set(pairs)), "a table version has two lineage rows"
    mirrored = {(r["table"], r["version"]): r for r in mirror}
    for ref in st.tables():
        commits = sorted(int(p.stem) for p in (st.table_path(ref.table) / "_delta_log").glob("*.json"))
        assert commits == list(range(ref.version + 1)), (ref.table, commits)
        for info in st.history(ref.table):
            data = st.read(ref.table, version=info.version)
            if info.lineage is not None:
                assert data.num_rows == info.lineage.rows, (ref.table, info.version)
                if ref.table != "lineage":
                    row = mirrored[(ref.table, info.version)]
                    assert (row["digest"], row["rows"]) == (info.lineage.digest, info.lineage.rows)
    written = {
        (ref.table, v.version)
        for ref in st.tables()
        if ref.table != "lineage"
        for v in st.history(ref.table)
        if v.lineage
    }
    assert set(mirrored) == written
    for table, key in (
        ("embeddings", ("doc_hash", "model_id")),
        ("codes", ("tool_id",)),
        ("checkpoints", ("checkpoint_id",)),
        ("tools", ("tool_id",)),
        ("sft_examples", ("example_id",)),
    ):
        rows = st.read(table, columns=list(key)).to_pylist()
        keys = [tuple(r[k] for k in key) for r in rows]
        assert len(keys) == len(set(keys)), f"{table}: a {key} is stored twice"
    codes = st.read("codes", columns=["code"]).column("code").to_pylist()
    assert len(codes) == len(set(codes)), "two tools share a code"
