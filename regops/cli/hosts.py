"""Day-2 commands on deployed registry hosts: gc, users, certs, status, trust.

Every command takes the pyinfra inventory (-i, or $REGOPS_INVENTORY), narrows
hosts with --limit and prints JSON with --json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from regops.cli.common import fail, inventory_option, json_option, limit_option
from regops.hostops import certs as certs_ops
from regops.hostops import gc as gc_ops
from regops.hostops import status as status_ops
from regops.hostops import trust as trust_ops
from regops.hostops import users as users_ops
from regops.hostops.remote import checked, load_hosts, load_settings
from regops.util import human_bytes, table


def _finish(doc: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print the result (stdout); each failed host gets one error line on stderr; exit 1."""
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(render(doc))
    if doc["ok"]:
        return
    for entry in doc["hosts"]:
        if not entry.get("ok") and entry.get("error"):
            click.echo(f"regops: error: {entry['host']}: {entry['error']}", err=True)
    for key in ("rollout_error", "deploy_error"):
        if doc.get(key):
            fail(doc[key])
    sys.exit(1)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value}s"


# --------------------------------------------------------------------------- gc


@click.command()
@inventory_option
@limit_option
@json_option
def gc(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Run the hosts' safe GC job now (read-only while it collects) and report the result.

    Replicas on a shared bucket are collected together: every replica of the name
    read-only, one collection, every replica writable again."""
    hosts = load_hosts(inventory, limit)
    checked(hosts)
    doc = gc_ops.run_gc(hosts, load_hosts(inventory, roles=None))

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "RESULT", "FREED", "BLOBS", "UPLOADS", "READ-ONLY",
                                  "DURATION", "AT"]]
        for e in d["hosts"]:
            rows.append([e["host"], e["result"] or "error", human_bytes(e["bytes_freed"]),
                         e.get("blobs_deleted"), e.get("uploads_deleted"),
                         _seconds(e["readonly_seconds"]), _seconds(e["duration_seconds"]),
                         e["time"]])
        return table(rows)

    _finish(doc, as_json, render)


# --------------------------------------------------------------------------- users


@click.group()
def users() -> None:
    """Registry users: add, remove, change passwords; rolled out without a restart.

    Users in the inventory's registry_users are permanent; users added here are
    recorded in <secrets>/<registry>/cli-users/<name>, with their password in
    <secrets>/<registry>/users/<name>.password (0600) like every user.
    """


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    stream = sys.stdin
    if stream.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    text = stream.read()
    if text.endswith("\n"):
        text = text[:-1]
    return text.removesuffix("\r")


def _user_result(doc: dict[str, Any], as_json: bool, show: bool, password: str) -> None:
    if show and doc.get("generated"):
        doc["password"] = password

    def render(d: dict[str, Any]) -> str:
        verb = {"add": "added", "remove": "removed", "passwd": "has a new password"}[d["action"]]
        lines = [f"user {d['user']} {verb}"]
        for path in d["password_files"]:
            lines.append(f"  {'deleted' if d['action'] == 'remove' else 'password in'} "
                         f"{path}" + ("" if d["action"] == "remove" else " (0600)"))
        check = "old password refused" if d["action"] == "remove" else "login verified"
        rows: list[list[Any]] = [["HOST", "REGISTRY", "RESULT"]]
        rows += [[e["host"], e.get("registry"), check if e["ok"] else "FAILED"]
                 for e in d["hosts"]]
        lines.append(table(rows))
        if d.get("password"):
            lines.append(f"password: {d['password']}")
        return "\n".join(lines)

    _finish(doc, as_json, render)


_stdin_option = click.option("--password-stdin", is_flag=True,
                             help="Read the password from stdin instead of generating one.")
_show_option = click.option("--show-password", is_flag=True,
                            help="Also print a generated password (default: only the path "
                            "of its 0600 file).")


def _password_command(new: bool) -> Callable[..., None]:
    """`users add` and `users passwd`: one command body, told which it is."""

    def command(
        name: str,
        password_stdin: bool,
        show_password: bool,
        inventory: str,
        limit: tuple[str, ...],
        as_json: bool,
    ) -> None:
        hosts = load_hosts(inventory, limit)
        password = _read_password(password_stdin)
        doc = users_ops.set_password(inventory, hosts, name, password, new=new)
        _user_result(doc, as_json, show_password, _stored_password(doc))

    command.__doc__ = (
        "Add user NAME, roll out the htpasswd file and check the login on every host."
        if new
        else "Give user NAME a new password, roll it out, check new works and old is refused."
    )
    for option in (json_option, limit_option, inventory_option, _show_option, _stdin_option):
        command = option(command)
    return click.argument("name")(command)


users.command("add")(_password_command(new=True))
users.command("passwd")(_password_command(new=False))


def _stored_password(doc: dict[str, Any]) -> str:
    """The password just written (read back from its file, so it is only held briefly)."""
    files = doc.get("password_files") or []
    return Path(files[0]).read_text(encoding="utf-8").strip() if files else ""


@users.command("remove")
@click.argument("name")
@inventory_option
@limit_option
@json_option
def users_remove(name: str, inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Remove user NAME (added by `users add`), roll out, check its login is refused."""
    hosts = load_hosts(inventory, limit)
    doc = users_ops.remove_user(inventory, hosts, name)
    _user_result(doc, as_json, False, "")


@users.command("list")
@inventory_option
@limit_option
@json_option
def users_list(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Users per registry, where each is declared and where its password comes from."""
    rows = users_ops.list_users(load_hosts(inventory, limit))
    if as_json:
        click.echo(json.dumps({"ok": True, "users": rows}, indent=2, sort_keys=True))
        return
    lines: list[list[Any]] = [["REGISTRY", "USER", "DECLARED IN", "PASSWORD FROM"]]
    lines += [[r["registry"], r["user"], r["declared_in"], r["password"]] for r in rows]
    click.echo(table(lines))


# --------------------------------------------------------------------------- certs


@click.group()
def certs() -> None:
    """TLS certificates: what the hosts serve, and renewal of generated ones."""


def _days(info: dict[str, Any] | None) -> str:
    return "-" if info is None else f"{info['days_left']}d (serial {info['serial'][:12]})"


@certs.command("status")
@inventory_option
@limit_option
@json_option
def certs_status(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Days left of the certificate each host serves (and of the file on it), and the CA's."""
    pairs = load_settings(load_hosts(inventory, limit))
    doc = certs_ops.certs_status(pairs)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "REGISTRY", "SERVED", "ON HOST", "NOTE"]]
        for e in d["hosts"]:
            note = "served and file differ" if e["differ"] else (
                e["served_error"] or e["file_error"] or "")
            rows.append([e["host"], e["registry"], _days(e["served"]), _days(e["file"]), note])
        lines = [table(rows)]
        for r in d["registries"]:
            kind = "generated CA" if r["generated"] else "provided CA"
            lines.append(f"{r['registry']}: {kind} {_days(r['ca'])}"
                         f" ({r['ca_file'] or 'system trust'})")
        return "\n".join(lines)

    _finish(doc, as_json, render)


