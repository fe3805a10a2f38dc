"""Arrow access to Delta table versions, rows in the order they were written.

delta-rs lists a snapshot's files in log-replay order (newest commit first), so a plain
`to_pyarrow_dataset()` returns appended rows out of order. The store only ever
overwrites or appends whole files under a per-table lock, so sorting the files by the
`modificationTime` their writer recorded (then by name, which carries the part number
within one write) restores write order.

Files are read through pyarrow's native local file system, not deltalake's default
(a Python `PyFileSystem` handler with pre-buffering): with that one, Arrow's I/O threads
call back into Python, and a call still in flight when the interpreter finalizes makes
the thread exit mid-C++ frame, which aborts the process (`terminate called without an
active exception`, exit code 134, issue 17) after the command already succeeded.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable


def ordered_dataset(path: Path, version: int | None = None) -> pads.FileSystemDataset:
    """Dataset of the table at `path` (latest or `version`) with fragments in write order."""
    table = DeltaTable(str(path), version=version)
    dataset = table.to_pyarrow_dataset(filesystem=native_filesystem(path))
    actions = pa.table(table.get_add_actions(flatten=True))
    written_ms = dict(
        zip(actions.column("path").to_pylist(), _epoch_ms(actions.column("modification_time")), strict=True)
    )
    fragments = sorted(dataset.get_fragments(), key=lambda f: (written_ms[f.path], f.path))
    return pads.FileSystemDataset(
        fragments, schema=dataset.schema, format=dataset.format, filesystem=dataset.filesystem
    )


def _epoch_ms(column: pa.ChunkedArray) -> list[int]:
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ms")).cast(pa.int64()).to_pylist()
    return column.cast(pa.int64()).to_pylist()


def native_filesystem(path: Path) -> pafs.FileSystem:
    """pyarrow's own (C++) file system rooted at the local table folder `path`."""
    return pafs.SubTreeFileSystem(str(Path(path).resolve()), pafs.LocalFileSystem())
