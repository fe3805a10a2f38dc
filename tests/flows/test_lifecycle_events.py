"""The watched-catalog event and the rebuild's ingest carry the catalog changes: tools
added, changed (re-embedded) and retired."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.lifecycle_catalog import operation_ids, tool_id, write_spec
from tests.flows.test_catalog import _catalog_events

pytestmark = pytest.mark.usefixtures("prefect_harness")

OPS = operation_ids(12)


def test_event_and_ingest_facts_carry_added_changed_retired(tmp_path: Path) -> None:
    from flows.catalog import watch_catalog
    from tasks.prefect.adapters import ingest
    from tasks.prefect.results import SourceSpec
    from tasks.prefect.sensor import catalog_key

    spec = write_spec(tmp_path / "catalog" / "acme.json", OPS[:10])
    store = str(tmp_path / "store")
    sources = (SourceSpec(source="openapi", path=spec, snapshot=True),)
    first = watch_catalog(sources, store=store)
    assert first.changes is not None and first.changes["counts"] == {"added": 10, "changed": 0, "retired": 0}
    built = ingest(store, sources, None)
    assert (built.facts["tools_added"], built.facts["tools_retired"]) == (10, 0)

    write_spec(spec, [*OPS[:8], *OPS[10:]], edited=OPS[:2])  # 2 edited, 2 removed, 2 added
    second = watch_catalog(sources, store=store)
    expected = {"added": 2, "changed": 2, "retired": 2}
    assert second.changed and second.changes["counts"] == expected
    assert second.changes["retired"] == [tool_id(op) for op in sorted(OPS[8:10])]
    assert second.changes["changed"] == sorted(tool_id(op) for op in OPS[:2])
    rebuilt = ingest(store, sources, None)  # what the triggered rebuild's ingest stage reports
    assert {k: rebuilt.facts[f"tools_{k}"] for k in expected} == expected
    assert "tool_events" in {t.table for t in rebuilt.tables}

    events = _catalog_events(catalog_key(sources, store), expected=2)
    payloads = sorted((e["payload"] for e in events), key=lambda p: p["changes"]["counts"]["added"])
    assert [p["changes"]["counts"] for p in payloads] == [expected, first.changes["counts"]]
    assert payloads[0]["sources"][0]["snapshot"] is True
