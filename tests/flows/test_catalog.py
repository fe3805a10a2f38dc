"""The `watch-catalog` sensor: digest by content, event only when the digest changes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.flows.conftest import edit_first_description

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _catalog_events(key: str, expected: int) -> list[dict]:
    """`toolweaver.catalog.changed` events of one catalog, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        events: list[dict] = []
        for _ in range(100):  # the server persists events asynchronously
            response = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"name": ["toolweaver.catalog.changed"]},
                        "any_resource": {"id": [f"toolweaver.catalog.{key}"]},
                    },
                    "limit": 50,
                },
            )
            events = response.json()["events"]
            if len(events) >= expected:
                break
            time.sleep(0.2)
    return events


def test_watch_catalog_emits_only_when_content_changes(bfcl_subset: Path) -> None:
    from flows.catalog import watch_catalog
    from tasks.prefect.results import SourceSpec
    from tasks.prefect.sensor import catalog_key

    sources = (SourceSpec(source="bfcl", path=bfcl_subset),)
    first = watch_catalog(sources)
    assert first.changed and first.previous is None
    again = watch_catalog(sources)
    assert not again.changed and again.digest == first.digest

    edit_first_description(bfcl_subset)
    changed = watch_catalog(sources)
    assert changed.changed and changed.previous == first.digest and changed.digest != first.digest

    events = _catalog_events(catalog_key(sources, None), expected=2)
    digests = sorted(e["payload"]["digest"] for e in events)
    assert digests == sorted([first.digest, changed.digest])
