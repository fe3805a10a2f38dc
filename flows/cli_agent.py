"""`toolweaver agent` (call tools with a fine-tuned checkpoint) and `toolweaver export`.

Light module: torch, transformers and the store are imported inside the command bodies.
Queries come from the argument or from `--input` (JSON lines, each `{"query": …}` with an
optional `"id"`; `read_queries` is shared with `retrieve --input`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_common import FormatOpt, OutputFormat, StoreOpt, emit, fail, resolve_store, setup_logging

InputOpt = Annotated[
    Path | None,
    typer.Option(
        "--input", help='JSON lines, one {"query": TEXT, "id": optional} per line.', exists=True, dir_okay=False
    ),
]


def error_text(exc: Exception) -> str:
    """The message of an exception (a KeyError's str() is its repr)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def read_queries(query: str | None, input_path: Path | None) -> list[tuple[str, str]]:
    """[(id, text)] from the positional query or the --input file (exactly one of them)."""
    if (query is None) == (input_path is None):
        raise ValueError("give a QUERY or --input FILE (one of them)")
    if query is not None:
        return [("0", query)]
    out = []
    for line_no, line in enumerate(input_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{input_path}:{line_no}: not JSON ({err.msg})") from err
        text = item.get("query") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f'{input_path}:{line_no}: expected {{"query": TEXT}}')
        out.append((str(item.get("id", line_no)), text))
    if not out:
        raise ValueError(f"{input_path}: no queries")
    return out


def agent(
    query: Annotated[str | None, typer.Argument(help="The task for the agent.")] = None,
    input_path: InputOpt = None,
    store: StoreOpt = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="An llm checkpoint id or folder (default: the latest).")
    ] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Most tool calls per task.")] = 8,
    bfcl_conversation: Annotated[
        str | None,
        typer.Option("--bfcl-conversation", help="Execute calls with BFCL's classes from this conversation's state."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:i]")] = "auto",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Call tools for a task: each step a tool code (over the code trie) then its arguments
    (under the tool's schema), until Finish or --max-steps. Prints the calls."""
    setup_logging()
    from storage import Store
    from tasks.stages.agent import load_agent
    from toolweaver.agent.executors import NoExecutor
    from toolweaver.agent.loop import AgentConfig
    from toolweaver.device import resolve_device

    try:
        queries = read_queries(query, input_path)
        runner, loaded = load_agent(Store(resolve_store(store)), checkpoint, resolve_device(device))
        executor = _bfcl_executor(bfcl_conversation) if bfcl_conversation else NoExecutor()
        config = AgentConfig(max_steps=max_steps)
        episodes = [(qid, text, runner.run([text], executor, config)) for qid, text in queries]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise fail(error_text(exc)) from exc
    typer.echo(f"checkpoint {loaded.checkpoint_id} (codes_version {loaded.meta.get('codes_version')!r})", err=True)
    if fmt == OutputFormat.json:
        typer.echo(json.dumps([_episode_json(qid, text, ep) for qid, text, ep in episodes], ensure_ascii=False))
        return
    emit(_calls_table(episodes), fmt)


def _bfcl_executor(conversation_id: str) -> Any:
    from toolweaver.agent.executors import BfclExecutor
    from toolweaver.eval.calls import load_category
    from toolweaver.ingest.bfcl import default_data_dir

    entries = {e["id"]: e for e in load_category(default_data_dir(), "multi_turn_base")}
    if conversation_id not in entries:
        raise KeyError(f"no BFCL multi_turn_base conversation {conversation_id!r}")
    entry = entries[conversation_id]
    return BfclExecutor(entry["initial_config"], entry["involved_classes"])


def _episode_json(qid: str, text: str, episode: Any) -> dict[str, Any]:
    calls = [
        {"tool_id": c.tool_id, "name": c.name, "arguments": c.arguments, "observation": c.observation}
        for c in episode.calls
    ]
    return {"id": qid, "query": text, "calls": calls, "finished": all(episode.finished)}


def _calls_table(episodes: list[tuple[str, str, Any]]) -> Any:
    import pyarrow as pa

    rows = [
        {
            "id": qid,
            "step": step,
            "tool_id": c.tool_id,
            "arguments": c.text,
            "observation": (c.observation or "")[:80],
        }
        for qid, _, ep in episodes
        for step, c in enumerate(ep.calls, start=1)
    ]
    names = ("id", "step", "tool_id", "arguments", "observation")
    return pa.table({n: [r[n] for r in rows] for n in names}) if rows else pa.table({n: pa.array([]) for n in names})


def export(
    out: Annotated[Path, typer.Option("--out", help="An empty or new folder for the exported model.")],
    store: StoreOpt = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="An llm checkpoint id or folder (default: the latest).")
    ] = None,
) -> None:
    """A standalone Hugging Face folder (merged weights, tokenizer with the code tokens,
    generation config) plus tools.json, from the codes version the checkpoint was trained on."""
    setup_logging()
    from storage import Store
    from tasks.stages.agent import export_checkpoint

    try:
        folder = export_checkpoint(Store(resolve_store(store)), checkpoint, out)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError) as exc:
        raise fail(error_text(exc)) from exc
    typer.echo(str(folder))


def register(app: typer.Typer) -> None:
    """Add `agent` and `export` to the CLI."""
    app.command("agent")(agent)
    app.command("export")(export)
