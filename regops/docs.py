"""The reference pages in docs/reference/, generated from the code so they cannot drift.

python -m regops.docs write    # regenerate the generated blocks of docs/reference/*.md
python -m regops.docs check    # exit 1, naming the files, when any block is out of date
python -m regops.docs keys     # print the data key table
python -m regops.docs checks   # print the compliance check table
python -m regops.docs cli      # print the CLI options reference

Each page keeps its hand-written text; only what sits between a block's markers
(`<!-- NAME:start (python -m regops.docs write) -->` and `<!-- NAME:end -->`) is
generated. `readme` is the old name of `write` and does the same.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m regops.docs write"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} items (see regops/config/keys.py)"
    return f"`{json.dumps(value)}`"


def keys_table() -> str:
    """Every data key: its default, its concern and its doc."""
    from regops.config.keys import KEYS

    lines = ["| key | default | concern | what it does |", "|---|---|---|---|"]
    for key in KEYS:
        doc = key.doc.replace("|", "\\|")
        lines.append(f"| `{key.name}` | {_default(key.default)} | {key.concern} | {doc} |")
    return "\n".join(lines) + "\n"


def checks_table() -> str:
    """Every compliance check, as `regops check --list --markdown` prints it."""
    from regops.compliance.checks import CHECKS
    from regops.compliance.report import markdown

    return markdown(CHECKS).rstrip("\n") + "\n"


def cli_commands() -> Iterator[tuple[str, click.Command]]:
    """(`regops group command`, click command) for every command that runs."""
    from regops.cli import main

    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, command

    yield from walk(main, "regops")


def cli_options() -> str:
    """Every command's usage, summary and options, from the click definitions."""
    out: list[str] = []
    for path, command in cli_commands():
        ctx = click.Context(command, info_name=path)
        usage = " ".join([path, *command.collect_usage_pieces(ctx)])
        out += [f"### `{path}`", "", f"`{usage}`", "",
                _cell(command.get_short_help_str(limit=1000)), ""]
        rows = []
        help_option = command.get_help_option(ctx)
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or param is help_option or not record[1]:
                continue
            rows.append(f"| `{_cell(record[0])}` | {_cell(record[1])} |")
        if rows:
            out += ["| option | what |", "|---|---|", *rows, ""]
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass(frozen=True)
class Block:
    """One generated block: which page, the marker name, what renders it."""

    page: str
    name: str
    render: Callable[[], str]

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start ({COMMAND}) -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"


BLOCKS = (
    Block("docs/reference/keys.md", "keys", keys_table),
    Block("docs/reference/checks.md", "checks", checks_table),
    Block("docs/reference/cli.md", "cli", cli_options),
)


def regenerate(text: str, block: Block, body: str | None = None) -> str:
    """The page's text with the block's markers around a freshly rendered body."""
    if text.count(block.start) != 1 or text.count(block.end) != 1:
        raise ValueError(f"{block.page}: needs exactly one {block.start} and {block.end}")
    head, rest = text.split(block.start, 1)
    _, tail = rest.split(block.end, 1)
    body = block.render() if body is None else body
    return f"{head}{block.start}\n{body}{block.end}{tail}"


def _pages(root: Path) -> dict[str, tuple[str, str]]:
    """page -> (text on disk, text as generated now)."""
    pages: dict[str, tuple[str, str]] = {}
    for block in BLOCKS:
        current = pages.get(block.page, (None, None))[1]
        if current is None:
            current = (root / block.page).read_text()
            pages[block.page] = (current, current)
        pages[block.page] = (pages[block.page][0], regenerate(current, block))
    return pages


def stale(root: Path = ROOT) -> list[str]:
    """The pages whose generated blocks differ from what the code says now."""
    return [page for page, (disk, fresh) in _pages(root).items() if disk != fresh]


def write(root: Path = ROOT) -> list[str]:
    """Regenerate every block; returns the pages that changed."""
    changed = []
    for page, (disk, fresh) in _pages(root).items():
        if disk != fresh:
            (root / page).write_text(fresh)
            changed.append(page)
    return changed


def main(argv: list[str]) -> int:
    printers = {"keys": keys_table, "checks": checks_table, "cli": cli_options}
    if len(argv) == 1 and argv[0] in printers:
        sys.stdout.write(printers[argv[0]]())
        return 0
    if argv in (["write"], ["readme"]):
        for page in write():
            print(f"regenerated {page}")
        return 0
    if argv == ["check"]:
        pages = stale()
        for page in pages:
            print(f"{page} is out of date: run {COMMAND}", file=sys.stderr)
        return 1 if pages else 0
    print("usage: python -m regops.docs write|check|keys|checks|cli", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
