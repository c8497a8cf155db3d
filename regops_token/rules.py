"""Who may do what to which repository: the access rules, evaluated.

Rules come from the inventory (`registry_access`, `registry_groups`,
`registry_admins`, `registry_robots`), checked operator-side and shipped to the
token service as JSON. A subject's rights on a repository are the union of every
rule that matches it (no rule, no right; no first-match ordering), plus a robot's
own grant, plus everything for admins. Anonymous rights apply to every caller.

Patterns: `*` matches within one path segment, `**` one or more whole segments,
`${user}` the caller's user name. Pure functions only: the token service and
`regops access explain` give the same answer from the same data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

ACTIONS = ("pull", "push", "delete")
ANONYMOUS = "anonymous"
AUTHENTICATED = "authenticated"
_SEGMENT = re.compile(r"^(\*\*|[a-z0-9._*${}-]+)$")
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$")


class RuleError(ValueError):
    """Bad rule data; the message is the problem only (callers add host and key)."""


def _segment_matches(glob: str, segment: str) -> bool:
    """One path segment against a glob of `*`s, in linear time: the parts between the
    stars are found left to right (the leftmost place is always the right one), so a
    name of thousands of `-` costs what its length does, not its square."""
    parts = glob.split("*")
    if len(parts) == 1:
        return glob == segment
    first, last = parts[0], parts[-1]
    if len(first) + len(last) > len(segment) or not segment.startswith(first) or (
            not segment.endswith(last)):
        return False
    at, end = len(first), len(segment) - len(last)
    for part in parts[1:-1]:
        found = segment.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


class Glob:
    """A repository pattern, matched segment by segment: `*` within one segment, `**`
    one or more whole segments. Time is linear in the name for each `**` of the
    pattern (a table of pattern position by name position), never exponential."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.segments = tuple(pattern.split("/"))

    def match(self, name: str) -> bool:
        parts = name.split("/")
        segments = self.segments
        # reach[j]: the pattern's first i segments can match the name's first j.
        reach = [True] + [False] * len(parts)
        for glob in segments:
            nxt = [False] * (len(parts) + 1)
            if glob == "**":
                for j in range(1, len(parts) + 1):
                    nxt[j] = bool(parts[j - 1]) and (reach[j - 1] or nxt[j - 1])
            else:
                for j in range(1, len(parts) + 1):
                    nxt[j] = reach[j - 1] and _segment_matches(glob, parts[j - 1])
            reach = nxt
            if not any(reach):
                return False
        return reach[-1]

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str, user: str | None = None) -> Glob | None:
    """A repository pattern, ready to match; None when it names `${user}` and there is
    no user."""
    if "${user}" in pattern:
        if user is None:
            return None
        pattern = pattern.replace("${user}", user)
    return Glob(pattern)


def _segment_contains(outer: str, inner: str) -> bool:
    """Every segment `inner` matches, `outer` matches too. `outer`'s stars may stand
    for anything, so matching `inner` with its own stars read as letters is enough
    (a letter `*` can only fall inside one of `outer`'s stars)."""
    return outer == "*" or _segment_matches(outer, inner)


def contains(outer: str, inner: str) -> bool:
    """Whether every repository name pattern `inner` matches is matched by `outer`
    (sound, not complete: a True is always right, a rare False is only cautious).
    A `**` of `inner` is covered only by a `**` of `outer`, which covers one or more
    of `inner`'s segments of any kind; any other segment of `outer` covers one."""
    big, small = outer.split("/"), inner.split("/")
    reach = [True] + [False] * len(small)
    for glob in big:
        nxt = [False] * (len(small) + 1)
        for j in range(1, len(small) + 1):
            if glob == "**":
                nxt[j] = reach[j - 1] or nxt[j - 1]
            else:
                nxt[j] = reach[j - 1] and small[j - 1] != "**" and _segment_contains(
                    glob, small[j - 1])
        reach = nxt
    return reach[-1]


def pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return f"{pattern!r} is not a repository pattern"
    segments = pattern.split("/")
    for segment in segments:
        if not segment or not _SEGMENT.match(segment):
            return f"{pattern!r}: {segment!r} is not a path segment, '*' or '**'"
        if "**" in segment and segment != "**":
            return f"{pattern!r}: '**' must be a whole path segment"
        if "$" in segment.replace("${user}", ""):
            return f"{pattern!r}: only ${{user}} may be substituted"
    return None


