"""What the deploy left on each host, checked with testinfra over SSH."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.sandbox import Deploy, secret_values

pytestmark = pytest.mark.sandbox


def _inspect(th, name: str = "registry") -> dict:
    return json.loads(th.check_output(f"docker inspect {name}"))[0]


def test_docker_installed_running_and_hardened(th):
    assert th.package("docker.io").is_installed
    assert th.service("docker").is_running and th.service("docker").is_enabled
    daemon = json.loads(th.file("/etc/docker/daemon.json").content_string)
    assert daemon["live-restore"] is True and daemon["icc"] is False
    assert daemon["log-opts"]["max-size"] == "10m"
    info = json.loads(th.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"


def test_registry_container_is_hardened(th, host_info):
    c = _inspect(th)
    hc = c["HostConfig"]
    assert c["State"]["Running"] is True
    assert c["Config"]["User"] == "5000:5000"
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert hc["Privileged"] is False
    assert any(o.startswith("no-new-privileges") for o in hc["SecurityOpt"])
    assert hc["Memory"] == 512 * 1024 * 1024 and hc["PidsLimit"] == 256
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    assert hc["NetworkMode"] not in ("host",) and hc["PidMode"] == "" and hc["IpcMode"] != "host"
    # Behind the front door: loopback only.
    assert hc["PortBindings"] == {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5010"}]}
    assert c["Config"]["Image"] == "regops/registry:2.8.2"
    mounts = {m["Destination"]: m for m in c["Mounts"]}
    assert mounts["/etc/docker/registry"]["RW"] is False
    assert mounts["/var/lib/registry"]["RW"] is True


def test_files_modes_and_owners(th, host_info):
    expected = {
        "/etc/docker/registry": ("root", 5000, 0o750),
        "/etc/docker/registry/config.yml": ("root", 5000, 0o640),
        "/etc/docker/registry/token-ca.crt": ("root", 0, 0o644),
        "/etc/regops/token": ("root", 5001, 0o750),
        "/etc/regops/token/users.htpasswd": ("root", 5001, 0o640),
        "/etc/regops/token/robots.htpasswd": ("root", 5001, 0o640),
        "/etc/regops/token/signer.key": ("root", 5001, 0o640),
        "/etc/regops/token/notify.secret": ("root", 5001, 0o640),
        "/etc/regops/token/config.json": ("root", 5001, 0o640),
        "/etc/systemd/system/regops-token.service": ("root", 0, 0o644),
        "/usr/local/sbin/regops-token": ("root", 0, 0o755),
        "/etc/docker/registry/registry.spec": ("root", 0, 0o644),
        "/etc/nginx/regops/tls": ("root", 0, 0o700),
        "/etc/nginx/regops/tls/server.key": ("root", 0, 0o400),
        "/etc/nginx/conf.d/regops.conf": ("root", 0, 0o644),
        "/etc/docker/daemon.json": ("root", 0, 0o644),
        "/usr/local/sbin/regops-gc": ("root", 0, 0o755),
        "/usr/local/sbin/regops-registry": ("root", 0, 0o755),
        "/usr/local/sbin/regops-frontdoor": ("root", 0, 0o755),
        "/etc/systemd/system/regops-gc.service": ("root", 0, 0o644),
        "/etc/systemd/system/regops-gc.timer": ("root", 0, 0o644),
        "/etc/regops/gc.json": ("root", 0, 0o644),
        "/usr/local/lib/regops/regops_host/gc.py": ("root", 0, 0o644),
    }
    for path, (user, gid, mode) in expected.items():
        f = th.file(path)
        assert f.exists, path
        assert (f.user, f.gid, f.mode) == (user, gid, mode), path
    data = th.file("/var/lib/registry")
    assert (data.uid, data.gid, data.mode) == (5000, 5000, 0o750)
    # Nothing staged or kept from a change, and no TLS key where the registry can read it.
    leftovers = th.run("ls /etc/docker/registry /etc/nginx/conf.d /etc/nginx/regops "
                       "/etc/nginx/regops/tls | grep -E '[.](new|previous)$'")
    assert leftovers.stdout == ""
    assert not th.file("/etc/docker/registry/tls").exists
    # Token mode: the registry checks no password, so it has no htpasswd file.
    assert not th.file("/etc/docker/registry/htpasswd").exists


def test_config_is_the_whole_registry_config(th):
    config = th.file("/etc/docker/registry/config.yml").content_string
    for line in (
        "enabled: true",
        "X-Content-Type-Options: [nosniff]",
        "realm: https://",
        "autoredirect: true",
        "rootcertbundle: /etc/docker/registry/token-ca.crt",
        "formatter: json",
    ):
        assert line in config
    assert "debug:" not in config and "tls:" not in config


def test_host_docker_trusts_the_ca(th, host_info):
    ca = th.file(f"/etc/docker/certs.d/{host_info['registry_name']}:5000/ca.crt")
    assert ca.exists and ca.mode == 0o444
    assert ca.content_string.strip() == Path(host_info["ca_path"]).read_text().strip()


def test_gc_timer_installed(th):
    timer = th.service("regops-gc.timer")
    assert timer.is_enabled and timer.is_running
    assert th.check_output("systemctl show -P Triggers regops-gc.timer") == "regops-gc.service"
    timer_file = th.file("/etc/systemd/system/regops-gc.timer").content_string
    assert "OnCalendar=Sun *-*-* 03:17:00" in timer_file
    assert th.check_output("systemctl show -P ExecStart regops-gc.service").startswith(
        "{ path=/usr/local/sbin/regops-gc ")
    assert not th.file("/etc/cron.d/regops-gc").exists


def test_debug_port_not_published(th):
    c = _inspect(th)
    assert set(c["HostConfig"]["PortBindings"]) == {"5000/tcp"}
    assert not th.socket("tcp://0.0.0.0:5001").is_listening


def test_front_door_is_the_only_way_in(th, host_info):
    """nginx on the registry's port, the registry on loopback, nothing on port 80."""
    assert th.package("nginx").is_installed and th.service("nginx").is_running
    assert th.service("nginx").is_enabled
    assert th.socket("tcp://0.0.0.0:5000").is_listening
    assert th.socket("tcp://127.0.0.1:5010").is_listening
    assert not th.socket("tcp://0.0.0.0:5010").is_listening
    assert not th.socket("tcp://0.0.0.0:80").is_listening
    assert th.file("/etc/nginx/regops/registry-mode.conf").linked_to == (
        "/etc/nginx/regops/registry-normal.conf"
    )
    # The registry's own port speaks plain HTTP on loopback; clients speak TLS to nginx.
    plain = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5010/v2/"
    assert th.check_output(plain) == "401"
    state = dict(line.split("=", 1) for line in th.check_output(
        "/usr/local/sbin/regops-frontdoor state").splitlines())
    assert state["running"] == "yes" and state["mode"] == "normal"


