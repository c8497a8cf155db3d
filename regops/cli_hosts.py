"""Day-2 commands on deployed registries: gc, users, certs, status, trust.

Every command takes the pyinfra inventory (-i, or $REGOPS_INVENTORY), narrows
hosts with --limit and prints JSON with --json. Exit status: 0 ok, 1 a host
or check failed, 2 bad usage or bad inventory data (nothing was changed).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from regops import hostops, pki
from regops.hostops import OpsError, human_bytes, table

F = Callable[..., Any]


def _inventory(fn: F) -> F:
    return click.option(
        "-i", "--inventory", envvar="REGOPS_INVENTORY", required=True, metavar="PATH",
        help="pyinfra inventory of the registry hosts [env REGOPS_INVENTORY].",
    )(fn)


def _limit(fn: F) -> F:
    return click.option("--limit", multiple=True, metavar="NAME",
                        help="Only this inventory host (repeatable).")(fn)


def _json(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON (for scripts).")(fn)


def _guard(fn: F) -> F:
    """One `regops: error:` line and the documented exit status instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OpsError as error:
            _fail(str(error), error.code)
        except pki.PkiError as error:
            _fail(str(error), 1)
        return None

    return wrapper


def _fail(message: str, code: int) -> None:
    first, _, rest = message.partition("\n")
    click.echo(f"regops: error: {first}", err=True)
    for line in rest.splitlines():
        click.echo(f"  {line}", err=True)
    sys.exit(code)


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
            first, _, rest = doc[key].partition("\n")
            click.echo(f"regops: error: {first}", err=True)
            for line in rest.splitlines():
                click.echo(f"  {line}", err=True)
    sys.exit(1)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value}s"


# --------------------------------------------------------------------------- gc


@click.command()
@_inventory
@_limit
@_json
@_guard
def gc(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Run the hosts' safe GC job now (read-only while it collects) and report the result."""
    hosts = hostops.load_hosts(inventory, limit)
    hostops.checked(hosts)
    doc = hostops.run_gc(hosts)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "RESULT", "FREED", "READ-ONLY", "DURATION", "AT"]]
        for e in d["hosts"]:
            rows.append([e["host"], e["result"] or "error", human_bytes(e["bytes_freed"]),
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


@users.command("add")
@click.argument("name")
@_stdin_option
@_show_option
@_inventory
@_limit
@_json
@_guard
def users_add(name: str, password_stdin: bool, show_password: bool, inventory: str,
              limit: tuple[str, ...], as_json: bool) -> None:
    """Add user NAME, roll out the htpasswd file and check the login on every host."""
    hosts = hostops.load_hosts(inventory, limit)
    password = _read_password(password_stdin)
    doc = hostops.add_user(inventory, hosts, name, password)
    _user_result(doc, as_json, show_password, _stored_password(doc))


@users.command("passwd")
@click.argument("name")
@_stdin_option
@_show_option
@_inventory
@_limit
@_json
@_guard
def users_passwd(name: str, password_stdin: bool, show_password: bool, inventory: str,
                 limit: tuple[str, ...], as_json: bool) -> None:
    """Give user NAME a new password, roll it out, check new works and old is refused."""
    hosts = hostops.load_hosts(inventory, limit)
    password = _read_password(password_stdin)
    doc = hostops.change_password(inventory, hosts, name, password)
    _user_result(doc, as_json, show_password, _stored_password(doc))


def _stored_password(doc: dict[str, Any]) -> str:
    """The password just written (read back from its file, so it is only held briefly)."""
    from pathlib import Path

    files = doc.get("password_files") or []
    return Path(files[0]).read_text(encoding="utf-8").strip() if files else ""


@users.command("remove")
@click.argument("name")
@_inventory
@_limit
@_json
@_guard
def users_remove(name: str, inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Remove user NAME (added by `users add`), roll out, check its login is refused."""
    hosts = hostops.load_hosts(inventory, limit)
    doc = hostops.remove_user(inventory, hosts, name)
    _user_result(doc, as_json, False, "")


@users.command("list")
@_inventory
@_limit
@_json
@_guard
def users_list(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Users per registry, where each is declared and where its password comes from."""
    rows = hostops.list_users(hostops.load_hosts(inventory, limit))
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
@_inventory
@_limit
@_json
@_guard
def certs_status(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Days left of the certificate each host serves (and of the file on it), and the CA's."""
    pairs = hostops.load_settings(hostops.load_hosts(inventory, limit))
    doc = hostops.certs_status(pairs)

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
@_inventory
@_limit
@_json
@_guard
def certs_renew(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Re-issue generated certificates now and deploy them (restarts the registries)."""
    pairs = hostops.load_settings(hostops.load_hosts(inventory, limit))
    doc = hostops.renew_certs(inventory, pairs)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "REGISTRY", "OLD SERIAL", "NEW SERIAL", "SERVED"]]
        rows += [[e["host"], e["registry"], e["old_serial"], e["new_serial"],
                  "yes" if e["ok"] else "no"] for e in d["hosts"]]
        return table(rows)

    _finish(doc, as_json, render)


# --------------------------------------------------------------------------- status


@click.command()
@_inventory
@_limit
@_json
@_guard
def status(inventory: str, limit: tuple[str, ...], as_json: bool) -> None:
    """Health, version, certificate, disk, last GC and container state of every host."""
    pairs = hostops.load_settings(hostops.load_hosts(inventory, limit))
    doc = hostops.status(pairs)

    def render(d: dict[str, Any]) -> str:
        rows: list[list[Any]] = [["HOST", "HEALTH", "VERSION", "CERT", "DISK FREE", "LAST GC",
                                  "CONTAINER"]]
        for e in d["hosts"]:
            h, disk, g, c = e["health"], e["disk"], e["gc"], e["container"]
            rows.append([
                e["host"],
                f"serving ({h['http_status']})" if h["serving"] else "DOWN",
                e["version"],
                f"{e['certificate']['days_left']}d" if e["certificate"] else None,
                f"{human_bytes(disk['free_bytes'])} ({disk['free_percent']}%)" if disk else None,
                f"{g['result']} {g['time']}" if g else "never",
                f"running since {c['started_at']}" if c["running"] else (
                    "stopped" if c["exists"] else "missing"),
            ])
        return table(rows)

    _finish(doc, as_json, render)


# --------------------------------------------------------------------------- trust


@click.command()
@_inventory
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
@_json
@_guard
def trust(inventory: str, clients_inventory: str, group: str, registry: str | None,
          user: str | None, limit: tuple[str, ...], as_json: bool) -> None:
    """Make Docker on client hosts trust the registry's CA and log in to it."""
    doc = hostops.trust(inventory, registry, user, clients_inventory, group, limit)

    def render(d: dict[str, Any]) -> str:
        what = ("trusts the CA and is logged in" if d["ca"] else "is logged in (system trust)")
        rows: list[list[Any]] = [["CLIENT", f"{d['registry']} AS {d['user']}"]]
        rows += [[e["host"], what if e["ok"] else "FAILED"] for e in d["hosts"]]
        return table(rows)

    _finish(doc, as_json, render)


COMMANDS = [gc, users, certs, status, trust]
