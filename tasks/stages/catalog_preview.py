"""What ingesting some sources would change in a store's catalog, without writing anything.

The catalog sensor calls this when the watched files changed, so that the
`toolweaver.catalog.changed` event says which tools a rebuild will add, re-embed
(changed docs) and retire, before the rebuild runs. Each source is parsed and merged
exactly as `tasks.stages.ingest.ingest` would, in order, on an in-memory copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from storage import Store
from tasks.stages.ingest import _merge_with_store, _read_stored
from toolweaver.ingest import parse_source
from toolweaver.ingest.lifecycle import CatalogChanges, catalog_changes


def preview_changes(store: Store, sources: Sequence[tuple[str, Path | None, bool]]) -> CatalogChanges:
    """The catalog changes of ingesting `(source, path, snapshot)`s one after the other."""
    stored = _read_stored(store)
    before = stored["tools"]
    for source, path, snapshot in sources:
        result = parse_source(source, path, [(t.tool_name, t.api_name) for t in stored["tools"]])
        stored, _, _ = _merge_with_store(stored, result, snapshot=snapshot)
    return catalog_changes(before, stored["tools"])
