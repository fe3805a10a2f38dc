"""Walk a directory or stream a .tar.gz, yielding the data files in it.

Archives are streamed member by member (`tarfile` mode "r|*"): nothing is extracted
to disk, so hostile member names ("../../etc/x") are only ever used as labels.
Only regular files with the wanted suffixes are read; code files such as ToolBench's
`api.py` are never opened, let alone imported. Entries carry their size, so callers
refuse oversized files before reading them (see `isolation.read_files`).
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class FileEntry:
    """One data file: its posix path relative to the ingest root, its size, a reader.

    For archive members `read` must be called before the next entry is requested
    (the archive is a stream)."""

    rel: str
    size: int
    read: Callable[[], bytes]


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def iter_entries(path: Path, suffixes: tuple[str, ...] = (".json",)) -> Iterator[FileEntry]:
    """Each wanted file under `path`, in a stable order (folders sorted, archives in
    member order)."""
    if is_archive(path):
        yield from _iter_archive(path, suffixes)
    elif path.is_dir():
        yield from _iter_dir(path, suffixes)
    elif path.is_file():
        yield FileEntry(path.name, path.stat().st_size, path.read_bytes)
    else:
        raise FileNotFoundError(f"ingest path {path} does not exist (expected a folder or a .tar.gz)")


def iter_files(path: Path, suffixes: tuple[str, ...] = (".json",)) -> Iterator[tuple[str, bytes]]:
    """(posix relative path, raw bytes) for each wanted file (no size cap, errors raise)."""
    for entry in iter_entries(path, suffixes):
        yield entry.rel, entry.read()


def _iter_dir(root: Path, suffixes: tuple[str, ...]) -> Iterator[FileEntry]:
    for file in sorted(root.rglob("*")):
        # Symlinks could point outside the ingest root; data files are never links.
        if file.is_symlink() or not file.is_file() or not file.name.endswith(suffixes):
            continue
        yield FileEntry(file.relative_to(root).as_posix(), file.stat().st_size, file.read_bytes)


def _iter_archive(path: Path, suffixes: tuple[str, ...]) -> Iterator[FileEntry]:
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(suffixes):
                continue

            def read(member: tarfile.TarInfo = member) -> bytes:
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise OSError(f"{path}: member {member.name!r} has no data")
                return handle.read()

            yield FileEntry(member.name, member.size, read)
