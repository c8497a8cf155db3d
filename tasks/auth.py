"""Auth: an htpasswd file (bcrypt) from the users in the inventory data.

Passwords come from the environment or the operator's secrets directory and
never reach the output. Salts are derived from a stored key so the file is the
same on every run (a second deploy changes nothing). The registry re-reads the
file when it changes, so user changes need no restart.

Keys: registry_users, registry_htpasswd_bcrypt_cost, registry_auth_realm,
registry_password_min_length, registry_secrets_dir.
"""

from pyinfra.api import deploy

from regops import htpasswd, secrets
from regops.ops import Secret, secret_file
from regops.settings import Settings


def htpasswd_file(s: Settings) -> str:
    pepper = secrets.htpasswd_pepper(s.secrets_root, s.registry_name)
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
