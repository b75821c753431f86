"""Every `piaohao ...` command that README.md, docs/*.md and bench/README.md show a user exists:
its command path resolves, `--help` answers, and every option it shows is an option of that command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from piaohao.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE = re.compile(r"`(piaohao [^`]+)`")


def _shown_commands() -> list[tuple[str, str]]:
    """(file, command line) for each command in a code block line or an inline code span."""
    found: list[tuple[str, str]] = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for block in FENCE.findall(text):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("piaohao "):
                    # A trailing comment or a description after a run of spaces is not part of the command.
                    found.append((path.name, re.split(r"\s{2,}|\s#\s", line)[0]))
        for span in INLINE.findall(FENCE.sub("", text)):
            found.append((path.name, " ".join(span.split())))
    return found


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line)[1:]
    except ValueError:
        return line.split()[1:]


def _resolve(tokens: list[str]) -> list[tuple[list[str], object, list[str]]]:
    """Walk the command tree; `a|b` names alternatives. Returns (path, command, options shown)."""
    results = []

    def walk(path: list[str], cmd: object, rest: list[str]) -> None:
        if hasattr(cmd, "commands") and rest and re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", rest[0]):
            for name in rest[0].split("|"):
                sub = cmd.commands.get(name)
                assert sub is not None, f"`piaohao {' '.join(path + [name])}` is no command"
                walk(path + [name], sub, rest[1:])
            return
        options = [t.strip("[]").split("=")[0] for t in rest if t.strip("[").startswith("--")]
        results.append((path, cmd, [o for o in options if o not in ("--help",)]))

    walk([], typer.main.get_command(app), tokens)
    return results


SHOWN = _shown_commands()


def test_the_docs_show_commands_at_all():
    lines = {line for _, line in SHOWN}
    assert any(line.startswith("piaohao ledger accounts") for line in lines)
    assert any(line.startswith("piaohao merchants create") for line in lines)


@pytest.mark.parametrize(("doc", "line"), SHOWN, ids=[f"{doc}:{line}" for doc, line in SHOWN])
def test_a_documented_command_parses(doc, line):
    for path, cmd, options in _resolve(_tokens(line)):
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{doc}: `piaohao {' '.join(path)} --help`: {result.output}"
        known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        missing = [o for o in options if o not in known]
        assert not missing, f"{doc}: `{line}`: `piaohao {' '.join(path)}` has no option {missing}"
