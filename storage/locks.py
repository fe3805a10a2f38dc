"""Inter-process writer locks (fcntl.flock on files under <root>/.locks/).

flock locks belong to the open file description, so they exclude other processes and
other open() calls in this process alike, and the kernel drops them when a process
dies (a SIGKILLed writer never leaves a stale lock).
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_POLL_S = 0.02


@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"could not lock {path} within {timeout_s:.0f} s: another writer holds it"
                    ) from None
                if not waited:
                    log.info("waiting for writer lock %s", path)
                    waited = True
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
