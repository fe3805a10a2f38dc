"""DuckDB SQL over the store: one view per table, time travel, a `history` view.

Views are Arrow datasets of the Delta tables (`DeltaTable.to_pyarrow_dataset()`)
registered on an in-memory DuckDB connection, so no DuckDB extension and no network is
needed. SQL never changes the store: the views are read-only and the database is
thrown away with the connection; `Store.write` is the only way to write a table.

`as_of` picks the version of each table:
- None: the latest version of every table.
- {table: version}: those versions; tables not named stay at their latest version.
- a run id: each table the run wrote is at the last version that run wrote; every
  other table is at its last version written at or before the run's last write
  (by `written_at`, the commit timestamp for versions the store did not write);
  tables first written after that are absent. The `lineage` table stays at its latest.
The `history` view always lists every version of every table (except `lineage`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from storage.delta import ordered_dataset
from storage.lineage import VersionInfo, history
from storage.schemas import SCHEMAS
from storage.store import LINEAGE, default_root

log = logging.getLogger(__name__)

AsOf = str | Mapping[str, int] | None

_ST = duckdb.StatementType
# Statement types that only read. SHOW, DESCRIBE, SUMMARIZE and FROM-first queries parse
# as SELECT; EXPLAIN is checked on the statement it explains (EXPLAIN ANALYZE runs it).
_READ_TYPES = frozenset({_ST.SELECT})
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "show",
        "show_tables",
        "show_tables_expanded",
        "database_list",
        "database_size",
        "version",
        "platform",
        "functions",
        "storage_info",
        "metadata_info",
        "collations",
        "user_agent",
    }
)
_EXPLAIN_RE = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+)?(.*)$", re.IGNORECASE | re.DOTALL)
_PRAGMA_RE = re.compile(r"^\s*pragma\s+(\w+)", re.IGNORECASE)

HISTORY_SCHEMA = pa.schema(
    [
        *SCHEMAS[LINEAGE],
        pa.field("mode", pa.string()),
        pa.field("operation", pa.string()),
        pa.field("committed_at", pa.timestamp("us", tz="UTC")),
    ]
)


class WriteRefused(PermissionError):
    """A SQL statement that writes was given without `write=True` (`--write`)."""


# ------------------------------------------------------------------ statement checks
def write_statements(sql: str) -> list[str]:
    """Descriptions ("INSERT: <text>") of the statements in `sql` that are not read-only."""
    found: list[str] = []
    for statement in duckdb.extract_statements(sql):
        kind = _write_kind(statement.type, statement.query)
        if kind is not None:
            found.append(f"{kind}: {statement.query.strip()[:80]}")
    return found


def _write_kind(stype: duckdb.StatementType, query: str) -> str | None:
    """None for a read-only statement, else the name of what makes it a write."""
    if stype in _READ_TYPES:
        return None
    if stype == _ST.EXPLAIN:
        match = _EXPLAIN_RE.match(query)
        if match is None:
            return "EXPLAIN (unrecognised form)"
        inner = duckdb.extract_statements(match.group(1))
        kinds = [_write_kind(s.type, s.query) for s in inner]
        return next((f"EXPLAIN {k}" for k in kinds if k is not None), None)
    if stype == _ST.PRAGMA:
        match = _PRAGMA_RE.match(query)
        name = match.group(1).lower() if match else "?"
        return None if name in _READ_PRAGMAS else f"PRAGMA {name}"
    return stype.name


def check_read_only(sql: str) -> None:
    """Raise WriteRefused naming every write statement in `sql`."""
    writes = write_statements(sql)
    if writes:
        raise WriteRefused(
            "refusing write statement(s) without --write (write=True): "
            + "; ".join(writes)
            + ". SQL never changes the store; --write only allows changes to the throwaway "
            "DuckDB session (e.g. CREATE TEMP TABLE, COPY ... TO a file)."
        )


# ------------------------------------------------------------------ versions
def _table_names(root: Path) -> list[str]:
    base = root / "tables"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if DeltaTable.is_deltatable(str(p)))


def _all_history(root: Path, names: list[str]) -> dict[str, list[VersionInfo]]:
    return {n: history(n, root / "tables" / n) for n in names if n != LINEAGE}


def _written_at(info: VersionInfo) -> datetime:
    return info.lineage.written_at if info.lineage is not None else info.committed_at


def resolve_versions(names: list[str], as_of: AsOf, histories: dict[str, list[VersionInfo]]) -> dict[str, int | None]:
    """Version per table for `as_of` (None = latest); see the module docstring for the rule."""
    if as_of is None:
        return {n: None for n in names}
    if isinstance(as_of, Mapping):
        unknown = sorted(set(as_of) - set(names))
        if unknown:
            raise KeyError(f"as_of names unknown table(s) {unknown}; tables: {names}")
        for name, version in as_of.items():
            known = sorted(v.version for v in histories.get(name, []))
            if known and version not in known:
                raise KeyError(f"as_of {name}={version}: table {name!r} has versions {known[0]}..{known[-1]}")
        return {n: as_of.get(n) for n in names}
    return _versions_for_run(names, str(as_of), histories)


def _versions_for_run(names: list[str], run_id: str, histories: dict[str, list[VersionInfo]]) -> dict[str, int | None]:
    mine = [v for infos in histories.values() for v in infos if v.lineage is not None and v.lineage.run_id == run_id]
    if not mine:
        runs = sorted(
            {
                v.lineage.run_id
                for infos in histories.values()
                for v in infos
                if v.lineage is not None and v.lineage.run_id
            }
        )
        raise KeyError(f"run {run_id!r} wrote no table version; known runs: {runs[-20:]}")
    cutoff = max(v.lineage.written_at for v in mine)  # type: ignore[union-attr]
    chosen: dict[str, int | None] = {LINEAGE: None} if LINEAGE in names else {}
    for name, infos in histories.items():
        own = [v.version for v in infos if v.lineage is not None and v.lineage.run_id == run_id]
        before = [v.version for v in infos if _written_at(v) <= cutoff]
        if own or before:
            chosen[name] = max(own) if own else max(before)
    return chosen


def history_table(histories: dict[str, list[VersionInfo]]) -> pa.Table:
    """One row per table version: lineage columns + write mode, Delta operation, commit time."""
    rows = []
    for name in sorted(histories):
        for info in sorted(histories[name], key=lambda v: v.version):
            rec = info.lineage
            rows.append(
                {
                    "table": name,
                    "version": info.version,
                    "digest": rec.digest if rec else "",
                    "rows": rec.rows if rec else -1,
                    "run_id": rec.run_id if rec else None,
                    "code_version": rec.code_version if rec else None,
                    "config_hash": rec.config_hash if rec else None,
                    "inputs": json.dumps([list(p) for p in rec.inputs]) if rec else None,
                    "written_at": _written_at(info),
                    "mode": info.mode,
                    "operation": info.operation,
                    "committed_at": info.committed_at,
                }
            )
    return pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)


# ------------------------------------------------------------------ connections
def connect(root: str | Path | None = None, *, as_of: AsOf = None, write: bool = False) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB connection with one view per table (see the module docstring).

    With write=False the connection also has no file-system access (no COPY TO, no
    ATTACH, no reading files outside the views) and its settings are locked.
    """
    root = default_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no store at {root} (give --store DIR or set TOOLWEAVER_HOME)")
    names = _table_names(root)
    histories = _all_history(root, names)
    versions = resolve_versions(names, as_of, histories)
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    for name, version in versions.items():
        con.register(name, ordered_dataset(root / "tables" / name, version))
        log.debug("view %s -> version %s", name, "latest" if version is None else version)
    con.register("history", history_table(histories))
    if not write:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def run_sql(root: str | Path | None, sql: str, as_of: AsOf = None, write: bool = False) -> pa.Table:
    """Run `sql` (one or more statements) and return the last statement's result.

    Raises WriteRefused, before running anything, when a statement writes and write=False.
    """
    if not write:
        check_read_only(sql)
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise ValueError("no SQL statement given")
    con = connect(root, as_of=as_of, write=write)
    try:
        for statement in statements[:-1]:
            con.execute(statement.query)
        # con.sql gives the last result as a relation (no DB-API copy); None when it has no rows.
        relation = con.sql(statements[-1].query)
        return pa.table({}) if relation is None else relation.to_arrow_table()
    finally:
        con.close()
