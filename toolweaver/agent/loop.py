"""The agent loop, in exactly the conversation format the trajectory stage trains.

    system  AGENT_SYSTEM
    user    the task
    (assistant <code>   user "Tool documentation: …"   assistant {arguments}
     [user "Observation: …"])*
    assistant <<Finish>>   user FINISH_DOC   assistant {"return_type": …}

Each step is two constrained phases: the code, decoded over the code trie (every emitted
code is a real tool, or Finish), then the arguments, generated under that tool's JSON
Schema (`arguments.ArgumentGenerator`), so every argument string parses and validates.
The call goes to the executor, its observation is appended, and the loop goes on until
Finish or `max_steps` calls. A conversation with several user turns (BFCL multi-turn)
runs the loop once per turn, on one growing conversation. `atomic` checkpoints work the
same way: their "codes" are one token per tool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from toolweaver.agent.arguments import ArgumentGenerator
from toolweaver.agent.catalog import CatalogTool
from toolweaver.agent.executors import Executor, NoExecutor
from toolweaver.align.datasets import AGENT_SYSTEM, FINISH_DOC, DatasetConfig, message, observation_text
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.models import embedding_rows
from toolweaver.align.vocab import FINISH_TOKEN
from toolweaver.ingest.bfcl import named_arguments

FINISH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "return_type": {"type": "string", "enum": ["give_answer", "give_up_and_restart"]},
        "final_answer": {"type": "string"},
    },
    "required": ["return_type"],
}
_GREEDY = DecodeConfig(top_k=1, num_beams=1)


class AgentConfig(BaseModel):
    """Loop settings; `temperature` 0 is greedy (the default), else sampled with `seed`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int = Field(default=8, ge=1)
    observe: bool = True
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0
    dataset: DatasetConfig = DatasetConfig()


@dataclass(frozen=True)
class Call:
    tool_id: str
    name: str
    arguments: dict[str, Any] | None  # None when the budget ran out before valid JSON
    text: str
    observation: str | None
    seconds: float  # both phases

    @property
    def schema_valid(self) -> bool:
        return self.arguments is not None


@dataclass
class Episode:
    """The calls of each user turn, whether each turn ended with Finish, the conversation."""

    turns: list[list[Call]] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [c for turn in self.turns for c in turn]


class Agent:
    """A model with code tokens, its tokenizer and its catalog (codes -> tools)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, catalog: Sequence[CatalogTool]) -> None:
        if not catalog:
            raise ValueError("the agent needs at least one tool with a code")
        self.model, self.tokenizer = model, tokenizer
        self.tools = {t.tool_id: t for t in catalog}
        if FINISH_TOKEN in self.tools:
            raise ValueError(f"{FINISH_TOKEN} is reserved for the Finish action")
        self.trie = trie_for_codes(tokenizer, {**{t.tool_id: t.code for t in catalog}, FINISH_TOKEN: FINISH_TOKEN})
        vocab_size = embedding_rows(model)  # the logits width (padded vocabularies included)
        self.arguments = ArgumentGenerator(tokenizer, vocab_size)

    def run(self, turns: Sequence[str], executor: Executor | None = None, config: AgentConfig | None = None) -> Episode:
        """Run the loop on each user turn in order (one growing conversation)."""
        config = config or AgentConfig()
        executor = executor or NoExecutor()
        generator = torch.Generator().manual_seed(config.seed)
        episode = Episode(messages=[message("system", AGENT_SYSTEM, False)])
        for text in turns:
            episode.messages.append(message("user", text.strip(), False))
            calls, finished = self._turn(episode.messages, executor, config, generator)
            episode.turns.append(calls)
            episode.finished.append(finished)
        return episode

    def _turn(
        self, messages: list[dict[str, Any]], executor: Executor, config: AgentConfig, generator: torch.Generator
    ) -> tuple[list[Call], bool]:
        calls: list[Call] = []
        while len(calls) < config.max_steps:
            start = time.perf_counter()
            tool_id = self.choose_tool(messages)
            if tool_id == FINISH_TOKEN:
                self._finish(messages, config, generator)
                return calls, True
            tool = self.tools[tool_id]
            messages.append(message("assistant", tool.code, True))
            messages.append(message("user", tool.documentation, False))
            generated = self.arguments.generate(
                self.model,
                prompt_ids(self.tokenizer, messages),
                tool.schema,
                generator=generator,
                temperature=config.temperature,
            )
            messages.append(message("assistant", generated.text, True))
            seconds = time.perf_counter() - start
            observation = None
            if generated.arguments is not None:
                observation = executor.run(tool.name, generated.arguments)
                if config.observe:
                    messages.append(message("user", observation_text(observation, config.dataset), False))
            calls.append(Call(tool.tool_id, tool.name, generated.arguments, generated.text, observation, seconds))
        return calls, False

    def choose_tool(self, messages: list[dict[str, Any]]) -> str:
        """The code phase: the greedy path over the code trie (a tool id, or Finish)."""
        prompt = prompt_ids(self.tokenizer, messages)
        [(index, _score)] = constrained_beam_search(self.model, prompt, self.trie, _GREEDY)
        return self.trie.tool_ids[index]

    def _finish(self, messages: list[dict[str, Any]], config: AgentConfig, generator: torch.Generator) -> None:
        messages.append(message("assistant", FINISH_TOKEN, True))
        messages.append(message("user", FINISH_DOC, False))
        generated = self.arguments.generate(
            self.model,
            prompt_ids(self.tokenizer, messages),
            FINISH_SCHEMA,
            generator=generator,
            temperature=config.temperature,
        )
        messages.append(message("assistant", generated.text, True))


def transcript(
    turns: Sequence[tuple[str, Sequence[tuple[CatalogTool, dict[str, Any]]]]],
    executor: Executor | None = None,
    config: AgentConfig | None = None,
) -> list[dict[str, Any]]:
    """The conversation the loop produces when it makes exactly these calls
    (`[(user text, [(tool, arguments), …]), …]`): a training example in the agent's format.
    Arguments are written in the schema's property order, the order the argument grammar
    generates them in."""
    config = config or AgentConfig()
    executor = executor or NoExecutor()
    messages = [message("system", AGENT_SYSTEM, False)]
    for text, calls in turns:
        messages.append(message("user", text.strip(), False))
        for tool, arguments in calls:
            messages.append(message("assistant", tool.code, True))
            messages.append(message("user", tool.documentation, False))
            ordered = named_arguments(dict(arguments), tuple(tool.schema.get("properties", {})))
            messages.append(message("assistant", json.dumps(ordered, ensure_ascii=False), True))
            observation = executor.run(tool.name, arguments)
            if config.observe:
                messages.append(message("user", observation_text(observation, config.dataset), False))
        messages.append(message("assistant", FINISH_TOKEN, True))
        messages.append(message("user", FINISH_DOC, False))
        messages.append(message("assistant", '{"return_type": "give_answer"}', True))
    return messages
