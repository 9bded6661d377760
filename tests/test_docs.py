"""Docs that cannot drift: every command in the README exists, every command is in the README, and the
README's commands run as written on small data."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from linkage import cli
from linkage.cli import build_parser
from linkage.testing import generate_dataset_files

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


# -- the README's commands, run --------------------------------------------------------------------
# Commands that serve, or talk to servers that serve: they are not run here (tests/test_network.py,
# tests/test_index.py and the demo run them); every other command in the README's shell blocks is.
NEEDS_SERVERS = {
    "node serve", "coordinator serve", "job run", "job list", "job show", "job deliver",
    "keys publish", "keys share", "keys receive", "review serve", "query",
}  # fmt: skip


def readme_commands() -> list[str]:
    """Each `linkage ...` command of the README's shell blocks, continuation lines joined, comments dropped."""
    blocks: list[str] = []
    language: str | None = None
    lines: list[str] = []
    for line in README.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                if language in ("", "sh", "bash", "shell", "console"):
                    blocks.append("\n".join(lines))
                language = None
        elif language is not None:
            lines.append(line)
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("linkage "):
                found.append(" ".join(line.split()))
    return found


def subcommand(command: str) -> str:
    words = command.split()[1:]
    return next(" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in commands())


def as_run(command: str, places: dict[str, str]) -> list[str]:
    """The command's shortest form: optional ``[...]`` parts dropped, the README's placeholders filled in."""
    text = re.sub(r"\s*\[[^\]]*\]", "", command)
    text = re.sub(r"\b(" + "|".join(places) + r")\b", lambda m: places[m.group(1)], text)
    unfilled = re.findall(r"\b[A-Z][A-Z_]+\b", text)
    assert not unfilled, f"{command}: placeholder {unfilled[0]} has no value in this test"
    return shlex.split(text)[1:]


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory):
    """What the README's commands expect to find: people.csv and the agencies' encodings and truth in the
    working folder, a demo's data folder (DIR) with its audit logs, and the coordinator's audit key."""
    work = tmp_path_factory.mktemp("readme")
    files = generate_dataset_files(work, 300, seed=12)
    shutil.copy(files["police"], work / "people.csv")
    setup = work / "setup"
    setup.mkdir()
    assert cli.main(["schema", "init", "--columns", "given_name,surname,date_of_birth,sex,address,postcode",
                     "--out", str(setup / "schema.toml")]) == 0  # fmt: skip
    assert cli.main(["keys", "new", "--out", str(setup / "secret.key")]) == 0
    for agency in ("police", "child_welfare", "victim_services"):
        assert cli.main(["encode", "--schema", str(setup / "schema.toml"), "--secret", str(setup / "secret.key"),
                         "--input", str(files[agency]), "--id-column", "rec_id", "--out", str(work / f"{agency}.parquet")]) == 0  # fmt: skip
    demo = work / "demo"
    assert cli.main(["demo", "--workdir", str(demo), "--people", "200"]) == 0
    shutil.copy(demo / "coordinator" / "audit.pub", work / "coordinator-audit.pub")
    places = {"DIR": str(demo), "FILE": str(demo / "coordinator" / "audit.db"), "SEQ": "1", "NODE_DIR": str(demo / "police")}
    return work, places


def test_the_readme_lists_what_it_does_not_run():
    documented = {subcommand(c) for c in readme_commands()}
    assert documented >= NEEDS_SERVERS, sorted(NEEDS_SERVERS - documented)
    assert documented - NEEDS_SERVERS, "no README command is run"


def test_the_readmes_commands_run_as_written(readme_folder, monkeypatch, capsys):
    work, places = readme_folder
    monkeypatch.chdir(work)
    ran, failed = [], []
    for command in readme_commands():
        if subcommand(command) in NEEDS_SERVERS:
            continue
        argv = as_run(command, places)
        code = cli.main(argv)
        err = capsys.readouterr().err
        outputs = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--out"]
        if code != 0 or "Traceback" in err or not all(Path(o).is_file() for o in outputs):
            failed.append(f"linkage {shlex.join(argv)}: exit {code}: {err.strip()[-300:]}")
        ran.append(subcommand(command))
    assert failed == []
    # the README's own walk-through, end to end: a schema, a key, encodings, links, their quality, the PKI,
    # the audit log, a steward's labels and the privacy report
    assert {"schema init", "keys new", "encode", "link", "evaluate", "pki init", "pki issue", "audit verify",
            "audit show", "review export", "privacy-report"} <= set(ran)  # fmt: skip
