"""SeaweedFS on a storage host (`storage.*`)."""

from __future__ import annotations

from regops import hostpaths
from regops.compliance.checks._base import CIS, Context, check
from regops.compliance.checks._helpers import file_check
from regops.compliance.facts import listening
from regops.compliance.model import Verdict, fail, ok
from regops.config.settings import Settings
from regops.storage import seaweedfs


def _storage_ports(s: Settings) -> dict[int, str]:
    """Ports of a storage host that only the cluster, the balancer and replicas use."""
    parts = {seaweedfs.MASTER_PORT: "master", seaweedfs.VOLUME_PORT: "volume",
             seaweedfs.FILER_PORT: "filer"}
    return {**parts, **{p + seaweedfs.GRPC_OFFSET: f"{n} gRPC" for p, n in parts.items()},
            s["registry_seaweedfs_s3_port"]: "S3 gateway",
            seaweedfs.ETCD_CLIENT_PORT: "etcd", seaweedfs.ETCD_PEER_PORT: "etcd peers"}


@check(
    id="storage.s3-identity",
    title="The S3 gateway's identity is root:seaweedfs, 0640 or stricter",
    rationale="It holds the replicas' S3 secret key: every image.",
    reference=f"regops (as {CIS} §3.14 for key material)",
    roles=("storage",),
)
def storage_identity(c: Context) -> Verdict:
    return file_check(c, hostpaths.SEAWEEDFS_S3_CONFIG, "root", {hostpaths.SEAWEEDFS_USER},
                      0o640)


@check(
    id="storage.unprivileged",
    title="SeaweedFS runs as its own user, not root",
    rationale="A flaw in a network service running as root is the host.",
    reference="regops",
    roles=("storage",),
)
def storage_unprivileged(c: Context) -> Verdict:
    users = set(c.facts.text("weed_users", "cannot list processes").split())
    if not users:
        return fail("no weed process runs", "redeploy, or start regops-seaweedfs@<part>")
    if users != {hostpaths.SEAWEEDFS_USER}:
        return fail(f"weed runs as {', '.join(sorted(users))} (want only "
                    f"{hostpaths.SEAWEEDFS_USER})", "redeploy: the units set User=")
    return ok(f"every weed process runs as {hostpaths.SEAWEEDFS_USER}")


@check(
    id="storage.private-only",
    title="No SeaweedFS or etcd port on a wildcard address, no catalog server",
    rationale="None of them asks for credentials but the S3 gateway: the private address is their "
              "boundary.",
    reference="regops",
    roles=("storage",),
)
def storage_private(c: Context) -> Verdict:
    ports = _storage_ports(c.s)
    open_ = listening(c.facts.text("listen", "cannot read /proc/net/tcp"))
    wildcard = sorted({f"{ports[p]} on {a}:{p}" for a, p in open_
                       if p in ports and a in ("0.0.0.0", "::")})
    extra = sorted({f"{a}:{p}" for a, p in open_ if p in seaweedfs.CATALOG_PORTS})
    if wildcard or extra:
        return fail("; ".join([*wildcard, *(f"{e} (Iceberg/Lance catalog)" for e in extra)]),
                    "redeploy: every part binds registry_private_address, catalogs off")
    return ok(f"no storage port on a wildcard address (private address "
              f"{c.s.private_address}); no catalog server")
