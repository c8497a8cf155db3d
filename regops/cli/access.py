"""`regops access` and `regops robots`: the access rules from the inventory alone, and
the robot accounts' secrets and expiry.

`access explain` answers what the token service would, with the same code
(`regops_token.rules`), without a host.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from typing import Any

import click

from regops import hostpaths
from regops.cli.common import emit_json, fail, inventory_option, json_option, limit_option
from regops.cli.images import pick_host
from regops.errors import RegopsError, UsageError
from regops.hostops.remote import checked, load_hosts, load_settings, q, run_remote
from regops.registry.retention import PolicyError, parse_duration
from regops.secrets import paths, store
from regops.util import table
from regops_token.rules import ACTIONS, LDAP, Subject, pattern_problem

WARN_DAYS = 30


@click.group()
def access() -> None:
    """The access rules (registry_access): who may do what, from the inventory."""


@access.command("explain")
@click.argument("who")
@click.argument("repository")
@inventory_option
@click.option("--host", "host_name", metavar="NAME",
              help="Inventory host whose rules to use [default: the first].")
@click.option("--group", "--ldap-group", "groups", multiple=True, metavar="GROUP",
              help="With WHO ldap:NAME or oidc:NAME: a group the directory or the "
                   "provider puts them in (repeatable).")
@json_option
def explain(who: str, repository: str, inventory: str, host_name: str | None,
            groups: tuple[str, ...], as_json: bool) -> None:
    """What WHO (a user, a robot, `ldap:NAME` for a person of the directory,
    `oidc:NAME` for one of single sign-on, or `anonymous`) may do to REPOSITORY, and
    which rules say so. Contacts no host (nor the directory or the provider: say
    their groups with --group)."""
    s = pick_host(inventory, host_name).settings_without_secrets()
    policy = s.policy
    kind = who.partition(":")[0] if who.startswith(("ldap:", "oidc:")) else None
    if groups and kind is None:
        raise UsageError("--group is for a person of the directory or of single sign-on "
                         "(WHO ldap:NAME or oidc:NAME)")
    if kind is not None:
        enabled, key = ((policy.directory, "registry_ldap") if kind == LDAP
                        else (policy.sso, "registry_oidc"))
        if not enabled:
            raise UsageError(f"{s.host}: {key} is not set, so there is no {who!r}")
        subject = Subject(kind, who.partition(":")[2], frozenset(groups))
    elif who == "anonymous":
        subject = Subject("anonymous")
    elif who in policy.users:
        subject = Subject("user", who)
    elif who in policy.robots:
        subject = Subject("robot", who)
    else:
        raise UsageError(f"{s.host}: no user or robot {who!r} (or say anonymous)")
    reasons = policy.reasons(subject, repository)
    granted = [a for a in ACTIONS if a in policy.allowed(subject, repository)]
    catalog = policy.is_admin(subject)
    if as_json:
        emit_json({"who": subject.label, "repository": repository, "actions": granted,
                   "catalog": catalog, "reasons": [{"why": why, "actions": sorted(acts)}
                                                   for why, acts in reasons]})
        return
    click.echo(f"{subject.label} on {repository}: {', '.join(granted) or 'nothing'}"
               + ("; and the catalog" if catalog else ""))
    for why, _ in reasons:
        click.echo(f"  {why}")
    if not reasons:
        click.echo("  no rule matches: no right")


@click.group()
def robots() -> None:
    """Robot accounts (registry_robots): their secrets, rights and expiry."""


@robots.command("list")
@inventory_option
@limit_option
@json_option
def robots_list(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Every robot per registry: what it may do, when it expires, where its secret is."""
    rows: list[dict[str, Any]] = []
    seen = set()
    today = date.today()
    for s in (h.settings_without_secrets() for h in load_hosts(inventory, limit)):
        if s.registry_name in seen:
            continue
        seen.add(s.registry_name)
        for name, robot in sorted(s.policy.robots.items()):
            left = (robot.expires - today).days
            revoked = paths.robot_revoked_path(s.secrets_root, s.registry_name, name).exists()
            rows.append({
                "registry": s.registry_name, "robot": name,
                "repositories": list(robot.repositories),
                "actions": [a for a in ACTIONS if a in robot.actions],
                "expires": robot.expires.isoformat(), "days_left": left,
                "state": "revoked" if revoked else "expired" if left < 0 else
                         "expires soon" if left <= WARN_DAYS else "ok",
                "secret": None if revoked else
                str(paths.robot_secret_path(s.secrets_root, s.registry_name, name)),
            })
    if as_json:
        emit_json({"ok": True, "robots": rows})
        return
    lines: list[list[Any]] = [["REGISTRY", "ROBOT", "MAY", "ON", "EXPIRES", "STATE"]]
    lines += [[r["registry"], r["robot"], ",".join(r["actions"]), " ".join(r["repositories"]),
               f"{r['expires']} ({r['days_left']}d)", r["state"]] for r in rows]
    click.echo(table(lines))


