"""`toolweaver sql` and `toolweaver tables` (owned by the storage work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
