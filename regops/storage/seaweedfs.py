"""SeaweedFS as regops runs it on storage hosts, without a host: which host runs
what, with which flags, and the S3 gateway's one identity.

Each storage host runs a volume server and a filer with its S3 gateway; the first
three by name also run a master (raft needs a majority, so a cluster is one host or
three and more, never two). With three or more, every file is kept on two volume
servers (replication `001`), so losing any one host loses nothing, and the filers
share one metadata store: an etcd member (Debian's) on each master host. Filers on
their own stores copy each other's changes asynchronously and can diverge after a
host dies (SeaweedFS #3224, #7138); a shared store has nothing to copy. One host
keeps the filer's own leveldb store.

Ports are fixed, every one explicit: weed's default gRPC port is its HTTP port +
10000, which the S3 port (`registry_seaweedfs_s3_port`) would not survive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from regops.storage.s3 import Credentials

MASTER_PORT, VOLUME_PORT, FILER_PORT = 9333, 8080, 8888
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
ETCD_KEY_PREFIX = "seaweedfs."
GRPC_OFFSET = 10000
VOLUME_SIZE_LIMIT_MB = 1024
# The parts `weed` runs as one systemd instance each (`regops-seaweedfs@<part>`).
PARTS = ("master", "volume", "filer")
# Off on every part: weed reports to telemetry.seaweedfs.com by default, and its S3
# gateway opens an Iceberg catalog and a Lance namespace server on fixed ports
# (CATALOG_PORTS, on every address) nobody asked for.
CATALOG_PORTS = (8181, 9101)
SAFE_FLAGS = {"master": ["-telemetry=false"], "volume": [],
              "filer": ["-s3.port.iceberg=0", "-s3.port.lance=0"]}
# The same for `weed server`, all parts in one process (the tests' one-node stores).
SERVER_SAFE_FLAGS = ["-master.telemetry=false", *SAFE_FLAGS["filer"]]


@dataclass(frozen=True)
class Cluster:
    """The storage hosts of one registry name, by host name, and what follows from them."""

    hosts: tuple[str, ...]  # inventory names, sorted
    addresses: tuple[str, ...]  # their private addresses, same order

    @property
    def members(self) -> list[tuple[str, str]]:
        return list(zip(self.hosts, self.addresses, strict=True))

    @property
    def masters(self) -> tuple[str, ...]:
        """Private addresses of the hosts that run a master: the first three, or the one."""
        return self.addresses[:3] if len(self.addresses) >= 3 else self.addresses[:1]

    @property
    def replication(self) -> str:
        """Two copies on two hosts once there are three; one copy on a single host."""
        return "001" if len(self.hosts) >= 3 else "000"

    @property
    def master_list(self) -> str:
        return ",".join(f"{a}:{MASTER_PORT}" for a in self.masters)

    def runs_master(self, address: str) -> bool:
        return address in self.masters

    def parts(self, address: str) -> tuple[str, ...]:
        """The parts the host at `address` runs: a master only on the first three."""
        return tuple(p for p in PARTS if p != "master" or self.runs_master(address))

    def runs_etcd(self, address: str) -> bool:
        """A member of the filers' shared store: a master host of three and more."""
        return self.shared_store and self.runs_master(address)

    @property
    def shared_store(self) -> bool:
        """The filers keep their metadata in etcd on the master hosts (three and more)."""
        return len(self.hosts) >= 3

    @property
    def etcd_members(self) -> list[tuple[str, str]]:
        """(inventory name, address) of the etcd members: the master hosts."""
        return [(h, a) for h, a in self.members if a in self.masters] if self.shared_store \
            else []

    @property
    def etcd_servers(self) -> str:
        return ",".join(f"{a}:{ETCD_CLIENT_PORT}" for _, a in self.etcd_members)


def cluster(hosts: Sequence[tuple[str, str]]) -> Cluster:
    """`hosts`: (inventory name, private address) of every storage host of one name."""
    ordered = sorted(hosts)
    return Cluster(tuple(h for h, _ in ordered), tuple(a for _, a in ordered))