def _robot_change(inventory: str, limit: tuple[str, ...], name: str, revoke: bool) -> None:
    from regops.deploy import USERS_DEPLOY
    from regops.hostops.remote import pyinfra_tail, run_pyinfra

    pairs = load_settings(load_hosts(inventory, limit))
    registries = {(s.secrets_root, s.registry_name): s for _, s in pairs
                  if name in s.policy.robots}
    if not registries:
        raise UsageError(f"no robot {name!r} in registry_robots (`regops robots list`)")
    for s in registries.values():
        secret = paths.robot_secret_path(s.secrets_root, s.registry_name, name)
        marker = paths.robot_revoked_path(s.secrets_root, s.registry_name, name)
        if store.env_var_for_robot(name) in os.environ:
            raise UsageError(f"{store.env_var_for_robot(name)} is set and overrides the secret "
                             f"file of {name!r}; unset it first")
        secret.unlink(missing_ok=True)
        if revoke:
            store.write_atomic(marker, b"", 0o600)
        else:
            marker.unlink(missing_ok=True)
            store.robot_secret(s.secrets_root, s.registry_name, name, os.environ)
    rc, output = run_pyinfra(inventory, USERS_DEPLOY, [h.name for h, _ in pairs])
    if rc != 0:
        fail(f"the rollout failed (exit {rc}); the change is recorded operator-side, so the "
             f"next deploy finishes it:\n{pyinfra_tail(output)}")
    for s in registries.values():
        where = paths.robot_secret_path(s.secrets_root, s.registry_name, name)
        click.echo(f"{s.registry_name}: robot {name} " + (
            "revoked (its tokens run out within registry_token_ttl)" if revoke
            else f"has a new secret in {where} (0600); the old one is refused"))


@robots.command("rotate")
@click.argument("name")
@inventory_option
@limit_option
def robots_rotate(name: str, inventory: str, limit: tuple[str, ...]) -> None:
    """Give robot NAME a new secret and roll it out (a revoked robot comes back)."""
    _robot_change(inventory, limit, name, revoke=False)


@robots.command("revoke")
@click.argument("name")
@inventory_option
@limit_option
def robots_revoke(name: str, inventory: str, limit: tuple[str, ...]) -> None:
    """Revoke robot NAME at once: its secret is deleted and refused by every host."""
    _robot_change(inventory, limit, name, revoke=True)


# --------------------------------------------------------------------------- audit


def since_time(text: str, now: datetime | None = None) -> str:
    """`2h`, `7d` (ago) or an ISO date or time -> the ISO UTC time the log uses."""
    now = now or datetime.now(UTC)
    try:
        return (now - parse_duration(text)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except PolicyError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: {text!r} is neither a duration (2h, 7d) nor an ISO "
                         "date or time") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_command(who: str | None, repository: str | None, events: tuple[str, ...],
                  since: str | None, last: int) -> str:
    """Filter on the host, with the deployed token package: only matches cross SSH."""
    args = ["--log", hostpaths.AUDIT_LOG, "--last", str(last)]
    for flag, value in (("--who", who), ("--repository", repository), ("--since", since)):
        if value:
            args += [flag, value]
    for event in events:
        args += ["--event", event]
    return (f"PYTHONPATH={q(hostpaths.TOKEN_CODE)} python3 -m regops_token.audit "
            + " ".join(q(a) for a in args))


def describe(record: dict[str, Any]) -> str:
    """What happened, in one short line."""
    event = record.get("event")
    if event in ("push", "delete"):
        ref = record.get("tag") or record.get("digest") or ""
        return f"{record.get('repository')}:{ref}" if record.get("tag") else \
            f"{record.get('repository')}@{ref}"
    if event == "token":
        granted = record.get("granted") or []
        asked = record.get("requested") or []
        shown = ", ".join(granted) or "nothing"
        return f"granted {shown}" + (f" (asked {', '.join(asked)})"
                                     if sorted(asked) != sorted(granted) else "")
    return str(record.get("reason") or "")


EVENTS = ("token", "login_failed", "refresh_refused", "push", "delete")


@click.command()
@inventory_option
@limit_option
@click.option("--who", metavar="NAME", help="Only this user or robot (or anonymous).")
@click.option("--repository", metavar="GLOB",
              help="Only these repositories (`*` within a segment, `**` across).")
@click.option("--event", "events", multiple=True, type=click.Choice(EVENTS),
              help="Only this kind of event (repeatable).")
@click.option("--since", metavar="WHEN", help="Only newer: 2h, 7d or an ISO date/time.")
@click.option("--last", default=50, show_default=True, type=click.IntRange(1, 100000),
              help="At most this many events per host (the newest).")
@json_option
def audit(inventory: str, limit: tuple[str, ...], who: str | None, repository: str | None,
          events: tuple[str, ...], since: str | None, last: int, as_json: bool) -> None:
    """Who did what: every token decision (who, from where, asked, granted), failed
    login, push and delete, from the token services' audit logs (token auth)."""
    if repository and pattern_problem(repository):
        raise UsageError(f"--repository: {pattern_problem(repository)}")
    since_iso = since_time(since) if since else None
    hosts = [h for h, data in checked(load_hosts(inventory, limit))
             if data["registry_auth"] == "token"]
    if not hosts:
        raise UsageError("no host with registry_auth token: only the token service keeps "
                         "an audit log (the registry's own logs: docker logs registry)")
    command = audit_command(who, repository, events, since_iso, last)
    rows: list[dict[str, Any]] = []
    errors = []
    for h in hosts:
        try:
            rc, out, err = run_remote(h, command)
        except RegopsError as error:
            errors.append(f"{h.name}: {error}")
            continue
        if rc != 0:
            said = (err or out).strip().splitlines()
            errors.append(f"{h.name}: {said[-1] if said else f'exit {rc}'}")
            continue
        rows += [{"host": h.name, **json.loads(line)} for line in out.splitlines() if line.strip()]
    rows.sort(key=lambda r: str(r.get("time", "")))
    if as_json:
        emit_json({"ok": not errors, "events": rows, "errors": errors})
    else:
        lines: list[list[Any]] = [["TIME", "HOST", "EVENT", "WHO", "FROM", "WHAT"]]
        lines += [[r.get("time", ""), r["host"], r.get("event", ""), r.get("subject", ""),
                   r.get("client_ip", ""), describe(r)] for r in rows]
        click.echo(table(lines) if rows else "no matching events")
    if errors:
        fail("\n".join(errors))


COMMANDS = [access, robots, audit]
