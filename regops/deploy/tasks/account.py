"""The unprivileged system account the registry container runs as, and the config
directory only it and root can read.

Its keys: the `account` concern of `regops.config.keys` (README: Data keys).
"""

from pyinfra.api import deploy
from pyinfra.operations import files, server

from regops import hostpaths
from regops.config.settings import Settings


def system_account(name: str, uid: int, gid: int, user_label: str) -> None:
    """A system group and a user of that name, no login, no home."""
    server.group(
        name=f"Create the system group {name} (gid {gid})",
        group=name,
        gid=gid,
        system=True,
    )
    server.user(
        name=user_label,
        user=name,
        uid=uid,
        group=name,
        system=True,
        shell="/usr/sbin/nologin",
        home="/nonexistent",
        create_home=False,
        ensure_home=False,  # /nonexistent must stay nonexistent
    )


@deploy("Registry account")
def apply(s: Settings) -> None:
    user = s["registry_user"]
    system_account(user, s["registry_uid"], s["registry_gid"],
                    f"Create the system user {user} (uid {s['registry_uid']}, no login)")
    if s.token_auth:
        token = hostpaths.TOKEN_USER
        system_account(token, s["registry_token_uid"], s["registry_token_uid"],
                        f"Create the system user {token} for the token service (no login)")
    config_dir = s["registry_config_dir"]
    files.directory(
        name=f"Create {config_dir}, readable by the registry's group only",
        path=config_dir,
        user="root",
        group=user,
        mode="0750",
    )
