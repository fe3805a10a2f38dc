"""StableToolBench solvable queries: `solvable_queries/test_instruction/*.json`.

`path` may be the StableToolBench root (holding `solvable_queries/`), the
`solvable_queries` folder or the `test_instruction` folder itself. Each instruction
file is a ToolBench instruction file (see `instructions.py`); `query_group` = file stem
(`G1_instruction`, `G2_category`, ...), split `test`, docs from each query's `api_list`.

The official `solvable_queries/test_query_ids/<group>.json` files (an object of query
id -> 0, listing the solvable queries of each group) are known metadata: they repeat
the ids of the instruction files, so they are counted (`test_query_ids_files` in the
summary's stats, logged once) and skipped, never quarantined.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from toolweaver.ingest.instructions import parse_instruction_file
from toolweaver.ingest.isolation import isolate, read_files
from toolweaver.ingest.quarantine import decode_json
from toolweaver.ingest.records import ParseResult

log = logging.getLogger(__name__)

SPLIT = "test"
LAYOUT = Path("solvable_queries") / "test_instruction"
QUERY_IDS_FOLDER = "test_query_ids"


def parse(path: Path, source: str = "stabletoolbench") -> ParseResult:
    root = path / LAYOUT if (path / LAYOUT).is_dir() else path
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: expected a folder holding {LAYOUT}/*.json or the *.json files themselves")
    result = ParseResult(source)
    for rel, raw in read_files(root, result):
        with isolate(result, rel):
            data = decode_json(raw, rel, result)
            if data is None:
                continue
            if is_query_ids_file(rel, data):
                result.count("test_query_ids_files")
                continue
            parse_instruction_file(result, rel, data, group=PurePosixPath(rel).stem, split=SPLIT)
    skipped = result.stats.get("test_query_ids_files", 0)
    if skipped:
        log.info("%s: skipped %d test_query_ids file(s) (known metadata, not queries)", path, skipped)
    return result


def is_query_ids_file(rel: str, data: Any) -> bool:
    """An official test_query_ids file: in that folder, an object of id -> number."""
    return (
        QUERY_IDS_FOLDER in PurePosixPath(rel).parts[:-1]
        and isinstance(data, dict)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in data.values())
    )
