"""Rebuild flows: the `watch-catalog` sensor and the `rebuild` flow it triggers.

`watch-catalog` (scheduled) hashes the watched `{source, path}` tool sources by
content and emits the Prefect event `toolweaver.catalog.changed` only when the digest
changed since its last run; its payload carries the new digest and the catalog changes a
rebuild will make (tools added, changed, retired: a dry-run ingest against the store). The `on-catalog-change`
deployment of `rebuild` is triggered by that event; `nightly-rebuild` runs it on a
cron schedule. Because every stage is cached on content digests, a rebuild over an
unchanged catalog is all `Cached` and writes no table version.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from flows.build import build
from tasks.prefect.plan import BuildConfig, BuildResult
from tasks.prefect.profiles import Profile
from tasks.prefect.results import SourceSpec
from tasks.prefect.sensor import CatalogState, catalog_digest, emit_if_changed


@flow(name="watch-catalog")
def watch_catalog(
    sources: tuple[SourceSpec, ...] = (SourceSpec(source="bfcl"),),
    profile: Literal["quick", "full", "auto"] | Profile = "auto",
    store: str | None = None,
) -> CatalogState:
    """Emit `toolweaver.catalog.changed` when `sources` changed; `profile` and `store`
    (None = $TOOLWEAVER_HOME or ./artifacts) ride along for the rebuild."""
    digest = catalog_digest(sources)
    return emit_if_changed(sources, digest, profile, store)


@flow(name="rebuild", flow_run_name="rebuild-catalog-{digest}")
def rebuild(
    config: BuildConfig = BuildConfig(),  # noqa: B008
    digest: str | None = None,
    changes: dict[str, Any] | None = None,
) -> BuildResult:
    """Rebuild after a catalog change (`digest` = the event's new catalog digest and
    `changes` = the tools it said would be added, changed and retired, for the record;
    the ingest stage's facts `tools_added` / `tools_changed` / `tools_retired` say what
    the rebuild actually did)."""
    if changes is not None:
        get_run_logger().info("catalog changes announced by the event: %s", changes.get("counts"))
    return build(config)
