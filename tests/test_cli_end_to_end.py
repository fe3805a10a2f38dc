"""Issue-level acceptance through the installed `toolweaver` command on real data:
ingest two sources, answer SQL as JSON, read the earlier version with --as-of, and
refuse a write statement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOLWEAVER = Path(sys.executable).parent / "toolweaver"


def toolweaver(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(TOOLWEAVER), *args], capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_ingest_sql_as_of_and_write_refusal(shared_data: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    toolweaver(
        "ingest",
        "--source",
        "stabletoolbench",
        "--path",
        str(shared_data / "toolbench/stabletoolbench"),
        "--store",
        store,
    )
    query = "SELECT source, count(*) AS n FROM tools GROUP BY 1 ORDER BY 1"
    first = json.loads(toolweaver("sql", query, "--store", store, "--format", "json").stdout)
    assert first == [{"source": "stabletoolbench", "n": 2479}]

    toolweaver("ingest", "--source", "beir", "--path", str(shared_data / "toollens"), "--store", store)
    now = json.loads(toolweaver("sql", query, "--store", store, "--format", "json").stdout)
    counts = {row["source"]: row["n"] for row in now}
    # ToolLens tools already documented by StableToolBench keep that row (source rank).
    assert counts["stabletoolbench"] == 2479 and counts["beir"] > 0
    queries = json.loads(
        toolweaver("sql", "SELECT count(*) AS n FROM queries", "--store", store, "--format", "json").stdout
    )
    assert queries == [{"n": 765 + 16893}]

    earlier = json.loads(toolweaver("sql", query, "--store", store, "--format", "json", "--as-of", "tools=0").stdout)
    assert earlier == first

    refused = toolweaver("sql", "DELETE FROM tools", "--store", store, check=False)
    assert refused.returncode != 0
    assert "--write" in refused.stderr
    after = json.loads(toolweaver("sql", query, "--store", store, "--format", "json").stdout)
    assert after == now