@dataclass(frozen=True)
class Rule:
    repositories: tuple[str, ...]
    who: tuple[str, ...]
    actions: frozenset[str]

    def describe(self) -> str:
        return (
            f"{', '.join(self.repositories)} -> {', '.join(self.who)}: "
            f"{', '.join(a for a in ACTIONS if a in self.actions)}"
        )


@dataclass(frozen=True)
class Robot:
    name: str
    repositories: tuple[str, ...]
    actions: frozenset[str]
    expires: date

    def expired(self, today: date) -> bool:
        return today > self.expires


LDAP = "ldap"  # the kind of a person the directory (registry_ldap) vouches for
OIDC = "oidc"  # and of one the OpenID provider (registry_oidc) signed in
EXTERNAL = (LDAP, OIDC)  # people another system vouches for, with that system's groups


@dataclass(frozen=True)
class Subject:
    """Who asks: anonymous, a user (of registry_users), a robot, or a person of the
    directory (`ldap`) or of single sign-on (`oidc`), with that system's groups."""

    kind: str  # anonymous, user, robot, ldap or oidc
    name: str = ""
    groups: frozenset[str] = frozenset()  # an ldap or oidc subject's groups there

    @property
    def person(self) -> bool:
        """A user or a person of the directory or of single sign-on: someone `${user}`
        and the web pages name."""
        return self.kind == "user" or self.kind in EXTERNAL

    @property
    def label(self) -> str:
        return ANONYMOUS if self.kind == ANONYMOUS else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Policy:
    users: frozenset[str]
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()
    robots: Mapping[str, Robot] = field(default_factory=dict)
    open: bool = False  # no registry_access: every user may do everything, as before
    directory: bool = False  # registry_ldap: rules may name ldap:NAME and group:ldap:NAME
    sso: bool = False  # registry_oidc: rules may name oidc:NAME and group:oidc:NAME

    # ------------------------------------------------------------------ who is who

    def labels(self, subject: Subject) -> set[str]:
        """What a rule's `who` may name to reach this subject."""
        labels = {ANONYMOUS}
        if subject.kind == "user":
            labels |= {AUTHENTICATED, f"user:{subject.name}", subject.name}
            labels |= {
                f"group:{g}" for g, members in self.groups.items() if subject.name in members
            }
        elif subject.kind == "robot":
            labels.add(f"robot:{subject.name}")
        elif subject.kind in EXTERNAL:
            labels |= {AUTHENTICATED, f"{subject.kind}:{subject.name}"}
            labels |= {f"group:{subject.kind}:{g}" for g in subject.groups}
        return labels

    def is_admin(self, subject: Subject) -> bool:
        """Users in registry_admins (every user when there are no rules); people of the
        directory or of single sign-on named there as `ldap:NAME`/`oidc:NAME` or through
        `group:ldap:GROUP`/`group:oidc:GROUP`."""
        if subject.kind in EXTERNAL:
            return bool(self.labels(subject) & self.admins)
        return subject.kind == "user" and (self.open or subject.name in self.admins)

    # ------------------------------------------------------------------ rights

    def reasons(self, subject: Subject, repository: str) -> list[tuple[str, frozenset[str]]]:
        """(why, actions) for everything that gives `subject` rights on `repository`."""
        found: list[tuple[str, frozenset[str]]] = []
        if self.is_admin(subject):
            why = "every user may do everything (no registry_access)" if self.open else "admin"
            found.append((why, frozenset(ACTIONS)))
        user = subject.name if subject.person else None
        labels = self.labels(subject)
        for number, rule in enumerate(self.rules, start=1):
            if not labels & set(rule.who):
                continue
            for pattern in rule.repositories:
                compiled = compile_pattern(pattern, user)
                if compiled is not None and compiled.match(repository):
                    found.append((f"rule {number} ({rule.describe()})", rule.actions))
                    break
        robot = self.robots.get(subject.name) if subject.kind == "robot" else None
        if robot is not None:
            for pattern in robot.repositories:
                compiled = compile_pattern(pattern)
                if compiled is not None and compiled.match(repository):
                    found.append(
                        (f"robot {robot.name} ({', '.join(robot.repositories)})", robot.actions)
                    )
                    break
        return found

    def allowed(self, subject: Subject, repository: str) -> frozenset[str]:
        actions: set[str] = set()
        for _, granted in self.reasons(subject, repository):
            actions |= granted
        return frozenset(actions)

    def covers(self, subject: Subject, pattern: str, actions: Iterable[str]) -> bool:
        """Whether `subject` holds each of `actions` on every repository `pattern`
        matches: for each action, one rule's pattern that contains `pattern` (see
        `contains`). Admins hold everything."""
        if self.is_admin(subject):
            return True
        user = subject.name if subject.person else None
        labels = self.labels(subject)
        for action in actions:
            if not any(
                action in rule.actions and labels & set(rule.who) and contains(
                    outer.replace("${user}", user) if user else outer, pattern)
                for rule in self.rules for outer in rule.repositories
                if user or "${user}" not in outer
            ):
                return False
        return True

    def grant(self, subject: Subject, kind: str, name: str, requested: Iterable[str]) -> list[str]:
        """The actions of one requested scope this subject gets (possibly none).

        `*` asks for everything: a repository gets the concrete actions the subject
        holds; the catalog (`registry:catalog:*`, literally `*`) only admins get."""
        asked = set(requested)
        if kind == "registry" and name == "catalog":
            return ["*"] if "*" in asked and self.is_admin(subject) else []
        if kind != "repository":
            return []
        held = self.allowed(subject, name)
        wanted = set(ACTIONS) if "*" in asked else asked
        return [a for a in ACTIONS if a in held and a in wanted]

    def any_grant(self, label: str, action: str) -> list[str]:
        """Rules that give `label` (e.g. anonymous) `action` anywhere, for checks."""
        return [
            rule.describe() for rule in self.rules if label in rule.who and action in rule.actions
        ]