def test_token_service_runs_hardened_on_loopback(th, host_info):
    service = th.service("regops-token")
    assert service.is_running and service.is_enabled
    shown = dict(line.split("=", 1) for line in th.check_output(
        "systemctl show regops-token -p User,NoNewPrivileges,ProtectSystem,"
        "CapabilityBoundingSet,MainPID").splitlines())
    assert shown["User"] == "regops-token" and shown["NoNewPrivileges"] == "yes"
    assert shown["ProtectSystem"] == "strict" and shown["CapabilityBoundingSet"] == ""
    assert th.check_output(f"stat -c %U /proc/{shown['MainPID']}") == "regops-token"
    assert th.socket("tcp://127.0.0.1:5020").is_listening
    assert not th.socket("tcp://0.0.0.0:5020").is_listening
    # Notifications come from the registry over Docker's bridge, not from outside.
    assert not th.socket("tcp://0.0.0.0:5021").is_listening
    # Its code is ours, its libraries Debian's: nothing from the internet.
    for package in ("python3-cryptography", "python3-bcrypt"):
        assert th.package(package).is_installed
    health = th.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5020/auth/health")
    assert health.stdout == "200"
    # Through the front door, as clients reach it, on the same origin as /v2/.
    realm = th.check_output(
        "curl -sk -D- -o /dev/null -H 'Host: other-name:5000' https://127.0.0.1:5000/v2/ "
        "| grep -i '^www-authenticate'")
    assert 'Bearer realm="https://other-name:5000/auth/token"' in realm
    assert f'service="{host_info["registry_name"]}"' in realm


def test_no_secret_in_deploy_output_or_tracked_files(first_deploy: Deploy, hosts):
    for value in secret_values(hosts):
        assert value not in first_deploy.output
        grep = subprocess.run(["git", "grep", "-qF", "-e", value], capture_output=True)
        assert grep.returncode == 1, "a secret is in a tracked file"


def test_gc_on_a_registry_never_pushed_to_succeeds(th):
    result = th.run("/usr/local/sbin/regops-gc")
    assert result.rc == 0, result.stdout + result.stderr
    assert "never pushed to" in result.stdout
    state = json.loads(th.file("/var/lib/regops/gc-last.json").content_string)
    assert state["result"] == "ok" and state["bytes_freed"] == 0
