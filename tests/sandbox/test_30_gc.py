"""The GC job, run as its timer runs it, reclaims deleted images' space safely."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time

import pytest

from regops.registry.prune import listed_tags
from regops.sandbox import oci
from regops.sandbox.load import Load
from regops.sandbox.load import push as push_image
from tests.support.sandbox import (
    assert_blobs_hash_to_their_digests,
    assert_gc_load_lost_nothing,
    client,
    pull,
    push,
    registry_du,
)

pytestmark = pytest.mark.sandbox

BIG = 8 * 1024 * 1024


def _cron_command(th) -> str:
    """The job as its timer runs it: the unit regops-gc.timer starts, waited for."""
    assert th.check_output("systemctl show -P Triggers regops-gc.timer") == "regops-gc.service"
    return "systemctl start regops-gc.service"


def test_gc_frees_deleted_blobs_and_keeps_every_other_image(th, host_info, tmp_path):
    # Collect what earlier tests deleted, so this run's record is about one image.
    assert th.run(_cron_command(th)).rc == 0
    c = client(host_info)
    big_layer = {"blob": os.urandom(BIG)}
    big = oci.image(tmp_path / "big", "big", [big_layer])
    keep = oci.image(tmp_path / "keep", "keep", [{"keep": os.urandom(256 * 1024)}])
    assert push(host_info, tmp_path / "big", "big", "team/gc/big").returncode == 0
    assert push(host_info, tmp_path / "keep", "keep", "team/gc/keep").returncode == 0

    survivors = {
        (repo, tag): c.digest(repo, tag)
        for repo in c.catalog()
        if repo != "team/gc/big"
        for tag in listed_tags(c, repo)  # blob-only repositories (a 1 GiB upload) have none
    }
    assert survivors[("team/gc/keep", "keep")] == keep.digest
    c.delete_manifest("team/gc/big", big.digest)
    before = registry_du(host_info)

    result = th.run(_cron_command(th))
    assert result.rc == 0, th.file("/var/log/regops-gc.log").content_string[-2000:]
    after = registry_du(host_info)
    assert before - after >= BIG * 0.9
    state = json.loads(th.file("/var/lib/regops/gc-last.json").content_string)
    assert state["result"] == "ok" and state["bytes_freed"] >= BIG * 0.9
    # The record counts what GC deleted, blob by blob: here the image's layer, config and
    # manifest, which no other image shares.
    pushed_blobs = list((tmp_path / "big" / "blobs" / "sha256").iterdir())
    assert state["blobs_deleted"] == len(pushed_blobs)
    assert state["blob_bytes_freed"] == sum(b.stat().st_size for b in pushed_blobs)
    log = th.file("/var/log/regops-gc.log").content_string
    assert f"{len(pushed_blobs)} blobs ({state['blob_bytes_freed']} bytes)" in log
    assert "read-only for" in log
    # Back to normal: clients go to the registry, the standby is gone.
    assert th.file("/etc/nginx/regops/registry-mode.conf").linked_to.endswith("-normal.conf")
    assert th.run("docker container inspect registry-standby").rc != 0

    for (repo, tag), digest in survivors.items():
        assert c.digest(repo, tag) == digest
        dest = tmp_path / "check" / hashlib.sha1(f"{repo}:{tag}".encode()).hexdigest()
        dest.parent.mkdir(parents=True, exist_ok=True)
        pulled = pull(host_info, repo, tag, dest)
        assert pulled.returncode == 0, pulled.stderr
        assert_blobs_hash_to_their_digests(dest)

    # Writable again, and the cache forgot the collected blobs: pushing the
    # same layer again uploads it instead of claiming "already exists".
    again = push(host_info, tmp_path / "big", "big", "team/gc/big")
    assert again.returncode == 0, again.stderr
    pulled = pull(host_info, "team/gc/big", "big", tmp_path / "big-again")
    assert pulled.returncode == 0, pulled.stderr


def test_gc_under_load_fails_no_pull_and_loses_no_image(th, host_info):
    """10 pushers and a pull loop through the front door while the job runs as its
    timer runs it: pulls never fail, pushes in the read-only window are refused with 503
    and retried, and every push the registry acknowledged can be pulled whole."""
    seeder = client(host_info)
    seeds = []
    for n in range(3):
        pushed = push_image(seeder, f"team/gcload/seed{n}", "v1", 1024 * 1024)
        seeds.append((pushed.repository, pushed.tag))
    doomed = push_image(seeder, "team/gcload/doomed", "v1", 2 * 1024 * 1024)
    seeder.delete_manifest(doomed.repository, doomed.digest)

    load = Load(lambda: client(host_info), seeds, pushers=10, pullers=2)
    load.start()
    try:
        time.sleep(6)
        gc = th.run(_cron_command(th))
        time.sleep(4)
    finally:
        result = load.stop()
    assert gc.rc == 0, th.file("/var/log/regops-gc.log").content_string[-2000:]
    state = json.loads(th.file("/var/lib/regops/gc-last.json").content_string)
    assert state["result"] == "ok" and state["readonly_seconds"] >= 1
    assert state["blobs_deleted"] >= 3  # the doomed image: layer, config, manifest
    assert_gc_load_lost_nothing(result, seeder, seeds)


def test_gc_reclaims_abandoned_uploads_and_keeps_fresh_ones(th, host_info):
    """A push that failed mid-upload (a full disk, a dropped connection) leaves its data
    under _uploads/: GC deletes it once untouched for registry_gc_upload_max_age (1h)."""
    c = client(host_info)
    repo = "team/gc/broken"
    started = {}
    for name in ("old", "fresh"):
        answer = c.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert answer.status == 202, answer.status
        location = {k.lower(): v for k, v in answer.headers.items()}["location"]
        chunk = c.request("PATCH", location, data=os.urandom(3 * 1024 * 1024),
                          headers={"Content-Type": "application/octet-stream"})
        assert chunk.status == 202, chunk.status
        started[name] = location.split("/blobs/uploads/", 1)[1].split("?", 1)[0]
    uploads = f"/var/lib/registry/docker/registry/v2/repositories/{repo}/_uploads"
    old = f"{uploads}/{started['old']}"
    assert th.file(old).is_directory
    th.check_output(f"find {shlex.quote(old)} -exec touch -d '2 hours ago' {{}} +")

    assert th.run(_cron_command(th)).rc == 0
    state = json.loads(th.file("/var/lib/regops/gc-last.json").content_string)
    assert state["uploads_deleted"] == 1
    assert state["upload_bytes_freed"] >= 3 * 1024 * 1024
    assert state["bytes_freed"] >= state["upload_bytes_freed"]
    assert not th.file(old).exists
    assert th.file(f"{uploads}/{started['fresh']}").is_directory
