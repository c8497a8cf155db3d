"""The docs stay true: the generated references are what the code defines, every key,
check and command is in them, the README stays short, and no relative link is broken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regops import docs

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "reference"


def _pages() -> list[Path]:
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")]
    return [p for p in top if p.exists()] + sorted((ROOT / "docs").rglob("*.md"))


def test_generated_references_are_current():
    assert docs.stale(ROOT) == [], f"run: {docs.COMMAND}"


def test_every_key_is_in_the_key_reference():
    from regops.config.keys import KEYS

    text = (REFERENCE / "keys.md").read_text()
    missing = [key.name for key in KEYS if f"| `{key.name}` |" not in text]
    assert not missing, f"run: {docs.COMMAND}"


def test_every_check_is_in_the_checks_reference():
    from regops.compliance.checks import CHECKS

    text = (REFERENCE / "checks.md").read_text()
    missing = [check.id for check in CHECKS if f"| `{check.id}` |" not in text]
    assert not missing, f"run: {docs.COMMAND}"


def test_every_cli_command_is_described_and_in_the_options():
    text = (REFERENCE / "cli.md").read_text()
    described, generated = text.split(docs.BLOCKS[2].start, 1)
    commands = [path for path, _ in docs.cli_commands()]
    assert commands, "no commands found"
    undescribed = [c for c in commands if f"`{c}" not in described]
    assert not undescribed, f"not in the tables of docs/reference/cli.md: {undescribed}"
    unlisted = [c for c in commands if f"### `{c}`\n" not in generated]
    assert not unlisted, f"run: {docs.COMMAND}"


def test_a_changed_body_is_noticed_and_markers_are_required():
    block = docs.BLOCKS[0]
    page = f"intro\n{block.start}\nold\n{block.end}\nafter\n"
    assert docs.regenerate(page, block, body="new\n") == (
        f"intro\n{block.start}\nnew\n{block.end}\nafter\n")
    with pytest.raises(ValueError):
        docs.regenerate("no markers\n", block, body="new\n")


def test_readme_quick_start_has_exactly_two_commands():
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    commands = [line for line in block.splitlines() if line.strip()]
    assert commands == ["./scripts/demo", "./scripts/test"]


def test_ci_runs_the_quick_start_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_readme_is_short_and_links_every_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert f"]({page.relative_to(ROOT).as_posix()}" in text, page


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(text: str) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", text))
    return _LINK.findall(text)


def _anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_anchor_slugs_follow_github():
    text = "# A: b, c\n## `regops sandbox up`\n## Same\n## Same\n"
    assert _anchors(text) == {"a-b-c", "regops-sandbox-up", "same", "same-1"}


def test_every_relative_link_points_to_a_file_and_anchor():
    broken = []
    for page in _pages():
        text = page.read_text()
        for target in _links(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not file.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)
