"""The write protocol: optimistic commits that state the table version they read.

Every commit names the version its data was computed from (`read_version`; None = the
table did not exist). Delta's log is the arbiter: version `read_version + 1` is created
with put-if-absent, and delta-rs is told not to retry past it (`max_commit_retries=0`),
so a writer that raced another gets `WriteConflict` instead of silently overwriting
what the other committed (delta-rs alone lets a blind overwrite land on top of a
concurrent append).

`update` is the read-modify-write loop built on it: read a snapshot (one pinned
version per table), compute the new content, commit every table against the versions
read; on a conflict re-read, recompute and retry, at most `attempts` times, then fail
with an error that names the table and versions. Local file locks (storage.locks) only
make writers on one machine queue instead of retry; they are never the only guard.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from storage.locks import file_locks

if TYPE_CHECKING:
    from storage.store import Store, TableRef

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 8
_BACKOFF_S = 0.05
WriteMode = Literal["overwrite", "append"]


class WriteConflict(RuntimeError):
    """Another writer committed the table after this writer read it."""

    def __init__(self, table: str, read_version: int | None, found: int | None, detail: str = "") -> None:
        self.table, self.read_version, self.found = table, read_version, found
        read = "no table" if read_version is None else f"version {read_version}"
        now = "no table" if found is None else f"version {found}"
        super().__init__(
            f"table {table!r}: write computed from {read} but the table is now at {now} "
            f"(another writer committed in between){': ' + detail if detail else ''}"
        )


def current_version(path: Path) -> int | None:
    """Latest version of the Delta table at `path`, None when there is none."""
    if not DeltaTable.is_deltatable(str(path)):
        return None
    return DeltaTable(str(path)).version()


def pinned_commit(
    table: str,
    path: Path,
    rows: pa.Table,
    *,
    read_version: int | None,
    mode: WriteMode,
    custom_metadata: dict[str, str],
    configuration: Mapping[str, str | None] | None,
    schema_mode: Literal["overwrite"] | None,
    hooks: PostCommitHookProperties,
) -> int:
    """Commit `rows` as version `read_version + 1` (0 for a new table) or raise WriteConflict."""
    found = current_version(path)
    if found != read_version:
        raise WriteConflict(table, read_version, found)
    target: str | DeltaTable = str(path) if read_version is None else DeltaTable(str(path), version=read_version)
    try:
        write_deltalake(
            target,
            rows,
            mode=mode,
            schema_mode=schema_mode,
            configuration=configuration,
            commit_properties=CommitProperties(custom_metadata=custom_metadata, max_commit_retries=0),
            post_commithook_properties=hooks,
        )
    except CommitFailedError as exc:
        raise WriteConflict(table, read_version, current_version(path), str(exc).splitlines()[0]) from exc
    committed = 0 if read_version is None else read_version + 1
    if read_version is None and current_version(path) != 0:
        # Two creators in the same instant: delta-rs loaded the other's version 0 and
        # committed on top of it. Only possible without the local lock (another machine).
        log.error("table %r was created concurrently by another writer; this commit is not version 0", table)
        committed = current_version(path) or 0
    return committed


def backoff(attempt: int) -> None:
    """Sleep before retry `attempt` (jittered, so that two losers do not collide again)."""
    time.sleep(_BACKOFF_S * attempt * (0.5 + random.random()))


@dataclass(frozen=True)
class Snapshot:
    """One pinned version per table (None: the table did not exist when read)."""

    store: Store
    versions: Mapping[str, int | None]

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table | None:
        """Rows of `table` at the pinned version, None when it did not exist."""
        version = self.versions[table]
        return None if version is None else self.store.read(table, version=version, columns=columns)

    def schema(self, table: str) -> pa.Schema | None:
        """The schema `table` was written with at the pinned version, None when it did not exist."""
        version = self.versions[table]
        return None if version is None else self.store.schema(table, version)

    def refs(self) -> list[TableRef]:
        """Refs of the tables read (the lineage `inputs` of what is computed from them)."""
        return [r for r in (self.store.ref_at(t, v) for t, v in sorted(self.versions.items())) if r is not None]


@dataclass(frozen=True)
class Append:
    """`update` output that appends `data` (instead of replacing the table with it)."""

    data: pa.Table


Compute = Callable[[Snapshot], Mapping[str, "pa.Table | Append"]]


def update(
    store: Store,
    tables: Sequence[str],
    compute: Compute,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    **write_args: Any,
) -> dict[str, TableRef]:
    """Read `tables`, `compute` their new content, commit it against the versions read.

    `compute(snapshot)` returns {table: data} (overwrite) or {table: Append(data)}; it is
    called again on the fresh snapshot after a conflict, so it must only depend on the
    snapshot (and on inputs that do not change). Tables are committed in sorted order;
    a conflict after some tables committed recomputes all of them, so the final content
    is that of a serial run. `write_args` (run_id, config_hash, inputs, schema) go to
    `Store.write`; `inputs` defaults to the snapshot's refs.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    last: WriteConflict | None = None
    for attempt in range(1, attempts + 1):
        snapshot = Snapshot(store, {t: current_version(store.table_path(t)) for t in tables})
        outputs = compute(snapshot)
        unknown = sorted(set(outputs) - set(tables))
        if unknown:
            raise ValueError(f"update of {sorted(tables)} computed tables it did not read: {unknown}")
        try:
            return _commit_all(store, snapshot, outputs, write_args)
        except WriteConflict as exc:
            last = exc
            log.info("update %s: %s; retry %d/%d", sorted(tables), exc, attempt, attempts)
            backoff(attempt)
    raise WriteConflict(
        last.table if last else "?",
        last.read_version if last else None,
        last.found if last else None,
        f"gave up after {attempts} attempts (every attempt raced another writer)",
    )


def _commit_all(
    store: Store, snapshot: Snapshot, outputs: Mapping[str, pa.Table | Append], write_args: dict[str, Any]
) -> dict[str, TableRef]:
    args = {"inputs": snapshot.refs(), **write_args}
    with file_locks([store.lock_path(t) for t in outputs]):
        # Fail before the first commit when any table moved: no half-applied step.
        for table in outputs:
            found = current_version(store.table_path(table))
            if found != snapshot.versions[table]:
                raise WriteConflict(table, snapshot.versions[table], found)
        refs = {}
        for table in sorted(outputs):
            out = outputs[table]
            mode: WriteMode = "append" if isinstance(out, Append) else "overwrite"
            data = out.data if isinstance(out, Append) else out
            refs[table] = store.write(table, data, mode=mode, read_version=snapshot.versions[table], **args)
        return refs