# --------------------------------------------------------------------------- data


def _strings(raw: Any, what: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(x, str) for x in raw):
        raise RuleError(f"{what} must be a name or a non-empty list of names")
    return tuple(raw)


def _actions(raw: Any, what: str) -> frozenset[str]:
    actions = _strings(raw, what)
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise RuleError(f"{what}: unknown action {unknown[0]!r} (actions: {', '.join(ACTIONS)})")
    return frozenset(actions)


def _patterns(raw: Any, what: str) -> tuple[str, ...]:
    patterns = _strings(raw, what)
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem:
            raise RuleError(f"{what}: {problem}")
    return patterns


def parse_policy(
    users: Iterable[str],
    groups: Any = None,
    admins: Any = None,
    access: Any = None,
    robots: Any = None,
    directory: bool = False,
    sso: bool = False,
) -> Policy:
    """A Policy from inventory-shaped data; RuleError names the first problem. With a
    directory, rules and admins may also name `ldap:NAME` (a person of the directory)
    and `group:ldap:GROUP` (a directory group); with single sign-on, `oidc:NAME` and
    `group:oidc:GROUP`."""
    sources = {LDAP: directory, OIDC: sso}
    users = frozenset(users)
    groups = groups or {}
    if not isinstance(groups, Mapping):
        raise RuleError("registry_groups must map group names to lists of users")
    parsed_groups = {}
    for group, members in groups.items():
        if not isinstance(group, str) or not _NAME.match(group):
            raise RuleError(f"registry_groups: {group!r} is not a valid group name")
        names = _strings(members, f"registry_groups: {group}")
        missing = sorted(set(names) - users)
        if missing:
            raise RuleError(f"registry_groups: {group}: {missing[0]!r} is not in registry_users")
        parsed_groups[group] = frozenset(names)
    admins = frozenset(_strings(admins, "registry_admins")) if admins else frozenset()
    for admin in sorted(admins):
        source = external_source(admin)
        if source is not None:
            if not sources[source]:
                raise RuleError(f"registry_admins: {admin!r} {_UNSET[source]}")
        elif admin not in users:
            raise RuleError(f"registry_admins: {admin!r} is not in registry_users")
    parsed_robots: dict[str, Robot] = {}
    if robots is not None and not isinstance(robots, Mapping):
        raise RuleError("registry_robots must map robot names to their grants")
    for name, spec in (robots or {}).items():
        where = f"registry_robots: {name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise RuleError(f"registry_robots: {name!r} is not a valid robot name")
        if name in users:
            raise RuleError(f"{where}: a user has that name too")
        if not isinstance(spec, Mapping):
            raise RuleError(f"{where} must be a map with repositories, actions and expires")
        unknown = sorted(set(spec) - {"repositories", "actions", "expires"})
        if unknown:
            raise RuleError(f"{where}: unknown key {unknown[0]!r}")
        if "expires" not in spec:
            raise RuleError(f"{where}: expires is required (a date such as 2027-06-30)")
        try:
            expires = date.fromisoformat(str(spec["expires"]))
        except ValueError:
            raise RuleError(
                f"{where}: expires {spec['expires']!r} is not a date (YYYY-MM-DD)"
            ) from None
        parsed_robots[name] = Robot(
            name,
            _patterns(spec.get("repositories"), f"{where}: repositories"),
            _actions(spec.get("actions"), f"{where}: actions"),
            expires,
        )
    rules = []
    if access is not None:
        if not isinstance(access, (list, tuple)):
            raise RuleError("registry_access must be a list of rules")
        for number, raw in enumerate(access, start=1):
            where = f"registry_access: rule {number}"
            if not isinstance(raw, Mapping):
                raise RuleError(f"{where} must be a map with repositories, who and actions")
            unknown = sorted(set(raw) - {"repositories", "who", "actions"})
            if unknown:
                raise RuleError(f"{where}: unknown key {unknown[0]!r}")
            who = _strings(raw.get("who"), f"{where}: who")
            for entry in who:
                _check_who(entry, users, parsed_groups, parsed_robots, where, sources)
            actions = _actions(raw.get("actions"), f"{where}: actions")
            if ANONYMOUS in who and actions & {"push", "delete"}:
                raise RuleError(f"{where}: anonymous may only pull")
            rules.append(
                Rule(_patterns(raw.get("repositories"), f"{where}: repositories"), who, actions)
            )
    return Policy(users, parsed_groups, admins, tuple(rules), parsed_robots, open=access is None,
                  directory=directory, sso=sso)


