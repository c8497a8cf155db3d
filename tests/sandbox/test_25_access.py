"""Per-namespace access control with real clients: the sandbox inventory carries the
docs' example rules (regops.sandbox.model.ACCESS_DATA), the token service on
each host enforces them, and docker, skopeo and containerd's ctr see the result.

Who is who here: bob is in group platform (pull, push, delete on platform/**),
carol is in no group (her own carol/**, pull everywhere), demo is an admin,
anonymous may pull public/**; robot ci-platform may pull and push platform/**,
robot ci-retired expired in January.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from regops.registry.skopeo import write_authfile
from regops.sandbox import oci
from regops.secrets import paths
from tests.support.sandbox import (
    ROOT,
    SANDBOX,
    client,
    password,
    secrets_root,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

INVENTORY = "inventories/sandbox.py"


def robot_secret(h: dict, robot: str) -> str:
    return paths.robot_secret_path(secrets_root(h), h["registry_name"], robot).read_text().strip()


def registry(h: dict) -> str:
    return f"127.0.0.1:{h['registry_published_port']}"


def skopeo(h: dict, *args: str, user: str | None = None, secret: str | None = None,
           address: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """skopeo with the CA and, unless anonymous, a login in a 0600 auth file."""
    address = address or registry(h)
    with tempfile.TemporaryDirectory(prefix="regops-t25-") as tmp:
        certs = Path(tmp) / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(Path(h["ca_path"]).read_bytes())
        command, rest = args[0], list(args[1:])
        options = []
        if user is None:
            options.append("--no-creds" if command != "copy" else "--dest-no-creds")
        else:
            auth = write_authfile(Path(tmp) / "auth.json", address, user, secret)
            options += ["--authfile", str(auth)]
        if command == "copy":
            options += ["--dest-cert-dir", str(certs), "--src-cert-dir", str(certs)]
        else:
            options += ["--cert-dir", str(certs)]
        return subprocess.run(["skopeo", command, *options, *rest], capture_output=True,
                              text=True, timeout=timeout)


def image(tmp_path: Path, name: str, size: int = 32 * 1024) -> Path:
    layout = tmp_path / name
    oci.image(layout, "1", [{"data": os.urandom(size)}])
    return layout


def copy_in(h: dict, layout: Path, repo: str, user: str | None, secret: str | None,
            address: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    address = address or registry(h)
    return skopeo(h, "copy", "--retry-times", "0", f"oci:{layout}:1",
                  f"docker://{address}/{repo}:1", user=user, secret=secret, address=address,
                  timeout=timeout)


def audit_lines(h: dict, since: str) -> list[dict[str, Any]]:
    text = ssh_host(h).check_output("cat /var/log/regops-token/audit.log")
    return [r for r in map(json.loads, text.splitlines()) if r["time"] >= since]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGOPS_SANDBOX": SANDBOX}
    env.pop("REGOPS_INVENTORY", None)
    return subprocess.run([sys.executable, "-m", "regops.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


# --------------------------------------------------------------------------- docker


def docker_login(th: Any, h: dict, user: str, secret: str) -> Any:
    return th.run(f"printf %s {shlex.quote(secret)} | docker login -u {user} --password-stdin "
                  f"{h['registry_name']}:5000")


def test_docker_login_good_and_bad(th, host_info):
    try:
        bad = docker_login(th, host_info, "bob", "not-bobs-password-at-all")
        assert bad.rc != 0 and "unauthorized" in bad.stderr.lower()
        nobody = docker_login(th, host_info, "nobody", "whatever-it-is-12")
        assert nobody.rc != 0
        good = docker_login(th, host_info, "bob", password(host_info, "bob"))
        assert good.rc == 0, good.stderr
    finally:
        th.run(f"docker logout {host_info['registry_name']}:5000")


def test_docker_push_and_pull_follow_the_rules(th, host_info):
    address = f"{host_info['registry_name']}:5000"
    team, own, other = (f"{address}/platform/api:docker", f"{address}/carol/app:docker",
                        f"{address}/bob/app:by-carol")
    th.check_output(f"tar -C /etc -c hostname os-release | docker import - {team}")
    th.check_output(f"docker tag {team} {own} && docker tag {team} {other}")
    try:
        assert docker_login(th, host_info, "bob", password(host_info, "bob")).rc == 0
        pushed = th.run(f"docker push {team}")  # group platform may push platform/**
        assert pushed.rc == 0, pushed.stderr
        assert docker_login(th, host_info, "carol", password(host_info, "carol")).rc == 0
        denied = th.run(f"docker tag {team} {address}/platform/api:carol && "
                        f"docker push {address}/platform/api:carol")
        assert denied.rc != 0 and "denied" in denied.stderr.lower()
        assert th.run(f"docker push {other}").rc != 0  # not her namespace
        mine = th.run(f"docker push {own}")  # ${user}/** is hers
        assert mine.rc == 0, mine.stderr
        th.check_output(f"docker rmi {team}")
        pulled = th.run(f"docker pull {team}")  # ** : every authenticated user may pull
        assert pulled.rc == 0, pulled.stderr
    finally:
        th.run(f"docker logout {address}; docker rmi {team} {own} {other} "
               f"{address}/platform/api:carol")
    tags = client(host_info).tags("platform/api")
    assert "docker" in tags and "carol" not in tags


# --------------------------------------------------------------------------- skopeo


def test_skopeo_copy_list_delete_and_anonymous_pull(host_info, tmp_path):
    h = host_info
    layout = image(tmp_path, "img")
    demo, bob, carol = (("demo", password(h, "demo")), ("bob", password(h, "bob")),
                        ("carol", password(h, "carol")))
    for repo in ("public/base", "platform/web"):
        result = copy_in(h, layout, repo, *demo)
        assert result.returncode == 0, result.stderr
    web = f"docker://{registry(h)}/platform/web"
    listed = skopeo(h, "list-tags", web, user=carol[0], secret=carol[1])
    assert listed.returncode == 0 and json.loads(listed.stdout)["Tags"] == ["1"]
    refused = skopeo(h, "delete", f"{web}:1", user=carol[0], secret=carol[1])
    assert refused.returncode != 0
    assert client(h).tags("platform/web") == ["1"]  # still there
    deleted = skopeo(h, "delete", f"{web}:1", user=bob[0], secret=bob[1])
    assert deleted.returncode == 0, deleted.stderr
    assert client(h).tags("platform/web") == []
    # Anonymous: public/** may be pulled without a login, nothing else.
    public = skopeo(h, "inspect", "--raw", f"docker://{registry(h)}/public/base:1")
    assert public.returncode == 0, public.stderr
    assert json.loads(public.stdout)["schemaVersion"] == 2
    private = skopeo(h, "inspect", "--raw", f"docker://{registry(h)}/carol/app:docker")
    assert private.returncode != 0
    anonymous_push = copy_in(h, layout, "public/by-anonymous", None, None)
    assert anonymous_push.returncode != 0


# --------------------------------------------------------------------------- containerd


def test_ctr_pulls_with_containerds_post_flow(th, host_info):
    """containerd asks for tokens with POST grant_type=password (it falls back to GET
    only when that fails): the audit shows the POST, and the pull works."""
    h = host_info
    assert th.exists("ctr"), "containerd's ctr comes with docker.io"
    ref = f"{h['registry_name']}:5000/platform/api:docker"
    since = utc_now()
    user = shlex.quote(f"bob:{password(h, 'bob')}")
    pulled = th.run(f"ctr -n regops-test images pull --hosts-dir /etc/docker/certs.d "
                    f"--user {user} {ref}")
    try:
        assert pulled.rc == 0, pulled.stderr
        tokens = [r for r in audit_lines(h, since) if r["event"] == "token"]
        assert any(r["via"] == "POST password" and r["subject"] == "user:bob"
                   and r["client"] == "containerd-client" for r in tokens), tokens
        denied = th.run(f"ctr -n regops-test images pull --hosts-dir /etc/docker/certs.d "
                        f"--user {shlex.quote('carol:' + password(h, 'carol'))} "
                        f"{h['registry_name']}:5000/bob/nothing:1")
        assert denied.rc != 0
    finally:
        th.run(f"ctr -n regops-test images rm {ref}")


# --------------------------------------------------------------------------- robots


def test_robots_push_only_where_their_rules_say(host_info, tmp_path):
    h = host_info
    layout = image(tmp_path, "robot")
    robot = ("ci-platform", robot_secret(h, "ci-platform"))
    allowed = copy_in(h, layout, "platform/robot-built", *robot)
    assert allowed.returncode == 0, allowed.stderr
    assert copy_in(h, layout, "carol/robot-built", *robot).returncode != 0
    since = utc_now()
    retired = copy_in(h, layout, "platform/retired", "ci-retired", robot_secret(h, "ci-retired"))
    assert retired.returncode != 0
    failures = [r for r in audit_lines(h, since) if r["event"] == "login_failed"]
    assert any(r["subject"] == "ci-retired" and "expired on 2026-01-31" in r["reason"]
               for r in failures), failures
    # The audit names the robot as the pusher (the registry's notification).
    pushes = [r for r in audit_lines(h, "") if r["event"] == "push"
              and r["repository"] == "platform/robot-built"]
    assert pushes and pushes[-1]["subject"] == "robot:ci-platform"


def test_revoked_robot_is_refused_and_rotation_brings_it_back(hosts, tmp_path):
    layout = image(tmp_path, "rot")
    old = {name: robot_secret(h, "ci-platform") for name, h in hosts.items()}
    revoked = cli("robots", "revoke", "ci-platform", "-i", INVENTORY)
    assert revoked.returncode == 0, revoked.stderr
    listed = json.loads(cli("robots", "list", "-i", INVENTORY, "--json").stdout)
    states = {(r["registry"], r["robot"]): r["state"] for r in listed["robots"]}
    for name, h in hosts.items():
        assert states[(h["registry_name"], "ci-platform")] == "revoked"
        assert states[(h["registry_name"], "ci-retired")] == "expired"
        refused = copy_in(h, layout, "platform/after-revoke", "ci-platform", old[name])
        assert refused.returncode != 0
    rotated = cli("robots", "rotate", "ci-platform", "-i", INVENTORY)
    assert rotated.returncode == 0, rotated.stderr
    for name, h in hosts.items():
        new = robot_secret(h, "ci-platform")
        assert new != old[name] and len(new) >= 32
        assert copy_in(h, layout, "platform/after-rotate", "ci-platform", new).returncode == 0
        assert copy_in(h, layout, "platform/old-secret", "ci-platform",
                       old[name]).returncode != 0
        assert new not in rotated.stdout + rotated.stderr


# --------------------------------------------------------------------------- token expiry


class SlowProxy:
    """A loopback TCP relay that lets at most `rate` bytes/s through towards the
    registry: a push through it outlives the token it started with."""

    def __init__(self, target: tuple[str, int], rate: int) -> None:
        self.target, self.rate = target, rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(downstream, upstream, self.rate),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, 0),
                             daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, rate: int) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
                if rate:
                    time.sleep(len(chunk) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping = True
        self.server.close()


def test_a_token_that_expires_mid_push_is_renewed_by_the_client(hosts, tmp_path):
    """The sandbox's tokens live 60 s (registry_token_ttl); a push held to about
    4 MB/s takes longer, so skopeo must fetch a fresh token before it finishes."""
    h = hosts["sb1"]
    ttl = 60
    layout = tmp_path / "slow"
    oci.image(layout, "1", [{"big": os.urandom(300 * 1024 * 1024)}])
    proxy = SlowProxy(("127.0.0.1", h["registry_published_port"]), rate=4 * 1024 * 1024)
    address = f"127.0.0.1:{proxy.port}"
    since, started = utc_now(), time.monotonic()
    try:
        result = copy_in(h, layout, "bob/slow", "bob", password(h, "bob"), address=address,
                         timeout=600)
    finally:
        proxy.close()
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took > ttl + 5, f"the push took {took:.0f} s, not longer than a token lives"
    tokens = [r for r in audit_lines(h, since) if r["event"] == "token"
              and r["subject"] == "user:bob"
              and any("bob/slow" in g for g in r["granted"])]
    assert len(tokens) >= 2, tokens  # the first token ran out; the client got another
    assert client(h).tags("bob/slow") == ["1"]


# --------------------------------------------------------------------------- front door


def test_a_1_gib_blob_streams_through_the_front_door_without_spooling(hosts):
    """nginx passes the upload on as it arrives: its client-body directory stays
    empty and it never logs a body buffered to a temporary file."""
    h = hosts["sb1"]
    th = ssh_host(h)
    request = urllib.request.Request(
        f"{h['registry_url']}/auth/token?service={h['registry_name']}"
        "&scope=repository:bigblob/one:pull,push",
        headers={"Authorization": "Basic " + base64.b64encode(
            f"demo:{password(h, 'demo')}".encode()).decode()})
    context = ssl.create_default_context(cafile=h["ca_path"])
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        token = json.load(answer)["token"]
    ca = f"/etc/docker/certs.d/{h['registry_name']}:5000/ca.crt"
    script = f"""
