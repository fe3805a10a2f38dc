"""Lineage records: what each table version is, who wrote it and from what.

Each `Store.write` puts its record in the Delta commit's custom metadata (key
`toolweaver.lineage`), so the record is committed atomically with the data. The
`lineage` table is a queryable mirror of those records; `Store` re-fills it from the
commit log when a writer died between the two commits.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import json
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from storage.schemas import SCHEMAS

log = logging.getLogger(__name__)

METADATA_KEY = "toolweaver.lineage"
# Delta operations that rewrite files without changing the rows (content metadata carries over).
_CONTENT_PRESERVING_OPS = frozenset({"OPTIMIZE"})


@dataclass(frozen=True)
class LineageRecord:
    """One row of the `lineage` table (one table version)."""

    table: str
    version: int
    digest: str
    rows: int
    run_id: str | None
    code_version: str
    config_hash: str
    inputs: tuple[tuple[str, int], ...]
    written_at: datetime

    def as_row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "version": self.version,
            "digest": self.digest,
            "rows": self.rows,
            "run_id": self.run_id,
            "code_version": self.code_version,
            "config_hash": self.config_hash,
            "inputs": json.dumps([list(pair) for pair in self.inputs]),
            "written_at": self.written_at,
        }


@dataclass(frozen=True)
class VersionInfo:
    """A table version as the Delta log describes it, with its lineage when the store wrote it."""

    table: str
    version: int
    operation: str
    committed_at: datetime
    mode: str | None  # "overwrite" | "append" for store writes
    lineage: LineageRecord | None
    schema: pa.Schema | None  # the Arrow schema the store wrote (Delta drops e.g. FixedSizeList)


def records_to_table(records: Sequence[LineageRecord]) -> pa.Table:
    """Arrow table of lineage records with the declared `lineage` schema."""
    return pa.Table.from_pylist([r.as_row() for r in records], schema=SCHEMAS["lineage"])


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`toolweaver` package version, plus `+g<sha>` (and `.dirty`) when a git checkout is found."""
    try:
        version = importlib.metadata.version("toolweaver")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parents[1]
    sha = _git(repo, "rev-parse", "--short=12", "HEAD")
    if sha is None:
        return version
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return f"{version}+g{sha}{'.dirty' if dirty else ''}"


def _git(repo: Path, *args: str) -> str | None:
    # No git or not a checkout is normal for installed copies: the version alone is used.
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git %s failed in %s: %s", args[0], repo, exc)
        return None
    return out.stdout.strip()


def commit_metadata(record: LineageRecord, schema: pa.Schema, mode: str) -> dict[str, str]:
    """Custom commit metadata for a store write (the version is the commit's own)."""
    payload = record.as_row()
    payload.pop("table")
    payload.pop("version")
    payload["inputs"] = [list(pair) for pair in record.inputs]
    payload["written_at"] = record.written_at.isoformat()
    payload["mode"] = mode
    payload["schema"] = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
    return {METADATA_KEY: json.dumps(payload, sort_keys=True)}


def _parse_commit(table: str, entry: dict[str, Any]) -> VersionInfo:
    version = int(entry["version"])
    committed_at = datetime.fromtimestamp(int(entry.get("timestamp", 0)) / 1000, tz=UTC)
    raw = entry.get(METADATA_KEY)
    if raw is None:
        return VersionInfo(table, version, str(entry.get("operation")), committed_at, None, None, None)
    payload = json.loads(raw)
    record = LineageRecord(
        table=table,
        version=version,
        digest=payload["digest"],
        rows=int(payload["rows"]),
        run_id=payload["run_id"],
        code_version=payload["code_version"],
        config_hash=payload["config_hash"],
        inputs=tuple((str(t), int(v)) for t, v in payload["inputs"]),
        written_at=datetime.fromisoformat(payload["written_at"]),
    )
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(payload["schema"])))
    return VersionInfo(table, version, str(entry.get("operation")), committed_at, payload["mode"], record, schema)


def history(table: str, path: Path, limit: int | None = None, delta: DeltaTable | None = None) -> list[VersionInfo]:
    """Versions of the Delta table at `path`, newest first (`limit` newest only).

    With `delta` (a loaded snapshot) only the versions up to that snapshot's: a commit
    that lands meanwhile must not be mistaken for the snapshot's newest version."""
    loaded = delta if delta is not None else DeltaTable(str(path))
    infos = [_parse_commit(table, e) for e in loaded.history(limit)]
    return [i for i in infos if i.version <= loaded.version()] if delta is not None else infos


def commit_info(table: str, path: Path, version: int) -> VersionInfo | None:
    """The version's commit as its own log file records it (None when that file is gone).

    Read by version number from `_delta_log/<version>.json` itself: the log listing that
    `DeltaTable.history` walks can move while a writer commits, which once paired a
    version with the next commit's record (issue 17: a reader saw 113 rows described as
    3,497)."""
    log_file = path / "_delta_log" / f"{version:020d}.json"
    try:
        lines = log_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        action = json.loads(line)
        if "commitInfo" in action:
            return _parse_commit(table, {**action["commitInfo"], "version": version})
    return _parse_commit(table, {"version": version})


def versions_back(table: str, path: Path, newest: int, depth: int | None) -> list[VersionInfo]:
    """Versions `newest`, `newest - 1`, ... (at most `depth`), newest first, each read from
    its own commit file; falls back to the Delta history for versions whose file is gone."""
    oldest = 0 if depth is None else max(0, newest - depth + 1)
    infos: list[VersionInfo] = []
    for version in range(newest, oldest - 1, -1):
        info = commit_info(table, path, version)
        if info is None:
            older = [v for v in history(table, path) if v.version <= version]
            return infos + older[: None if depth is None else depth - len(infos)]
        infos.append(info)
    return infos


def content_info_at(table: str, path: Path, version: int) -> VersionInfo | None:
    """`content_info` of `version`, walking back over content-preserving commits one file at a time."""
    while version >= 0:
        info = commit_info(table, path, version)
        if info is None:
            return content_info([v for v in history(table, path) if v.version <= version])
        if info.lineage is not None:
            return info
        if info.operation not in _CONTENT_PRESERVING_OPS:
            return None
        version -= 1
    return None


def content_info(versions: Sequence[VersionInfo]) -> VersionInfo | None:
    """The store record that describes the rows of `versions[0]` (versions newest first).

    Walks back over content-preserving commits (compaction); None when the content was
    last changed by a writer other than the store.
    """
    for info in versions:
        if info.lineage is not None:
            return info
        if info.operation not in _CONTENT_PRESERVING_OPS:
            return None
    return None
