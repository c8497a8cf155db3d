"""The replicas' shared blob-descriptor cache (`registry_redis_host`): Debian's redis
on one host of the registry name, for sites where replicas should not each learn
every blob's size from S3.

Bound to the host's private address with a generated password (kept on the
operator's machine, written only into redis's and the registries' configs), no
persistence and an LRU bound, since it is a cache. `regops-redis-flush` empties it;
the cluster GC runs it before the replicas go writable again.

Its keys: the `redis` concern of `regops.config.keys`.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy.facts import serve_from_snapshot
from regops.deploy.operations import Secret, refresh_apt_for, secret_file
from regops.secrets import store


@deploy("Shared descriptor cache")
def apply(s: Settings) -> None:
    serve_from_snapshot()  # every fact of this host in a few round trips
    refresh_apt_for(["redis-server"])
    apt.packages(name="Install redis (redis-server)", packages=["redis-server"])
    password = store.redis_password(s.secrets_root, s.registry_name)
    # The package makes the group `redis`; on a fresh host it does not exist yet when
    # the deploy plans, so the first run gives the group read access by name.
    found = host.get_fact(Command, command="getent group redis | cut -d: -f3; true")
    gid = int(found) if found and found.strip().isdigit() else None
    config = secret_file(
        name=f"Write {hostpaths.REDIS_CONFIG}: private address, password, no disk (a secret)",
        src=Secret(render.template(hostpaths.REDIS_CONFIG, s, redis_password=password)),
        path=hostpaths.REDIS_CONFIG,
        uid=0,
        gid=gid or 0,
        mode="0640",
    )
    changed = [config]
    if gid is None:
        changed.append(server.shell(
            name="Let the group redis read its config (the package made the group now)",
            commands=[f"chgrp redis {hostpaths.REDIS_CONFIG}"]))
    files.put(
        name=f"Install {hostpaths.REDIS_FLUSH}, which the cluster GC empties the cache with",
        src=StringIO(render.template(hostpaths.REDIS_FLUSH, s)),
        dest=hostpaths.REDIS_FLUSH,
        user="root",
        group="root",
        mode="0700",
    )
    systemd.service(name="Run redis now and at boot", service="redis-server", running=True,
                    enabled=True)
    systemd.service(name="Restart redis (its config changed; a cache starts empty)",
                    service="redis-server", restarted=True, _if=any_changed(*changed))
