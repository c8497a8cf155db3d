"""The GC job (regops_host.gc) without a host: Debian's real registry binary collects
a filesystem registry in tmp_path, docker and the control scripts are faked by an
injected runner, and the record, the parsing, the uploads and the order are checked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from regops.hostops.gc import GC_FIELDS, parse_gc_state
from regops_host import gc
from regops_host.control import Result
from tests.support.require import require_command
from tests.support.stack import free_port

OCI = "application/vnd.oci.image.manifest.v1+json"


def _request(base: str, method: str, path: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    url = path if path.startswith("http") else base + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


class Registry:
    """A filesystem registry in `tmp`, served by docker-registry while images are pushed."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "data"
        self.config = tmp / "config.yml"
        self.port = free_port()
        self.config.write_text(
            "version: 0.1\nlog:\n  level: info\n  formatter: json\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.base = f"http://127.0.0.1:{self.port}"
        self.blobs: dict[str, list[bytes]] = {}

    @property
    def storage(self) -> str:
        return str(self.root / "docker" / "registry" / "v2")

    def __enter__(self) -> Registry:
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                if _request(self.base, "GET", "/v2/")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("docker-registry did not serve")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)

    def blob(self, repo: str, data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers = _request(self.base, "POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _ = _request(self.base, "PUT", f"{location}{sep}digest={digest}", data,
                             {"Content-Type": "application/octet-stream"})
        assert status == 201
        return {"digest": digest, "size": len(data)}

    def image(self, repo: str, tag: str) -> str:
        """Push a one-layer image; its manifest's digest. Its blobs go to self.blobs."""
        layer = os.urandom(20_000)
        config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo,
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       **self.blob(repo, config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        **self.blob(repo, layer)}],
        }).encode()
        status, headers = _request(self.base, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                   {"Content-Type": OCI})
        assert status == 201
        self.blobs[repo] = [layer, config, manifest]
        return headers["Docker-Content-Digest"]

    def delete(self, repo: str, digest: str) -> None:
        assert _request(self.base, "DELETE", f"/v2/{repo}/manifests/{digest}")[0] == 202

    def upload(self, repo: str) -> Path:
        """An upload begun and never finished: its directory under _uploads/."""
        status, headers = _request(self.base, "POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202
        status, _ = _request(self.base, "PATCH", headers["Location"], os.urandom(50_000),
                             {"Content-Type": "application/octet-stream"})
        assert status == 202
        uuid = headers["Docker-Upload-Uuid"]
        return Path(self.storage) / "repositories" / repo / "_uploads" / uuid


class Host:
    """The fake host: docker and the control scripts recorded; `docker exec CONTAINER
    registry garbage-collect` runs the real binary on the registry in tmp_path."""

    def __init__(self, registry: Registry | None, fail: set[str] = frozenset()) -> None:
        self.registry = registry
        self.calls: list[tuple[str, ...]] = []
        self.up = {"registry": True, "registry-standby": False}
        self.fail = fail
        self.interrupt_at: str | None = None

    def __call__(self, argv: Sequence[str]) -> Result:
        call = tuple(argv)
        self.calls.append(call)
        words = " ".join(call)
        if self.interrupt_at and self.interrupt_at in words:
            self.interrupt_at = None
            raise gc.Interrupted(15)
        if any(f in words for f in self.fail):
            return Result(1, "it failed\n")
        if call[:2] == ("docker", "inspect"):
            return Result(0, "true\n" if self.up.get(call[-1]) else "false\n")
        if call[:2] == ("docker", "exec"):
            assert self.registry is not None and call[2] in {n for n, up in self.up.items() if up}
            done = subprocess.run(["docker-registry", *call[4:-1], str(self.registry.config)],
                                  capture_output=True, text=True)
            return Result(done.returncode, done.stdout + done.stderr)
        if call[0] == "regops-registry":
            if call[1] == "standby-start":
                self.up["registry-standby"] = True
            elif call[1] == "standby-stop":
                self.up["registry-standby"] = False
            elif call[1] in ("start", "stop"):
                self.up["registry"] = call[1] == "start"
        return Result(0)

    def steps(self) -> list[str]:
        """The switches and collections, in order (inspects left out)."""
        out = []
        for call in self.calls:
            if call[0] == "docker" and call[1] == "exec":
                out.append(f"gc {call[2]}" + (" --dry-run" if "--dry-run" in call else ""))
            elif call[0] != "docker":
                out.append(" ".join(call))
        return out


def _config(tmp: Path, storage: str, **extra: object) -> gc.Config:
    return gc.Config(primary="registry", config_in_container="/etc/docker/registry/config.yml",
                     storage=storage, state_file=str(tmp / "state" / "gc-last.json"),
                     registry_control="regops-registry", frontdoor_control="regops-frontdoor",
                     lock=str(tmp / "regops.lock"), **extra)  # type: ignore[arg-type]


def _job(config: gc.Config, host: Host, lines: list[str]) -> gc.Job:
    return gc.Job(config, run=host, log=lines.append, say=lines.append)


def _record(config: gc.Config) -> dict[str, object]:
    text = Path(config.state_file).read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    return json.loads(text)


@pytest.fixture
def registry(tmp_path):
    require_command("docker-registry", "docker-registry")
    return Registry(tmp_path)


def test_the_dry_run_names_what_the_collection_deletes(registry, tmp_path):
    with registry:
        registry.image("team/keep", "1")
        registry.delete("team/gone", registry.image("team/gone", "1"))
    dry = subprocess.run(["docker-registry", "garbage-collect", "--dry-run",
                          str(registry.config)], capture_output=True, text=True, check=True)
    gone = sorted(hashlib.sha256(b).hexdigest() for b in registry.blobs["team/gone"])
    assert sorted(gc.eligible_blobs(dry.stdout + dry.stderr)) == gone
    assert len(gc.eligible(dry.stdout + dry.stderr)) == 3
    real = subprocess.run(["docker-registry", "garbage-collect", str(registry.config)],
                          capture_output=True, text=True, check=True)
    assert sorted(gc.deleted_blobs(real.stdout + real.stderr)) == gone
    # The record's sizes are those of the blobs' data files, before they go.
    assert gc.blob_size(registry.storage, gone[0]) == 0


def test_a_collection_records_blob_by_blob_in_the_order_that_costs_no_pull(registry, tmp_path):
    with registry:
        registry.image("team/keep", "1")
        registry.delete("team/gone", registry.image("team/gone", "1"))
    config = _config(tmp_path, registry.storage)
    host, lines = Host(registry), []
    assert _job(config, host, lines).main(None, lambda _: True) == 0
    assert host.steps() == [
        "gc registry --dry-run",  # 1. anything to do, while writable
        "regops-registry standby-start config-readonly.yml", "regops-frontdoor mode gc",
        "regops-registry stop",  # 2. read-only, then nothing writes
        "gc registry-standby --dry-run", "gc registry-standby",  # 3. sized, collected
        "regops-registry start", "regops-frontdoor mode normal",  # 4. writable again
        "regops-registry standby-stop",
    ]
    record = _record(config)
    assert tuple(record) == GC_FIELDS and parse_gc_state(json.dumps(record)) == record
    gone = registry.blobs["team/gone"]
    assert record["result"] == "ok" and record["exit_code"] == 0
    assert record["blobs_deleted"] == 3
    assert record["blob_bytes_freed"] == record["bytes_freed"] == sum(len(b) for b in gone)
    assert record["message"] == f"3 blobs ({sum(len(b) for b in gone)} bytes) and 0 " \
                                "unfinished uploads (0 bytes) deleted"
    assert any("read-only for" in line for line in lines)
    # The kept image is whole.
    for blob in registry.blobs["team/keep"]:
        assert gc.blob_size(registry.storage, hashlib.sha256(blob).hexdigest()) == len(blob)


def test_nothing_to_collect_changes_nothing(registry, tmp_path):
    with registry:
        registry.image("team/keep", "1")
    config = _config(tmp_path, registry.storage)
    host, lines = Host(registry), []
    assert _job(config, host, lines).main(None, lambda _: True) == 0
    assert host.steps() == ["gc registry --dry-run"]
    assert _record(config)["message"] == "nothing to collect"


def test_never_pushed_to_is_no_failure(tmp_path):
    config = _config(tmp_path, str(tmp_path / "empty"))
    host, lines = Host(None), []
    assert _job(config, host, lines).main(None, lambda _: True) == 0
    assert host.steps() == [] and "never pushed to" in lines[-1]
    assert _record(config)["bytes_freed"] == 0


def test_a_stopped_registry_fails_with_a_record(tmp_path):
    config = _config(tmp_path, str(tmp_path))
    host, lines = Host(None), []
    host.up["registry"] = False
    assert _job(config, host, lines).main(None, lambda _: True) == 1
    assert _record(config)["result"] == "failed"
    assert _record(config)["message"] == "container registry is not running"


def test_abandoned_uploads_are_deleted_fresh_ones_kept(registry, tmp_path):
    with registry:
        registry.image("team/keep", "1")
        old, fresh = registry.upload("team/broken"), registry.upload("team/broken")
    two_hours_ago = time.time() - 7200
    for path in (old, *old.rglob("*")):
        os.utime(path, (two_hours_ago, two_hours_ago), follow_symlinks=False)
    assert gc.abandoned_uploads(registry.storage, 60, time.time()) == [old]
    size = gc.tree_bytes(old)
    assert size >= 50_000
    config = _config(tmp_path, registry.storage)
    assert _job(config, Host(registry), []).main(None, lambda _: True) == 0
    record = _record(config)
    assert record["uploads_deleted"] == 1 and record["upload_bytes_freed"] == size
    assert record["bytes_freed"] == size  # no blob was eligible
    assert not old.exists() and fresh.is_dir()


def test_a_failed_collection_is_writable_again_and_recorded(registry, tmp_path):
    with registry:
        registry.delete("team/gone", registry.image("team/gone", "1"))
    config = _config(tmp_path, registry.storage)
    host = Host(registry, fail={"exec registry-standby registry garbage-collect "
                                "/etc/docker/registry/config.yml"})
    assert _job(config, host, []).main(None, lambda _: True) == 1
    assert host.steps()[-3:] == ["regops-registry start", "regops-frontdoor mode normal",
                                 "regops-registry standby-stop"]
    record = _record(config)
    assert record["result"] == "failed" and record["message"] == "garbage-collect exited 1"


def test_a_standby_that_does_not_start_fails_before_clients_move(registry, tmp_path):
    with registry:
        registry.delete("team/gone", registry.image("team/gone", "1"))
    config = _config(tmp_path, registry.storage)
    host = Host(registry, fail={"standby-start"})
    assert _job(config, host, []).main(None, lambda _: True) == 1
    assert "regops-frontdoor mode gc" not in host.steps()
    assert _record(config)["message"] == "the read-only standby did not start"


def test_interrupted_read_only_it_switches_back_first(registry, tmp_path):
    with registry:
        registry.delete("team/gone", registry.image("team/gone", "1"))
    config = _config(tmp_path, registry.storage)
    host, lines = Host(registry), []
    host.interrupt_at = "exec registry-standby registry garbage-collect --dry-run"
    assert _job(config, host, lines).main(None, lambda _: True) == 143
    assert host.steps()[-3:] == ["regops-registry start", "regops-frontdoor mode normal",
                                 "regops-registry standby-stop"]
    assert "interrupted: switching the registry back to writable" in lines


def test_the_lock_held_elsewhere_means_no_collection_and_no_record(tmp_path):
    from regops_host.control import Lock

    config = _config(tmp_path, str(tmp_path), lock_wait=0)
    other = Lock(config.lock)
    assert other.take(0, "a change of the registry")
    host, lines = Host(None), []
    assert _job(config, host, lines).main(None, lambda _: True) == 1
    assert host.calls == [] and not Path(config.state_file).exists()
    other.release()


def test_shared_storage_is_held_and_collected_as_a_cluster(registry, tmp_path):
    with registry:
        registry.delete("team/gone", registry.image("team/gone", "1"))
    config = _config(tmp_path, registry.storage, shared=True)
    lines: list[str] = []
    assert _job(config, Host(registry), lines).main(None, lambda _: True) == 2
    assert "refused: the images are in a bucket other replicas share" in lines[-1]
    host = Host(registry)
    held: list[str] = []

    def release(limit: float) -> bool:  # while held: the collection, on this replica
        held.extend(lines)
        assert _job(config, host, lines).main("collect", release) == 0
        return True

    assert _job(config, host, lines).main("hold", release) == 0
    assert "READY" in held and lines[-1].startswith("HELD ")
    assert host.steps() == [
        "regops-registry standby-start config-readonly.yml", "regops-frontdoor mode gc",
        "regops-registry stop", "gc registry-standby",
        "regops-registry start", "regops-frontdoor mode normal", "regops-registry standby-stop"]
    record = _record(config)
    assert record["blobs_deleted"] == 3 and "cluster GC" in str(record["message"])
    # collect refuses unless this replica holds.
    assert _job(config, Host(registry), lines).main("collect", release) == 2


def test_a_hold_whose_session_died_still_makes_the_registry_writable(registry, tmp_path,
                                                                    monkeypatch):
    """`regops gc` killed on the operator's machine: the replica's stdout is a broken
    pipe and stdin ends. The job's own log lines must not kill it before it switches
    back: the registry serves again, the front door goes back to normal."""
    from regops_host.control import Log

    class BrokenPipe:
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    config = _config(tmp_path, registry.storage, shared=True)
    host = Host(registry)
    job = gc.Job(config, run=host, log=Log("regops-gc", to_syslog=False))  # say: stdout
    monkeypatch.setattr("sys.stdout", BrokenPipe())
    assert job.main("hold", lambda _limit: False) == 0  # stdin closed: the session ended
    assert host.steps()[-3:] == ["regops-registry start", "regops-frontdoor mode normal",
                                 "regops-registry standby-stop"]
