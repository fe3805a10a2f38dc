"""Executors: what runs a call and returns its observation.

One small interface (`Executor`). `BfclExecutor` runs BFCL's multi-turn classes from
`bfcl-eval` (file system, messaging, posting, ticket, trading, travel, vehicle control,
math) offline, each instance loaded with the state the BFCL conversation starts with,
exactly as bfcl-eval's own `execute_multi_turn_func_call` does (same constructor, same
`_load_scenario`, same result formatting) but calling the bound method with the decoded
arguments instead of `eval`-ing a string. `NoExecutor` answers every call with an
observation saying that nothing ran, and the agent loop goes on. Code shipped with a tool
catalog (ToolBench's `api.py`) is never imported or run: only the classes named in
`bfcl-eval`'s own class table can be instantiated.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

NO_EXECUTOR = "No executor for {name}: the call was not run."
_CLASS_TABLE = "bfcl_eval.constants.executable_backend_config"


class Executor(Protocol):
    def can_run(self, name: str) -> bool: ...

    def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The observation of one call (a string, as BFCL's executor formats it)."""
        ...


class NoExecutor:
    """Every call gets the "no executor" observation."""

    def can_run(self, name: str) -> bool:
        return False

    def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        return NO_EXECUTOR.format(name=name)


class BfclExecutor:
    """BFCL's simulated classes for one conversation: `initial_config` and `involved_classes`
    as in a BFCL multi-turn entry. Methods of later classes shadow earlier ones, as in
    bfcl-eval's name mapping."""

    def __init__(self, initial_config: Mapping[str, Any], involved_classes: Sequence[str]) -> None:
        table = importlib.import_module(_CLASS_TABLE)
        self.instances: dict[str, Any] = {}
        self.methods: dict[str, Any] = {}
        for class_name in involved_classes:
            if class_name not in table.CLASS_FILE_PATH_MAPPING:
                raise KeyError(f"{class_name!r} is not one of bfcl-eval's executable classes")
            cls = getattr(importlib.import_module(table.CLASS_FILE_PATH_MAPPING[class_name]), class_name)
            instance = cls()
            if class_name not in table.STATELESS_CLASSES:
                instance._load_scenario(copy.deepcopy(dict(initial_config).get(class_name, {})), long_context=False)
            self.instances[class_name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self.methods[method_name] = method

    def can_run(self, name: str) -> bool:
        return name in self.methods

    def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        if name not in self.methods:
            return NO_EXECUTOR.format(name=name)
        positional = [arguments[k] for k in sorted((k for k in arguments if _is_positional(k)), key=_position)]
        named = {k: v for k, v in arguments.items() if not _is_positional(k)}
        try:
            result = self.methods[name](*positional, **named)
        except Exception as err:  # noqa: BLE001 - bfcl-eval reports every failure to the model as text
            return f"Error during execution: {err}"
        return _format_result(result)


def _is_positional(key: str) -> bool:
    return key.startswith("_") and key[1:].isdigit()


def _position(key: str) -> int:
    return int(key[1:])


def _format_result(result: Any) -> str:
    """bfcl-eval's formatting: strings as they are, dicts as JSON (str() if not
    serialisable), anything else str()."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)