@certs.command("renew")
@inventory_option
@limit_option
@json_option
def certs_renew(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Re-issue generated certificates now and deploy them (restarts the registries)."""
    pairs = load_settings(load_hosts(inventory, limit))
    doc = certs_ops.renew_certs(inventory, pairs)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "REGISTRY", "OLD SERIAL", "NEW SERIAL", "SERVED"]]
        rows += [[e["host"], e["registry"], e["old_serial"], e["new_serial"],
                  "yes" if e["ok"] else "no"] for e in d["hosts"]]
        return table(rows)

    _finish(doc, as_json, render)


# --------------------------------------------------------------------------- status


@click.command()
@inventory_option
@limit_option
@json_option
def status(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Health, version, certificate, disk, last GC and container state of every host."""
    pairs = load_settings(load_hosts(inventory, limit, roles=None))
    doc = status_ops.status(pairs)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "HEALTH", "VERSION", "CERT", "STORAGE", "DISK FREE",
                                  "LAST GC", "FRONT DOOR", "AUTH", "CONTAINER"]]
        for e in d["hosts"]:
            if e.get("role") in ("load_balancer", "storage") or "health" not in e:
                services = e.get("services") or []
                health, cluster = e.get("health") or {}, e.get("cluster")
                role = e.get("role")
                if cluster:
                    missing = cluster["under_replicated_volumes"]
                    role = (f"{role}, {cluster['storage_hosts']} hosts, replication "
                            f"{cluster['replication']}"
                            + (f", {len(missing)} volumes lacking a copy" if missing else ""))
                rows.append([
                    e["host"], e.get("error") or (
                        f"serving ({health['http_status']})" if health else "ok"),
                    None, None, role,
                    f"{human_bytes(e['disk']['free_bytes'])} ({e['disk']['free_percent']}%)"
                    if e.get("disk") else None, None,
                    ", ".join(f"{sv['name']} {sv['state']}" for sv in services) or None,
                    None, None])
                continue
            h, disk, g, c, f = e["health"], e["disk"], e["gc"], e["container"], e["frontdoor"]
            rows.append([
                e["host"],
                f"serving ({h['http_status']})" if h["serving"] else "DOWN",
                e["version"],
                f"{e['certificate']['days_left']}d" if e["certificate"] else None,
                ("disk" if e["storage"]["kind"] == "filesystem" else
                 f"s3://{e['storage']['bucket']}{e['storage']['rootdirectory']}"
                 + (f", {e['storage']['descriptor_cache']}"
                    if e["storage"].get("descriptor_cache", "memory") != "memory" else ""))
                + (f", cache of {e['cache']['upstream']} (expires {e['cache']['expiry']})"
                   if e["cache"] else ""),
                f"{human_bytes(disk['free_bytes'])} ({disk['free_percent']}%)" if disk else None,
                f"{g['result']} {g['time']}" if g else "never",
                f"nginx, {f['mode'] or '?'}" if f["running"] else "DOWN",
                "htpasswd" if e["auth"]["mode"] != "token" else
                "token" if e["auth"]["token_service"] == "active" else
                f"token service {e['auth']['token_service'].upper()}",
                f"running since {c['started_at']}" if c["running"] else (
                    "stopped" if c["exists"] else "missing"),
            ])
        return table(rows)

    _finish(doc, as_json, render)


