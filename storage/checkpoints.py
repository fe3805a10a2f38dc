"""Checkpoint registry: folders under <root>/checkpoints/<checkpoint_id>/ + the `checkpoints` table.

A checkpoint id is `<kind>-<first 16 hex of the folder's content digest>`, so
registering the same files twice gives the same id and no second copy. Registration is
atomic: the files go to a temporary folder beside the target, which is renamed into
place (a rename is atomic on one file system), and only then is the table row written.
A crash before the rename leaves a `.tmp-*` folder that is never listed; a crash between
the rename and the row is completed by the next registration of the same content.
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
    with file_lock(store.root / ".locks" / "checkpoint-registry.lock"):
        if target.is_dir():
            log.info("checkpoint %s already stored", checkpoint_id)
        else:
            _place(src_dir, base, target, move)
        if checkpoint_id in _ids(store):
            return checkpoint_id
        row = {
            "checkpoint_id": checkpoint_id,
            "kind": kind,
            "path": target.relative_to(store.root).as_posix(),
            "run_id": run_id,
            "config_hash": config_hash,
            "meta": meta_json,
            "created_at": datetime.now(UTC),
        }
        store.write(
            TABLE,
            pa.Table.from_pylist([row], schema=SCHEMAS[TABLE]),
            mode="append",
            run_id=run_id,
            config_hash=config_hash,
        )
    log.info("registered checkpoint %s (%s)", checkpoint_id, kind)
    return checkpoint_id


def _place(src_dir: Path, base: Path, target: Path, move: bool) -> None:
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    if move:
        shutil.move(str(src_dir), str(tmp))
    else:
        shutil.copytree(src_dir, tmp)
    tmp.rename(target)


def _ids(store: Store) -> set[str]:
    if not store.exists(TABLE):
        return set()
    return set(store.read(TABLE, columns=["checkpoint_id"]).column("checkpoint_id").to_pylist())


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
