"""Fixtures of the fault-injection suite: small real sources (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import sources


@pytest.fixture(scope="session")
def small_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """source name -> path of four small disjoint sources (seconds per ingest)."""
    if not sources.SHARED.is_dir():
        pytest.skip(f"real data folder {sources.SHARED} is absent (see README: Data)")
    base = tmp_path_factory.mktemp("sources")
    return {
        "beir": sources.beir_source(base),
        "stabletoolbench": sources.stabletoolbench_source(base),
        "toolbench": sources.SHARED / "toolbench" / "data_example" / "instruction",
        "toolgen": sources.toolgen_source(base),
    }


@pytest.fixture(scope="session")
def serial_reference(tmp_path_factory: pytest.TempPathFactory, small_sources: dict[str, Path]):
    """tables(order): the data tables after ingesting `order` one after another (cached)."""
    cache: dict[tuple[str, ...], dict] = {}

    def tables(order: tuple[str, ...]) -> dict:
        if order not in cache:
            store = tmp_path_factory.mktemp("serial")
            for source in order:
                sources.run(sources.ingest_argv(store, source, small_sources[source]))
            cache[order] = sources.data_tables(store)
        return cache[order]

    return tables
