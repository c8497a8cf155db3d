"""The unprivileged system account the registry container runs as, and the config
directory only it and root can read.

Its keys: the `account` concern of `regops.config.keys` (README: Data keys).
"""

from pyinfra.api import deploy
from pyinfra.operations import files, server

from regops import hostpaths
from regops.config.settings import Settings


@deploy("Registry account")
def apply(s: Settings) -> None:
    user = s["registry_user"]
    server.group(
        name=f"Create the system group {user} (gid {s['registry_gid']})",
        group=user,
        gid=s["registry_gid"],
        system=True,
    )
    server.user(
        name=f"Create the system user {user} (uid {s['registry_uid']}, no login)",
        user=user,
        uid=s["registry_uid"],
        group=user,
        system=True,
        shell="/usr/sbin/nologin",
        home="/nonexistent",
        create_home=False,
        ensure_home=False,  # /nonexistent must stay nonexistent
    )
    if s.token_auth:
        token = hostpaths.TOKEN_USER
        server.group(
            name=f"Create the system group {token} (gid {s['registry_token_uid']})",
            group=token,
            gid=s["registry_token_uid"],
            system=True,
        )
        server.user(
            name=f"Create the system user {token} for the token service (no login)",
            user=token,
            uid=s["registry_token_uid"],
            group=token,
            system=True,
            shell="/usr/sbin/nologin",
            home="/nonexistent",
            create_home=False,
            ensure_home=False,
        )
    config_dir = s["registry_config_dir"]
    files.directory(
        name=f"Create {config_dir}, readable by the registry's group only",
        path=config_dir,
        user="root",
        group=user,
        mode="0750",
    )