set -euo pipefail
T={shlex.quote(token)}
curl_() {{ curl -sS --cacert {ca} -H "Authorization: Bearer $T" "$@"; }}
location() {{ awk 'tolower($1)=="location:" {{print $2}}' "$1" | tr -d '\\r'; }}
: > /var/log/nginx/regops.error.log
curl_ -X POST -D /tmp/t25.post -o /dev/null https://127.0.0.1:5000/v2/bigblob/one/blobs/uploads/
( while sleep 0.2; do du -sk /var/lib/nginx/body | cut -f1; done ) > /tmp/t25.body &
watcher=$!
head -c 1073741824 /dev/urandom | tee >(sha256sum | cut -d' ' -f1 > /tmp/t25.sum) \\
  | curl_ -X PATCH -H 'Content-Type: application/octet-stream' -T - -D /tmp/t25.patch \\
      -o /dev/null "$(location /tmp/t25.post)"
kill $watcher
sleep 1
sum=$(cat /tmp/t25.sum)
put=$(location /tmp/t25.patch)
case $put in *\\?*) sep='&' ;; *) sep='?' ;; esac
curl_ -X PUT -o /dev/null -w '%{{http_code}}\\n' "$put${{sep}}digest=sha256:$sum"
curl_ -I -o /dev/null -w '%{{http_code}} %{{size_download}}\\n' \\
  https://127.0.0.1:5000/v2/bigblob/one/blobs/sha256:$sum
curl_ -sI https://127.0.0.1:5000/v2/bigblob/one/blobs/sha256:$sum \\
  | awk 'tolower($1)=="content-length:" {{print $2}}' | tr -d '\\r'
echo "max-body-kib $(sort -n /tmp/t25.body | tail -1)"
echo "buffered $(grep -c 'buffered to a temporary file' /var/log/nginx/regops.error.log || true)"
echo "location $put"
"""
    result = th.run(f"bash -c {shlex.quote(script)}")
    assert result.rc == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "201"  # the upload completed and its digest matched
    assert lines[2] == str(1024 ** 3)  # the registry has all of it
    facts = dict(line.split(" ", 1) for line in lines[3:])
    assert int(facts["max-body-kib"]) <= 8, "nginx spooled the body to disk"
    assert facts["buffered"] == "0"
    # Upload URLs stay https on the name the client used.
    assert facts["location"].startswith("https://127.0.0.1:5000/v2/bigblob/one/blobs/uploads/")
    th.run("rm -f /tmp/t25.*")
