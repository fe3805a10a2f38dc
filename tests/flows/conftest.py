"""Flow-test fixtures: one session-scoped Prefect test harness, small real BFCL data.

PREFECT_HOME is already a temp folder (tests/conftest.py); result storage (the
persisted JSON results and cache records) is pinned under it as well, so cached
results never leak between test sessions or into the user's ~/.prefect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

BFCL_FILES = ("BFCL_v4_simple_python.json", "BFCL_v4_multiple.json")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = Path(os.environ["PREFECT_HOME"]) / "storage"
    with (
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


def _installed_bfcl() -> Path:
    from toolweaver.ingest.bfcl import default_data_dir

    try:
        return default_data_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def write_bfcl_subset(dest: Path, lines: int) -> Path:
    """The first `lines` questions (and their answers) of two real BFCL files, copied
    from the installed bfcl-eval package into `dest` in the package's layout."""
    src = _installed_bfcl()
    (dest / "possible_answer").mkdir(parents=True, exist_ok=True)
    for name in BFCL_FILES:
        for rel in (name, f"possible_answer/{name}"):
            head = (src / rel).read_text(encoding="utf-8").splitlines()[:lines]
            (dest / rel).write_text("\n".join(head) + "\n", encoding="utf-8")
    return dest


@pytest.fixture()
def bfcl_subset(tmp_path: Path) -> Path:
    return write_bfcl_subset(tmp_path / "bfcl", lines=25)


def edit_first_description(root: Path, suffix: str = " (edited)") -> None:
    """Change the bytes of one BFCL function doc in place (same path, new content)."""
    path = root / BFCL_FILES[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[0])
    item["function"][0]["description"] += suffix
    lines[0] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_states(flow_run_id: UUID) -> dict[str, str]:
    """State name of every task run under a flow run and its subflows, read from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    states: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        frontier = [flow_run_id]
        while frontier:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=frontier)))
            for tr in runs:
                assert tr.state is not None
                assert tr.name not in states, f"task run name {tr.name} appears twice"
                states[tr.name] = tr.state.name
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
            )
            frontier = [fr.id for fr in children]
    return states


TINY_RQVAE = {
    "levels": 2,
    "codebook_size": 16,
    "encoder_widths": (32,),
    "latent_dim": 4,
    "warmup_epochs": 1,
    "epochs": 3,
    "batch_size": 64,
    "kmeans_iters": 5,
    "device": "cpu",
}


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory: pytest.TempPathFactory):
    """A profile for flow tests: real MiniLM embeddings, a tiny RQ-VAE, a 2-layer Llama
    built in code (saved as a model folder), 2 LoRA steps, BM25 + the tuned model."""
    from tasks.prefect.profiles import Profile
    from tasks.stages.codes import TokenizeConfig
    from tasks.stages.finetune import FinetuneConfig
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
    from toolweaver.align.train import TrainConfig
    from toolweaver.codes.embed import EmbedConfig

    folder = tmp_path_factory.mktemp("tiny-llm")
    words = write_bfcl_subset(tmp_path_factory.mktemp("vocab"), lines=25)
    tokenizer = tiny_tokenizer(p.read_text(encoding="utf-8") for p in sorted(words.rglob("*.json")))
    tiny_llama(len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Profile(
        name="test",
        device="cpu",
        description="flow tests (tiny models)",
        tokenize=TokenizeConfig(embed=EmbedConfig(device="cpu", show_progress=False), rqvae=TINY_RQVAE),
        finetune=FinetuneConfig(
            model=str(folder), stages=("memorization",), train=TrainConfig(max_steps=2, batch_size=8, device="cpu")
        ),
        eval_methods=("bm25",),
    )


# --------------------------------------------------------------------------- rebuild with new tools

N_BASE_TOOLBENCH, N_NEW_TOOLBENCH = 10, 20


@pytest.fixture(scope="session")
def one_api_tool_files(shared_data: Path) -> dict[str, bytes]:
    """Real ToolEnv2404 tool files that hold exactly one API (so one file = one tool), the
    first N_BASE_TOOLBENCH + N_NEW_TOOLBENCH in archive-path order: {member path: bytes}."""
    from toolweaver.ingest.files import iter_files

    archive = shared_data / "toolbench" / "toolenv2404" / "toolenv2404_filtered.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent (see README: Data)")
    found: dict[str, bytes] = {}
    for name, data in sorted(iter_files(archive)):
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        apis = doc.get("api_list") if isinstance(doc, dict) else None
        if isinstance(apis, list) and len(apis) == 1 and (apis[0].get("description") or "").strip():
            found[name] = data
    picked = sorted(found)[: N_BASE_TOOLBENCH + N_NEW_TOOLBENCH]
    assert len(picked) == N_BASE_TOOLBENCH + N_NEW_TOOLBENCH
    return {name: found[name] for name in picked}


def write_tool_files(folder: Path, files: dict[str, bytes]) -> None:
    """Tool files into a watched folder, keeping their `<Category>/<tool>.json` layout."""
    for name, data in files.items():
        target = folder / Path(name).parent.name / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@pytest.fixture(scope="session")
def memorizing_profile(tmp_path_factory: pytest.TempPathFactory, one_api_tool_files: dict[str, bytes]):
    """A profile whose tiny model really memorizes codes (settings of tests/align/test_train.py:
    64-wide Llama with weights scaled to std 0.2, LoRA r 8, constant lr 5e-3), with a
    tokenizer that knows the words of the BFCL subset and of every tool file used."""
    import torch

    from tasks.prefect.profiles import Profile
    from tasks.stages.codes import TokenizeConfig
    from tasks.stages.finetune import FinetuneConfig
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
    from toolweaver.align.train import TrainConfig
    from toolweaver.codes.embed import EmbedConfig

    folder = tmp_path_factory.mktemp("memorizing-llm")
    words = write_bfcl_subset(tmp_path_factory.mktemp("vocab"), lines=25)
    texts = [p.read_text(encoding="utf-8") for p in sorted(words.rglob("*.json"))]
    texts += [data.decode("utf-8") for data in one_api_tool_files.values()]
    tokenizer = tiny_tokenizer(texts)
    model = tiny_llama(len(tokenizer), hidden_size=64, seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.mul_(0.2 / 0.02)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    train = TrainConfig(
        max_steps=300,
        batch_size=10,
        lr=5e-3,
        schedule="constant",
        lora_r=8,
        lora_alpha=32,
        max_grad_norm=None,
        save_every=100,
        device="cpu",
    )
    return Profile(
        name="test-memorize",
        device="cpu",
        description="flow tests: a tiny model that memorizes its codes",
        tokenize=TokenizeConfig(embed=EmbedConfig(device="cpu", show_progress=False), rqvae=TINY_RQVAE),
        finetune=FinetuneConfig(model=str(folder), stages=("memorization",), train=train),
        eval_methods=("bm25",),
        eval_llm=False,
    )
