"""The GC job, run as cron runs it, reclaims deleted images' space safely."""

from __future__ import annotations

import hashlib
import json
import os
import shlex

import pytest

from regops.registry import oci
from tests.sandbox.conftest import (
    assert_blobs_hash_to_their_digests,
    client,
    pull,
    push,
    registry_du,
)

pytestmark = pytest.mark.sandbox

BIG = 8 * 1024 * 1024


def _cron_command(th) -> str:
    """The command of the cron.d line, run with cron's bare environment."""
    for line in th.file("/etc/cron.d/regops-gc").content_string.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[5] == "root":
            command = " ".join(fields[6:])
            return (
                "env -i SHELL=/bin/bash "
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
                f"/bin/bash -c {shlex.quote(command)}"
            )
    raise AssertionError("no job line in /etc/cron.d/regops-gc")


def test_gc_frees_deleted_blobs_and_keeps_every_other_image(th, host_info, tmp_path):
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
        for tag in c.tags(repo)
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
    log = th.file("/var/log/regops-gc.log").content_string
    assert "bytes freed" in log and "read-only" in log
    assert th.file("/etc/docker/registry/serve.yml").linked_to.endswith("/config.yml")

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
