"""The update set after catalog changes (fast, no training): tools whose doc changed since
the previous model are taught again (their memorization example included) and keep their
codes; retired tools are not taught and are counted; a retired new tool is not new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from storage import Store
from tasks.stages.lifecycle import TOOL_EVENTS_SCHEMA
from tasks.stages.update import (
    SFT_UPDATE,
    UpdateConfig,
    changed_tool_codes,
    new_tool_codes,
    previous_model,
    retired_since_model,
    write_update_examples,
)
from tests.flows.test_update_examples import _codes, _examples, _model


def events(store: Store, rows: list[tuple[str, str, datetime]]) -> None:
    data = [
        {
            "tool_id": tool,
            "event": event,
            "source": "openapi",
            "old_doc_hash": "old" if event != "added" else None,
            "new_doc_hash": "new" if event != "retired" else None,
            "reason": "test",
            "ingested_path": None,
            "run_id": None,
            "recorded_at": at,
        }
        for tool, event, at in rows
    ]
    store.write("tool_events", pa.Table.from_pylist(data, schema=TOOL_EVENTS_SCHEMA), mode="append")


def test_changed_tools_are_taught_again_and_retired_ones_are_not(store_dir: Path, tmp_path: Path) -> None:
    store = Store(store_dir)
    _codes(store, 8)
    _examples(store, 8)
    _model(store, tmp_path)
    previous = previous_model(store, "memorization", "tiny")
    assert previous is not None and previous.created_at is not None
    before, after = previous.created_at - timedelta(minutes=1), datetime.now(UTC) + timedelta(seconds=1)
    _codes(store, 12)  # t8..t11 added since the model
    _examples(store, 12)
    events(
        store,
        [
            ("t0", "changed", before),  # edited before the model was trained: already known
            ("t1", "changed", after),
            ("t2", "changed", after),
            ("t3", "retired", after),
            ("t2", "retired", after + timedelta(seconds=1)),  # edited, then retired
            ("t9", "retired", after),  # added, then retired before any model knew it
        ],
    )
    assert changed_tool_codes(store, previous) == {"t1": "<a_0><b_1>"}
    assert retired_since_model(store, previous) == {"t2", "t3"}
    assert set(new_tool_codes(store, previous.known_tools)) == {"t8", "t10", "t11"}

    teach = new_tool_codes(store, previous.known_tools) | changed_tool_codes(store, previous)
    ref, counts = write_update_examples(store, teach, UpdateConfig(replay_ratio=0.0))
    assert counts["memorization.new"] == 4
    ids = set(store.read(SFT_UPDATE, version=ref.version).column("example_id").to_pylist())
    assert "memorization/t1" in ids and "memorization/t3" not in ids and "memorization/t2" not in ids
