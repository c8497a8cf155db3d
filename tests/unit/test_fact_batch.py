"""Facts read in one batch (regops.deploy.facts.Snapshot) give the lines each
command gives alone, as pyinfra splits them, with each command's exit status."""

from __future__ import annotations

import subprocess

from regops.deploy.facts import _batch_script, _split

COMMANDS = [
    "printf 'a\\nb\\n'",  # ends with a newline
    "printf 'no newline'",
    "true",  # no output
    "printf 'x\\n\\n'",  # a trailing empty line is kept
    "echo out; echo err >&2; exit 3",
    "for i in 1 2; do\n  echo line$i\ndone",  # multi-line, like pyinfra's Users fact
]


def _lines(command: str) -> list[str]:
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    return [line.rstrip("\n") for line in out.splitlines(keepends=True)]


def test_batch_gives_each_commands_own_lines_and_status():
    marker = "@@regops-fact-test"
    run = subprocess.run(["sh", "-c", _batch_script(marker, COMMANDS)], capture_output=True,
                         text=True, check=True)
    parts = _split(marker, run.stdout.splitlines())
    assert [lines for _, lines in parts] == [_lines(c) for c in COMMANDS]
    assert [rc for rc, _ in parts] == [0, 0, 0, 0, 3, 0]
