"""Every `toolweaver …` command shown in a fenced block of README.md or docs/*.md names
a real subcommand and only options that subcommand has, and `--help` works for it.

Docs drift silently when an option is renamed; this keeps the examples honest without
running them (most need data or hours)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
PROGRAM = re.compile(r"^(?:\S*/)?toolweaver$")


def fenced_commands(text: str) -> list[list[str]]:
    """The argument lists of the `toolweaver` command lines in the fenced blocks of `text`."""
    commands = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and PROGRAM.match(words[0]):
                commands.append(words[1:])
    return commands


def documented() -> list[tuple[str, list[str]]]:
    found = [(path.relative_to(ROOT).as_posix(), args) for path in DOCS for args in fenced_commands(path.read_text())]
    assert found, "no fenced toolweaver commands found: the extractor is broken"
    return found


def test_extractor_reads_continuations_and_comments() -> None:
    text = (
        "```bash\ntoolweaver evaluate --store S \\\n    --methods bm25  # why\n.venv/bin/toolweaver tables\nls\n```\n"
    )
    assert fenced_commands(text) == [["evaluate", "--store", "S", "--methods", "bm25"], ["tables"]]


@pytest.mark.parametrize(("where", "args"), documented(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_documented_command_parses(where: str, args: list[str]) -> None:
    group = typer.main.get_command(app)
    assert args, f"{where}: `toolweaver` without a subcommand"
    name, rest = args[0], args[1:]
    command = group.commands.get(name)
    assert command is not None, f"{where}: unknown subcommand {name!r} in `toolweaver {' '.join(args)}`"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {word.split("=", 1)[0] for word in rest if word.startswith("--")}
    assert used <= known, f"{where}: `toolweaver {name}` has no option(s) {sorted(used - known)}"
    done = CliRunner().invoke(app, [name, "--help"])
    assert done.exit_code == 0, done.output
