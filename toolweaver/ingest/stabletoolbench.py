"""StableToolBench solvable queries: `solvable_queries/test_instruction/*.json`.

`path` may be the StableToolBench root (holding `solvable_queries/`) or the
`test_instruction` folder itself. Each file is a ToolBench instruction file (see
`instructions.py`); `query_group` = file stem (`G1_instruction`, `G2_category`, ...),
split `test`, docs from each query's `api_list`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from toolweaver.ingest.files import iter_files
from toolweaver.ingest.instructions import parse_instruction_file
from toolweaver.ingest.quarantine import decode_json
from toolweaver.ingest.records import ParseResult

SPLIT = "test"
LAYOUT = Path("solvable_queries") / "test_instruction"


def parse(path: Path, source: str = "stabletoolbench") -> ParseResult:
    root = path / LAYOUT if (path / LAYOUT).is_dir() else path
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: expected a folder holding {LAYOUT}/*.json or the *.json files themselves")
    result = ParseResult(source)
    for rel, raw in iter_files(root):
        result.files.add(rel)
        data = decode_json(raw, rel, result)
        if data is not None:
            parse_instruction_file(result, rel, data, group=PurePosixPath(rel).stem, split=SPLIT)
    return result
