"""`regops check` against the real sandbox hosts.

The default deploy passes but for the documented TLS limitation; five things
broken on sb1 are exactly what fails; a redeploy brings it back; running the
checks changes nothing on any host; a host without a registry, and one that
cannot be reached, give failures instead of a traceback. The module leaves
both hosts redeployed and passing.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support.sandbox import ROOT, SANDBOX, client, deploy, regops, ssh_host

pytestmark = pytest.mark.sandbox

BROKEN = {"files.registry-key", "gc.job-installed", "container.non-root",
          "registry.debug-port-closed", "tls.cert-days-left"}
KEY = "/etc/nginx/regops/tls/server.key"
CERT = "/etc/nginx/regops/tls/server.crt"
WATCHED = ("/etc/docker /etc/cron.d /etc/systemd/system /usr/local/sbin /var/lib/regops "
           "/etc/docker/registry /etc/nginx")
# The registry recreated by hand as root, with its debug port published to the world.
TAMPERED = """
. /etc/docker/registry/registry.spec
args=("${RUN_ARGS[@]}")
for i in "${!args[@]}"; do [ "${args[$i]}" = --user ] && args[$((i + 1))]=0:0; done
docker rm -f registry >/dev/null
docker run -d --name registry --publish 127.0.0.1:5010:5000 --publish 0.0.0.0:5001:5001 \
    --restart unless-stopped --label regops.applied=tampered "${args[@]}" \
    "$IMAGE" serve "$CONFIG_IN_CONTAINER/config.yml" >/dev/null
"""


def check(*args: str, inventory: str = "inventories/sandbox.py") -> tuple[int, dict, str]:
    """Run `regops check --json`; returns (exit code, document, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "regops.cli", "check", "-i", inventory, "--json", *args],
        cwd=ROOT, env={**os.environ, "REGOPS_SANDBOX": SANDBOX}, capture_output=True,
        text=True, timeout=900,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout), result.stderr


def not_passing(doc: dict) -> dict[str, dict[str, str]]:
    return {h["host"]: {r["id"]: r["status"] for r in h["results"] if r["status"] != "pass"}
            for h in doc["hosts"]}


def details(doc: dict, host: str) -> dict[str, str]:
    return next({r["id"]: r["detail"] for r in h["results"]} for h in doc["hosts"]
                if h["host"] == host)


def snapshot(hosts: dict) -> dict[str, tuple[str, str]]:
    """Modification and change times, modes and owners of the deployed files, and the
    registry container's identity and start time, per host."""
    out = {}
    for name, h in hosts.items():
        th = ssh_host(h)
        listing = th.check_output(f"find {WATCHED} -printf '%p %T@ %C@ %m %u %g\\n' | sort")
        container = th.check_output(
            "docker inspect --format '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' registry")
        out[name] = (listing, container)
    return out


def wait_serving(h: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client(h).ping() in (200, 401):
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise AssertionError(f"{h['name']}: registry not serving after {timeout}s")


def short_lived_cert(h: dict, days: int) -> bytes:
    """The operator's certificate for `h` reissued by the generated CA with `days` left:
    same key, same names, so only its remaining lifetime differs."""
    pki = Path(h["ca_path"]).parent
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    current = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(current.subject).issuer_name(ca.subject)
               .public_key(current.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(hours=1))
               .not_valid_after(now + timedelta(days=days, hours=1)))
    for ext in current.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_default_deploy_passes_every_check(hosts, tmp_path):
    """Mozilla intermediate included: the front door offers only X25519, P-256, P-384."""
    junit, prom = tmp_path / "checks.xml", tmp_path / "regops.prom"
    code, doc, _ = check("--junit", str(junit), "--prometheus", str(prom))
    assert not_passing(doc) == {name: {} for name in hosts}
    assert code == 0
    for name in hosts:
        assert "meets Mozilla intermediate" in details(doc, name)["tls.mozilla-intermediate"]
        assert "sends /v2/ to the registry" in details(doc, name)["frontdoor.serving"]
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == set(hosts)
    assert all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)
    assert 'regops_check_ok{host="sb1",check="tls.mozilla-intermediate"} 1' in prom.read_text()
    assert "regops_check_exit_code 0" in prom.read_text()


