"""The catalog sensor: hash the watched tool sources and emit `toolweaver.catalog.changed`
when their content changed (the `on-catalog-change` deployment rebuilds on it)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from tasks.digests import content_digest
from tasks.prefect.plan import resolve_source, resolve_store
from tasks.prefect.profiles import Profile
from tasks.prefect.results import SourceSpec

logger = logging.getLogger(__name__)

CATALOG_EVENT = "toolweaver.catalog.changed"


class CatalogState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    previous: str | None
    changed: bool


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
    if changed:
        event = emit_event(
            event=CATALOG_EVENT,
            resource={"prefect.resource.id": f"toolweaver.catalog.{key}", "prefect.resource.name": key},
            payload={
                "digest": digest,
                "previous": previous,
                "sources": [{"source": r.source, "path": str(r.path)} for r in map(resolve_source, sources)],
                "profile": profile.model_dump(mode="json") if isinstance(profile, Profile) else profile,
                # Resolved here (the sensor's $TOOLWEAVER_HOME): the rebuild writes where the sensor looked.
                "store": resolve_store(store),
            },
        )
        if event is None:
            raise RuntimeError(f"could not emit {CATALOG_EVENT}: no Prefect events client is configured")
        Variable.set(key, digest, overwrite=True)
        logger.info("catalog %s changed: %s -> %s (event %s)", key, previous, digest, event.id)
    else:
        logger.info("catalog %s unchanged (%s)", key, digest)
    return CatalogState(digest=digest, previous=previous, changed=changed)
