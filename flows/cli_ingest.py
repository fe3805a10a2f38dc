"""`toolweaver ingest --source S --path P [--store DIR] [--strict] [--snapshot]`.

Prints a summary (rows per table after the ingest, parser counters, quarantined
records per reason, tools added / changed / retired) on stdout; logs go to stderr.
`--strict` turns any quarantined record into an error: nothing is written and the exit
code is 2. `--snapshot` says the path is the source's whole catalog: its tools missing
from it are retired (see docs/byo-tools.md).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_common import FormatOpt, OutputFormat, StoreOpt, emit, fail, resolve_store, setup_logging


class Source(enum.StrEnum):
    toolbench = "toolbench"
    stabletoolbench = "stabletoolbench"
    beir = "beir"
    bfcl = "bfcl"
    toolgen = "toolgen"
    openai_tools = "openai-tools"
    openapi = "openapi"
    mcp = "mcp"


EXIT_QUARANTINE = 2


def ingest(
    source: Annotated[Source, typer.Option("--source", help="Which dataset format the path holds.")],
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", help="File, folder or .tar.gz of the source (bfcl: default = the installed bfcl-eval data)."
        ),
    ] = None,
    store: StoreOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 2, nothing written) if any record is quarantined.")
    ] = False,
    snapshot: Annotated[
        bool,
        typer.Option(
            "--snapshot",
            help="The path is the source's whole catalog: every tool of the source it lacks is retired "
            "(default: only tools of the files read are replaced).",
        ),
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Parse a tool-use dataset or tool catalog and merge it into the tools/queries/qrels/trajectories tables."""
    setup_logging()
    import pyarrow as pa

    from storage import Store
    from tasks.stages.ingest import QuarantineError
    from tasks.stages.ingest import ingest as run_ingest

    if path is None and source != Source.bfcl:
        raise fail(f"--source {source.value} needs --path")
    if path is not None and not path.exists():
        raise fail(f"--path {path} does not exist")
    try:
        summary = run_ingest(Store(resolve_store(store)), source.value, path, strict=strict, snapshot=snapshot)
    except QuarantineError as err:
        raise fail(str(err), EXIT_QUARANTINE) from err
    rows = [("table rows", t, n) for t, n in summary["tables"].items()]
    rows += [("parsed", k, v) for k, v in summary["parsed"].items()]
    rows += [("parser", k, v) for k, v in summary["stats"].items()]
    rows += [("quarantined", reason, n) for reason, n in summary["quarantine"].items()]
    rows.append(("quarantined", "total", sum(summary["quarantine"].values())))
    rows += [("tools", kind, n) for kind, n in summary["lifecycle"]["counts"].items()]
    kinds, names, counts = zip(*rows, strict=True)
    emit(pa.table({"kind": list(kinds), "name": list(names), "count": pa.array(counts, pa.int64())}), fmt)


def register(app: typer.Typer) -> None:
    """Add `toolweaver ingest`."""
    app.command("ingest")(ingest)
