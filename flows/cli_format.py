"""`toolweaver upgrade-store`: bring a store to the current format and show its history.

Opening a store already migrates an older format (storage/format.py); this command does
it explicitly (e.g. before a read-only deployment) and prints the format and upgrades.
A store of a newer format is refused with exit code 2.
"""

from __future__ import annotations

import typer

from flows.cli_common import FormatOpt, OutputFormat, StoreOpt, emit, fail, resolve_store, setup_logging

EXIT_NEWER_FORMAT = 2


def upgrade_store(store: StoreOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Upgrade the store to the current format version (a no-op when it is current)."""
    setup_logging()
    import json

    import pyarrow as pa

    from storage import Store
    from storage.format import FORMAT_VERSION, StoreFormatError, marker_path

    root = resolve_store(store)
    if not root.is_dir():
        raise fail(f"no store at {root} (give --store DIR or set TOOLWEAVER_HOME)")
    try:
        opened = Store(root)
    except StoreFormatError as err:
        raise fail(str(err), EXIT_NEWER_FORMAT) from err
    marker = json.loads(marker_path(opened.root).read_text(encoding="utf-8"))
    rows = [("format_version", str(opened.format_version)), ("current_format", str(FORMAT_VERSION))]
    rows += [("created_by", str(marker.get("created_by", "")))]
    rows += [(f"upgrade {u['from']}->{u['to']}", f"{u['at']} by {u['by']}") for u in marker.get("upgrades", [])]
    keys, values = zip(*rows, strict=True)
    emit(pa.table({"key": list(keys), "value": list(values)}), fmt)


def register(app: typer.Typer) -> None:
    """Add `toolweaver upgrade-store`."""
    app.command("upgrade-store")(upgrade_store)
