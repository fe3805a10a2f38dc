"""ShareGPT fine-tuning examples built from the artifact tables' plain records.

An example is `{"conversations": [{"role", "content", "loss"}, ...]}`; `loss` marks the
messages the model is trained on (the assistant's). Three stages (ToolGen/ToolWeaver):

- memorization: user `Tool Name: QRCheck. API: check. Description: …` (description cut to
  `max_description_chars` because CPU training reads ~100 tokens/s) → assistant = the
  tool's code `<a_10><b_45>`. Every tool with a code, split `train`.
- retrieval: user = the query → assistant = the codes of its relevant tools concatenated,
  ordered by relevance (descending) then tool_id. Split by query (`splits.py`).
- trajectory: a tool-use dialogue in the ToolGen agent format: after the user task,
  each step is assistant `<code>` (with the source's thought before it, when there was
  one), user `Tool documentation: …`, assistant = the call's arguments as JSON, user
  `Observation: …` (when the source recorded one). The end is the Finish action
  (`<<Finish>>`, its documentation, then its arguments); a user turn that ends without one
  (BFCL multi-turn) gets a Finish with `{"return_type": "give_answer"}`. Calls are
  matched to the trajectory's resolved `tool_ids` in call order; the source's long
  system prompt is replaced by a short one.

Examples that cannot be built become rejects with a reason (nothing is dropped silently).
"""

from __future__ import annotations

import ast
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolweaver.align.splits import SplitConfig, assign_split
from toolweaver.align.vocab import CODE_TOKEN_PATTERN, FINISH_TOKEN, parse_code

logger = logging.getLogger(__name__)

Stage = Literal["memorization", "retrieval", "trajectory"]
STAGES: tuple[Stage, ...] = ("memorization", "retrieval", "trajectory")

AGENT_SYSTEM = (
    "Solve the task with tools. Each step: give the code of one tool (or "
    f"{FINISH_TOKEN}); after its documentation is shown, give its arguments as JSON."
)
FINISH_DOC = (
    'Tool documentation: Finish. Ends the task. Arguments: {"return_type": '
    '"give_answer" | "give_up_and_restart", "final_answer": string}'
)


