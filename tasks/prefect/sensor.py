"""The catalog sensor: hash the watched tool sources and emit `toolweaver.catalog.changed`
when their content changed (the `on-catalog-change` deployment rebuilds on it). The event
says which tools the rebuild will add, change (re-embed) and retire (a dry-run ingest)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from tasks.digests import content_digest
from tasks.prefect.plan import resolve_source, resolve_store
from tasks.prefect.profiles import Profile
from tasks.prefect.results import SourceSpec
from tasks.stages.lifecycle import changes_payload
from toolweaver.ingest.lifecycle import CatalogChanges

logger = logging.getLogger(__name__)

CATALOG_EVENT = "toolweaver.catalog.changed"


class CatalogState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    previous: str | None
    changed: bool
    # When changed: {"counts": {added, changed, retired}, "added": [ids], ...} (first ids only)
    changes: dict[str, Any] | None = None


def catalog_key(sources: Sequence[SourceSpec], store: str | None = None) -> str:
    """A stable name for a set of watched sources feeding one store (a Prefect Variable
    name: [a-z0-9_-])."""
    ident = "\n".join(sorted(f"{s.source}\0{resolve_source(s).path}" for s in sources))
    ident += f"\n{resolve_store(store)}"
    return "toolweaver-catalog-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


@task(name="catalog-digest", cache_policy=NO_CACHE, persist_result=False)
def catalog_digest(sources: tuple[SourceSpec, ...]) -> str:
    """Content digest of every watched source, in a stable order."""
    parts = sorted(f"{s.source}\0{content_digest(resolve_source(s).path)}" for s in sources)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@task(name="emit-if-changed", cache_policy=NO_CACHE, persist_result=False)
def emit_if_changed(
    sources: tuple[SourceSpec, ...],
    digest: str,
    profile: Literal["quick", "full", "auto"] | Profile = "auto",
    store: str | None = None,
) -> CatalogState:
    """Emit `toolweaver.catalog.changed` when the digest differs from the last one seen.

    The last digest lives in a Prefect Variable named after the watched sources, so
    the sensor is stateless between runs. The payload carries the digest, the resolved
    sources, the build profile and the store: the `on-catalog-change` trigger rebuilds
    with them. The first observation counts as a change: the rebuild it triggers is all
    cache hits when a build already ran on this data.
    """
    from prefect.events import emit_event
    from prefect.variables import Variable

    key = catalog_key(sources, store)
    previous = Variable.get(key, default=None)
    changed = previous != digest
    changes = None
    if changed:
        changes = changes_payload(catalog_changes(sources, profile, store))
        event = emit_event(
            event=CATALOG_EVENT,
            resource={"prefect.resource.id": f"toolweaver.catalog.{key}", "prefect.resource.name": key},
            payload={
                "digest": digest,
                "previous": previous,
                "sources": [
                    {"source": r.source, "path": str(r.path), "snapshot": r.snapshot}
                    for r in map(resolve_source, sources)
                ],
                # What the rebuild will do to the catalog: tools added, re-embedded, retired.
                "changes": changes,
                "profile": profile.model_dump(mode="json") if isinstance(profile, Profile) else profile,
                # Resolved here (the sensor's $TOOLWEAVER_HOME): the rebuild writes where the sensor looked.
                "store": resolve_store(store),
            },
        )
        if event is None:
            raise RuntimeError(f"could not emit {CATALOG_EVENT}: no Prefect events client is configured")
        Variable.set(key, digest, overwrite=True)
        logger.info(
            "catalog %s changed: %s -> %s, tools %s (event %s)", key, previous, digest, changes["counts"], event.id
        )
    else:
        logger.info("catalog %s unchanged (%s)", key, digest)
    return CatalogState(digest=digest, previous=previous, changed=changed, changes=changes)


def catalog_changes(
    sources: Sequence[SourceSpec], profile: Literal["quick", "full", "auto"] | Profile, store: str | None
) -> CatalogChanges:
    """The tools an ingest of `sources` would add, change and retire in the store (a dry
    run over the same files the build ingests: BFCL cut to the profile's subset)."""
    from storage import Store
    from tasks.prefect.adapters import _profile_cut
    from tasks.prefect.profiles import resolve_profile
    from tasks.stages.catalog_preview import preview_changes

    root = resolve_store(store)
    subset = (profile if isinstance(profile, Profile) else resolve_profile(profile)).bfcl_subset
    resolved = [resolve_source(s) for s in sources]
    return preview_changes(Store(root), [(s.source, _profile_cut(root, s, subset), s.snapshot) for s in resolved])