def test_checks_change_nothing_on_the_hosts(hosts):
    before = snapshot(hosts)
    code, _, _ = check()
    assert code == 0
    assert snapshot(hosts) == before


@pytest.fixture(scope="module")
def broken(hosts):
    """sb1 with five violations; redeployed at the end even if a test failed on the way."""
    state = {"restored": False}
    yield state
    if not state["restored"]:
        assert deploy().returncode == 0


def test_five_breakages_are_exactly_what_fails(hosts, broken):
    h = hosts["sb1"]
    th = ssh_host(h)
    pem = base64.b64encode(short_lived_cert(h, days=10)).decode()
    for command in (
        f"chmod 0644 {KEY}",
        "rm /etc/systemd/system/regops-gc.timer",
        f"echo {pem} | base64 -d > {CERT} && systemctl reload nginx",
        f"bash -c {shlex.quote(TAMPERED)}",
    ):
        result = th.run(command)
        assert result.rc == 0, f"{command[:60]}: {result.stderr}"
    wait_serving(h)

    code, doc, _ = check()
    assert code == 1
    failing = not_passing(doc)
    assert failing["sb1"] == {i: "fail" for i in BROKEN}
    assert failing["sb2"] == {}
    found = details(doc, "sb1")
    assert "0644" in found["files.registry-key"]
    assert "root" in found["container.non-root"]
    assert "5001/tcp" in found["registry.debug-port-closed"]
    assert "expires in 10 days" in found["tls.cert-days-left"]

    # Consciously leaving out exactly these is what it takes to pass.
    code, doc, _ = check("--skip", "files.registry-key,gc.job-installed",
                         "--skip", "container.non-root", "--skip", "registry.debug-port-closed",
                         "--skip", "tls.cert-days-left")
    assert code == 0, not_passing(doc)


def test_redeploy_brings_it_back(hosts, broken):
    result = deploy()
    assert result.returncode == 0, result.output[-4000:]
    broken["restored"] = True
    code, doc, _ = check()
    assert code == 0, not_passing(doc)
    assert not_passing(doc) == {name: {} for name in hosts}


@pytest.fixture(scope="module")
def bare(sandbox):
    """A sandbox host nobody deployed to, in a sandbox of its own."""
    name = f"{SANDBOX}-bare"[:40]
    regops("sandbox", "up", "--name", name, "--hosts", "1")
    try:
        yield json.loads(regops("sandbox", "status", "--name", name, "--json").stdout)
    finally:
        regops("sandbox", "down", "--name", name, check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_undeployed_and_unreachable_hosts_fail_without_a_traceback(bare, tmp_path):
    (h,) = bare["hosts"]
    closed = _closed_port()
    ssh = {"ssh_user": "root", "ssh_key": h["ssh_key"], "ssh_strict_host_key_checking": "no",
           "ssh_known_hosts_file": "/dev/null",
           "registry_image": "regops/registry:2.8.2",
           "registry_secrets_dir": str(tmp_path / "secrets")}
    hosts = [
        ("bare", {**ssh, "ssh_hostname": "127.0.0.1", "ssh_port": h["ssh_port"],
                  "registry_name": "bare.test", "registry_api_url": h["registry_url"]}),
        ("gone", {**ssh, "ssh_hostname": "127.0.0.1", "ssh_port": closed,
                  "registry_name": "gone.test",
                  "registry_api_url": f"https://127.0.0.1:{closed}"}),
    ]
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {hosts!r}\n")
    code, doc, _ = check(inventory=str(inventory))
    assert code == 1
    results = {hr["host"]: {r["id"]: r for r in hr["results"]} for hr in doc["hosts"]}
    assert set(results) == {"bare", "gone"}
    for host in ("bare", "gone"):
        assert all(r["status"] in ("fail", "error") for r in results[host].values()), host
    assert results["bare"]["files.etc-docker"]["status"] == "fail"
    assert "missing" in results["bare"]["files.etc-docker"]["detail"]
    assert "Docker does not answer" in results["bare"]["daemon.live-restore"]["detail"]
    assert all("cannot reach the host over SSH" in r["detail"]
               for r in results["gone"].values() if r["id"].startswith(("files.", "container.")))
    assert not (tmp_path / "secrets").exists()  # checking generates no password or CA
