"""Pure ingestion: parsers from published tool-use datasets to typed records.

`parse_source(source, path, catalog)` dispatches to one parser (each module's
docstring documents its expected layout); `merge` holds the one-row-per-tool rule.
Nothing here touches the artifact store (that is `tasks/stages/ingest.py`).

Rules, in one place:

- `tool_id` = `"<tool_name>&&<api_name>"` with the RAW names: no whitespace stripping,
  no case folding (as ToolGen's virtual tokens). ToolEnv2404 thus has 46,270 distinct
  keys (46,269 if surrounding whitespace were stripped); the other 533 API entries
  are in `tool_doc_variants`.
- `doc_text` = "tool: …\napi: …\ndescription: …\nparameters: <canonical JSON>"
  (category excluded); `doc_hash` = sha256 of `doc_text` (UTF-8).
- `query_id` = `<source>/<group or split>/<raw id>`: toolbench `G1` (file stem without
  `_query`, answer folder without `_answer`), stabletoolbench the file stem, beir the
  qrels split (queries in no qrels file: `unlabelled`), bfcl the question category,
  toolgen the file stem. The catalog adapters (openai-tools, openapi, mcp) give tools only:
  tool_name = the catalog (file stem, or the OpenAPI title), api_name = the function,
  MCP tool or operation; parameters = a self-contained JSON Schema object
  (`schema_refs`). Splits: toolbench/toolgen `train`, stabletoolbench/bfcl
  `test`, beir = qrels file stem.
- One row per tool_id: source rank toolbench > stabletoolbench > bfcl > beir > toolgen,
  then longer description, then smaller doc_hash, then smaller origin
  (`merge.merge_tools`); every other record goes to `tool_doc_variants`.
- Bad input is quarantined with (source, locator `file` or `file#record`, reason,
  excerpt <= 500 chars) and skipped; reasons are the constants of `quarantine.py`
  plus the name checks of `names.name_problem`. Caps: files > 32 MiB
  (`FILE_MAX_BYTES`), docs > 200,000 characters (`DOC_MAX_CHARS`), names > 1,024
  characters. Code files (`api.py`) are never read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from toolweaver.ingest import beir, bfcl, mcp, openai_tools, openapi, stabletoolbench, toolbench, toolgen
from toolweaver.ingest.records import ParseResult

SOURCES: tuple[str, ...] = ("toolbench", "stabletoolbench", "beir", "bfcl", "toolgen", "openai-tools", "openapi", "mcp")
# Bring-your-own catalogs: tool documentation only, parsed from one file or a folder.
CATALOG_PARSERS = {"openai-tools": openai_tools.parse, "openapi": openapi.parse, "mcp": mcp.parse}


def parse_source(source: str, path: Path | None, catalog: Iterable[tuple[str, str]] = ()) -> ParseResult:
    """Run the parser of `source` on `path`.

    `catalog`: (tool_name, api_name) pairs already in the store; only the toolbench
    parser uses it (to resolve answer-file calls). `path` may be None only for bfcl
    (then the installed bfcl-eval package's data folder is read).
    """
    if source == "bfcl":
        return bfcl.parse(path)
    if path is None:
        raise ValueError(f"source {source!r} needs --path (only bfcl can find its data itself)")
    if source == "toolbench":
        return toolbench.parse(path, catalog)
    if source == "stabletoolbench":
        return stabletoolbench.parse(path)
    if source == "beir":
        return beir.parse(path)
    if source == "toolgen":
        return toolgen.parse(path)
    if source in CATALOG_PARSERS:
        return CATALOG_PARSERS[source](path)
    raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
