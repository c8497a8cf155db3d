"""regops: a secure private Docker registry on every host of the inventory.

    pyinfra inventories/prod.py deploy.py

Each host's data is checked first (one line naming host, key and problem), and
so are the hosts that share a registry name and their shared bucket; nothing
is changed on any host until every host's data is good. Hosts do what their
`registry_role` says: a storage host, a replica or a load balancer (docs/storage.md: High
availability).
"""

from pyinfra import host, inventory

from regops.config.settings import load_or_exit
from regops.deploy import migrations
from regops.deploy.tasks import (
    account,
    auth,
    docker,
    frontdoor,
    gc,
    loadbalancer,
    redis,
    registry,
    seaweedfs,
    tls,
    token,
)

settings = load_or_exit(host.name, host.data.dict(), {h.name: h.data.dict() for h in inventory})

if settings.role == "storage":
    seaweedfs.apply(settings)

if settings.role == "registry":
    docker.apply(settings)
    account.apply(settings)
    tls.apply(settings)
    auth.apply(settings)
    token.apply(settings)
    registry.apply(settings)
    frontdoor.apply(settings)
    migrations.to_0_1_0(settings)  # once the new registry and its front door serve
    token.retire(settings)  # htpasswd mode: only once nothing sends clients to it
    gc.apply(settings)

if settings.role == "load_balancer":
    loadbalancer.apply(settings)

if settings["registry_redis_host"] == host.name:  # any role: the replicas' shared cache
    redis.apply(settings)

migrations.to_0_2_0(settings)  # last: what replaces a piece of 0.1.0 runs before it goes
