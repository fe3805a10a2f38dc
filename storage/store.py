"""The artifact store: one Delta table per artifact, each write an atomic new version.

Layout under the root (`TOOLWEAVER_HOME`, default `./artifacts`):

    tables/<table>/        Delta table (Parquet files + _delta_log/)
    checkpoints/<id>/      registered checkpoint folders (see storage.checkpoints)
    .locks/<table>.lock    per-table writer locks

A write (1) casts the data to the declared schema, (2) takes the table's lock, (3)
compares the content digest with the latest version and writes nothing when it is
unchanged, (4) commits one Delta version whose commit metadata carries the lineage
record, (5) mirrors that record into the `lineage` table. A writer killed before (4)
leaves only unreferenced Parquet files: readers never see a partial version. A writer
killed between (4) and (5) is repaired by the next write of that table.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake

from storage import checkpoints as _checkpoints
from storage.delta import ordered_dataset
from storage.digest import chain_digest, schema_text, table_digest
from storage.format import open_format
from storage.lineage import (
    LineageRecord,
    VersionInfo,
    code_version,
    commit_metadata,
    content_info,
    records_to_table,
)
from storage.lineage import history as delta_history
from storage.locks import file_lock
from storage.schemas import SCHEMAS, SchemaError, check_table_name, conform, schema_for

log = logging.getLogger(__name__)

LINEAGE = "lineage"
WriteMode = Literal["overwrite", "append"]
# Time travel and lineage need every commit file: never let Delta expire the log.
_TABLE_CONFIG = {"delta.enableExpiredLogCleanup": "false"}
_HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def default_root(root: str | Path | None = None) -> Path:
    """The store root, by the one rule every entry point uses: `root` when given, else
    $TOOLWEAVER_HOME, else ./artifacts (`~` expanded, not made absolute)."""
    return Path(root or os.environ.get("TOOLWEAVER_HOME") or "artifacts").expanduser()


@dataclass(frozen=True)
class TableRef:
    """A table version: what tasks pass around instead of data."""

    table: str
    version: int
    digest: str
    rows: int


class Store:
    """Delta tables + lineage + checkpoint registry under one root folder."""

    def __init__(self, root: str | Path | None = None, *, run_id: str | None = None) -> None:
        self.root = default_root(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Writes without an explicit run id belong to this Store's session, so that
        # `--as-of <run id>` also works for plain scripts and CLI commands.
        self.run_id = str(run_id) if run_id else (f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
        # Create, migrate or refuse by the store's format version (storage/format.py).
        self.format_version = open_format(self)

    # ---------------------------------------------------------------- paths
    def table_path(self, table: str) -> Path:
        return self.root / "tables" / check_table_name(table)

    def _lock_path(self, table: str) -> Path:
        return self.root / ".locks" / f"{table}.lock"

    # ---------------------------------------------------------------- reading
    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(str(self.table_path(table)))

    def _require(self, table: str) -> Path:
        path = self.table_path(table)
        if not DeltaTable.is_deltatable(str(path)):
            known = [ref.table for ref in self.tables()]
            raise FileNotFoundError(f"no table {table!r} in store {self.root} (tables: {known})")
        return path

    def _info_at(self, table: str, version: int | None) -> tuple[int, VersionInfo | None]:
        """(version, the store record describing its rows or None); version None = latest."""
        path = self._require(table)
        latest = DeltaTable(str(path)).version()
        if version is None:
            version = latest
        if not 0 <= version <= latest:
            raise ValueError(f"table {table!r} has versions 0..{latest}, not {version}")
        versions = delta_history(table, path, limit=latest - version + 1)[latest - version :]
        return version, content_info(versions)

    def latest(self, table: str) -> TableRef | None:
        """Ref of the newest version of `table`, None when it does not exist."""
        if not self.exists(table):
            return None
        version, info = self._info_at(table, None)
        if info is None:
            return TableRef(table, version, "", DeltaTable(str(self.table_path(table))).count())
        return TableRef(table, version, info.lineage.digest, info.lineage.rows)  # type: ignore[union-attr]

    def tables(self) -> list[TableRef]:
        """Latest ref of every table, sorted by name."""
        base = self.root / "tables"
        if not base.is_dir():
            return []
        names = sorted(p.name for p in base.iterdir() if DeltaTable.is_deltatable(str(p)))
        return [ref for ref in (self.latest(n) for n in names) if ref is not None]

    def read(self, table: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """Rows of `table` at `version` (latest when None), with the schema it was written with."""
        version, info = self._info_at(table, version)
        data = ordered_dataset(self.table_path(table), version).to_table(columns=columns)
        if info is None or info.schema is None:
            return data
        # Delta has no fixed-size lists etc.: restore the exact Arrow types that were written.
        schema = info.schema if columns is None else pa.schema([info.schema.field(c) for c in columns])
        return data.cast(schema)

    def history(self, table: str) -> list[VersionInfo]:
        """Every version of `table`, newest first, with its lineage record when the store wrote it."""
        return delta_history(table, self._require(table))

    # ---------------------------------------------------------------- writing
    def write(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode = "overwrite",
        run_id: str | None = None,
        config_hash: str = "",
        inputs: Sequence[TableRef] = (),
        schema: pa.Schema | None = None,
    ) -> TableRef:
        """Write `data` as one new version of `table` (none when the content is unchanged).

        `schema` overrides the declared schema (needed only for undeclared tables).
        Unchanged means: overwrite with the digest of the latest version, or an append
        of 0 rows to an existing table; then the latest ref is returned.
        """
        check_table_name(table)
        if table == LINEAGE:
            raise ValueError("the lineage table is written by the store itself, not by Store.write")
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be 'overwrite' or 'append', not {mode!r}")
        target = schema if schema is not None else schema_for(table, data)
        rows = conform(table, data, target)
        rows_digest = table_digest(rows)  # outside the lock: the slow part
        with file_lock(self._lock_path(table)):
            return self._write_locked(
                table, rows, rows_digest, mode, str(run_id) if run_id else self.run_id, config_hash, inputs
            )

    def _write_locked(
        self,
        table: str,
        rows: pa.Table,
        rows_digest: str,
        mode: WriteMode,
        run_id: str,
        config_hash: str,
        inputs: Sequence[TableRef],
    ) -> TableRef:
        path = self.table_path(table)
        prev = self.latest(table)
        if prev is not None:
            unchanged = (mode == "overwrite" and prev.digest == rows_digest) or (
                mode == "append" and rows.num_rows == 0
            )
            if unchanged:
                log.info("%s: content unchanged, staying at version %d", table, prev.version)
                self._sync_lineage(table)
                return prev
            if mode == "append":
                self._check_append_schema(table, rows.schema)
        digest = rows_digest if mode == "overwrite" or prev is None else chain_digest(prev.digest, rows_digest)
        total = rows.num_rows + (prev.rows if mode == "append" and prev is not None else 0)
        record = LineageRecord(
            table=table,
            version=-1,  # assigned by the commit
            digest=digest,
            rows=total,
            run_id=run_id,
            code_version=code_version(),
            config_hash=config_hash,
            inputs=tuple((ref.table, ref.version) for ref in inputs),
            written_at=datetime.now(UTC),
        )
        write_deltalake(
            str(path),
            rows,
            mode=mode,
            schema_mode="overwrite" if mode == "overwrite" and prev is not None else None,
            configuration=_TABLE_CONFIG if prev is None else None,
            commit_properties=CommitProperties(custom_metadata=commit_metadata(record, rows.schema, mode)),
            post_commithook_properties=_HOOKS,
        )
        ref = self._committed_ref(table, record)
        self._sync_lineage(table)
        log.info("%s: wrote version %d (%s, %d rows, run %s)", table, ref.version, mode, ref.rows, run_id)
        return ref

    def _check_append_schema(self, table: str, schema: pa.Schema) -> None:
        _, info = self._info_at(table, None)
        if info is not None and info.schema is not None and not info.schema.equals(schema):
            raise SchemaError(
                f"table {table!r} was written with schema\n{schema_text(info.schema)}\n"
                f"but the appended data has\n{schema_text(schema)}\n"
                "overwrite the table to change its schema"
            )

    def _committed_ref(self, table: str, record: LineageRecord) -> TableRef:
        """Ref of the commit just made; fails if another writer slipped in past the lock."""
        newest = delta_history(table, self.table_path(table), limit=1)[0]
        if newest.lineage is None or newest.lineage.written_at != record.written_at:
            raise RuntimeError(
                f"table {table!r}: version {newest.version} is not the commit this writer made; "
                "something wrote the table without the store's lock"
            )
        return TableRef(table, newest.version, record.digest, record.rows)

    # ---------------------------------------------------------------- lineage mirror
    def sync_lineage(self) -> None:
        """Re-fill the `lineage` table from every table's commit log (after crashed writers).

        Each write already does this for its own table; call this to repair tables that
        were not written again since a writer died between its two commits.
        """
        for ref in self.tables():
            if ref.table != LINEAGE:
                with file_lock(self._lock_path(ref.table)):
                    self._sync_lineage(ref.table)

    def _sync_lineage(self, table: str) -> None:
        """Append to `lineage` every store-written version of `table` it lacks."""
        records = [v.lineage for v in self.history(table) if v.lineage is not None]
        with file_lock(self._lock_path(LINEAGE)):
            have = self._lineage_versions(table)
            missing = sorted((r for r in records if r.version not in have), key=lambda r: r.version)
            if not missing:
                return
            if len(missing) > 1 or missing[0].version != max(r.version for r in records):
                log.warning("%s: restoring %d lineage row(s) from the commit log", table, len(missing))
            self._append_lineage(missing)

    def _lineage_versions(self, table: str) -> set[int]:
        path = self.table_path(LINEAGE)
        if not DeltaTable.is_deltatable(str(path)):
            return set()
        dataset = DeltaTable(str(path)).to_pyarrow_dataset()
        found = dataset.to_table(columns=["version"], filter=pc.field("table") == table)
        return set(found.column("version").to_pylist())

    def _append_lineage(self, records: Sequence[LineageRecord]) -> None:
        rows = records_to_table(records)
        prev = self.latest(LINEAGE)
        rows_digest = table_digest(rows)
        digest = rows_digest if prev is None else chain_digest(prev.digest, rows_digest)
        # The lineage table's own commits carry digest and row count, but no lineage row.
        meta = LineageRecord(
            table=LINEAGE,
            version=-1,
            digest=digest,
            rows=rows.num_rows + (prev.rows if prev is not None else 0),
            run_id=None,
            code_version=code_version(),
            config_hash="",
            inputs=(),
            written_at=datetime.now(UTC),
        )
        write_deltalake(
            str(self.table_path(LINEAGE)),
            rows,
            mode="append",
            configuration=_TABLE_CONFIG if prev is None else None,
            commit_properties=CommitProperties(custom_metadata=commit_metadata(meta, SCHEMAS[LINEAGE], "append")),
            post_commithook_properties=_HOOKS,
        )

    # ---------------------------------------------------------------- checkpoints
    def register_checkpoint(
        self,
        kind: str,
        src_dir: Path,
        *,
        run_id: str | None = None,
        config_hash: str = "",
        meta: dict | None = None,
        move: bool = False,
    ) -> str:
        """Copy (or move) `src_dir` into <root>/checkpoints/<id>/ and record it; returns the id."""
        return _checkpoints.register(
            self,
            kind,
            Path(src_dir),
            run_id=run_id or self.run_id,
            config_hash=config_hash,
            meta=dict(meta or {}),
            move=move,
        )

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        """Folder of a registered checkpoint (raises when unknown or missing)."""
        return _checkpoints.path_of(self, checkpoint_id)

    def checkpoints(self, kind: str | None = None) -> pa.Table:
        """Rows of the `checkpoints` table (optionally only those of `kind`) plus `present`:
        whether the folder still exists (retention deletes folders, rows stay as history)."""
        return _checkpoints.listing(self, kind)
