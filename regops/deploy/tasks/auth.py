"""Auth: the users' (and robots') bcrypt hashes, where the checker reads them.

With `registry_auth: token` the token service checks them (once per token) and
re-reads its files when they change; with `htpasswd` the registry does (on every
request) and re-reads its htpasswd file. Either way user changes need no restart.
Passwords and robot secrets come from the environment or the operator's secrets
directory and never reach the output. Salts are derived from a stored key so the
files are the same on every run (a second deploy changes nothing).

Its keys: the `auth` concern of `regops.config.keys` (docs/reference/keys.md).
"""

import os

from pyinfra.api import deploy
from pyinfra.operations import files

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy.operations import Secret, secret_file
from regops.secrets import htpasswd, store


def _render(s: Settings, accounts: list[tuple[str, str, int]]) -> str:
    pepper = store.htpasswd_pepper(s.secrets_root, s.registry_name)
    cost = s["registry_htpasswd_bcrypt_cost"]
    return htpasswd.render(
        (name, htpasswd.hash_password(name, secret, cost, pepper, generation))
        for name, secret, generation in accounts
    )


def htpasswd_file(s: Settings) -> str:
    return _render(s, [(u.name, u.password, u.generation) for u in s.users])


def robots_file(s: Settings) -> str:
    """The robots that have a secret (a revoked one has none)."""
    accounts = []
    for name in sorted(s["registry_robots"]):
        secret = store.robot_secret(s.secrets_root, s.registry_name, name, os.environ)
        if secret is not None:
            accounts.append((name, secret, 0))
    return _render(s, accounts)


@deploy("Registry users")
def apply(s: Settings) -> None:
    if not s.token_auth:
        secret_file(
            name=f"Write the htpasswd file for {len(s.users)} user(s)",
            src=Secret(htpasswd_file(s)),
            path=f"{s['registry_config_dir']}/htpasswd",
            uid=0,
            gid=s["registry_gid"],
            mode="0640",
        )
        return
    files.directory(
        name=f"Create {hostpaths.TOKEN_DIR}, readable by the token service only",
        path=hostpaths.TOKEN_DIR,
        user="root",
        group=hostpaths.TOKEN_USER,
        mode="0750",
    )
    secret_file(
        name=f"Write the token service's users ({len(s.users)})",
        src=Secret(htpasswd_file(s)),
        path=hostpaths.TOKEN_USERS,
        uid=0,
        gid=s["registry_token_uid"],
        mode="0640",
    )
    secret_file(
        name=f"Write the token service's robots ({len(s['registry_robots'])})",
        src=Secret(robots_file(s)),
        path=hostpaths.TOKEN_ROBOTS,
        uid=0,
        gid=s["registry_token_uid"],
        mode="0640",
    )