class DatasetConfig(BaseModel):
    """What to build and how long prompts may get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: tuple[Stage, ...] = STAGES
    split: SplitConfig = SplitConfig()
    max_description_chars: int = Field(default=200, ge=0)
    max_doc_chars: int = Field(default=400, ge=0)
    max_observation_chars: int = Field(default=400, ge=0)
    max_thought_chars: int = Field(default=300, ge=0)
    min_relevance: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class BuiltDatasets:
    """`examples`: rows of table `sft_examples`; `rejects`: rows of table `sft_rejects`."""

    examples: list[dict[str, Any]]
    rejects: list[dict[str, Any]]


def message(role: str, content: str, loss: bool) -> dict[str, Any]:
    return {"role": role, "content": content, "loss": loss}


def memorization_messages(tool: Mapping[str, Any], code: str, max_description_chars: int) -> list[dict]:
    description = _truncate(str(tool.get("description") or ""), max_description_chars)
    prompt = f"Tool Name: {tool['tool_name']}. API: {tool['api_name']}. Description: {description}"
    return [message("user", prompt.rstrip(), False), message("assistant", code, True)]


def retrieval_prompt(query_text: str) -> list[dict]:
    """The prompt of a retrieval example (also what `decode.retrieve` feeds the model)."""
    return [message("user", query_text.strip(), False)]


def build_datasets(
    *,
    tools: Sequence[Mapping[str, Any]],
    codes: Sequence[Mapping[str, Any]],
    queries: Sequence[Mapping[str, Any]] = (),
    qrels: Sequence[Mapping[str, Any]] = (),
    trajectories: Sequence[Mapping[str, Any]] = (),
    config: DatasetConfig,
) -> BuiltDatasets:
    """Build every configured stage from records with the docs/tables.md columns."""
    code_of = _code_index(codes)
    tool_of = _unique(tools, "tool_id", "tools")
    query_of = _unique(queries, "query_id", "queries")
    examples: list[dict] = []
    rejects: list[dict] = []
    if "memorization" in config.stages:
        _extend(examples, rejects, build_memorization(tools, code_of, config))
    if "retrieval" in config.stages:
        _extend(examples, rejects, build_retrieval(queries, qrels, code_of, config))
    if "trajectory" in config.stages:
        _extend(examples, rejects, build_trajectories(trajectories, code_of, tool_of, query_of, config))
    logger.info(
        "built %s examples, %d rejects (%s)",
        dict(Counter((e["stage"], e["split"]) for e in examples)),
        len(rejects),
        dict(Counter(r["reason"] for r in rejects)),
    )
    return BuiltDatasets(examples, rejects)


def _unique(rows: Sequence[Mapping[str, Any]], key: str, table: str) -> dict[str, Mapping[str, Any]]:
    index: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row[key] in index:
            raise ValueError(f"{table}: {key} {row[key]!r} appears twice; the table must have one row per {key}")
        index[row[key]] = row
    return index


def _extend(examples: list, rejects: list, built: BuiltDatasets) -> None:
    examples.extend(built.examples)
    rejects.extend(built.rejects)


def _code_index(codes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """tool_id -> code; raises on malformed or duplicate codes (they would make retrieval ambiguous)."""
    code_of: dict[str, str] = {}
    owner: dict[tuple[int, ...], str] = {}
    for row in codes:
        levels = parse_code(row["code"])
        if levels in owner:
            raise ValueError(f"code {row['code']} is shared by {owner[levels]!r} and {row['tool_id']!r}")
        owner[levels] = row["tool_id"]
        code_of[row["tool_id"]] = row["code"]
    return code_of


def _example(stage: Stage, key: str, split: str, source: str, query_id: str | None, conv: list, n: int) -> dict:
    return {
        "example_id": f"{stage}/{key}",
        "stage": stage,
        "split": split,
        "source": source,
        "query_id": query_id,
        "conversations": json.dumps(conv, ensure_ascii=False),
        "n_tools": n,
    }


def _reject(stage: Stage, source: str, query_id: str | None, tool_id: str | None, reason: str) -> dict:
    return {"stage": stage, "source": source, "query_id": query_id, "tool_id": tool_id, "reason": reason}


def build_memorization(
    tools: Sequence[Mapping[str, Any]], code_of: Mapping[str, str], config: DatasetConfig
) -> BuiltDatasets:
    """One example per tool with a code; a tool without a code is a reject."""
    examples, rejects = [], []
    for tool in sorted(tools, key=lambda t: t["tool_id"]):
        code = code_of.get(tool["tool_id"])
        if code is None:
            rejects.append(
                _reject("memorization", tool.get("source", ""), None, tool["tool_id"], "tool without a code")
            )
            continue
        conv = memorization_messages(tool, code, config.max_description_chars)
        examples.append(_example("memorization", tool["tool_id"], "train", tool.get("source", ""), None, conv, 1))
    return BuiltDatasets(examples, rejects)


def build_retrieval(
    queries: Sequence[Mapping[str, Any]],
    qrels: Sequence[Mapping[str, Any]],
    code_of: Mapping[str, str],
    config: DatasetConfig,
) -> BuiltDatasets:
    """One example per query with relevant tools; all of them must have codes (else reject)."""
    relevant: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in qrels:
        if int(row["relevance"]) >= config.min_relevance:
            relevant[row["query_id"]].append((int(row["relevance"]), row["tool_id"]))
    examples, rejects = [], []
    for query in sorted(queries, key=lambda q: q["query_id"]):
        qid, source = query["query_id"], query.get("source", "")
        pairs = sorted(set(relevant.get(qid, ())), key=lambda p: (-p[0], p[1]))
        tool_ids = list(dict.fromkeys(t for _, t in pairs))
        missing = [t for t in tool_ids if t not in code_of]
        if not tool_ids:
            rejects.append(_reject("retrieval", source, qid, None, "query without relevant tools"))
        elif missing:
            rejects.extend(_reject("retrieval", source, qid, t, "relevant tool without a code") for t in missing)
        elif not str(query.get("text") or "").strip():
            rejects.append(_reject("retrieval", source, qid, None, "empty query text"))
        else:
            conv = [*retrieval_prompt(query["text"]), message("assistant", "".join(code_of[t] for t in tool_ids), True)]
            split = assign_split(qid, query.get("split"), config.split)
            examples.append(_example("retrieval", qid, split, source, qid, conv, len(tool_ids)))
    return BuiltDatasets(examples, rejects)


# ---- trajectories -------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    name: str
    arguments: str  # compact JSON when the source's arguments parse, else the raw text
    thought: str


def build_trajectories(
    trajectories: Sequence[Mapping[str, Any]],
    code_of: Mapping[str, str],
    tool_of: Mapping[str, Mapping[str, Any]],
    query_of: Mapping[str, Mapping[str, Any]],
    config: DatasetConfig,
) -> BuiltDatasets:
    """One example per trajectory whose calls all resolve to tools with codes."""
    examples, rejects = [], []
    for traj in sorted(trajectories, key=lambda t: t["trajectory_id"]):
        qid, source = traj.get("query_id"), traj.get("source", "")
        try:
            conv, n_calls = trajectory_messages(traj, code_of, tool_of, config)
        except _RejectError as err:
            rejects.append(_reject("trajectory", source, qid, err.tool_id, err.reason))
            continue
        split_key = qid or traj["trajectory_id"]
        source_split = query_of.get(qid, {}).get("split") if qid else None
        split = assign_split(split_key, source_split, config.split)
        examples.append(_example("trajectory", traj["trajectory_id"], split, source, qid, conv, n_calls))
    return BuiltDatasets(examples, rejects)


class _RejectError(Exception):
    def __init__(self, reason: str, tool_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.tool_id = reason, tool_id


def trajectory_messages(
    traj: Mapping[str, Any],
    code_of: Mapping[str, str],
    tool_of: Mapping[str, Mapping[str, Any]],
    config: DatasetConfig,
) -> tuple[list[dict], int]:
    """Rewrite one trajectory into the agent format; returns (conversation, number of tool calls)."""
    try:
        source_messages = _load_messages(traj["messages"])
    except json.JSONDecodeError as err:
        # The ingest stage writes canonical JSON: bad JSON here is a bug upstream, not bad data.
        raise ValueError(f"trajectory {traj['trajectory_id']!r}: messages is not valid JSON ({err})") from err
    tool_ids = list(traj.get("tool_ids") or [])
    n_calls = sum(1 for m in source_messages for c in _calls(m) if not _is_finish(c.name))
    if n_calls != len(tool_ids):
        logger.debug("%s: %d calls but %d resolved tool_ids", traj["trajectory_id"], n_calls, len(tool_ids))
        raise _RejectError("unresolved tool calls (calls in messages != resolved tool_ids)")
    if n_calls == 0:
        raise _RejectError("trajectory without tool calls")
    for tool_id in tool_ids:
        if tool_id not in code_of:
            raise _RejectError("called tool without a code", tool_id)
    conv = [message("system", AGENT_SYSTEM, False)]
    pending = iter(tool_ids)
    turn_open = False
    for msg in source_messages:
        role = msg.get("role")
        if role == "user":
            if turn_open:
                conv.extend(_finish_step('{"return_type": "give_answer"}', ""))
            conv.append(message("user", str(msg.get("content") or "").strip(), False))
            turn_open = True
        elif role == "assistant":
            calls = _calls(msg)
            for call in calls:
                if _is_finish(call.name):
                    conv.extend(_finish_step(call.arguments, _truncate(call.thought, config.max_thought_chars)))
                    turn_open = False
                else:
                    tool_id = next(pending)
                    conv.extend(_call_step(call, code_of[tool_id], tool_of.get(tool_id), tool_id, config))
                    turn_open = True
            text = str(msg.get("content") or "").strip()
            if not calls and text:  # a plain final answer: the Finish action carries it
                conv.extend(_finish_step(json.dumps({"return_type": "give_answer", "final_answer": text}), ""))
                turn_open = False
        elif role in ("function", "tool"):
            conv.append(message("user", observation_text(str(msg.get("content") or ""), config), False))
        # source system prompts are dropped: they list every function's doc (far too long)
    if turn_open:
        conv.extend(_finish_step('{"return_type": "give_answer"}', ""))
    return conv, n_calls


def _call_step(call: _Call, code: str, tool: Mapping[str, Any] | None, tool_id: str, config: DatasetConfig) -> list:
    thought = _truncate(call.thought, config.max_thought_chars)
    action = f"{thought}\n{code}" if thought else code
    return [
        message("assistant", action, True),
        message("user", tool_documentation(tool, tool_id, config.max_doc_chars), False),
        message("assistant", call.arguments, True),
    ]


def _finish_step(arguments: str, thought: str) -> list:
    action = f"{thought}\n{FINISH_TOKEN}" if thought else FINISH_TOKEN
    return [
        message("assistant", action, True),
        message("user", FINISH_DOC, False),
        message("assistant", arguments, True),
    ]


def observation_text(observation: str, config: DatasetConfig) -> str:
    """The user message that carries a call's result (also what the agent appends)."""
    return f"Observation: {_truncate(observation, config.max_observation_chars)}"


