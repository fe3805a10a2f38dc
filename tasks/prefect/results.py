"""What Prefect stage tasks pass between them: refs to what a stage wrote, never data.

`StageResult` (tables + checkpoints + small facts) is persisted by Prefect as JSON and
enters downstream cache keys by its content digest; `SourceSpec` names a file input and
enters cache keys by the digest of its bytes (`tasks.prefect.cache.value_digest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.digests import sha256_json


class _TableRefLike(Protocol):
    table: str
    version: int
    digest: str
    rows: int


class TableVersion(BaseModel):
    """One Delta table version a stage wrote (mirrors `storage.TableRef`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    version: int
    digest: str
    rows: int

    @classmethod
    def from_ref(cls, ref: _TableRefLike) -> TableVersion:
        return cls(table=ref.table, version=ref.version, digest=ref.digest, rows=ref.rows)


class StageResult(BaseModel):
    """What a stage task returns: refs to what it wrote, never the data itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    tables: tuple[TableVersion, ...] = ()
    checkpoints: tuple[str, ...] = ()
    # Small facts for reports (row counts, metric values); JSON scalars only.
    facts: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Content digest of the outputs: what downstream cache keys depend on.

        Table versions enter by content digest only (not version number), so a
        re-written but identical table leaves downstream stages cached.
        """
        payload = {
            "tables": sorted((t.table, t.digest) for t in self.tables),
            "checkpoints": sorted(self.checkpoints),
        }
        return sha256_json(payload)

    def only(self, *names: str) -> StageResult:
        """The same result narrowed to some tables: a stage that reads only these depends
        only on them, so a change elsewhere leaves it cached."""
        missing = set(names) - {t.table for t in self.tables}
        if missing:
            raise KeyError(f"stage {self.stage!r} wrote no table(s) {sorted(missing)}")
        return self.model_copy(update={"tables": tuple(t for t in self.tables if t.table in names), "checkpoints": ()})

    def table(self, name: str) -> TableVersion:
        for ref in self.tables:
            if ref.table == name:
                return ref
        raise KeyError(f"stage {self.stage!r} wrote no table {name!r}; it wrote {[t.table for t in self.tables]}")


class SourceSpec(BaseModel):
    """A tool/data source on disk: `{source, path}`. Hashed by content, not by path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="ingest source kind, e.g. 'bfcl', 'toolbench', 'beir'")
    path: Path | None = Field(
        default=None,
        description="file, directory or .tar.gz holding the source's files; "
        "None only for 'bfcl' = the data of the installed bfcl-eval package",
    )

    snapshot: bool = Field(
        default=False, description="the path is the source's whole catalog: tools it lacks are retired"
    )

    @model_validator(mode="after")
    def _path_given(self) -> SourceSpec:
        if self.path is None and self.source != "bfcl":
            raise ValueError(f"source {self.source!r} needs a path (only 'bfcl' defaults to the installed package)")
        return self


def result_of(
    stage: str, refs: Iterable[_TableRefLike], *, checkpoints: Sequence[str] = (), **facts: Any
) -> StageResult:
    """Build a StageResult from storage refs."""
    return StageResult(
        stage=stage,
        tables=tuple(TableVersion.from_ref(r) for r in refs),
        checkpoints=tuple(checkpoints),
        facts=facts,
    )
