"""The README stays true: its key table is the one the code defines."""

from __future__ import annotations

import re
from pathlib import Path

from regops.config.keys import KEYS
from regops.docs import with_keys_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_key_table_matches_the_defaults():
    text = README.read_text()
    assert with_keys_table(text) == text, "run: python -m regops.docs readme"
    for key in KEYS:
        assert f"| `{key.name}` |" in text


def test_readme_quick_start_has_exactly_two_commands():
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    commands = [line for line in block.splitlines() if line.strip()]
    assert commands == ["./scripts/demo", "./scripts/test"]


def test_ci_runs_the_quick_start_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_every_cli_command_is_in_the_readme():
    import click

    from regops.cli import main

    text = README.read_text()
    missing = []
    for name, command in main.commands.items():
        subcommands = command.commands if isinstance(command, click.Group) else {}
        if not subcommands and f"`regops {name}" not in text:
            missing.append(name)
        for sub in subcommands:
            if f"`regops {name} {sub}" not in text:
                missing.append(f"{name} {sub}")
    assert not missing, f"commands missing from the README: {missing}"
