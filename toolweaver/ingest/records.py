"""Typed records produced by the ingest parsers (one record type per output table).

Field names are the column names of docs/tables.md; `tasks/stages/ingest.py` turns lists of
these into Arrow tables with the schemas declared in `storage/schemas.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Quarantine excerpts are capped so one bad multi-megabyte file cannot bloat the table.
EXCERPT_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class ToolRecord:
    """One API doc as read from one file/record (before the one-row-per-tool merge)."""

    tool_id: str
    tool_name: str
    api_name: str
    category: str
    description: str
    parameters: str  # canonical JSON text
    doc_text: str
    doc_hash: str
    source: str
    origin: str  # "<file>#<record>" locator


@dataclass(frozen=True, slots=True)
class VariantRecord:
    """A doc of a tool_id that lost the deterministic pick (table tool_doc_variants)."""

    tool_id: str
    tool_name: str
    api_name: str
    category: str
    description: str
    parameters: str
    doc_text: str
    doc_hash: str
    source: str
    origin: str
    reason: str


@dataclass(frozen=True, slots=True)
class QueryRecord:
    query_id: str  # "<source>/<group or split>/<raw id>"
    raw_id: str
    text: str
    source: str
    split: str
    query_group: str


@dataclass(frozen=True, slots=True)
class QrelRecord:
    query_id: str
    tool_id: str
    relevance: int
    source: str


@dataclass(frozen=True, slots=True)
class TrajectoryRecord:
    trajectory_id: str
    query_id: str
    messages: str  # JSON text
    tool_ids: tuple[str, ...]  # call order, `Finish` excluded
    source: str


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    source: str
    locator: str  # file or file#record
    reason: str
    excerpt: str


@dataclass
class ParseResult:
    """Everything one parser run produced, plus counters for the summary.

    `files` lists every file the parser visited (good or bad), relative to the
    ingest root; the task uses it to replace earlier rows from the same files.
    """

    source: str
    tools: list[ToolRecord] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    qrels: list[QrelRecord] = field(default_factory=list)
    trajectories: list[TrajectoryRecord] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def reject(self, locator: str, reason: str, excerpt: Any) -> None:
        """Record a bad file/record; the caller then skips it (never guesses)."""
        self.quarantine.append(QuarantineRecord(self.source, locator, reason, make_excerpt(excerpt)))


def make_excerpt(raw: Any) -> str:
    """A short printable excerpt of whatever was rejected (bytes, str or JSON value)."""
    if isinstance(raw, bytes):
        text = raw[: EXCERPT_MAX_CHARS * 4].decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, ensure_ascii=False, default=repr)[: EXCERPT_MAX_CHARS * 4]
    # NUL bytes break some terminals and Parquet readers' string display; make them visible.
    return text.replace("\x00", "\\x00")[:EXCERPT_MAX_CHARS]


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no ASCII escaping, compact separators)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
