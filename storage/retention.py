"""Retention: prune old checkpoint folders and vacuum old Delta files, never what is in use.

Time travel keeps every Parquet file any version ever referenced, so a store that is
rebuilt nightly grows without bound. Two knobs bound it:

- `prune_checkpoints`: per group (kind + the `stage` in the checkpoint's meta, so each
  fine-tuning stage is its own group) keep the newest `keep_last` folders, plus any id
  the caller protects (e.g. the tokenizer that placed the current codes). Deleted
  folders keep their row in the `checkpoints` table (it is append-only history);
  `Store.checkpoints()` reports them with `present = false`.
- `vacuum`: delete the Parquet files that only versions *not in use* reference.

In use (`in_use_versions`) means, per table:
1. the newest `keep_last_versions` versions (always at least the latest one),
2. every version written by the run that produced a surviving checkpoint under the
   checkpoint's config hash (what a kept model was built from: an LLM stage's
   `train_metrics`, a tokenizer's `codes`), so a kept model can be traced and re-read,
3. closed over lineage: the `inputs` of a version in use are in use.

Vacuum lists candidates with delta-rs' own vacuum in dry-run mode (`keep_versions` =
the versions in use, `full` so files of crashed writers count too) and deletes them
itself under the table's writer lock. A real delta-rs vacuum would commit
`VACUUM START/END` versions to the log; deleting the listed files adds no version, so
table versions, digests and lineage stay exactly as they were.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from deltalake import DeltaTable

from storage.locks import file_lock

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class VacuumReport:
    """What `vacuum` did to one table."""

    table: str
    versions: int  # versions in the log (vacuum never removes log entries)
    kept_versions: tuple[int, ...]  # versions in use: still readable
    deleted_files: tuple[str, ...]  # paths relative to the table folder
    deleted_bytes: int


def in_use_versions(store: Store, keep_last_versions: int = 1) -> dict[str, set[int]]:
    """{table: versions in use} (see module docstring)."""
    if keep_last_versions < 1:
        raise ValueError(
            f"keep_last_versions must be >= 1 (the latest version is always in use), got {keep_last_versions}"
        )
    keep: dict[str, set[int]] = defaultdict(set)
    for ref in store.tables():
        keep[ref.table].update(range(max(0, ref.version - keep_last_versions + 1), ref.version + 1))
    lineage = _lineage_rows(store)
    made_models = _present_checkpoint_origins(store)
    for row in lineage.values():
        if (row["run_id"], row["config_hash"]) in made_models:
            keep[row["table"]].add(row["version"])
    frontier = [(t, v) for t, versions in keep.items() for v in versions]
    while frontier:
        table, version = frontier.pop()
        entry = lineage.get((table, version))
        for input_table, input_version in json.loads(entry["inputs"]) if entry else ():
            if input_version not in keep[input_table]:
                keep[input_table].add(input_version)
                frontier.append((input_table, input_version))
    return dict(keep)


def _lineage_rows(store: Store) -> dict[tuple[str, int], dict]:
    if not store.exists("lineage"):
        return {}
    rows = store.read("lineage", columns=["table", "version", "run_id", "config_hash", "inputs"]).to_pylist()
    return {(r["table"], int(r["version"])): r for r in rows}


def _present_checkpoint_origins(store: Store) -> set[tuple[str, str]]:
    """(run_id, config_hash) of every checkpoint whose folder exists: the table versions
    its run wrote under the same config (e.g. a model's training metrics, which name the
    examples and codes versions it was trained on) are what it was built from."""
    rows = store.checkpoints().to_pylist()
    return {(r["run_id"], r["config_hash"]) for r in rows if r["present"] and r["run_id"]}


def vacuum(
    store: Store,
    *,
    retention_hours: float = 168.0,
    keep_last_versions: int = 1,
    dry_run: bool = False,
) -> list[VacuumReport]:
    """Delete files only versions out of use reference, once they are `retention_hours` old.

    `retention_hours` protects a version's files for that long after it was superseded
    (a reader that opened an older snapshot keeps working); 0 removes them at once.
    """
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
    keep = in_use_versions(store, keep_last_versions)
    reports = []
    for ref in store.tables():
        with file_lock(store.root / ".locks" / f"{ref.table}.lock"):
            reports.append(_vacuum_table(store, ref.table, sorted(keep.get(ref.table, ())), retention_hours, dry_run))
    return reports


def _vacuum_table(
    store: Store, table: str, keep_versions: list[int], retention_hours: float, dry_run: bool
) -> VacuumReport:
    path = store.table_path(table)
    delta = DeltaTable(str(path))
    # delta-rs takes whole hours; round down so that "0" really means "now".
    candidates = delta.vacuum(
        retention_hours=int(retention_hours),
        dry_run=True,
        enforce_retention_duration=False,
        full=True,
        keep_versions=keep_versions,
    )
    # The log's tombstones outlive the files: list only what is still on disk.
    files = [f for f in (_local_path(path, c) for c in candidates) if f.is_file()]
    deleted_bytes = sum(f.stat().st_size for f in files)
    if not dry_run:
        for f in files:
            f.unlink(missing_ok=True)
    rel = tuple(sorted(f.relative_to(path).as_posix() for f in files))
    if rel:
        log.info(
            "%s: %s %d file(s), %d bytes; versions in use %s",
            table,
            "would delete" if dry_run else "deleted",
            len(rel),
            deleted_bytes,
            keep_versions,
        )
    return VacuumReport(table, delta.version() + 1, tuple(keep_versions), rel, deleted_bytes)


def _local_path(table_path: Path, candidate: str) -> Path:
    """A vacuum candidate (relative path or file:// URI) as a path under the table folder."""
    parsed = urlparse(candidate)
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else table_path / unquote(candidate)
    resolved = path.resolve()
    if table_path.resolve() not in resolved.parents:
        raise RuntimeError(
            f"vacuum candidate {candidate!r} is outside table folder {table_path}; refusing to delete it"
        )
    return resolved


def prune_checkpoints(store: Store, keep_last: int, *, protect: Iterable[str] = (), dry_run: bool = False) -> list[str]:
    """Delete the folders of all but the newest `keep_last` checkpoints per (kind, stage);
    ids in `protect` are never deleted. Returns the ids whose folders were (or would be) deleted."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    protected = set(protect)
    groups: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    for row in store.checkpoints().to_pylist():
        if row["present"]:
            stage = json.loads(row["meta"] or "{}").get("stage")
            groups[(row["kind"], stage)].append(row)
    pruned = []
    with file_lock(store.root / ".locks" / "checkpoint-registry.lock"):
        for rows in groups.values():
            pruned += _prune_group(store, rows, keep_last, protected, dry_run)
    return sorted(pruned)


def _prune_group(store: Store, rows: list[dict], keep_last: int, protected: set[str], dry_run: bool) -> list[str]:
    """Delete all but the newest `keep_last` folders of one group (protected ids excepted)."""
    newest_first = sorted(rows, key=lambda r: (r["created_at"], r["checkpoint_id"]), reverse=True)
    pruned = []
    for row in newest_first[keep_last:]:
        if row["checkpoint_id"] in protected:
            continue
        if not dry_run:
            shutil.rmtree(store.root / row["path"])
        pruned.append(row["checkpoint_id"])
        log.info(
            "retention: %s checkpoint %s (%s)",
            "would delete" if dry_run else "deleted",
            row["checkpoint_id"],
            row["kind"],
        )
    return pruned
