"""Auth: an htpasswd file (bcrypt) from the users in the inventory data.

Passwords come from the environment or the operator's secrets directory and
never reach the output. Salts are derived from a stored key so the file is the
same on every run (a second deploy changes nothing). The registry re-reads the
file when it changes, so user changes need no restart.

Its keys: the `auth` concern of `regops.config.keys` (README: Data keys).
"""

from pyinfra.api import deploy

from regops.config.settings import Settings
from regops.deploy.ops import Secret, secret_file
from regops.secrets import htpasswd, store


def htpasswd_file(s: Settings) -> str:
    pepper = store.htpasswd_pepper(s.secrets_root, s.registry_name)
    cost = s["registry_htpasswd_bcrypt_cost"]
    return htpasswd.render(
        (u.name, htpasswd.hash_password(u.name, u.password, cost, pepper)) for u in s.users
    )


@deploy("Registry users")
def apply(s: Settings) -> None:
    secret_file(
        name=f"Write the htpasswd file for {len(s.users)} user(s)",
        src=Secret(htpasswd_file(s)),
        path=f"{s['registry_config_dir']}/htpasswd",
        uid=0,
        gid=s["registry_gid"],
        mode="0640",
    )
