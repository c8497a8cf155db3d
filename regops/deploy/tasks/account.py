"""The unprivileged system account the registry container runs as, and the config
directory only it and root can read.

Its keys: the `account` concern of `regops.config.keys` (docs/reference/keys.md).
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy.facts import Account, expect_at_prepare, serve_from_snapshot

SHELL = "/usr/sbin/nologin"
HOME = "/nonexistent"


def system_account(name: str, uid: int, gid: int, user_label: str) -> None:
    """A system group and a user of that name, no login, no home. When `getent` shows
    both as server.group and server.user would leave them (the group there, the user's
    home, shell and primary group right), they are not asked: server.user reads every
    account on the host with `lastlog` and `groups`, half a second each time."""
    expect_at_prepare(Account, account=name)
    account = host.get_fact(Account, account=name)
    if (account.get("group_present") == "yes" and account.get("home") == HOME
            and account.get("shell") == SHELL and account.get("group") == name):
        return
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
        shell=SHELL,
        home=HOME,
        create_home=False,
        ensure_home=False,  # /nonexistent must stay nonexistent
    )


@deploy("Registry account")
def apply(s: Settings) -> None:
    serve_from_snapshot()
    user = s["registry_user"]
    for name in (user, hostpaths.TOKEN_USER) if s.token_auth else (user,):
        expect_at_prepare(Account, account=name)  # both read in one round trip
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
