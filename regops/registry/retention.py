"""Retention policies: which tags `regops prune` deletes, decided without a registry.

A policy names repositories (glob patterns, `*` within one path segment, `**`
across segments, or `re:REGEX`), the tags it is about (`include`/`exclude`,
same pattern syntax), tags it never deletes (`protect`; `semver` stands for
release tags `v?MAJOR.MINOR.PATCH`) and when a tag in scope goes: not among
the newest `keep_last`, and/or older than `older_than`. Both given: a tag goes
only when both say so.

Conservative by construction, because a wrong delete loses images:
- several policies on one repository: a tag goes only if some policy selects
  it and no policy that covers it keeps or protects it;
- tags sharing a digest go only if all of them are selected (the API deletes
  the digest with every tag on it);
- a digest that is a child of a surviving multi-arch image is never deleted;
- a tag whose created time is unknown is kept (it cannot be ranked or aged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from regops.util import natural_key

KEY = "registry_retention"
SEMVER = re.compile(r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
DEFAULT_INCLUDE = ("*",)
DEFAULT_PROTECT = ("latest", "semver")
POLICY_KEYS = ("repositories", "keep_last", "older_than", "include", "exclude", "protect")
_DURATION_PART = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class PolicyError(ValueError):
    """A policy value is wrong; the message is the problem only, callers add where."""


def parse_duration(text: Any) -> timedelta:
    """`30d`, `12h`, `2w`, `1d12h`, `90m`, `45s` -> timedelta."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(f"{text!r} is not a duration like '30d', '12h' or '2w'")
    compact = text.strip().lower()
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact.replace(" ", ""):
        raise PolicyError(f"{text!r} is not a duration like '30d', '12h' or '2w' (units s m h d w)")
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit]: int(number)})
    if total <= timedelta(0):
        raise PolicyError(f"{text!r} must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _glob_regex(pattern: str) -> str:
    """`*` within one path segment, `**` across segments, `?` one character, [...] classes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and pattern.find("]", i + 2) != -1:
            end = pattern.find("]", i + 3 if pattern.startswith("[!]", i) else i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_pattern(pattern: Any) -> re.Pattern[str]:
    """A glob, or `re:REGEX`; both must match the whole name."""
    if not isinstance(pattern, str) or not pattern:
        raise PolicyError(f"{pattern!r} is not a pattern (a glob, or re:REGEX)")
    source = pattern[3:] if pattern.startswith("re:") else _glob_regex(pattern)
    try:
        return re.compile(f"(?:{source})\\Z")
    except re.error as error:
        raise PolicyError(f"{pattern!r} is not a valid pattern: {error}") from None


@dataclass(frozen=True)
class Matcher:
    """A list of patterns; `semver` is a keyword when `keywords` is on."""

    patterns: tuple[str, ...]
    keywords: bool = False
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, patterns: Iterable[str], keywords: bool = False) -> Matcher:
        patterns = tuple(patterns)
        compiled = tuple(
            SEMVER if keywords and p == "semver" else compile_pattern(p) for p in patterns
        )
        return cls(patterns, keywords, compiled)

    def __call__(self, name: str) -> bool:
        return any(p.match(name) for p in self._compiled)


@dataclass(frozen=True)
class Policy:
    repositories: Matcher
    keep_last: int | None = None
    older_than: timedelta | None = None
    include: Matcher = field(default_factory=lambda: Matcher.of(DEFAULT_INCLUDE))
    exclude: Matcher = field(default_factory=lambda: Matcher.of(()))
    protect: Matcher = field(default_factory=lambda: Matcher.of(DEFAULT_PROTECT, keywords=True))

    def covers(self, tag: str) -> bool:
        return self.include(tag) and not self.exclude(tag)

    def describe(self) -> str:
        parts = [f"repositories {', '.join(self.repositories.patterns)}"]
        if self.keep_last is not None:
            parts.append(f"keep last {self.keep_last}")
        if self.older_than is not None:
            parts.append(f"older than {format_duration(self.older_than)}")
        if self.include.patterns != DEFAULT_INCLUDE:
            parts.append(f"include {', '.join(self.include.patterns)}")
        if self.exclude.patterns:
            parts.append(f"exclude {', '.join(self.exclude.patterns)}")
        parts.append(f"protect {', '.join(self.protect.patterns) or 'nothing'}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repositories": list(self.repositories.patterns),
            "keep_last": self.keep_last,
            "older_than": format_duration(self.older_than) if self.older_than else None,
            "include": list(self.include.patterns),
            "exclude": list(self.exclude.patterns),
            "protect": list(self.protect.patterns),
        }


def _patterns(raw: Mapping[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = raw.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{key} must be a pattern or a list of patterns")
    return list(value)


def make_policy(raw: Any) -> Policy:
    """A Policy from one map of inventory data (or of command-line options)."""
    if not isinstance(raw, Mapping):
        raise PolicyError("must be a map with repositories and keep_last and/or older_than")
    unknown = sorted(set(raw) - set(POLICY_KEYS))
    if unknown:
        raise PolicyError(f"unknown key {unknown[0]!r} (keys: {', '.join(POLICY_KEYS)})")
    if "repositories" not in raw:
        raise PolicyError("repositories is required (a pattern such as 'team/*/service')")
    repositories = _patterns(raw, "repositories", ())
    if not repositories:
        raise PolicyError("repositories must name at least one pattern")
    keep_last = raw.get("keep_last")
    if keep_last is not None and (
        not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0
    ):
        raise PolicyError(f"keep_last must be an integer >= 0, got {keep_last!r}")
    older_than = raw.get("older_than")
    age = parse_duration(older_than) if older_than is not None else None
    if keep_last is None and age is None:
        raise PolicyError(
            "needs keep_last and/or older_than (keep_last: 0 deletes every tag in scope)"
        )
    try:
        return Policy(
            repositories=Matcher.of(repositories),
            keep_last=keep_last,
            older_than=age,
            include=Matcher.of(_patterns(raw, "include", DEFAULT_INCLUDE)),
            exclude=Matcher.of(_patterns(raw, "exclude", ())),
            protect=Matcher.of(_patterns(raw, "protect", DEFAULT_PROTECT), keywords=True),
        )
    except PolicyError:
        raise
    except re.error as error:  # pragma: no cover - compile_pattern converts these
        raise PolicyError(str(error)) from None


def parse_policies(raw: Any) -> list[Policy]:
    """The policies of `registry_retention` data; PolicyError names the policy at fault."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise PolicyError("must be a list of policy maps")
    policies = []
    for number, entry in enumerate(raw, start=1):
        try:
            policies.append(make_policy(entry))
        except PolicyError as error:
            raise PolicyError(f"policy {number}: {error}") from None
    return policies


def policies_for(repository: str, policies: Iterable[Policy]) -> list[Policy]:
    return [p for p in policies if p.repositories(repository)]


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Candidate:
    """One tag as the policy engine sees it."""

    tag: str
    digest: str
    created: datetime | None
    children: frozenset[str] = frozenset()  # child digests when the tag is a multi-arch image


@dataclass(frozen=True)
class Decision:
    tag: str
    digest: str
    delete: bool
    reason: str


@dataclass
class Selection:
    """The outcome for one repository."""

    decisions: dict[str, Decision]
    delete_digests: dict[str, list[str]]  # digest -> its tags, all selected
    held: dict[str, list[str]]  # digest -> selected tags kept because of other tags

    @property
    def deleted_tags(self) -> list[str]:
        return sorted((t for tags in self.delete_digests.values() for t in tags), key=natural_key)


def _newest_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.created, natural_key(c.tag)), reverse=True)


