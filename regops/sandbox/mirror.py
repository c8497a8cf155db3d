"""Which Debian mirror to build from: the one this machine's apt already uses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from regops.sandbox.model import SandboxError

# Debian suite names that mark an entry as a Debian archive (not a third-party repo).
_DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
}




@dataclass(frozen=True)
class SourceEntry:
    """One apt source: enough of it to tell a Debian mirror from the rest."""

    uri: str
    suites: tuple[str, ...]


def parse_deb822_sources(text: str) -> list[SourceEntry]:
    """Entries of a deb822 `.sources` file (binary `deb` types, enabled only)."""
    entries: list[SourceEntry] = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        suites = tuple(fields.get("suites", "").split())
        entries.extend(SourceEntry(uri, suites) for uri in fields.get("uris", "").split())
    return entries


def parse_one_line_sources(text: str) -> list[SourceEntry]:
    """Entries of a classic `sources.list` (`deb [opts] URI suite comps...`)."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        parts = rest.split()
        if len(parts) >= 2:
            entries.append(SourceEntry(parts[0], (parts[1],)))
    return entries


def _is_security(entry: SourceEntry) -> bool:
    return "security" in entry.uri or any(s.endswith("-security") for s in entry.suites)


def _is_debian(entry: SourceEntry) -> bool:
    return any(s.split("-", 1)[0] in _DEBIAN_SUITES for s in entry.suites)


def pick_mirror(entries: Iterable[SourceEntry]) -> str | None:
    """First plain http(s) Debian archive that is not the security archive."""
    for entry in entries:
        if not entry.uri.startswith(("http://", "https://")):
            continue
        if _is_security(entry) or not _is_debian(entry):
            continue
        return entry.uri.rstrip("/")
    return None


def apt_source_files(root: Path = Path("/")) -> list[Path]:
    """In apt's own order: sources.list, then sources.list.d alphabetically."""
    files = [root / "etc/apt/sources.list"]
    d = root / "etc/apt/sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def detect_mirror(root: Path = Path("/")) -> str:
    """The mirror this machine already uses: the repo must not name one itself."""
    entries: list[SourceEntry] = []
    for f in apt_source_files(root):
        text = f.read_text(errors="replace")
        entries += parse_deb822_sources(text) if f.suffix == ".sources" else (
            parse_one_line_sources(text)
        )
    mirror = pick_mirror(entries)
    if not mirror:
        raise SandboxError(
            "no Debian mirror found in this machine's apt sources; pass --mirror URL"
        )
    return mirror


