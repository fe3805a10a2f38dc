"""Per-file and per-record isolation: one bad file or record never aborts an ingest.

Every adapter reads its files through `read_files` / `read_file` (files above the size
cap are refused from their size alone, before a byte is read; unreadable files are
quarantined) and runs the work of each file or record inside `isolate`: any exception
there (recursion depth, memory, decoding, unexpected types) rolls back what that unit
had already produced, quarantines it with a reason and the excerpt of the error, and
the ingest goes on with the next unit. New adapters use the same two helpers.
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolweaver.ingest.files import iter_entries
from toolweaver.ingest.quarantine import (
    FILE_MAX_BYTES,
    FILE_TOO_LARGE,
    NON_UTF8,
    OUT_OF_MEMORY,
    PARSE_ERROR,
    TOO_DEEP,
    UNREADABLE,
)
from toolweaver.ingest.records import ParseResult

log = logging.getLogger(__name__)

_OUTPUTS = ("tools", "queries", "qrels", "trajectories", "quarantine")


def reason_for(exc: BaseException) -> str:
    """The quarantine reason of an exception raised while reading one file or record."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(exc, UnicodeError):
        return NON_UTF8
    if isinstance(exc, OSError):
        return UNREADABLE
    return PARSE_ERROR


@contextmanager
def isolate(result: ParseResult, locator: str) -> Iterator[None]:
    """Run the `with` body for one file/record; on any exception quarantine `locator`.

    Records the body appended before failing are removed again, so a unit lands whole
    or not at all. KeyboardInterrupt / SystemExit still stop the ingest.
    """
    sizes = {name: len(getattr(result, name)) for name in _OUTPUTS}
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the point: no per-record error escapes
        for name, size in sizes.items():
            del getattr(result, name)[size:]
        reason = reason_for(exc)
        result.reject(locator, reason, f"{type(exc).__name__}: {str(exc)[:300]}")
        result.count(f"isolated_{reason}")
        log.warning("%s: %s quarantined (%s: %s)", result.source, locator, type(exc).__name__, str(exc)[:200])


def read_files(
    path: Path, result: ParseResult, suffixes: tuple[str, ...] = (".json",), max_bytes: int = FILE_MAX_BYTES
) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of each wanted file under `path` (folder, file or archive);
    every visited file is added to `result.files`; oversized and unreadable files are
    quarantined instead of yielded. A corrupt archive stops at the damage (what was
    read before it stays) and is quarantined."""
    if not path.exists():  # a wrong --path is the user's error, not a bad record
        raise FileNotFoundError(f"ingest path {path} does not exist (expected a folder or a .tar.gz)")
    entries = iter_entries(path, suffixes)
    while True:
        try:
            entry = next(entries)
        except StopIteration:
            return
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            result.reject(path.name, UNREADABLE, f"{type(exc).__name__}: {exc}")
            return
        result.files.add(entry.rel)
        if entry.size > max_bytes:
            result.reject(entry.rel, FILE_TOO_LARGE, f"{entry.size} bytes > cap {max_bytes}")
            continue
        try:
            raw = entry.read()
        except (OSError, tarfile.TarError, EOFError, zlib.error, MemoryError) as exc:
            result.reject(entry.rel, reason_for(exc), f"{type(exc).__name__}: {exc}")
            continue
        yield entry.rel, raw


def read_file(file: Path, rel: str, result: ParseResult, max_bytes: int = FILE_MAX_BYTES) -> bytes | None:
    """The bytes of one known file (e.g. BEIR's corpus.jsonl) or None when it is refused
    for its size or cannot be read (then it is quarantined as `rel`)."""
    result.files.add(rel)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            result.reject(rel, FILE_TOO_LARGE, f"{size} bytes > cap {max_bytes}")
            return None
        return file.read_bytes()
    except (OSError, MemoryError) as exc:
        result.reject(rel, reason_for(exc), f"{type(exc).__name__}: {exc}")
        return None