def _policy_verdicts(
    policy: Policy, candidates: Sequence[Candidate], now: datetime
) -> dict[str, tuple[bool, str]]:
    """tag -> (delete?, reason) for the tags this policy covers or protects."""
    verdicts: dict[str, tuple[bool, str]] = {}
    ranked: list[Candidate] = []
    for c in candidates:
        if policy.protect(c.tag):
            verdicts[c.tag] = (False, "protected")
        elif not policy.covers(c.tag):
            continue
        elif c.created is None:
            verdicts[c.tag] = (False, "created time unknown")
        else:
            ranked.append(c)
    for rank, c in enumerate(_newest_first(ranked)):
        assert c.created is not None
        if policy.keep_last is not None and rank < policy.keep_last:
            verdicts[c.tag] = (False, f"newest {policy.keep_last}")
        elif policy.older_than is not None and now - c.created < policy.older_than:
            verdicts[c.tag] = (False, f"younger than {format_duration(policy.older_than)}")
        else:
            why = []
            if policy.keep_last is not None:
                why.append(f"not in newest {policy.keep_last}")
            if policy.older_than is not None:
                why.append(f"older than {format_duration(policy.older_than)}")
            verdicts[c.tag] = (True, " and ".join(why))
    return verdicts


def select(candidates: Sequence[Candidate], policies: Sequence[Policy], now: datetime) -> Selection:
    """Which of one repository's tags go; `policies` are those matching the repository."""
    wanted: dict[str, tuple[bool, str]] = {}
    for policy in policies:
        for tag, (delete, reason) in _policy_verdicts(policy, candidates, now).items():
            previous = wanted.get(tag)
            if previous is None or (previous[0] and not delete):
                wanted[tag] = (delete, reason)  # a keep wins over a delete
    by_digest: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_digest.setdefault(c.digest, []).append(c)
    # Digests that surviving multi-arch images are made of.
    surviving_children: set[str] = set()
    for c in candidates:
        if not wanted.get(c.tag, (False, ""))[0]:
            surviving_children |= c.children

    decisions: dict[str, Decision] = {}
    delete_digests: dict[str, list[str]] = {}
    held: dict[str, list[str]] = {}
    for digest, group in by_digest.items():
        tags = sorted((c.tag for c in group), key=natural_key)
        selected = [t for t in tags if wanted.get(t, (False, ""))[0]]
        others = [t for t in tags if t not in selected]
        for tag in tags:
            delete, reason = wanted.get(tag, (False, "no policy covers it"))
            if delete and others:
                delete, reason = False, f"shares its digest with kept {', '.join(others)}"
            elif delete and digest in surviving_children:
                delete, reason = False, "its digest is part of a kept multi-arch image"
            decisions[tag] = Decision(tag, digest, delete, reason)
        if selected and (others or digest in surviving_children):
            held[digest] = selected
        elif selected:
            delete_digests[digest] = tags
    return Selection(decisions, delete_digests, held)
