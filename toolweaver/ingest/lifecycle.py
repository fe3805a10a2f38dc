"""How a catalog changed between two ingests: tools added, changed, retired.

`catalog_changes(before, after)` compares the `tools` rows before and after one ingest
(the merged, one-row-per-tool catalog), by tool_id and doc_hash:

- added: a tool_id only in `after`;
- changed: in both, with another `doc_hash` (its documentation was edited, or another
  source's doc now wins the merge): it is re-embedded and keeps its code;
- retired: a tool_id only in `before` (its source no longer documents it): it leaves
  the decoding trie and every candidate set, and its code is never given to another tool.

Pure: the store side (the `tool_events` table) is `tasks/stages/lifecycle.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from toolweaver.ingest.records import ToolRecord

ADDED = "added"
CHANGED = "changed"
RETIRED = "retired"
RESTORED = "restored"  # added again after a retirement (its old code comes back with it)
EVENTS = (ADDED, CHANGED, RETIRED, RESTORED)


@dataclass(frozen=True, slots=True)
class ToolChange:
    """One tool's change: `old` / `new` are its `tools` rows (None when absent)."""

    tool_id: str
    old: ToolRecord | None
    new: ToolRecord | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return ADDED
        return RETIRED if self.new is None else CHANGED


@dataclass(frozen=True)
class CatalogChanges:
    """Every change of one ingest, each list sorted by tool_id."""

    added: list[ToolChange] = field(default_factory=list)
    changed: list[ToolChange] = field(default_factory=list)
    retired: list[ToolChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.retired)

    def counts(self) -> dict[str, int]:
        return {ADDED: len(self.added), CHANGED: len(self.changed), RETIRED: len(self.retired)}

    def all(self) -> list[ToolChange]:
        return sorted([*self.added, *self.changed, *self.retired], key=lambda c: c.tool_id)


def catalog_changes(before: Iterable[ToolRecord], after: Iterable[ToolRecord]) -> CatalogChanges:
    """The tools added, changed (other doc_hash) and retired between two `tools` contents."""
    old = {t.tool_id: t for t in before}
    new = {t.tool_id: t for t in after}
    changes = CatalogChanges()
    for tool_id in sorted(old.keys() | new.keys()):
        change = ToolChange(tool_id, old.get(tool_id), new.get(tool_id))
        if change.kind == ADDED:
            changes.added.append(change)
        elif change.kind == RETIRED:
            changes.retired.append(change)
        elif change.old.doc_hash != change.new.doc_hash:  # type: ignore[union-attr]
            changes.changed.append(change)
    return changes
