"""`toolweaver sql` and `toolweaver tables` (owned by the storage work).

deltalake, duckdb and pyarrow are imported inside the command bodies so that
`toolweaver --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli_common import FormatOpt, OutputFormat, StoreOpt, emit, fail, resolve_store, setup_logging

AsOfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--as-of",
        help="A run id (each table as that run left it), or TABLE=VERSION (repeatable).",
    ),
]


def parse_as_of(values: list[str] | None) -> str | dict[str, int] | None:
    """`--as-of` values -> None, a run id, or {table: version}."""
    if not values:
        return None
    pairs = [v for v in values if "=" in v]
    if not pairs:
        if len(values) > 1:
            raise ValueError(f"--as-of takes one run id, got {values}")
        return values[0]
    if len(pairs) != len(values):
        raise ValueError(f"--as-of mixes a run id with TABLE=VERSION pairs: {values}")
    versions: dict[str, int] = {}
    for pair in pairs:
        table, _, version = pair.partition("=")
        if not table or not version.strip().isdigit():
            raise ValueError(f"--as-of {pair!r}: expected TABLE=VERSION with an integer version")
        if table in versions:
            raise ValueError(f"--as-of names table {table!r} twice")
        versions[table] = int(version)
    return versions


def sql(
    query: Annotated[str, typer.Argument(help="SQL (DuckDB dialect); views: one per table + history.")],
    store: StoreOpt = None,
    fmt: FormatOpt = OutputFormat.table,
    as_of: AsOfOpt = None,
    write: Annotated[
        bool, typer.Option("--write", help="Allow statements that write (to the throwaway DuckDB session).")
    ] = False,
) -> None:
    """Run SQL over the store's tables (read-only unless --write)."""
    setup_logging()
    import duckdb

    from storage.sql import WriteRefused, run_sql

    try:
        result = run_sql(resolve_store(store), query, as_of=parse_as_of(as_of), write=write)
    except (WriteRefused, FileNotFoundError, KeyError, ValueError, duckdb.Error) as exc:
        # Message only (no traceback): these are the user's SQL or options, not a bug.
        raise fail(str(exc).strip("\"'")) from exc
    emit(result, fmt)


def tables(store: StoreOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """List the store's tables with their latest version and row count."""
    setup_logging()
    import pyarrow as pa

    from storage.store import Store

    root = resolve_store(store)
    if not root.is_dir():
        raise fail(f"no store at {root} (give --store DIR or set TOOLWEAVER_HOME)")
    refs = Store(root).tables()
    emit(
        pa.table(
            {
                "table": pa.array([r.table for r in refs], pa.string()),
                "version": pa.array([r.version for r in refs], pa.int64()),
                "rows": pa.array([r.rows for r in refs], pa.int64()),
            }
        ),
        fmt,
    )


def vacuum(
    store: StoreOpt = None,
    keep_checkpoints: Annotated[
        int, typer.Option("--keep-checkpoints", min=1, help="Checkpoint folders kept per kind and stage (newest).")
    ] = 2,
    keep_versions: Annotated[
        int, typer.Option("--keep-versions", min=1, help="Newest versions of every table kept readable.")
    ] = 1,
    retention_hours: Annotated[
        float,
        typer.Option("--retention-hours", min=0, help="Keep files of superseded versions this long (0: delete now)."),
    ] = 168.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be deleted.")] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Prune old checkpoints and delete Delta files of old versions, keeping every version lineage marks in use."""
    setup_logging()
    import pyarrow as pa

    from storage.store import Store
    from tasks.stages.retention import RetentionConfig, retain

    root = resolve_store(store)
    if not root.is_dir():
        raise fail(f"no store at {root} (give --store DIR or set TOOLWEAVER_HOME)")
    config = RetentionConfig(
        keep_checkpoints=keep_checkpoints, keep_versions=keep_versions, retention_hours=retention_hours
    )
    report = retain(Store(root), config, dry_run=dry_run)
    pruned = report.pruned_checkpoints
    verb = "would prune" if dry_run else "pruned"
    typer.echo(f"{verb} {len(pruned)} checkpoint(s){': ' + ', '.join(pruned) if pruned else ''}", err=True)
    reports = report.tables
    emit(
        pa.table(
            {
                "table": pa.array([r.table for r in reports], pa.string()),
                "versions": pa.array([r.versions for r in reports], pa.int64()),
                "kept_versions": pa.array([",".join(map(str, r.kept_versions)) for r in reports], pa.string()),
                "deleted_files": pa.array([r.deleted_files for r in reports], pa.int64()),
                "deleted_bytes": pa.array([r.deleted_bytes for r in reports], pa.int64()),
            }
        ),
        fmt,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("sql")(sql)
    app.command("tables")(tables)
    app.command("vacuum")(vacuum)
