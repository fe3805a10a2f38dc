"""Inter-process writer locks (fcntl.flock on files under <root>/.locks/).

flock locks belong to the open file description, so they exclude other processes and
other open() calls in this process alike, and the kernel drops them when a process
dies (a SIGKILLed writer never leaves a stale lock).

The locks are an optimisation on one machine (writers queue instead of retrying): the
guard against lost updates is the optimistic commit of `storage.commit`, which holds on
any file system. A thread that already holds a lock may take it again (a multi-table
update holds its tables' locks while `Store.write` takes each one again).
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_POLL_S = 0.02
# Locks this thread holds (resolved path -> depth): re-entry must not flock again, since
# a second open() of the same file would wait for the first one forever.
_held = threading.local()


def _depths() -> dict[str, int]:
    if not hasattr(_held, "depth"):
        _held.depth = {}
    return _held.depth


@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    depths = _depths()
    if depths.get(key, 0) > 0:
        depths[key] += 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    with open(path, "a+b") as fh:
        _acquire(fh.fileno(), path, timeout_s)
        depths[key] = 1
        try:
            yield
        finally:
            depths.pop(key, None)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _acquire(fd: int, path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not lock {path} within {timeout_s:.0f} s: another writer holds it") from None
            if not waited:
                log.info("waiting for writer lock %s", path)
                waited = True
            time.sleep(_POLL_S)


@contextmanager
def file_locks(paths: list[Path], timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the locks of all `paths`, taken in sorted order (two holders never deadlock)."""
    with ExitStack() as stack:
        for path in sorted(set(paths), key=str):
            stack.enter_context(file_lock(path, timeout_s))
        yield
