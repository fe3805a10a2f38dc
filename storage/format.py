"""The store's format version: recorded at the root, checked (and upgraded) on open.

`<root>/toolweaver-store.json` holds `{"format_version": N, "created_by": ..., "upgrades":
[...]}`. Opening a store (`Store(...)` calls `open_format`):

- an empty root becomes a store of the current format (`FORMAT_VERSION`);
- a store of an older format is migrated in place, one step at a time, under the
  `format` writer lock (every step is additive and idempotent, so a crash mid-way is
  repaired by the next open); the step and the code that ran it are appended to
  `upgrades`. `toolweaver upgrade-store` runs the same thing explicitly;
- a store of a newer format is refused with `StoreFormatError`, naming both versions
  and what to do: nothing is read or written.

Formats:

1. the releases before the marker existed: `tables/<name>/` Delta tables, no
   `toolweaver-store.json`, no `tool_events` table.
2. + the marker, + `tool_events` (tool lifecycle). The 1 -> 2 step records every tool of
   the `tools` table as `added` (reason "present at the upgrade to format 2"), so every
   active tool has a lifecycle history and later retirements are rows like any other.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
from deltalake import DeltaTable

from storage.lineage import code_version
from storage.locks import file_lock
from storage.schemas import SCHEMAS

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 2
MARKER: Final = "toolweaver-store.json"
LEGACY_VERSION: Final = 1  # a store with tables but no marker
UPGRADE_COMMAND: Final = "toolweaver upgrade-store --store {root}"


class StoreFormatError(RuntimeError):
    """The store's format cannot be opened by this code (newer, or unreadable marker)."""


def marker_path(root: Path) -> Path:
    return root / MARKER


def read_format(root: Path) -> int | None:
    """The recorded format version; LEGACY_VERSION for a marker-less store with tables;
    None for an empty root (not a store yet)."""
    path = marker_path(root)
    if not path.exists():
        return LEGACY_VERSION if _has_tables(root) else None
    try:
        version = json.loads(path.read_text(encoding="utf-8"))["format_version"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StoreFormatError(f"{path}: unreadable store format marker ({err}); restore it from a backup") from err
    if not isinstance(version, int) or version < 1:
        raise StoreFormatError(f"{path}: format_version must be a positive integer, got {version!r}")
    return version


def _has_tables(root: Path) -> bool:
    tables = root / "tables"
    return tables.is_dir() and any(DeltaTable.is_deltatable(str(p)) for p in tables.iterdir())


def open_format(store: Store) -> int:
    """Check the store's format on open: create, migrate or refuse (see the module docstring)."""
    version = read_format(store.root)
    if version == FORMAT_VERSION:
        return version
    _refuse_newer(store.root, version)
    with file_lock(store.root / ".locks" / "format.lock"):
        version = read_format(store.root)  # another process may have done it meanwhile
        if version is None:
            _write_marker(store.root, {"format_version": FORMAT_VERSION, "created_by": code_version(), "upgrades": []})
            return FORMAT_VERSION
        while version < FORMAT_VERSION:
            try:
                version = _upgrade_step(store, version)
            except OSError as err:  # e.g. a read-only mount: say how to upgrade it, never half-open it
                raise StoreFormatError(
                    f"store {store.root} has format {version} and could not be upgraded to {FORMAT_VERSION} ({err}); "
                    f"run `{UPGRADE_COMMAND.format(root=store.root)}` with write access"
                ) from err
    return version


def upgrade(store: Store) -> int:
    """`toolweaver upgrade-store`: the version the store is at after opening it (opening migrates)."""
    return open_format(store)


def _refuse_newer(root: Path, version: int | None) -> None:
    if version is not None and version > FORMAT_VERSION:
        raise StoreFormatError(
            f"store {root} has format {version}, newer than the format {FORMAT_VERSION} this toolweaver "
            f"({code_version()}) reads: upgrade toolweaver, or open the store with the release that wrote it "
            f"(see {marker_path(root)}); nothing was read or written"
        )


def _upgrade_step(store: Store, version: int) -> int:
    step = MIGRATIONS.get(version)
    if step is None:
        raise StoreFormatError(f"store {store.root}: no migration from format {version} to {version + 1}")
    log.warning("store %s: upgrading format %d -> %d", store.root, version, version + 1)
    step(store)
    marker = _read_marker(store.root)
    marker["format_version"] = version + 1
    upgrades = marker.setdefault("upgrades", [])
    upgrades.append({"from": version, "to": version + 1, "by": code_version(), "at": datetime.now(UTC).isoformat()})
    _write_marker(store.root, marker)
    return version + 1


def _read_marker(root: Path) -> dict[str, Any]:
    path = marker_path(root)
    if not path.exists():
        return {"created_by": f"format {LEGACY_VERSION} (before the marker)"}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _write_marker(root: Path, marker: dict[str, Any]) -> None:
    """Replace the marker atomically (a reader never sees half a file)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, marker_path(root))


# ---------------------------------------------------------------- migrations


def _tool_events_from_tools(store: Store) -> None:
    """1 -> 2: every current tool gets an `added` event (skipped when `tool_events` exists:
    a crashed earlier upgrade already wrote it)."""
    if store.exists("tool_events") or not store.exists("tools"):
        return
    tools = store.read("tools", columns=["tool_id", "doc_hash", "source"]).to_pylist()
    now = datetime.now(UTC)
    rows = [
        {
            "tool_id": t["tool_id"],
            "event": "added",
            "source": t["source"],
            "old_doc_hash": None,
            "new_doc_hash": t["doc_hash"],
            "reason": f"present at the upgrade to format {LEGACY_VERSION + 1}",
            "ingested_path": None,
            "run_id": store.run_id,
            "recorded_at": now,
        }
        for t in tools
    ]
    schema = SCHEMAS["tool_events"]
    store.write("tool_events", pa.Table.from_pylist(rows, schema=schema), inputs=[store.latest("tools")])  # type: ignore[list-item]


MIGRATIONS: dict[int, Callable[[Store], None]] = {1: _tool_events_from_tools}
