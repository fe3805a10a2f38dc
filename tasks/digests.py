"""Content digests, one rule each: configs (lineage `config_hash`, cache keys) and files.

Prefect-free: the stage functions record `config_hash(config)` in lineage, and the
Prefect cache keys (`tasks.prefect.cache`) are built from the same digests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_CHUNK_BYTES = 1 << 20


def sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def content_digest(path: Path) -> str:
    """Digest of a file or directory by content: the same bytes at any path give the same digest.

    A directory digest covers every regular file below it (relative POSIX path + bytes),
    so renaming, adding, removing or editing a file changes it; mtimes do not. A
    `.tar.gz` is a file and is hashed by its bytes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist; check the source path")
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        h.update(p.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(file_digest(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def config_hash(config: BaseModel) -> str:
    """Digest of a pydantic config's canonical JSON (field order does not matter)."""
    return sha256_json({"type": type(config).__qualname__, "config": config.model_dump(mode="json")})
