"""Shared pieces of the `toolweaver` subcommands: the `--store` and `--format` options,
logging to stderr, result printing. Light on purpose: pyarrow is imported only when a
result is printed.

Usage in a command module:

    from flows.cli_common import FormatOpt, StoreOpt, emit, resolve_store, setup_logging

    def my_command(store: StoreOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
        setup_logging()
        root = resolve_store(store)
        ...
        emit(result_table, fmt)
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import enum
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pyarrow as pa

_MAX_CELL_CHARS = 60  # table format only; csv and json print values whole


class OutputFormat(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Artifact store folder (default: $TOOLWEAVER_HOME, else ./artifacts).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (aligned text), csv, or json (only a JSON array on stdout)."),
]


def resolve_store(store: Path | None) -> Path:
    """--store, else $TOOLWEAVER_HOME, else ./artifacts (`storage.default_root`)."""
    from storage import default_root

    return default_root(store)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time.

    A handler that captured `sys.stderr` once keeps writing to a closed stream after
    the stream is swapped (test runners, CliRunner), which turns every later log call
    in the process into a 'Logging error'.
    """

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# Our own loggers; third-party loggers (httpx, prefect's client) keep their levels.
_PROJECT_LOGGERS = ("toolweaver", "tasks", "storage", "flows")


def setup_logging(level: int = logging.INFO) -> None:
    """Send our log records to stderr, so stdout carries only results."""
    root = logging.getLogger()
    if not any(getattr(h, "_toolweaver_cli", False) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._toolweaver_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name in _PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` on stderr and return the Exit to raise (`raise fail(...)`)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def json_value(value: Any) -> Any:
    """JSON-compatible form of one Arrow/Python value (for json and csv output)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON: print null so every JSON parser accepts the output
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def format_rows(table: pa.Table, fmt: OutputFormat) -> str:
    """Text of `table` in `fmt` (json: a JSON array of row objects)."""
    rows = [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]
    if fmt == OutputFormat.json:
        return json.dumps(rows, ensure_ascii=False, allow_nan=False)
    if fmt == OutputFormat.csv:
        return _csv(table.column_names, rows)
    return _aligned(table.column_names, rows)


def emit(table: pa.Table, fmt: OutputFormat) -> None:
    """Print `table` on stdout in `fmt`."""
    typer.echo(format_rows(table, fmt))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _csv(names: list[str], rows: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row[n]) for n in names])
    return buf.getvalue().rstrip("\n")


def _aligned(names: list[str], rows: list[dict[str, Any]]) -> str:
    def short(text: str) -> str:
        text = text.replace("\n", " ")
        return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"

    cells = [[short(_cell(row[n])) for n in names] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
