"""Tool keys and ToolBench's standardised function names.

`tool_id` is `"<tool_name>&&<api_name>"` with the RAW names, exactly as in ToolGen's
`virtual_tokens.txt`: no whitespace stripping, no case folding. (ToolEnv2404 then has
46,270 distinct keys; stripping surrounding whitespace would merge one more pair,
46,269.)

ToolBench calls functions by a standardised name, built in its
`toolbench/inference/Downstream_tasks/rapidapi.py`:

    name = change_name(standardize(api_name)) + "_for_" + standardize(tool_name)
    name = name[-64:]          # the LAST 64 characters (an OpenAI name limit)

reproduced here character for character, quirks included (see `standardize`).
"""

from __future__ import annotations

import re

TOOL_ID_SEP = "&&"
FUNCTION_NAME_MAX_CHARS = 64

# ToolBench's class is "[^\u4e00-\u9fa5^a-z^A-Z^0-9^_]": the repeated "^" inside the
# brackets is a literal caret, so "^" survives standardisation. Kept for parity.
_NON_WORD = re.compile("[^\u4e00-\u9fa5^a-z^A-Z^0-9^_]")
_UNDERSCORE_RUNS = re.compile(r"(_)\1+")
# Python keywords / JSON literals that ToolBench prefixes with "is_" in API names.
_RENAMED = frozenset({"from", "class", "return", "false", "true", "id", "and"})


def tool_id(tool_name: str, api_name: str) -> str:
    return f"{tool_name}{TOOL_ID_SEP}{api_name}"


def standardize(name: str) -> str:
    """ToolBench `standardize`: non-word chars to "_", collapse runs, lower, trim "_"."""
    text = _UNDERSCORE_RUNS.sub("_", _NON_WORD.sub("_", name)).lower()
    text = text.strip("_")
    if text and text[0].isdigit():
        text = "get_" + text
    return text


def change_name(name: str) -> str:
    """ToolBench `change_name`: reserved words get an "is_" prefix."""
    return "is_" + name if name in _RENAMED else name


def function_name(tool_name: str, api_name: str) -> str:
    """The name a ToolBench answer file uses to call `tool_name&&api_name`."""
    full = f"{change_name(standardize(api_name))}_for_{standardize(tool_name)}"
    return full[-FUNCTION_NAME_MAX_CHARS:]


# A path segment ".." (as in "../../etc/x" or "a/..\\b"): a name that tries to walk
# out of a folder is never a real tool name and would be dangerous as a file name later.
_PATH_TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NAME_MAX_CHARS = 1024  # real ToolEnv2404 names reach ~850 chars


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a tool/api name (a quarantine reason), or None when fine."""
    if name is None:
        return "missing_name"
    if not isinstance(name, str):
        return "wrong_type"
    if not name.strip():
        return "missing_name"
    if "\x00" in name:
        return "nul_in_name"
    if _CONTROL.search(name):
        return "control_char_in_name"
    if _PATH_TRAVERSAL.search(name):
        return "path_traversal_name"
    if TOOL_ID_SEP in name:
        return "separator_in_name"
    if len(name) > NAME_MAX_CHARS:
        return "name_too_long"
    return None
