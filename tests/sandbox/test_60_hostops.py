"""Day-2 commands against the deployed sandbox hosts, through the real CLI.

Each test checks what a command reports against what the host itself says,
and leaves the hosts healthy with their default users (test_70 redeploys).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from regops.hostops.certs import served_certificate
from regops.sandbox import oci
from regops.secrets import paths, pki
from tests.support.sandbox import (
    ROOT,
    SANDBOX,
    client,
    demo_password,
    docker_push_pull,
    push,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

INVENTORY = "inventories/sandbox.py"
USER = "t60-ci"
MiB = 1024 * 1024


def cli(*args: str, stdin: str | None = None, check: bool = True,
        timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGOPS_SANDBOX": SANDBOX}
    env.pop("REGOPS_INVENTORY", None)
    result = subprocess.run([sys.executable, "-m", "regops.cli", *args], cwd=ROOT, env=env,
                            input=stdin, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"regops {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def cli_json(*args: str, **kwargs: Any) -> dict:
    return json.loads(cli(*args, "--json", "-i", INVENTORY, **kwargs).stdout)


def _started_at(hosts: dict) -> dict[str, str]:
    return {name: json.loads(ssh_host(h).check_output("docker inspect registry"))[0]["State"][
        "StartedAt"] for name, h in hosts.items()}


def _operator_cert(h: dict) -> dict:
    secrets = Path(h["ca_path"]).parents[2]
    pem = (paths.pki_dir(secrets, h["registry_name"]) / pki.SERVER_CERT).read_bytes()
    return {**pki.cert_info(pem), "serial": pki.serial_hex(pki.load_leaf(pem))}


def _served_serial(h: dict) -> str:
    return pki.serial_hex(served_certificate(h["registry_url"], h["registry_name"]))


# --------------------------------------------------------------------------- users


def test_users_add_passwd_remove_roll_out_without_restart(hosts, tmp_path):
    before = _started_at(hosts)
    try:
        doc = cli_json("users", "add", USER)
        assert doc["ok"] and doc["generated"] and "password" not in doc
        files = [Path(f) for f in doc["password_files"]]
        assert len(files) == len(hosts)
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        password = files[0].read_text().strip()
        listed = cli_json("users", "list")["users"]
        assert {(u["registry"], u["user"], u["declared_in"]) for u in listed} >= {
            (h["registry_name"], USER, "cli") for h in hosts.values()}

        # The command returned, so the login works now on every host: push as the new user.
        layout = tmp_path / "img"
        oci.image(layout, "1", [{"f": os.urandom(64 * 1024)}])
        for h in hosts.values():
            secret = paths.password_path(Path(h["ca_path"]).parents[2], h["registry_name"],
                                         USER).read_text().strip()
            assert client(h, password=secret, username=USER).ping() == 200
            # Not in any rule by name: authenticated, so the owner of USER/**.
            pushed = push(h, layout, "1", f"{USER}/users", user=USER, password=secret)
            assert pushed.returncode == 0, pushed.stderr
        assert _started_at(hosts) == before  # the users file re-read, no restart

        # Rotation: the new password works, the old one is refused, nothing printed it.
        new = "t60-rotated-" + os.urandom(8).hex()
        result = cli("users", "passwd", USER, "--password-stdin", "--show-password",
                     "-i", INVENTORY, "--limit", "sb1", stdin=new + "\n")
        assert new not in result.stdout + result.stderr  # not generated: never shown
        sb1 = hosts["sb1"]
        assert client(sb1, password=new, username=USER).ping() == 200
        assert client(sb1, password=password, username=USER).ping() == 401

        doc = cli_json("users", "remove", USER)
        assert doc["ok"] and all(not f.exists() for f in files)
        assert client(sb1, password=new, username=USER).ping() == 401
        assert _started_at(hosts) == before
        assert client(sb1).ping() == 200  # the inventory's user is untouched
    finally:
        cli("users", "remove", USER, "-i", INVENTORY, check=False)


def test_users_refuses_inventory_users_and_bad_input(hosts):
    result = cli("users", "remove", "demo", "-i", INVENTORY, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "registry_users" in result.stderr
    result = cli("users", "add", USER, "--password-stdin", "-i", INVENTORY, stdin="short\n",
                 check=False)
    assert result.returncode == 2 and "shorter than" in result.stderr
    assert not any(paths.password_path(Path(h["ca_path"]).parents[2], h["registry_name"],
                                       USER).exists() for h in hosts.values())


# --------------------------------------------------------------------------- gc and status


@pytest.fixture(scope="module")
def gc_run(hosts, tmp_path_factory) -> dict:
    """A deleted image on sb1, then `regops gc` on both hosts."""
    h = hosts["sb1"]
    layout = tmp_path_factory.mktemp("gc") / "img"
    pushed = oci.image(layout, "gone", [{"blob": os.urandom(4 * MiB)}])
    result = push(h, layout, "gone", "t60/gc")
    assert result.returncode == 0, result.stderr
    client(h).delete_manifest("t60/gc", pushed.digest)
    return cli_json("gc")


def test_gc_reports_freed_bytes_and_leaves_the_registry_writable(hosts, gc_run, tmp_path):
    assert gc_run["ok"], gc_run
    by_host = {e["host"]: e for e in gc_run["hosts"]}
    assert set(by_host) == set(hosts)
    sb1 = by_host["sb1"]
    assert sb1["result"] == "ok" and sb1["bytes_freed"] >= 4 * MiB * 0.9
    assert sb1["readonly_seconds"] >= 0 and sb1["duration_seconds"] >= sb1["readonly_seconds"]
    for name, h in hosts.items():
        state = json.loads(ssh_host(h).file("/var/lib/regops/gc-last.json").content_string)
        assert {k: by_host[name][k] for k in state} == state
        assert client(h).ping() == 200
    layout = tmp_path / "again"
    oci.image(layout, "after-gc", [{"f": os.urandom(32 * 1024)}])
    h = hosts["sb1"]
    again = push(h, layout, "after-gc", "t60/gc")
    assert again.returncode == 0, again.stderr


def _df(th) -> tuple[int, int]:
    size, avail = th.check_output("df -B1 --output=size,avail /var/lib/registry | tail -n1").split()
    return int(size), int(avail)


def test_status_matches_the_hosts(hosts, gc_run):
    free_before = {name: _df(ssh_host(h)) for name, h in hosts.items()}
    doc = cli_json("status")
    assert doc["ok"]
    for entry in doc["hosts"]:
        h = hosts[entry["host"]]
        th = ssh_host(h)
        size, free_after = _df(th)
        slack = 256 * MiB  # other work on the shared disk between the readings
        low = min(free_before[entry["host"]][1], free_after) - slack
        high = max(free_before[entry["host"]][1], free_after) + slack
        assert entry["disk"]["total_bytes"] == size
        assert low <= entry["disk"]["free_bytes"] <= high
        assert entry["disk"]["free_percent"] == pytest.approx(
            100 * entry["disk"]["free_bytes"] / size, abs=0.1)
        assert entry["health"] == {"serving": True, "http_status": 401, "error": None}
        assert "2.8" in entry["version"]
        assert entry["version"] in th.check_output("docker exec registry registry --version")
        inspect = json.loads(th.check_output("docker inspect registry"))[0]
        assert entry["container"]["running"] is True
        assert entry["container"]["started_at"] == inspect["State"]["StartedAt"]
        operator = _operator_cert(h)
        assert entry["certificate"]["days_left"] == operator["days_left"]
        assert entry["certificate"]["serial"] == operator["serial"]
        state = json.loads(th.file("/var/lib/regops/gc-last.json").content_string)
        assert entry["gc"]["time"] == state["time"] and entry["gc"]["result"] == state["result"]
        ran = next(e for e in gc_run["hosts"] if e["host"] == entry["host"])
        assert entry["gc"]["time"] == ran["time"]


def test_certs_status_matches_served_file_and_ca(hosts):
    doc = cli_json("certs", "status")
    assert doc["ok"]
    for entry in doc["hosts"]:
        h = hosts[entry["host"]]
        operator = _operator_cert(h)
        assert entry["days_left"] == operator["days_left"]
        assert entry["served"]["serial"] == _served_serial(h) == operator["serial"]
        on_host = ssh_host(h).file("/etc/nginx/regops/tls/server.crt").content
        assert entry["file"]["serial"] == pki.serial_hex(pki.load_leaf(on_host))
        assert entry["differ"] is False
    for reg in doc["registries"]:
        ca = pki.cert_info(Path(reg["ca_file"]).read_bytes())
        assert reg["generated"] and reg["ca"]["days_left"] == ca["days_left"]


def test_certs_renew_changes_the_served_certificate(hosts):
    h = hosts["sb1"]
    before = _served_serial(h)
    catalog = client(h).catalog()
    doc = cli_json("certs", "renew", "--limit", "sb1")
    assert doc["ok"], doc
    [entry] = doc["hosts"]
    after = _served_serial(h)
    assert entry["old_serial"] == before and entry["new_serial"] == after != before
    assert after == _operator_cert(h)["serial"]
    assert client(h).ping() == 200
    assert client(h).catalog() == catalog  # the front door reloaded; the registry untouched
    assert _served_serial(hosts["sb2"]) == _operator_cert(hosts["sb2"])["serial"]


# --------------------------------------------------------------------------- trust


def _clients_inventory(path: Path, h: dict) -> Path:
    data = {"ssh_hostname": h["ssh_host"], "ssh_port": h["ssh_port"], "ssh_user": h["ssh_user"],
            "ssh_key": h["ssh_key"], "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no"}
    path.write_text(f"clients = [({h['name']!r}, {data!r})]\n")
    return path


def test_trust_lets_a_client_docker_push_and_pull(hosts, tmp_path):
    registry, client_host = hosts["sb1"], hosts["sb2"]
    th = ssh_host(client_host)
    address = f"{registry['registry_name']}:{registry['registry_port']}"
    ref = f"{address}/t60/trust:from-sb2"
    marker = "# regops-test-60"
    th.check_output(f"echo {shlex.quote(registry['ip'] + ' ' + registry['registry_name'])} "
                    f"{shlex.quote(marker)} >> /etc/hosts")
    try:
        th.run(f"rm -rf /etc/docker/certs.d/{address}; docker logout {address}")
        th.check_output(f"tar -C /etc -c hostname os-release | docker import - {ref}")
        untrusted = th.run(f"docker push {ref}")
        assert untrusted.rc != 0 and "certificate" in untrusted.stderr.lower()

        inventory = _clients_inventory(tmp_path / "clients.py", client_host)
        result = cli("trust", "-i", INVENTORY, "--registry", "sb1", "--clients", str(inventory),
                     "--json")
        assert demo_password(registry) not in result.stdout + result.stderr
        doc = json.loads(result.stdout)
        assert doc["ok"] and doc["registry"] == address and doc["user"] == "demo"
        assert [e["host"] for e in doc["hosts"]] == ["sb2"]
        assert th.run("ls -A /var/lib/regops-trust").stdout.strip() == ""  # password removed
        ca = th.file(f"/etc/docker/certs.d/{address}/ca.crt")
        assert ca.content == Path(registry["ca_path"]).read_bytes() and ca.mode == 0o444

        docker_push_pull(th, ref)
        assert "from-sb2" in client(registry).tags("t60/trust")
    finally:
        th.run(f"docker logout {address}; docker rmi {ref}")
        th.run(f"grep -vF {shlex.quote(marker)} /etc/hosts > /tmp/hosts.t60 && "
               "cat /tmp/hosts.t60 > /etc/hosts && rm -f /tmp/hosts.t60")
