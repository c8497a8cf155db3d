"""`regops users`: add, remove and re-password registry users operator-side, roll the
htpasswd file out with the users deploy (no registry restart) and check the logins."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regops.config import ldap
from regops.config.settings import Settings, cli_users, user_names
from regops.deploy import USERS_DEPLOY
from regops.errors import RegopsError, UsageError
from regops.hostops.remote import checked, load_settings, pyinfra_tail, run_pyinfra, summarize
from regops.inventory import InventoryHost
from regops.registry.client import RegistryError
from regops.registry.endpoint import api_client
from regops.secrets import paths, store
from regops.util import parallel_all


def merge_user_names(declared: Sequence[str], stored: Iterable[str]) -> list[str]:
    """Inventory users in their order, then users that only have a password file, sorted."""
    names = list(dict.fromkeys(declared))
    names += sorted(set(stored) - set(names))
    return names


def user_rows(registry: str, declared: Sequence[str], stored: Iterable[str],
              environ: dict[str, str], password_file: Callable[[str], Path]
              ) -> list[dict[str, Any]]:
    """One row per user: where it is declared and where its password comes from."""
    stored = set(stored)
    rows = []
    for name in merge_user_names(declared, stored):
        var = store.env_var_for_user(name)
        if var in environ:
            source = f"env {var}"
        elif name in stored:
            source = "file"
        else:
            source = "missing (the next deploy generates it)"
        rows.append({
            "registry": registry,
            "user": name,
            "declared_in": "inventory" if name in declared else "cli",
            "password": source,
            "password_file": str(password_file(name)) if name in stored else None,
        })
    return rows


def external_rows(registry: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """A row for each system that vouches for more people (registry_ldap, registry_oidc):
    they are not listed one by one here, the directory or the provider knows them."""
    rows = []
    if data.get("registry_ldap"):
        urls = " ".join(ldap.urls(data["registry_ldap"]))
        rows.append({"registry": registry, "user": "ldap:*", "declared_in": f"directory {urls}",
                     "password": "the directory", "password_file": None})
    if data.get("registry_oidc"):
        rows.append({"registry": registry, "user": "oidc:*",
                     "declared_in": f"provider {data['registry_oidc']['issuer']}",
                     "password": "CLI secret (web pages)", "password_file": None})
    return rows


@dataclass
class Registry:
    """The hosts that serve one registry name from one secrets directory."""

    name: str
    root: Path
    min_length: int
    declared: list[str]
    hosts: list[InventoryHost]
    data: dict[str, Any]  # the first host's checked data

    def password_file(self, user: str) -> Path:
        return paths.password_path(self.root, self.name, user)

    def marker(self, user: str) -> Path:
        return paths.cli_users_dir(self.root, self.name) / user

    @property
    def stored(self) -> list[str]:
        return cli_users(self.root, self.name)


def registries(hosts: Sequence[InventoryHost]) -> list[Registry]:
    found: dict[tuple[Path, str], Registry] = {}
    for h, d in checked(hosts):
        root = Path(d["registry_secrets_dir"]).absolute()
        key = (root, d["registry_name"])
        if key not in found:
            found[key] = Registry(d["registry_name"], root, d["registry_password_min_length"],
                                  user_names(h.name, d["registry_users"]), [], d)
        found[key].hosts.append(h)
    return list(found.values())


def list_users(hosts: Sequence[InventoryHost],
               environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    env = dict(os.environ if environ is None else environ)
    rows: list[dict[str, Any]] = []
    for reg in registries(hosts):
        rows += user_rows(reg.name, reg.declared, reg.stored, env, reg.password_file)
        rows += external_rows(reg.name, reg.data)
    return rows


def check_user_name(name: str) -> None:
    try:
        user_names("user", [name])
    except UsageError:
        raise UsageError(f"{name!r} is not a valid user name "
                         "(lower-case letters, digits, ._-; at most 64)") from None


def check_password(password: str, user: str, regs: Sequence[Registry]) -> None:
    for reg in regs:
        problem = store.password_problem(password, reg.min_length, user=user)
        if problem:
            raise UsageError(f"the password for {user!r} {problem}")


def _env_override(user: str, environ: dict[str, str]) -> None:
    var = store.env_var_for_user(user)
    if var in environ:
        raise UsageError(f"{var} is set and overrides the password file of {user!r}; "
                         "unset it, or change the password there and run the deploy")


def _verify_login(s: Settings, user: str, password: str, want: int,
                  wait: float = 15) -> str | None:
    """None once GET /v2/ as `user` answers `want`; else why not (bounded retries)."""
    try:
        client = api_client(s, user, password)
    except RegopsError as error:
        return str(error)
    deadline = time.monotonic() + wait
    code: int | None = None
    while True:
        try:
            code = client.ping()
            if code == want:
                return None
            detail = f"HTTP {code}"
        except RegistryError as error:
            detail = str(error)
        if time.monotonic() >= deadline:
            return f"GET /v2/ as {user} gave {detail}, expected {want}"
        time.sleep(1)


@dataclass
class UserChange:
    action: str
    user: str
    password: str  # the new one ("" for remove)
    old_passwords: dict[tuple[Path, str], str | None]  # per (secrets root, registry name)
    generated: bool
    files: list[Path]


def _rollout(inventory: str, regs: Sequence[Registry], change: UserChange) -> dict[str, Any]:
    hosts = [h for reg in regs for h in reg.hosts]
    rc, output = run_pyinfra(inventory, USERS_DEPLOY, [h.name for h in hosts])
    pairs = load_settings(hosts)

    def one(pair: tuple[InventoryHost, Settings]) -> dict[str, Any]:
        h, s = pair
        errors = []
        if change.password:
            errors.append(_verify_login(s, change.user, change.password, 200))
        old = change.old_passwords.get((s.secrets_root, s.registry_name))
        if old and old != change.password:
            errors.append(_verify_login(s, change.user, old, 401))
        error = next((e for e in errors if e), None)
        return {"host": h.name, "registry": s.registry_address, "ok": error is None,
                "error": error}

    doc = summarize(parallel_all(one, pairs) if rc == 0 else [
        {"host": h.name, "ok": False, "error": "not checked: the rollout failed"} for h in hosts])
    doc.update(action=change.action, user=change.user,
               password_files=[str(p) for p in change.files], generated=change.generated,
               rollout_ok=rc == 0)
    if rc != 0:
        doc["ok"] = False
        doc["rollout_error"] = (
            f"the rollout failed (exit {rc}); the change is recorded operator-side, so "
            f"`pyinfra -y {inventory} {USERS_DEPLOY}` (or the deploy) "
            f"finishes it:\n{pyinfra_tail(output)}")
    return doc


def set_password(
    inventory: str,
    hosts: Sequence[InventoryHost],
    user: str,
    password: str | None,
    *,
    new: bool,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`users add` (new) and `users passwd`: write the password (generated when None)
    operator-side, roll it out, check it works and that an old one is refused."""
    env = dict(os.environ if environ is None else environ)
    check_user_name(user)
    regs = registries(hosts)
    for reg in regs:
        if new and user in reg.declared:
            raise UsageError(
                f"user {user!r} is already declared in registry_users of "
                f"{reg.hosts[0].name}; use `regops users passwd {user}`"
            )
        if new and user in reg.stored:
            raise UsageError(
                f"user {user!r} already exists ({reg.password_file(user)}); "
                f"use `regops users passwd {user}`"
            )
        if not new and user not in reg.declared and user not in reg.stored:
            raise UsageError(
                f"no user {user!r} on registry {reg.name} (`regops users add` creates one)"
            )
    _env_override(user, env)
    old = {} if new else {(reg.root, reg.name): _current_password(reg, user, env) for reg in regs}
    generated = password is None
    password = store.generate_password() if password is None else password
    check_password(password, user, regs)
    files = []
    for reg in regs:
        # Adding: a password file without a marker is left from a user once declared
        # in registry_users; it is replaced, not reused.
        path = reg.password_file(user)
        store.write_atomic(path, (password + "\n").encode(), 0o600)
        if not new:  # a new credential, even with the same password: old sessions end
            store.raise_generation(reg.root, reg.name, user)
        if new and not store.write_atomic(reg.marker(user), b"", 0o600, exclusive=True):
            raise UsageError(f"user {user!r} was just added by someone else ({path})")
        files.append(path)
    action = "add" if new else "passwd"
    return _rollout(inventory, regs, UserChange(action, user, password, old, generated, files))


def _current_password(reg: Registry, user: str, env: dict[str, str]) -> str | None:
    var = store.env_var_for_user(user)
    if var in env:
        return env[var]
    path = reg.password_file(user)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def remove_user(
    inventory: str,
    hosts: Sequence[InventoryHost],
    user: str,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    check_user_name(user)
    regs = registries(hosts)
    for reg in regs:
        if user in reg.declared:
            raise UsageError(
                f"user {user!r} is declared in registry_users of "
                f"{reg.hosts[0].name} in {inventory}: remove it there, then run the deploy"
            )
    regs = [reg for reg in regs if user in reg.stored]
    if not regs:
        raise UsageError(f"no user {user!r} (`regops users list` shows the users)")
    old = {(reg.root, reg.name): _current_password(reg, user, env) for reg in regs}
    files = []
    for reg in regs:
        reg.marker(user).unlink(missing_ok=True)
        reg.password_file(user).unlink(missing_ok=True)
        store.raise_generation(reg.root, reg.name, user)  # kept: a re-added user starts anew
        files.append(reg.password_file(user))
    return _rollout(inventory, regs, UserChange("remove", user, "", old, False, files))
