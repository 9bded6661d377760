"""Docs that cannot drift: every command in the README exists, and every command is in the README."""

import re
from pathlib import Path

from linkage.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def commands() -> set[str]:
    """'schema init', 'encode', ... from the real parser."""
    found = set()

    def walk(parser, prefix):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
                return
        found.add(prefix)

    walk(build_parser(), "")
    return found


def test_every_command_is_documented():
    missing = [c for c in sorted(commands()) if f"linkage {c}" not in README]
    assert missing == []


def test_every_documented_command_and_flag_exists():
    parser_commands = commands()
    for line in re.findall(r"^linkage [^\n]+", README, re.M):
        words = line.split()[1:]
        command = next((" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in parser_commands), None)
        assert command, line
        sub = build_parser()
        for word in command.split():
            sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
        known = {option for action in sub._actions for option in action.option_strings}
        for flag in re.findall(r"(--[a-z][a-z-]*)", line):
            assert flag in known, f"{line}: {flag}"


def test_readme_opens_with_the_two_commands():
    opening = README.split("\n## ", 1)[0]
    assert "make demo" in opening and "make test" in opening
