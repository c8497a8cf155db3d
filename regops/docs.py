"""Render the README's reference tables from the code, so they cannot drift.

python -m regops.docs keys     # print the data key table
python -m regops.docs readme   # rewrite it into README.md
"""

from __future__ import annotations

import json
import sys

from regops.config.keys import KEYS


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} items (see regops/config/keys.py)"
    return f"`{json.dumps(value)}`"


def keys_table() -> str:
    lines = ["| key | default | concern | what it does |", "|---|---|---|---|"]
    for key in KEYS:
        doc = key.doc.replace("|", "\\|")
        lines.append(f"| `{key.name}` | {_default(key.default)} | {key.concern} | {doc} |")
    return "\n".join(lines) + "\n"


START, END = "<!-- keys:start (python -m regops.docs keys) -->", "<!-- keys:end -->"
CHECKS_START, CHECKS_END = "<!-- checks:start (regops check --list --markdown) -->", (
    "<!-- checks:end -->"
)


def checks_table() -> str:
    from regops.compliance.checks import CHECKS
    from regops.compliance.report import markdown

    return markdown(CHECKS).rstrip("\n") + "\n"


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def with_keys_table(readme: str) -> str:
    """The README text with the generated blocks (keys, checks) regenerated."""
    readme = _replace(readme, START, END, keys_table())
    if CHECKS_START in readme:
        readme = _replace(readme, CHECKS_START, CHECKS_END, checks_table())
    return readme


if __name__ == "__main__":
    if sys.argv[1:] == ["keys"]:
        sys.stdout.write(keys_table())
    elif sys.argv[1:] == ["readme"]:
        from pathlib import Path

        path = Path("README.md")
        path.write_text(with_keys_table(path.read_text()))
    else:
        sys.exit("usage: python -m regops.docs keys|readme")