_EXTERNAL_NAME = re.compile(r"^(group:)?(ldap|oidc):[^\s:*]{1,255}$")
_UNSET = {LDAP: "names the directory, and registry_ldap is not set",
          OIDC: "names single sign-on, and registry_oidc is not set"}


def external_source(entry: str) -> str | None:
    """`ldap` for `ldap:NAME`/`group:ldap:GROUP`, `oidc` for `oidc:NAME`/
    `group:oidc:GROUP` (checked for shape; that system says who), else None."""
    for source in EXTERNAL:
        if entry.startswith((f"{source}:", f"group:{source}:")):
            return source
    return None


def _check_who(
    entry: str,
    users: frozenset[str],
    groups: Mapping[str, Any],
    robots: Mapping[str, Any],
    where: str,
    sources: Mapping[str, bool],
) -> None:
    if entry in (ANONYMOUS, AUTHENTICATED):
        return
    source = external_source(entry)
    if source is not None:
        if not sources.get(source):
            raise RuleError(f"{where}: who {entry!r} {_UNSET[source]}")
        if not _EXTERNAL_NAME.match(entry):
            raise RuleError(f"{where}: who {entry!r}: say {source}:NAME or "
                            f"group:{source}:GROUP")
        return
    kind, sep, name = entry.partition(":")
    if not sep:
        kind, name = "user", entry
    known = {"user": users, "group": groups, "robot": robots}.get(kind)
    if known is None:
        raise RuleError(
            f"{where}: who {entry!r}: say user:NAME, group:NAME, robot:NAME, "
            "ldap:NAME, group:ldap:GROUP, oidc:NAME, group:oidc:GROUP, anonymous or "
            "authenticated"
        )
    if name not in known:
        raise RuleError(f"{where}: who {entry!r}: no {kind} {name!r}")


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """What the token service reads (the parsed, checked form)."""
    return {
        "users": sorted(policy.users),
        "groups": {g: sorted(m) for g, m in sorted(policy.groups.items())},
        "admins": sorted(policy.admins),
        "open": policy.open,
        "directory": policy.directory,
        "sso": policy.sso,
        "rules": [
            {
                "repositories": list(r.repositories),
                "who": list(r.who),
                "actions": [a for a in ACTIONS if a in r.actions],
            }
            for r in policy.rules
        ],
        "robots": {
            n: {
                "repositories": list(r.repositories),
                "actions": [a for a in ACTIONS if a in r.actions],
                "expires": r.expires.isoformat(),
            }
            for n, r in sorted(policy.robots.items())
        },
    }


def policy_from_json(doc: Mapping[str, Any]) -> Policy:
    return Policy(
        users=frozenset(doc["users"]),
        groups={g: frozenset(m) for g, m in doc["groups"].items()},
        admins=frozenset(doc["admins"]),
        rules=tuple(
            Rule(tuple(r["repositories"]), tuple(r["who"]), frozenset(r["actions"]))
            for r in doc["rules"]
        ),
        robots={
            n: Robot(
                n,
                tuple(r["repositories"]),
                frozenset(r["actions"]),
                date.fromisoformat(r["expires"]),
            )
            for n, r in doc["robots"].items()
        },
        open=doc["open"],
        directory=bool(doc.get("directory", False)),
        sso=bool(doc.get("sso", False)),
    )
