"""Walk a directory or stream a .tar.gz, yielding (relative path, bytes) of data files.

Archives are streamed member by member (`tarfile` mode "r|*"): nothing is extracted
to disk, so hostile member names ("../../etc/x") are only ever used as labels.
Only regular files with the wanted suffixes are read; code files such as ToolBench's
`api.py` are never opened, let alone imported.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def iter_files(path: Path, suffixes: tuple[str, ...] = (".json",)) -> Iterator[tuple[str, bytes]]:
    """Yield (posix relative path, raw bytes) for each wanted file, in a stable order.

    Directories are walked in sorted order; archives in member order (also stable).
    """
    if is_archive(path):
        yield from _iter_archive(path, suffixes)
    elif path.is_dir():
        yield from _iter_dir(path, suffixes)
    elif path.is_file():
        yield path.name, path.read_bytes()
    else:
        raise FileNotFoundError(f"ingest path {path} does not exist (expected a folder or a .tar.gz)")


def _iter_dir(root: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    for file in sorted(root.rglob("*")):
        # Symlinks could point outside the ingest root; data files are never links.
        if file.is_symlink() or not file.is_file() or not file.name.endswith(suffixes):
            continue
        yield file.relative_to(root).as_posix(), file.read_bytes()


def _iter_archive(path: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(suffixes):
                continue
            handle = archive.extractfile(member)
            if handle is None:  # pragma: no cover - isfile() members always have data
                raise RuntimeError(f"{path}: member {member.name!r} has no data")
            yield member.name, handle.read()
