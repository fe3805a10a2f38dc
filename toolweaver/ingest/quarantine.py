"""Quarantine reasons, caps and the defensive file readers every parser uses.

A bad file or record is recorded (source, locator, reason, excerpt) and skipped;
every good record still lands. Nothing here executes or imports data files
(ToolBench's `api.py` files are never opened: parsers only read `*.json`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from toolweaver.ingest.records import ParseResult

# Reasons (the `reason` column). Kept as plain strings so the summary can count them.
NON_UTF8: Final = "non_utf8"
INVALID_JSON: Final = "invalid_json"
WRONG_TYPE: Final = "wrong_type"
MISSING_NAME: Final = "missing_name"
MISSING_FIELD: Final = "missing_field"
FILE_TOO_LARGE: Final = "file_too_large"
DOC_TOO_LARGE: Final = "doc_too_large"
UNRESOLVED_CALL: Final = "unresolved_call"
AMBIGUOUS_CALL: Final = "ambiguous_call"
UNKNOWN_CORPUS_ID: Final = "unknown_corpus_id"
UNKNOWN_QUERY_ID: Final = "unknown_query_id"
BAD_CALL: Final = "unparseable_call"
UNKNOWN_TOOL: Final = "qrel_unknown_tool"
# Per-unit isolation (isolation.isolate): what an exception inside one file/record means.
TOO_DEEP: Final = "too_deep"
OUT_OF_MEMORY: Final = "out_of_memory"
UNREADABLE: Final = "unreadable_file"
PARSE_ERROR: Final = "parse_error"
# Name problems come from names.name_problem: nul_in_name, control_char_in_name,
# path_traversal_name, separator_in_name, name_too_long (plus missing_name, wrong_type).

# Caps. The largest real ToolEnv2404 tool file is ~4 MiB upstream (three such files
# were left out of the shared copy) and the largest real canonical doc is ~60 KB, so
# these only stop absurd inputs from reaching the store and the embedder.
FILE_MAX_BYTES: Final = 32 * 1024 * 1024
DOC_MAX_CHARS: Final = 200_000


def decode_json(raw: bytes, locator: str, result: ParseResult) -> Any | None:
    """Parse one JSON document from bytes (UTF-8, with or without a byte-order mark);
    on failure quarantine it and return None."""
    if len(raw) > FILE_MAX_BYTES:
        result.reject(locator, FILE_TOO_LARGE, raw[:200])
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        result.reject(locator, NON_UTF8, f"{err}: {raw[max(0, err.start - 80) : err.start + 80]!r}")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        result.reject(locator, INVALID_JSON, f"{err.msg} at {err.pos}: {text[max(0, err.pos - 200) : err.pos + 100]}")
        return None
    except RecursionError:
        # e.g. 50,000 nested arrays: the decoder's recursion limit, not a crash.
        result.reject(locator, TOO_DEEP, f"JSON nested deeper than the decoder allows: {text[:200]}")
        return None


def decode_jsonl(raw: bytes, locator: str, result: ParseResult) -> list[tuple[int, Any]]:
    """Parse JSON lines; each bad line is quarantined as `file#L<n>`; returns (line no, value)."""
    if len(raw) > FILE_MAX_BYTES * 8:
        result.reject(locator, FILE_TOO_LARGE, raw[:200])
        return []
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        value = decode_json(line, f"{locator}#L{number}", result)
        if value is not None:
            out.append((number, value))
    return out


def expect(value: Any, kind: type | tuple[type, ...], locator: str, result: ParseResult) -> bool:
    """True when `value` has the expected JSON type; otherwise quarantine (wrong_type)."""
    kinds = _as_tuple(kind)
    # bool is an int subclass in Python, but JSON `true` is not a number.
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return True
    names = "/".join(k.__name__ for k in kinds)
    result.reject(locator, WRONG_TYPE, f"expected {names}, got {type(value).__name__}: {value!r}")
    return False


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
