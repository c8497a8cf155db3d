"""SeaweedFS as regops runs it on storage hosts, without a host: which host runs
what, with which flags, and the S3 gateway's one identity.

Each storage host runs a volume server and a filer with its S3 gateway; the first
three by name also run a master (raft needs a majority, so a cluster is one host or
three and more, never two). With three or more, every file is kept on two volume
servers (replication `001`), so losing any one host loses nothing. The filers keep
their own metadata stores and follow each other's changes, so each gateway lists
the same bucket.

Ports are fixed, every one explicit: weed's default gRPC port is its HTTP port +
10000, which the S3 port (`registry_seaweedfs_s3_port`) would not survive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from regops.registry.s3 import Credentials

MASTER_PORT, VOLUME_PORT, FILER_PORT = 9333, 8080, 8888
GRPC_OFFSET = 10000
VOLUME_SIZE_LIMIT_MB = 1024
# The parts `weed` runs as one systemd instance each (`regops-seaweedfs@<part>`).
PARTS = ("master", "volume", "filer")
# Off on every part: weed reports to telemetry.seaweedfs.com by default, and its S3
# gateway opens an Iceberg catalog and a Lance namespace server on fixed ports (8181,
# 9101, on every address) nobody asked for.
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
