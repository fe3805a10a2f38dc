"""Checkpoint registry: folders under <root>/checkpoints/<checkpoint_id>/ + the `checkpoints` table.

A checkpoint id is `<kind>-<first 16 hex of the folder's content digest>`, so
registering the same files twice gives the same id and no second copy. Registration is
journaled: (1) the row to be written goes to `checkpoints/.journal/<id>.json`, (2) the
files go to a temporary folder beside the target, which is renamed into place (a rename
is atomic on one file system), (3) the row is committed (a read-modify-write of the
table through `Store.update`: appended only when the id is not there yet), (4) the
journal entry is removed. Every registration first replays the journal under the
registry lock: an entry whose folder exists gets its row (a crash between 2 and 3), an
entry without its folder is dropped (a crash before 2), and `.tmp-*` folders are
removed (no registration is in flight while the lock is held). So after any crash and
the next registration, every folder has its row and no temporary folder is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from storage.locks import file_lock
from storage.schemas import SCHEMAS

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

TABLE = "checkpoints"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
_CHUNK_BYTES = 1 << 20
_JOURNAL = ".journal"


def folder_digest(folder: Path) -> str:
    """sha256 over the folder's files: relative POSIX paths (sorted) and their bytes."""
    h = hashlib.sha256(b"toolweaver-checkpoint-v1\n")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(folder).as_posix()
        h.update(f"{rel}\n{path.stat().st_size}\n".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK_BYTES):
                h.update(chunk)
    return h.hexdigest()


def register(
    store: Store,
    kind: str,
    src_dir: Path,
    *,
    run_id: str,
    config_hash: str,
    meta: dict[str, Any],
    move: bool,
) -> str:
    """See `Store.register_checkpoint`."""
    if not _KIND_RE.match(kind):
        raise ValueError(f"checkpoint kind {kind!r}: use lower-case letters, digits, '_' or '-'")
    if not src_dir.is_dir():
        raise FileNotFoundError(f"checkpoint folder {src_dir} does not exist")
    meta_json = json.dumps(meta, sort_keys=True)  # fails loudly on non-JSON meta, before any copy
    checkpoint_id = f"{kind}-{folder_digest(src_dir)[:16]}"
    base = store.root / TABLE
    target = base / checkpoint_id
    row = {
        "checkpoint_id": checkpoint_id,
        "kind": kind,
        "path": target.relative_to(store.root).as_posix(),
        "run_id": run_id,
        "config_hash": config_hash,
        "meta": meta_json,
        "created_at": datetime.now(UTC).isoformat(),
    }
    with file_lock(registry_lock(store)):
        recover(store)
        entry = _journal(store, row)
        if target.is_dir():
            log.info("checkpoint %s already stored", checkpoint_id)
        else:
            _place(src_dir, base, target, move)
        _commit_row(store, row)
        entry.unlink()
    log.info("registered checkpoint %s (%s)", checkpoint_id, kind)
    return checkpoint_id


def registry_lock(store: Store) -> Path:
    return store.root / ".locks" / "checkpoint-registry.lock"


def recover(store: Store) -> list[str]:
    """Finish or drop interrupted registrations (call under the registry lock); returns
    the ids whose rows were completed. See the module docstring."""
    base = store.root / TABLE
    for tmp in base.glob(".tmp-*") if base.is_dir() else []:
        log.warning("removing %s left by an interrupted checkpoint registration", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    completed = []
    for entry in sorted((base / _JOURNAL).glob("*.json")) if base.is_dir() else []:
        row = json.loads(entry.read_text(encoding="utf-8"))
        if (store.root / row["path"]).is_dir() and _commit_row(store, row):
            completed.append(row["checkpoint_id"])
            log.warning("checkpoint %s: row restored from the registry journal", row["checkpoint_id"])
        entry.unlink()
    return completed


def _journal(store: Store, row: dict[str, Any]) -> Path:
    """Write the journal entry of `row` atomically (temp file + rename)."""
    folder = store.root / TABLE / _JOURNAL
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{row['checkpoint_id']}.json"
    tmp = folder / f".{entry.name}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(row, sort_keys=True), encoding="utf-8")
    tmp.rename(entry)
    return entry


def _commit_row(store: Store, row: dict[str, Any]) -> bool:
    """Append `row` unless its id is registered (decided on the version read); True if written."""
    from storage.commit import Append, Snapshot

    data = pa.Table.from_pylist(
        [{**row, "created_at": datetime.fromisoformat(row["created_at"])}], schema=SCHEMAS[TABLE]
    )
    written: list[bool] = []

    def add_if_absent(snapshot: Snapshot) -> dict[str, Append]:
        rows = snapshot.read(TABLE, columns=["checkpoint_id"])
        known = set() if rows is None else set(rows.column("checkpoint_id").to_pylist())
        written[:] = [row["checkpoint_id"] not in known]
        return {TABLE: Append(data)} if written[0] else {}

    store.update([TABLE], add_if_absent, run_id=row["run_id"], config_hash=row["config_hash"], inputs=[])
    return written[0]


def _place(src_dir: Path, base: Path, target: Path, move: bool) -> None:
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    if move:
        shutil.move(str(src_dir), str(tmp))
    else:
        shutil.copytree(src_dir, tmp)
    tmp.rename(target)


def path_of(store: Store, checkpoint_id: str) -> Path:
    """See `Store.checkpoint_path`."""
    rows = listing(store, None).filter(pc.field("checkpoint_id") == checkpoint_id)
    if rows.num_rows == 0:
        raise KeyError(f"checkpoint {checkpoint_id!r} is not registered in store {store.root}")
    path = store.root / rows.column("path")[0].as_py()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint_id!r} is registered but {path} is missing")
    return path


def listing(store: Store, kind: str | None) -> pa.Table:
    """See `Store.checkpoints`: the table's rows plus `present` (the folder still exists;
    retention deletes folders but keeps their rows as history)."""
    rows = store.read(TABLE) if store.exists(TABLE) else SCHEMAS[TABLE].empty_table()
    if kind is not None:
        rows = rows.filter(pc.field("kind") == kind)
    present = [(store.root / p).is_dir() for p in rows.column("path").to_pylist()]
    return rows.append_column(pa.field("present", pa.bool_(), nullable=False), pa.array(present, pa.bool_()))
