"""Content digests and the run-independent cache key (no Prefect server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from tasks.digests import config_hash, content_digest
from tasks.prefect.cache import NON_KEY_PARAMETERS, ContentCachePolicy, inputs_digest, value_digest
from tasks.prefect.results import SourceSpec, StageResult, TableVersion


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_directory_digest_depends_on_content_not_location(tmp_path: Path) -> None:
    files = {"a/x.json": b"{}", "b.txt": b"hello"}
    d1 = content_digest(_tree(tmp_path / "one", files))
    d2 = content_digest(_tree(tmp_path / "two", files))
    assert d1 == d2
    (tmp_path / "two" / "b.txt").write_bytes(b"hellO")
    assert content_digest(tmp_path / "two") != d1


def test_directory_digest_sees_renames_and_new_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", {"a.json": b"1"})
    before = content_digest(root)
    (root / "a.json").rename(root / "b.json")
    renamed = content_digest(root)
    (root / "c.json").write_bytes(b"")
    added = content_digest(root)
    assert len({before, renamed, added}) == 3


def test_file_digest_is_sha256_of_bytes(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "f.tar.gz"
    f.write_bytes(b"abc")
    assert content_digest(f) == hashlib.sha256(b"abc").hexdigest()


def test_missing_input_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        content_digest(tmp_path / "nope")


class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True)
    a: int = 1
    b: str = "x"


def test_config_hash_is_canonical() -> None:
    assert config_hash(_Cfg(a=1, b="x")) == config_hash(_Cfg(b="x", a=1))
    assert config_hash(_Cfg(a=2)) != config_hash(_Cfg())


def test_source_spec_is_keyed_by_content_not_path(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", {"t.json": b"[1]"})
    b = _tree(tmp_path / "b", {"t.json": b"[1]"})
    assert value_digest(SourceSpec(source="toolbench", path=a)) == value_digest(SourceSpec(source="toolbench", path=b))
    (b / "t.json").write_bytes(b"[2]")
    assert value_digest(SourceSpec(source="toolbench", path=a)) != value_digest(SourceSpec(source="toolbench", path=b))


def test_bare_path_cannot_enter_a_key(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="SourceSpec"):
        value_digest({"p": tmp_path})


def test_source_spec_requires_path_except_bfcl() -> None:
    assert SourceSpec(source="bfcl").path is None
    with pytest.raises(ValueError, match="needs a path"):
        SourceSpec(source="toolbench")


def _result(digest: str, version: int) -> StageResult:
    return StageResult(stage="s", tables=(TableVersion(table="t", version=version, digest=digest, rows=3),))


def test_stage_result_digest_ignores_version_numbers() -> None:
    # An identical table re-written at a new version must leave downstream stages cached.
    assert _result("d1", 0).digest == _result("d1", 5).digest
    assert _result("d1", 0).digest != _result("d2", 0).digest


def test_stage_result_round_trips_through_json() -> None:
    r = StageResult(
        stage="s", tables=(TableVersion(table="t", version=1, digest="d", rows=2),), checkpoints=("c",), facts={"n": 3}
    )
    assert StageResult.model_validate_json(r.model_dump_json()) == r


def test_inputs_digest_ignores_run_options() -> None:
    base = {"store": "/s", "upstream": (_result("d", 0),)}
    assert "inject_failure" in NON_KEY_PARAMETERS
    assert inputs_digest({**base, "inject_failure": True}) == inputs_digest(base)
    assert inputs_digest({**base, "store": "/other"}) != inputs_digest(base)


def test_cache_key_depends_on_code_and_inputs_only() -> None:
    inputs = {"store": "/s", "upstream": (_result("d", 0),)}
    p1, p2 = ContentCachePolicy(code="c1"), ContentCachePolicy(code="c2")
    k = p1.compute_key(None, inputs, {"anything": "run-specific"})  # type: ignore[arg-type]
    assert k == p1.compute_key(None, dict(inputs), {})  # type: ignore[arg-type]
    assert k != p2.compute_key(None, inputs, {})  # type: ignore[arg-type]
    changed = {"store": "/s", "upstream": (_result("d'", 0),)}
    assert k != p1.compute_key(None, changed, {})  # type: ignore[arg-type]


def test_only_narrows_the_digest_to_the_named_tables() -> None:
    tables = (
        TableVersion(table="tools", version=0, digest="t1", rows=1),
        TableVersion(table="qrels", version=0, digest="q1", rows=1),
    )
    changed_tools = (TableVersion(table="tools", version=1, digest="t2", rows=1), tables[1])
    a, b = StageResult(stage="ingest", tables=tables), StageResult(stage="ingest", tables=changed_tools)
    assert a.digest != b.digest
    assert a.only("qrels").digest == b.only("qrels").digest
    assert a.only("tools").digest != b.only("tools").digest
    with pytest.raises(KeyError, match="no table"):
        a.only("codes")
