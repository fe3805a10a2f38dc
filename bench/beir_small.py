"""A small BEIR folder cut from ToolLens (shared by bench/exit_codes.py and bench/write_versions.py).

`make_folder(dest, tools)` writes the first `tools` corpus docs, the queries whose
qrels name only those docs, and those qrels rows; `edit_one_doc(dest, n)` rewrites the
description of one doc (chosen by `n`) so that each ingest changes the catalog.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

TOOLLENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "toollens"


def make_folder(dest: Path, tools: int = 200, source: Path = TOOLLENS) -> Path:
    """Write a `tools`-doc BEIR folder under `dest` (from ToolLens) and return it."""
    docs = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:tools]
    ids = {json.loads(d)["_id"] for d in docs}
    rows = (source / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, body = rows[0], [r.split("\t") for r in rows[1:] if r.strip()]
    wanted = {q for q, c, _ in body if c in ids} - {q for q, c, _ in body if c not in ids}
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    (dest / "corpus.jsonl").write_text("\n".join(docs) + "\n", encoding="utf-8")
    kept = [r for r in body if r[0] in wanted]
    (dest / "qrels" / "train.tsv").write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in kept))
    queries = [q for q in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines() if q.strip()]
    (dest / "queries.jsonl").write_text(
        "".join(q + "\n" for q in queries if json.loads(q)["_id"] in wanted), encoding="utf-8"
    )
    return dest


def edit_one_doc(dest: Path, n: int) -> None:
    """Change the API description of doc `n % tools` to mention edit `n` (a new tool doc)."""
    lines = (dest / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    i = n % len(lines)
    doc = json.loads(lines[i])
    text = re.sub(r"\(edit \d+\) ", "", doc["text"])
    doc["text"] = text.replace("api_description:", f"api_description:(edit {n}) ", 1)
    lines[i] = json.dumps(doc, ensure_ascii=False)
    (dest / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a small BEIR folder cut from ToolLens (for ingest benches).")
    parser.add_argument("dest", type=Path, help="folder to write (created)")
    parser.add_argument("--tools", type=int, default=200, help="corpus docs to keep (default 200)")
    args = parser.parse_args()
    print(make_folder(args.dest, args.tools))


if __name__ == "__main__":
    main()