def flags(part: str, c: Cluster, address: str, data_dir: str, s3_port: int,
          s3_config: str) -> list[str]:
    """The command line of one part on the host at `address` (after `weed <part>`)."""
    common = [f"-ip={address}", f"-ip.bind={address}"]
    if part == "master":
        peers = [f"-peers={c.master_list}"] if len(c.masters) > 1 else []
        return [*common, f"-port={MASTER_PORT}", f"-port.grpc={MASTER_PORT + GRPC_OFFSET}",
                f"-mdir={data_dir}/master", *peers,
                f"-defaultReplication={c.replication}",
                f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", *SAFE_FLAGS["master"]]
    if part == "volume":
        return [*common, f"-port={VOLUME_PORT}", f"-port.grpc={VOLUME_PORT + GRPC_OFFSET}",
                f"-dir={data_dir}", "-max=0", f"-master={c.master_list}",
                *SAFE_FLAGS["volume"]]
    if part == "filer":
        return [*common, f"-port={FILER_PORT}", f"-port.grpc={FILER_PORT + GRPC_OFFSET}",
                f"-master={c.master_list}", f"-defaultStoreDir={data_dir}",
                "-s3", f"-s3.port={s3_port}", f"-s3.config={s3_config}",
                *SAFE_FLAGS["filer"]]
    raise ValueError(f"unknown SeaweedFS part {part!r}")


def filer_environment(c: Cluster) -> dict[str, str]:
    """The filer's store, as weed reads it from its environment (`WEED_<store>_<key>`,
    the keys of filer.toml): etcd when the cluster shares one, else none (weed's
    default, leveldb in the data directory)."""
    if not c.shared_store:
        return {}
    return {"WEED_LEVELDB2_ENABLED": "false", "WEED_ETCD_ENABLED": "true",
            "WEED_ETCD_SERVERS": c.etcd_servers, "WEED_ETCD_KEY_PREFIX": ETCD_KEY_PREFIX}


def etcd_environment(c: Cluster, host: str, registry_name: str,
                     data_dir: str) -> dict[str, str]:
    """The environment of Debian's etcd (`/etc/default/etcd`) on the member `host`: a
    static cluster of the master hosts on their private addresses (and loopback, for
    etcdctl on the host), compacted hourly so its history does not grow forever."""
    members = dict(c.etcd_members)
    if host not in members:
        raise ValueError(f"{host} is not an etcd member of the storage cluster")
    address = members[host]
    return {
        "ETCD_NAME": host,
        "ETCD_DATA_DIR": data_dir,
        "ETCD_LISTEN_PEER_URLS": f"http://{address}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{address}:{ETCD_PEER_PORT}",
        "ETCD_LISTEN_CLIENT_URLS":
            f"http://{address}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{address}:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_CLUSTER": ",".join(f"{h}=http://{a}:{ETCD_PEER_PORT}"
                                         for h, a in c.etcd_members),
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": f"regops-{registry_name}",
        "ETCD_AUTO_COMPACTION_MODE": "periodic",
        "ETCD_AUTO_COMPACTION_RETENTION": "1h",
    }


def environment_file(what: str, values: dict[str, str]) -> str:
    """A systemd/Debian environment file of `values`, headed by what it is for."""
    lines = [f"# Managed by regops: {what}."]
    lines += [f"{k}={v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def identities(creds: Credentials) -> str:
    """The S3 gateway's one identity: the replicas' credentials, every action."""
    return json.dumps({"identities": [{
        "name": "regops", "credentials": [{"accessKey": creds.access_key,
                                           "secretKey": creds.secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, indent=2) + "\n"


def under_replicated(fix_replication_output: str) -> list[int]:
    """Volume ids `volume.fix.replication` (a dry run) would copy: fewer copies than
    the replication asks for, after a host was lost."""
    found = []
    for line in fix_replication_output.splitlines():
        words = line.split()
        if line.startswith("replicating volume ") and len(words) > 2 and words[2].isdigit():
            found.append(int(words[2]))
    return sorted(set(found))
