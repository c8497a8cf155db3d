"""Render the README's reference tables from the code, so they cannot drift.

python -m regops.docs keys     # print the data key table
python -m regops.docs readme   # rewrite it into README.md
"""

from __future__ import annotations

import json
import sys

from regops.defaults import KEYS


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} items (see regops/defaults.py)"
    return f"`{json.dumps(value)}`"


def keys_table() -> str:
    lines = ["| key | default | concern | what it does |", "|---|---|---|---|"]
    for key in KEYS:
        doc = key.doc.replace("|", "\\|")
        lines.append(f"| `{key.name}` | {_default(key.default)} | {key.concern} | {doc} |")
    return "\n".join(lines) + "\n"


START, END = "<!-- keys:start (python -m regops.docs keys) -->", "<!-- keys:end -->"


def with_keys_table(readme: str) -> str:
    """The README text with the block between the key markers regenerated."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{keys_table()}{END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:] == ["keys"]:
        sys.stdout.write(keys_table())
    elif sys.argv[1:] == ["readme"]:
        from pathlib import Path

        path = Path("README.md")
        path.write_text(with_keys_table(path.read_text()))
    else:
        sys.exit("usage: python -m regops.docs keys|readme")