def tool_documentation(tool: Mapping[str, Any] | None, tool_id: str, max_chars: int) -> str:
    """What the agent is shown after it picks a tool: name, description, parameters (capped)."""
    if tool is None:
        return f"Tool documentation: {tool_id}"
    description = str(tool.get("description") or "").strip()
    body = f"{tool_id}. {description} Parameters: {tool.get('parameters') or '{}'}"
    return f"Tool documentation: {_truncate(body, max_chars)}"


def _load_messages(raw: Any) -> list[dict]:
    """Messages JSON: a list of messages, or ToolBench's `train_messages` (a list of growing
    prefixes: the last one is the whole path)."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if isinstance(data, list) and data and all(isinstance(m, list) for m in data):
        data = data[-1]
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise _RejectError("messages JSON is not a list of message objects")
    return data


def _calls(msg: Mapping[str, Any]) -> list[_Call]:
    """The function calls of one assistant message: OpenAI `function_call` / `tool_calls`,
    or (BFCL ground truth) content that is a Python call expression `f(a=1)` / `[f(), g()]`,
    read with `ast` (never evaluated)."""
    if msg.get("role") != "assistant":
        return []
    raw = []
    if msg.get("function_call"):
        raw.append(msg["function_call"])
    for item in msg.get("tool_calls") or []:
        raw.append(item.get("function", item) if isinstance(item, dict) else item)
    content = str(msg.get("content") or "").strip()
    if not raw:
        return [_Call(name, _json_arguments(args), "") for name, args in _python_calls(content)]
    calls = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise _RejectError("function call without a name")
        calls.append(_Call(str(item["name"]), _json_arguments(item.get("arguments")), content if i == 0 else ""))
    return calls


def _python_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`[("mv", {"source": "a"})]` for `mv(source='a')`; [] when `text` is not only calls.
    Positional arguments are kept as `"_0"`, `"_1"`… (their names are not in the call)."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return []
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    call_nodes = [n for n in nodes if isinstance(n, ast.Call)]
    if not nodes or len(call_nodes) != len(nodes):
        return []
    calls = []
    for node in call_nodes:
        name = ast.unparse(node.func)
        args = {f"_{i}": _literal(a) for i, a in enumerate(node.args)}
        args.update({kw.arg or f"**{i}": _literal(kw.value) for i, kw in enumerate(node.keywords)})
        calls.append((name, args))
    return calls


def _literal(node: ast.AST) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)  # a name or expression: keep its source text
    return list(value) if isinstance(value, (tuple, set)) else value


def _json_arguments(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments.strip()
    return json.dumps(arguments, ensure_ascii=False, default=str)


def _is_finish(name: str) -> bool:
    return name.strip().lower() == "finish"


def _truncate(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + "…"


# ---- reading back and export ------------------------------------------------------------


def assistant_codes(example: Mapping[str, Any]) -> list[str]:
    """Every code string (`<a_1><b_2>`) the assistant emits in one example, in order
    (a retrieval answer with several tools contributes one entry per tool)."""
    conv = (
        json.loads(example["conversations"]) if isinstance(example["conversations"], str) else example["conversations"]
    )
    found: list[str] = []
    for msg in conv:
        if msg["role"] != "assistant":
            continue
        current: list[str] = []
        for match in CODE_TOKEN_PATTERN.finditer(msg["content"]):
            if match.group(1) == "a" and current:
                found.append("".join(current))
                current = []
            current.append(match.group(0))
        if current:
            found.append("".join(current))
    return found


def export_jsonl(examples: Iterable[Mapping[str, Any]], out_dir: Path) -> dict[str, Path]:
    """Write `<stage>.<split>.jsonl` files (conversations as a JSON list, not text) that
    `datasets.load_dataset("json", data_files=...)` reads. A missing query_id is written as
    "" (not null), so that every file has the same column types and several files load
    together. Returns {"stage.split": path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for ex in examples:
        groups[f"{ex['stage']}.{ex['split']}"].append(ex)
    paths = {}
    for name, rows in sorted(groups.items()):
        path = out_dir / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for ex in rows:
                record = {**ex, "query_id": ex["query_id"] or "", "conversations": json.loads(ex["conversations"])}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths[name] = path
    return paths