# --------------------------------------------------------------------------- trust


@click.command()
@inventory_option
@click.option("--clients", "clients_inventory", envvar="REGOPS_CLIENTS_INVENTORY",
              required=True, metavar="PATH",
              help="pyinfra inventory holding the client hosts [env REGOPS_CLIENTS_INVENTORY].")
@click.option("--group", default="clients", show_default=True,
              help="Group of client hosts in the clients inventory.")
@click.option("--registry", default=None, metavar="NAME",
              help="Registry host or registry_name in -i [default: the only registry].")
@click.option("--user", default=None, metavar="USER",
              help="Registry user the clients log in as [default: the first user].")
@click.option("--limit", multiple=True, metavar="NAME",
              help="Only this client host (repeatable).")
@click.option("--mirror/--no-mirror", default=None,
              help="Add the registry to Docker's registry-mirrors [default: if it is a "
                   "cache of Docker Hub].")
@json_option
def trust(inventory: str, clients_inventory: str, group: str, registry: str | None,
          user: str | None, limit: tuple[str, ...], mirror: bool | None, as_json: bool) -> None:
    """Make Docker on client hosts trust the registry's CA and log in to it."""
    doc = trust_ops.trust(inventory, registry, user, clients_inventory, group, limit, mirror)

    def render(d: dict[str, Any]) -> str:
        what = ("trusts the CA and is logged in" if d["ca"] else "is logged in (system trust)")
        if d.get("mirror"):
            what += f", mirror {d['mirror']}"
        rows: list[list[Any]] = [["CLIENT", f"{d['registry']} AS {d['user']}"]]
        rows += [[e["host"], what if e["ok"] else "FAILED"] for e in d["hosts"]]
        return table(rows)

    _finish(doc, as_json, render)


COMMANDS = [gc, users, certs, status, trust]
