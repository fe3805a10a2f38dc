"""Builders of small synthetic corpora in the real formats (written under tmp_path)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any


def api(name: str, description: str = "does things", required: list[Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "url": "https://example.invalid/",
        "description": description,
        "method": "GET",
        "required_parameters": required or [],
        "optional_parameters": [],
        "code": "import os\nos.system('echo never run')\n",
    }


def tool_file(tool_name: str, apis: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tool_name": tool_name, "name": tool_name, "tool_description": "a tool", "api_list": apis}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def good_toolbench(root: Path) -> Path:
    """Two categories, three tools (one tool in both categories), an instruction and an answer file."""
    tools = root / "data" / "toolenv" / "tools"
    write_json(tools / "Finance" / "stocks.json", tool_file("Stocks", [api("Quote", "Latest quote"), api("History")]))
    write_json(tools / "Weather" / "weather.json", tool_file("Weather API", [api("Forecast", "Daily forecast")]))
    # The same tool_id documented again in another category (longer description wins).
    write_json(tools / "Data" / "stocks.json", tool_file("Stocks", [api("Quote", "Latest quote for a ticker symbol")]))
    # A code file next to the docs: must never be opened or executed.
    (tools / "Finance" / "api.py").write_text("raise SystemExit('api.py was executed')\n")
    instruction = [
        {
            "query": "What is the AAPL quote and the weather?",
            "query_id": 7,
            "relevant APIs": [["Stocks", "Quote"], ["Weather API", "Forecast"]],
            "api_list": [
                {
                    "category_name": "Finance",
                    "tool_name": "Stocks",
                    "api_name": "Quote",
                    "api_description": "Latest quote",
                    "required_parameters": [],
                    "optional_parameters": [],
                    "method": "GET",
                },
            ],
        }
    ]
    write_json(root / "data" / "instruction" / "G1_query.json", instruction)
    answer = {
        "answer_generation": {
            "query": "What is the AAPL quote and the weather?",
            "train_messages": [
                [{"role": "user", "content": "q"}],
                [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "quote_for_stocks", "arguments": "{}"},
                    },
                    {"role": "function", "name": "quote_for_stocks", "content": "{}"},
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "forecast_for_weather_api", "arguments": "{}"},
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "nosuch_for_nowhere", "arguments": "{}"},
                    },
                    {"role": "assistant", "content": None, "function_call": {"name": "Finish", "arguments": "{}"}},
                ],
            ],
        }
    }
    write_json(root / "data" / "answer" / "G1_answer" / "7_ChatGPT_DFS_woFilter_w2.json", answer)
    return root


def tar_gz(src: Path, dest: Path) -> Path:
    """Pack `src` (its contents, relative names) into `dest` (.tar.gz)."""
    with tarfile.open(dest, "w:gz") as archive:
        for file in sorted(src.rglob("*")):
            archive.add(file, arcname=file.relative_to(src).as_posix(), recursive=False)
    return dest


def add_to_tar(dest: Path, members: dict[str, bytes]) -> Path:
    """Write a .tar.gz with arbitrary member names (e.g. '../../etc/x.json')."""
    with tarfile.open(dest, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return dest
