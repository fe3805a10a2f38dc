"""Retention of a store: prune old checkpoints, vacuum old Delta files (storage.retention).

The store layer decides what is in use from lineage; this layer adds what only the
pipeline knows: the code model (rqvae checkpoint) that placed the current codes must
survive however many code models were trained since, or new tools could not be placed.
Used by the `toolweaver vacuum` command and the flows' `retention` parameter.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from storage import Store
from storage.retention import VacuumReport, prune_checkpoints, vacuum

logger = logging.getLogger(__name__)


class RetentionConfig(BaseModel):
    """How much history a store keeps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_checkpoints: int = Field(
        default=2, ge=1, description="checkpoint folders kept per kind and stage (newest first)"
    )
    keep_versions: int = Field(
        default=1, ge=1, description="newest versions of every table kept readable (besides those lineage marks in use)"
    )
    retention_hours: float = Field(
        default=168.0,
        ge=0,
        description="files of superseded versions are kept this long (time for open readers); 0 = delete now",
    )


class TableVacuum(BaseModel):
    """What vacuum did to one table (storage.retention.VacuumReport, JSON-able)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    versions: int
    kept_versions: tuple[int, ...]
    deleted_files: int
    deleted_bytes: int

    @classmethod
    def of(cls, report: VacuumReport) -> TableVacuum:
        return cls(
            table=report.table,
            versions=report.versions,
            kept_versions=report.kept_versions,
            deleted_files=len(report.deleted_files),
            deleted_bytes=report.deleted_bytes,
        )


class RetentionReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pruned_checkpoints: tuple[str, ...]
    tables: tuple[TableVacuum, ...]

    @property
    def deleted_files(self) -> int:
        return sum(t.deleted_files for t in self.tables)

    @property
    def deleted_bytes(self) -> int:
        return sum(t.deleted_bytes for t in self.tables)

    @property
    def kept_versions(self) -> dict[str, tuple[int, ...]]:
        return {t.table: t.kept_versions for t in self.tables}


def protected_checkpoints(store: Store) -> set[str]:
    """Checkpoint ids the current tables point at: the code model(s) of the `codes` rows."""
    if not store.exists("codes"):
        return set()
    return set(store.read("codes", columns=["codes_version"]).column("codes_version").to_pylist()) - {None}


def retain(store: Store, config: RetentionConfig, *, dry_run: bool = False) -> RetentionReport:
    """Prune checkpoints first (their runs then no longer hold table versions in use), then vacuum."""
    pruned = prune_checkpoints(store, config.keep_checkpoints, protect=protected_checkpoints(store), dry_run=dry_run)
    reports = vacuum(
        store, retention_hours=config.retention_hours, keep_last_versions=config.keep_versions, dry_run=dry_run
    )
    report = RetentionReport(pruned_checkpoints=tuple(pruned), tables=tuple(map(TableVacuum.of, reports)))
    logger.info(
        "retention (%s): %d checkpoint(s) pruned, %d file(s) / %d bytes deleted",
        "dry run" if dry_run else "applied",
        len(pruned),
        report.deleted_files,
        report.deleted_bytes,
    )
    return report
