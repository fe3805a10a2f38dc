"""The checkpoint registry journal: after a crash at any point of a registration, the
next registration leaves every folder with its row and no temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Store, checkpoints


def _folder(tmp_path: Path, name: str, payload: bytes) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "weights.bin").write_bytes(payload)
    return folder


def _rows_and_folders(store: Store) -> tuple[set[str], set[str]]:
    rows = set(store.checkpoints().column("checkpoint_id").to_pylist())
    folders = {p.name for p in (store.root / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")}
    return rows, folders


def test_a_crash_between_folder_and_row_is_completed_by_the_next_registration(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_dir)
    real = checkpoints._commit_row

    def die(store: Store, row: dict) -> bool:
        raise SystemExit("killed between the rename and the row")

    monkeypatch.setattr(checkpoints, "_commit_row", die)
    with pytest.raises(SystemExit):
        store.register_checkpoint("rqvae", _folder(tmp_path, "a", b"first"))
    rows, folders = _rows_and_folders(store) if store.exists("checkpoints") else (set(), set())
    assert len(list((store_dir / "checkpoints" / ".journal").glob("*.json"))) == 1
    # A crash while copying leaves a temporary folder.
    (store_dir / "checkpoints" / ".tmp-deadbeef").mkdir()
    monkeypatch.setattr(checkpoints, "_commit_row", real)
    second = store.register_checkpoint("rqvae", _folder(tmp_path, "b", b"second"))
    rows, folders = _rows_and_folders(store)
    assert rows == folders and len(rows) == 2 and second in rows
    assert not list((store_dir / "checkpoints").glob(".tmp-*"))
    assert not list((store_dir / "checkpoints" / ".journal").glob("*.json"))


def test_a_crash_before_the_folder_leaves_nothing_behind(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_dir)

    def die(*args: object) -> None:
        raise SystemExit("killed while copying")

    monkeypatch.setattr(checkpoints, "_place", die)
    with pytest.raises(SystemExit):
        store.register_checkpoint("rqvae", _folder(tmp_path, "a", b"first"))
    monkeypatch.undo()
    store.register_checkpoint("rqvae", _folder(tmp_path, "b", b"second"))
    rows, folders = _rows_and_folders(store)
    assert rows == folders and len(rows) == 1
    assert not list((store_dir / "checkpoints" / ".journal").glob("*.json"))
