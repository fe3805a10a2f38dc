"""Call-accuracy runners: one BFCL question (or multi-turn conversation) in, one `Outcome`.

Two kinds of method on the same backbone:
- in context (`InContextRunner`): a base model reads function documents in its prompt
  and writes a JSON list of calls (grammar-constrained, `toolweaver.agent.incontext`);
  the documents are the question's own (BFCL's "given functions" setting) or the BM25
  top-k of the whole catalog (catalog setting);
- generative (`AgentRunner`): a fine-tuned checkpoint (`atomic` or `toolweaver`) runs the
  agent loop over the catalog's codes, no documentation in the prompt.
Multi-turn conversations run on bfcl-eval's simulated classes (`BfclExecutor`) and are
scored on state and responses; single-turn questions by the AST checker. A tool is one
function document: selection is right when the set of called documents equals the
ground truth's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from toolweaver.agent.executors import BfclExecutor, NoExecutor
from toolweaver.agent.incontext import InContextCaller
from toolweaver.agent.loop import Agent, AgentConfig
from toolweaver.agent.schema import to_json_schema
from toolweaver.eval.calls import call_string, score_multi_turn, score_single_turn
from toolweaver.ingest.bfcl import document_id, parse_call

Doc = dict[str, Any]
DocSelector = Callable[[str, Sequence[Doc]], list[Doc]]


@dataclass(frozen=True)
class Outcome:
    category: str
    item_id: str
    selected: bool  # the called documents are the ground truth's
    correct: bool  # bfcl-eval's verdict (AST, or state and response)
    n_calls: int
    n_valid: int  # calls whose arguments validate against the called document's schema
    seconds: float


def user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")


def truth_single(question: Mapping[str, Any]) -> set[str]:
    """Document ids of the ground truth's calls (the question's docs of those names)."""
    by_name = {f["name"]: document_id(f) for f in question["function"]}
    return {str(by_name.get(name)) for call in question["ground_truth"] for name in call}


def truth_multi(entry: Mapping[str, Any], class_docs: Sequence[Doc]) -> set[str]:
    by_name = {d["name"]: document_id(d) for d in class_docs}
    names = [parse_call(c) for turn in entry["ground_truth"] for c in turn]
    return {str(by_name.get(p[0])) for p in names if p is not None}


def _valid(arguments: Any, doc: Doc | None) -> bool:
    if doc is None or arguments is None:
        return False
    return jsonschema.Draft202012Validator(to_json_schema(doc.get("parameters"))).is_valid(arguments)


class InContextRunner:
    """A base model with documents in context; `select(text, given)` picks the documents."""

    def __init__(self, caller: InContextCaller, select: DocSelector) -> None:
        self.caller, self.select = caller, select

    def single(self, question: Mapping[str, Any], category: str) -> Outcome:
        text = user_text(question["question"][0])
        docs = self.select(text, question["function"])
        out = self.caller.call([{"role": "user", "content": text}], docs)
        by_name = {d["name"]: d for d in docs}
        chosen = {str(document_id(by_name[name])) for name, _ in out.calls}
        n_valid = sum(_valid(args, by_name.get(name)) for name, args in out.calls)
        calls = [{name: args} for name, args in out.calls]
        correct = bool(calls) and score_single_turn(question, calls, category)
        selected = chosen == truth_single(question)
        return Outcome(category, question["id"], selected, correct, len(calls), n_valid, out.seconds)

    def multi(self, entry: Mapping[str, Any], class_docs: Sequence[Doc]) -> Outcome:
        executor = BfclExecutor(entry["initial_config"], entry["involved_classes"])
        history: list[dict[str, str]] = []
        per_turn: list[list[list[str]]] = []
        chosen: set[str] = set()
        n_calls = n_valid = 0
        seconds = 0.0
        for turn in entry["question"]:
            history.append({"role": "user", "content": user_text(turn)})
            docs = self.select(history[-1]["content"], class_docs)
            by_name = {d["name"]: d for d in docs}
            out = self.caller.call(history, docs)
            seconds += out.seconds
            observations = [executor.run(name, args) for name, args in out.calls]
            chosen |= {str(document_id(by_name[name])) for name, _ in out.calls}
            n_calls += len(out.calls)
            n_valid += sum(_valid(args, by_name.get(name)) for name, args in out.calls)
            per_turn.append([[call_string(name, args) for name, args in out.calls]])
            history.append(
                {"role": "assistant", "content": json.dumps([{"name": n, "arguments": a} for n, a in out.calls])}
            )
            if observations:
                history.append({"role": "user", "content": "Observation: " + json.dumps(observations)})
        correct = score_multi_turn(entry, per_turn)
        selected = chosen == truth_multi(entry, class_docs)
        return Outcome("multi_turn_base", entry["id"], selected, correct, n_calls, n_valid, seconds)


class AgentRunner:
    """A fine-tuned checkpoint running the agent loop over the catalog's codes."""

    def __init__(self, agent: Agent, config: AgentConfig) -> None:
        self.agent, self.config = agent, config

    def single(self, question: Mapping[str, Any], category: str) -> Outcome:
        episode = self.agent.run([user_text(question["question"][0])], NoExecutor(), self.config)
        calls = episode.calls
        parsed = [{c.name: c.arguments} for c in calls if c.arguments is not None]
        correct = bool(parsed) and len(parsed) == len(calls) and score_single_turn(question, parsed, category)
        selected = {c.tool_id for c in calls} == truth_single(question)
        seconds = sum(c.seconds for c in calls)
        return Outcome(category, question["id"], selected, correct, len(calls), len(parsed), seconds)

    def multi(self, entry: Mapping[str, Any], class_docs: Sequence[Doc]) -> Outcome:
        executor = BfclExecutor(entry["initial_config"], entry["involved_classes"])
        episode = self.agent.run([user_text(turn) for turn in entry["question"]], executor, self.config)
        per_turn = [
            [[call_string(c.name, c.arguments) for c in turn if c.arguments is not None]] for turn in episode.turns
        ]
        calls = episode.calls
        correct = score_multi_turn(entry, per_turn)
        selected = {c.tool_id for c in calls} == truth_multi(entry, class_docs)
        n_valid = sum(c.schema_valid for c in calls)
        return Outcome(
            "multi_turn_base", entry["id"], selected, correct, len(calls), n_valid, sum(c.seconds for c in calls)
        )


def summarise(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Per-category metrics: tool-selection accuracy, AST (or state) accuracy, schema-valid
    argument rate (over calls), seconds per call."""
    n = len(outcomes)
    calls = sum(o.n_calls for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    return {
        "tool_selection_acc": sum(o.selected for o in outcomes) / n if n else float("nan"),
        "call_acc": sum(o.correct for o in outcomes) / n if n else float("nan"),
        "schema_valid_rate": sum(o.n_valid for o in outcomes) / calls if calls else float("nan"),
        "s_per_call": seconds / calls if calls else float("nan"),
    }
