"""What a host deployed by an earlier release needs to become this release's host.

One function per release, named for the release whose hosts it makes: `to_0_1_0`
upgrades hosts deployed before 0.1.0 (before the front door and the storage
clusters), `to_0_2_0` hosts deployed by 0.1.0. Hosts deployed by 0.2.0 need
nothing of their own for 0.3.0: the deploy rewrites the front door's site and
replaces the token service as any change does. The deploy calls each where its
operations must run (see each docstring), so that the tasks hold only what this
release does. Each removes what an earlier release left and this one no longer
uses; on a host that never had it, it changes nothing.

Data keys that an earlier release knew and this one renamed are here too
(`RENAMED_KEYS`), so that an old inventory gets "use X instead" rather than
"unknown key".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, systemd

from regops import hostpaths

if TYPE_CHECKING:  # settings reads RENAMED_KEYS: no import of it at run time
    from regops.config.settings import Settings

# Data keys renamed or replaced, with what to use instead, by the release that did it.
RENAMED_KEYS = {
    # 0.1.0: the front door (nginx) serves TLS, so its ciphers have OpenSSL's names.
    "registry_tls_cipher_suites": "registry_tls_ciphers (OpenSSL names: the front door, "
    "nginx, serves TLS now)",
}


def renamed(keys: list[str]) -> tuple[str, str] | None:
    """The first of `keys` an earlier release knew, and what replaces it; None if none."""
    return next(((k, RENAMED_KEYS[k]) for k in keys if k in RENAMED_KEYS), None)


def to_0_1_0(s: Settings) -> None:
    """Hosts deployed before 0.1.0.

    A storage host ran SeaweedFS as one process; it must stop before the parts'
    units start on the same ports, so `regops.deploy.tasks.seaweedfs` calls this
    before them. A replica served TLS from the registry itself, with a serve.yml
    link: both go once the new registry and its front door serve, so the deploy
    calls this after the front door.
    """
    if s.role == "storage" and host.get_fact(File, path=hostpaths.SEAWEEDFS_OLD_UNIT):
        # Same data directory: volumes and the filer's metadata carry over; the master
        # starts afresh in <data>/master and learns the volumes from the volume server.
        systemd.service(name="Stop the one-process regops-seaweedfs (one unit per part now)",
                        service="regops-seaweedfs", running=False, enabled=False)
        files.file(name=f"Remove {hostpaths.SEAWEEDFS_OLD_UNIT}",
                   path=hostpaths.SEAWEEDFS_OLD_UNIT, present=False)
    if s.role == "registry":
        files.file(
            name="Remove the serve.yml link of regops before the front door",
            path=f"{s['registry_config_dir']}/serve.yml",
            present=False,
        )
        files.directory(
            name="Remove the registry's own TLS files of regops before the front door",
            path=f"{s['registry_config_dir']}/tls",
            present=False,
        )


def to_0_2_0(s: Settings) -> None:
    """Hosts deployed by 0.1.0: what they keep that 0.2.0 no longer uses.

    Called at the end of the deploy, after every task of the host's role, so what
    replaces a removed piece already runs when it goes.

    A replica ran GC from cron (`/etc/cron.d/regops-gc`); regops-gc.timer runs it
    now (`regops.deploy.tasks.gc`), so the cron file goes, else GC would run twice.
    The token service's `server.py` was split into modules of their own; the deploy
    ships files but removes none, so the old module goes here.
    """
    if s.role == "registry":
        files.file(name="Remove the GC cron job of regops 0.1.0 (regops-gc.timer runs GC now)",
                   path=hostpaths.GC_CRON, present=False)
        files.file(name="Remove the token service's server.py of regops 0.1.0 (split into "
                        "config, authn, tokens, http and notify)",
                   path=f"{hostpaths.TOKEN_CODE}/regops_token/server.py", present=False)
