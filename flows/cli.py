"""The `toolweaver` command line: the application's front door.

Each command group lives in its own light module (`flows/cli_*.py`) that imports
heavy libraries (torch, prefect, deltalake) only inside the command body, so that
`toolweaver --help` and `toolweaver sql` start fast.
"""

from __future__ import annotations

import typer

from flows import (
    cli_agent,
    cli_align,
    cli_eval,
    cli_finetune,
    cli_format,
    cli_ingest,
    cli_run,
    cli_store,
    cli_tokenize,
)

app = typer.Typer(
    name="toolweaver",
    help="ToolWeaver: structured tool codes for generative tool retrieval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMANDS = (cli_store, cli_ingest, cli_eval, cli_run, cli_align, cli_tokenize, cli_finetune, cli_format, cli_agent)
for _module in _COMMANDS:
    _module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
