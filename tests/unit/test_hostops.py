"""Day-2 logic that needs no host: parsing what hosts say, merging users, refusing early."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from regops import hostpaths
from regops.cli import main
from regops.config.settings import ConfigError, load
from regops.errors import UsageError
from regops.hostops import certs, gc, remote, status, trust, users
from regops.inventory import group_members
from regops.secrets import paths, pki
from regops.secrets import store as secrets

ROOT = Path(__file__).resolve().parents[2]
GC_OK = {"time": "2030-06-01T03:17:02Z", "result": "ok", "exit_code": 0, "bytes_freed": 8390000,
         "blobs_deleted": 2, "blob_bytes_freed": 8388608, "uploads_deleted": 1,
         "upload_bytes_freed": 1392, "readonly_seconds": 3, "duration_seconds": 5,
         "message": "2 blobs (8388608 bytes) and 1 unfinished uploads (1392 bytes) deleted"}


# --------------------------------------------------------------------------- gc


def test_parse_gc_state_reads_the_jobs_record():
    assert gc.parse_gc_state(json.dumps(GC_OK) + "\n") == GC_OK


@pytest.mark.parametrize("text", ["", "  \n", "not json", "[]", '{"result": "ok"}'])
def test_parse_gc_state_rejects_what_the_job_does_not_write(text):
    assert gc.parse_gc_state(text) is None


def test_parse_gc_state_drops_mistyped_numbers():
    state = gc.parse_gc_state(json.dumps({**GC_OK, "bytes_freed": "8", "exit_code": True}))
    assert state is not None and state["bytes_freed"] is None and state["exit_code"] is None


def answer(**sections: str) -> str:
    """What a host prints for a sectioned command (`remote.script`), every section ok."""
    return "".join(
        f"{remote.SECTION_MARK} {name}\n{body}\n\n{remote.RC_MARK} {name} 0\n"
        for name, body in sections.items()
    )


def _gc_output(start: int, rc: int, state: dict | None) -> str:
    return answer(start=str(start), job=str(rc), state=json.dumps(state) if state else "")


START = int(datetime(2030, 6, 1, 3, 17, tzinfo=UTC).timestamp())


def test_gc_result_ok():
    entry = gc.gc_result("reg1", 0, _gc_output(START, 0, GC_OK))
    assert entry["ok"] and entry["error"] is None and entry["bytes_freed"] == 8390000
    assert entry["host"] == "reg1" and entry["readonly_seconds"] == 3


def test_gc_result_failed_job_is_a_failure_with_its_message():
    failed = {**GC_OK, "result": "failed", "exit_code": 1, "message": "garbage-collect exited 1"}
    entry = gc.gc_result("reg1", 0, _gc_output(START, 1, failed))
    assert not entry["ok"] and "garbage-collect exited 1" in entry["error"]


def test_gc_result_ignores_a_record_older_than_this_run():
    entry = gc.gc_result("reg1", 0, _gc_output(START + 3600, 1, GC_OK))
    assert not entry["ok"] and "without recording" in entry["error"]


def test_gc_result_missing_script_says_deploy_first():
    entry = gc.gc_result("reg1", 0, answer(start=str(START), job="missing"))
    assert not entry["ok"] and "run the deploy" in entry["error"]


def test_gc_command_appends_to_the_cron_log_and_shows_the_record():
    command = gc.gc_command()
    assert f"{hostpaths.GC_SCRIPT} >>{hostpaths.GC_LOG} 2>&1" in command
    assert f"cat {hostpaths.GC_STATE}" in command


# --------------------------------------------------------------------------- status parsing


DF = """    1B-blocks        Avail Mounted on
 269490393088  74733314048 /
"""


def test_parse_df():
    disk = status.parse_df(DF)
    assert disk == {"total_bytes": 269490393088, "free_bytes": 74733314048,
                    "free_percent": 27.7, "mount": "/"}


@pytest.mark.parametrize("text", ["", "df: /nope: No such file or directory",
                                  "1B-blocks Avail Mounted on\nx y /"])
def test_parse_df_rejects_errors(text):
    assert status.parse_df(text) is None


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("/usr/bin/registry github.com/docker/distribution 2.8.2+ds1", "2.8.2+ds1"),
        ("registry github.com/distribution/distribution v2.8.3 abcdef0", "2.8.3"),
        ("registry github.com/distribution/distribution/v3 v3.0.0", "3.0.0"),
        ("", None),
        ("exec failed", None),
    ],
)
def test_parse_version(text, version):
    assert status.parse_version(text) == version


@pytest.mark.parametrize(
    ("image", "version"),
    [("registry:2.8.3", "2.8.3"), ("regops/registry:2.8.2", "2.8.2"),
     ("localhost:5000/registry:2.8.3@sha256:" + "a" * 64, "2.8.3"),
     ("registry@sha256:" + "a" * 64, None), ("localhost:5000/registry", None)],
)
def test_image_tag_version(image, version):
    assert status.image_tag_version(image) == version


def test_container_state():
    inspect = json.dumps([{"State": {"Running": True, "StartedAt": "2030-06-01T00:00:00Z"},
                           "Config": {"Image": "registry:2.8.3"}}])
    assert status.container_state(inspect) == {
        "exists": True, "running": True, "started_at": "2030-06-01T00:00:00Z",
        "image": "registry:2.8.3"}
    assert status.container_state("")["exists"] is False
    assert status.container_state("[]")["running"] is False


def test_sectioned_output_keeps_bodies_and_exit_statuses_apart():
    text = (
        f"noise\n{remote.SECTION_MARK} a\n1\n2\n\n{remote.RC_MARK} a 0\n"
        f"{remote.SECTION_MARK} empty\n\n{remote.RC_MARK} empty 3\n"
        f"{remote.SECTION_MARK} b\nx\n\n{remote.RC_MARK} b 0\n"
    )
    assert remote.parse(text) == {"a": (0, "1\n2"), "empty": (3, ""), "b": (0, "x")}
    assert remote.texts(text) == {"a": "1\n2", "empty": "", "b": "x"}


def test_sectioned_command_runs_every_section_bounded():
    command = remote.script({"a": "echo 1", "b": "false"}, timeout=7)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    assert command.startswith("timeout 7 ")
    assert remote.parse(out) == {"a": (0, "1"), "b": (1, "")}


@pytest.fixture
def pki_dir(tmp_path):
    return tmp_path / "pki"


@pytest.fixture
def settings(tmp_path, secrets_dir):
    return load("reg1", {"registry_name": "reg.example.com",
                         "registry_secrets_dir": str(secrets_dir),
                         "registry_api_url": "https://127.0.0.1:5443"}, environ={})


def _cert_pem(pki_dir: Path) -> bytes:
    return pki.ensure_server_cert(pki_dir, ["reg.example.com"]).cert_pem


def test_status_entry_aggregates_what_the_host_said(settings, pki_dir):
    pem = _cert_pem(pki_dir).decode()
    said = answer(
        inspect=json.dumps([{"State": {"Running": True, "StartedAt": "T0"},
                             "Config": {"Image": "registry:2.8.3"}}]),
        version="",  # exec failed: fall back to the image tag
        df=DF, gc=json.dumps(GC_OK), cert=pem, token="active",
    )
    check = {"serving": True, "http_status": 401, "error": None}
    entry = status.status_entry("reg1", settings, said, None, check)
    assert entry["ok"] is True
    assert entry["auth"] == {"mode": "token", "token_service": "active"}
    failed = said.replace("active", "failed")
    assert status.status_entry("reg1", settings, failed, None, check)["ok"] is False
    assert (entry["version"], entry["version_source"]) == ("2.8.3", "image tag")
    assert entry["disk"]["free_bytes"] == 74733314048
    assert entry["disk"]["path"] == "/var/lib/registry"
    assert entry["gc"] == GC_OK
    assert entry["certificate"]["source"] == "file"
    assert entry["certificate"]["days_left"] == pki.cert_info(pem.encode())["days_left"]
    assert entry["container"] == {"name": "registry", "exists": True, "running": True,
                                  "started_at": "T0", "image": "registry:2.8.3"}
    assert entry["registry"] == "reg.example.com:5000"
    assert entry["storage"] == {"kind": "filesystem", "path": "/var/lib/registry"}


def test_status_says_which_bucket_a_replica_serves(tmp_path, secrets_dir):
    shared = load("reg1", {"registry_name": "reg.example.com",
                           "registry_secrets_dir": str(secrets_dir),
                           "registry_storage": "s3", "registry_s3_bucket": "images",
                           "registry_s3_endpoint": "https://s3.example.net:9000/",
                           "registry_gc_enabled": False},
                  environ={"REGOPS_S3_ACCESS_KEY": "a", "REGOPS_S3_SECRET_KEY": "b"})
    entry = status.status_entry("reg1", shared, "", None, {"serving": False})
    assert entry["storage"] == {"kind": "s3", "endpoint": "https://s3.example.net:9000",
                                "bucket": "images", "rootdirectory": "/registry",
                                "descriptor_cache": "memory"}


def test_status_entry_not_ok_when_down_or_stopped(settings):
    down = {"serving": False, "http_status": None, "error": "refused"}
    entry = status.status_entry("reg1", settings, "", None, down)
    assert entry["ok"] is False and entry["gc"] is None and entry["disk"] is None
    summary = remote.summarize([entry, {"ok": True}])
    assert summary["ok"] is False and len(summary["hosts"]) == 2


def test_cert_entry_flags_a_served_certificate_that_differs_from_the_file(pki_dir):
    served = certs.cert_summary(pki.load_leaf(_cert_pem(pki_dir)))
    on_host = {**served, "serial": "abc"}
    entry = certs.cert_entry("reg1", "reg:5000", served, None, on_host, None)
    assert entry["differ"] and entry["ok"] and entry["days_left"] == served["days_left"]
    missing = certs.cert_entry("reg1", "reg:5000", None, "refused", on_host, None)
    assert not missing["ok"] and missing["serial"] == "abc"


# --------------------------------------------------------------------------- pki additions


def test_renew_server_cert_issues_a_new_pair_that_the_deploy_then_reuses(pki_dir):
    first = pki.ensure_server_cert(pki_dir, ["reg.example.com"])
    renewed = pki.renew_server_cert(pki_dir, ["reg.example.com"], days=90)
    assert renewed.renewed and renewed.cert_pem != first.cert_pem
    assert renewed.key_pem != first.key_pem and renewed.ca_pem == first.ca_pem
    again = pki.ensure_server_cert(pki_dir, ["reg.example.com"])
    assert not again.renewed and again.cert_pem == renewed.cert_pem
    assert pki.load_leaf(renewed.cert_pem).serial_number != pki.load_leaf(
        first.cert_pem).serial_number


def test_load_leaf_reads_pem_and_der(pki_dir):
    cert = pki.load_leaf(_cert_pem(pki_dir))
    der = cert.public_bytes(Encoding.DER)
    assert pki.serial_hex(pki.load_leaf(der)) == pki.serial_hex(cert) == format(
        cert.serial_number, "x")


# --------------------------------------------------------------------------- users


def test_users_are_the_inventory_ones_then_those_added_by_the_cli(secrets_dir):
    name = "reg.example.com"
    for user in ("zed", "ci", "admin", "former"):
        secrets.write_atomic(paths.password_path(secrets_dir, name, user),
                             f"{user}-Password-0123456789\n".encode())
    for user in ("zed", "ci"):
        secrets.write_atomic(paths.cli_users_dir(secrets_dir, name) / user, b"")
    data = {"registry_name": name, "registry_secrets_dir": str(secrets_dir),
            "registry_users": ["demo", "admin"]}
    s = load("reg1", data, environ={})
    # "former" was once in registry_users: its password file alone grants nothing.
    assert [u.name for u in s.users] == ["demo", "admin", "ci", "zed"]
    assert {u.name: u.source for u in s.users}["ci"] == "file"


def test_a_badly_named_password_file_is_one_line_naming_it(secrets_dir):
    name = "reg.example.com"
    bad = paths.password_path(secrets_dir, name, "Bad Name")
    secrets.write_atomic(bad, b"whatever-Password-0123\n")
    secrets.write_atomic(paths.cli_users_dir(secrets_dir, name) / "Bad Name", b"")
    with pytest.raises(ConfigError) as info:
        load("reg1", {"registry_name": name, "registry_secrets_dir": str(secrets_dir)},
             environ={})
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    assert str(info.value).startswith("reg1: registry_users:")


def test_merge_user_names():
    assert users.merge_user_names(["b", "a"], ["c", "a", "0"]) == ["b", "a", "0", "c"]


def test_user_rows_say_where_users_and_passwords_come_from(tmp_path):
    rows = users.user_rows("reg", ["admin", "ci"], ["admin", "bot"],
                             {"REGOPS_PASSWORD_CI": "x"}, lambda u: tmp_path / u)
    assert [(r["user"], r["declared_in"], r["password"]) for r in rows] == [
        ("admin", "inventory", "file"),
        ("ci", "inventory", "env REGOPS_PASSWORD_CI"),
        ("bot", "cli", "file"),
    ]
    assert rows[1]["password_file"] is None and rows[2]["password_file"] == str(tmp_path / "bot")


def test_people_of_a_directory_or_a_provider_are_one_row_naming_where_they_come_from():
    data = {"registry_ldap": {"urls": ["ldaps://a.example", "ldaps://b.example"]},
            "registry_oidc": {"issuer": "https://sso.example"}}
    rows = users.external_rows("reg", data)
    assert [(r["user"], r["declared_in"], r["password"]) for r in rows] == [
        ("ldap:*", "directory ldaps://a.example ldaps://b.example", "the directory"),
        ("oidc:*", "provider https://sso.example", "CLI secret (web pages)"),
    ]
    assert users.external_rows("reg", {"registry_ldap": None, "registry_oidc": None}) == []


def _registry_inventory(tmp_path: Path, secrets_dir: Path, **data) -> Path:
    hosts = [("reg1", {"registry_name": "reg.example.com",
                       "registry_secrets_dir": str(secrets_dir), **data})]
    path = tmp_path / "inventory.py"
    path.write_text(f"registries = {hosts!r}\n")
    return path


def _run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def test_users_list_shows_cli_users_without_contacting_hosts(tmp_path, secrets_dir):
    inventory = _registry_inventory(tmp_path, secrets_dir, registry_users=["admin"])
    secrets.write_atomic(paths.password_path(secrets_dir, "reg.example.com", "ci"),
                         b"ci-Password-0123456789\n")
    secrets.write_atomic(paths.cli_users_dir(secrets_dir, "reg.example.com") / "ci", b"")
    result = _run("users", "list", "-i", str(inventory), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["users"]
    assert [(r["user"], r["declared_in"], r["password"]) for r in rows] == [
        ("admin", "inventory", "missing (the next deploy generates it)"), ("ci", "cli", "file")]
    assert not paths.password_path(secrets_dir, "reg.example.com", "admin").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["users", "add", "Bad:Name"], None, "not a valid user name"),
        (["users", "add", "admin"], None, "already declared in registry_users"),
        (["users", "add", "ci", "--password-stdin"], "short\n", "shorter than"),
        (["users", "add", "ci", "--password-stdin"], "ci\n", "equals the user name"),
        (["users", "remove", "admin"], None, "remove it there"),
        (["users", "remove", "ghost"], None, "no user 'ghost'"),
        (["users", "passwd", "ghost"], None, "no user 'ghost'"),
        (["gc", "--limit", "nope"], None, "no host named nope"),
    ],
)
def test_bad_requests_exit_2_with_one_line_before_any_change(tmp_path, secrets_dir, args,
                                                             stdin, fragment):
    inventory = _registry_inventory(tmp_path, secrets_dir, registry_users=["admin"])
    before = sorted(p.name for p in secrets_dir.rglob("*")) if secrets_dir.exists() else []
    result = CliRunner().invoke(main, [*args, "-i", str(inventory)], input=stdin)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("regops: error:")]
    assert len(lines) == 1 and fragment in lines[0]
    after = sorted(p.name for p in secrets_dir.rglob("*")) if secrets_dir.exists() else []
    assert after == before


def test_env_password_blocks_passwd_because_it_would_not_take_effect(tmp_path, secrets_dir,
                                                                     monkeypatch):
    inventory = _registry_inventory(tmp_path, secrets_dir, registry_users=["admin"])
    monkeypatch.setenv("REGOPS_PASSWORD_ADMIN", "env-Password-0123456789")
    result = CliRunner().invoke(main, ["users", "passwd", "admin", "-i", str(inventory)])
    assert result.exit_code == 2 and "REGOPS_PASSWORD_ADMIN is set" in result.output


def test_inventory_is_required_and_read_from_the_environment(tmp_path, secrets_dir,
                                                             monkeypatch):
    result = CliRunner().invoke(main, ["users", "list"])
    assert result.exit_code == 2 and "--inventory" in result.output
    monkeypatch.setenv("REGOPS_INVENTORY", str(_registry_inventory(tmp_path, secrets_dir)))
    assert CliRunner().invoke(main, ["users", "list"]).exit_code == 0


# --------------------------------------------------------------------------- certs renew


def test_renew_refuses_provided_certificates_with_one_line(tmp_path, secrets_dir):
    made = pki.ensure_server_cert(tmp_path / "elsewhere", ["reg.example.com"])
    cert, key = tmp_path / "provided.crt", tmp_path / "provided.key"
    cert.write_bytes(made.cert_pem)
    key.write_bytes(made.key_pem)
    inventory = _registry_inventory(tmp_path, secrets_dir, registry_tls_cert_file=str(cert),
                                    registry_tls_key_file=str(key))
    result = CliRunner().invoke(main, ["certs", "renew", "-i", str(inventory)])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("regops: error: reg1: the certificate is provided")
    assert cert.read_bytes() == made.cert_pem
    assert not (paths.pki_dir(secrets_dir, "reg.example.com")).exists()


# --------------------------------------------------------------------------- trust


def test_trust_login_command_keeps_the_password_out_and_always_removes_the_file():
    command = trust.trust_login_command("reg.example.com:5000", "ci", "/var/lib/x/p")
    assert "--password-stdin" in command and "</var/lib/x/p" in command
    assert command.index("rm -f /var/lib/x/p") > command.index("docker login")
    assert "|| rc=$?" in command and command.endswith("exit $rc")


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [("ok\n", None), ("missing\n", "not installed"), ("down", "not running"),
     ("", "cannot tell")],
)
def test_docker_problem(answer, fragment):
    problem = trust.docker_problem(answer)
    assert problem is None if fragment is None else fragment in problem


def test_trust_verdict(pki_dir):
    ca = pki.ensure_server_cert(pki_dir, ["reg.example.com"]).ca_pem
    target = trust.TrustTarget("reg1", "reg.example.com:5000", ca, "ci", "secret-value")
    digest = hashlib.sha256(ca).hexdigest()
    good = answer(ca=digest, auth="yes")
    assert trust.trust_verdict(target, good) is None
    assert "ca.crt" in trust.trust_verdict(target, good.replace(digest, "0" * 64))
    assert "no stored docker login" in trust.trust_verdict(target, good.replace("yes", "no"))
    assert "secret-value" not in repr(target)
    assert '"reg.example.com:5000"' in trust.trust_check_command(target)


def test_a_mirror_joins_daemon_json_keeping_everything_else():
    current = json.dumps({"log-driver": "json-file", "registry-mirrors": ["https://m.example"],
                          "live-restore": True})
    merged = json.loads(trust.merge_mirror("c1", current, "https://cache.example.com:5000"))
    assert merged == {"log-driver": "json-file", "live-restore": True, "registry-mirrors": [
        "https://m.example", "https://cache.example.com:5000"]}
    assert trust.merge_mirror("c1", json.dumps(merged), "https://cache.example.com:5000") is None
    assert json.loads(trust.merge_mirror("c1", None, "https://c:5000") or "") == {
        "registry-mirrors": ["https://c:5000"]}
    with pytest.raises(UsageError, match=r"^c1: /etc/docker/daemon.json: not JSON .*nothing "
                                         r"changed$"):
        trust.merge_mirror("c1", "{live-restore: true", "https://c:5000")
    with pytest.raises(UsageError, match=r"registry-mirrors is not a list"):
        trust.merge_mirror("c1", '{"registry-mirrors": "https://x"}', "https://c:5000")


def test_only_a_cache_of_docker_hub_is_a_mirror_by_default(secrets_dir):
    base = {"registry_name": "cache.example.com", "registry_secrets_dir": str(secrets_dir)}
    hub = load("c", {**base, "registry_proxy_remote_url": "https://registry-1.docker.io"},
               environ={})
    other = load("c", {**base, "registry_proxy_remote_url": "https://reg.example.com:5000"},
                 environ={})
    assert trust.caches_docker_hub(hub) and not trust.caches_docker_hub(other)
    assert not trust.caches_docker_hub(load("c", base, environ={}))


def test_trust_verdict_checks_the_daemon_uses_the_mirror(pki_dir):
    ca = pki.ensure_server_cert(pki_dir, ["reg.example.com"]).ca_pem
    target = trust.TrustTarget("reg1", "reg.example.com:5000", ca, "ci", "x",
                               "https://reg.example.com:5000")
    digest = hashlib.sha256(ca).hexdigest()
    using = answer(ca=digest, auth="yes", mirrors='["https://reg.example.com:5000/"]')
    assert trust.trust_verdict(target, using) is None
    assert "does not use https://reg.example.com:5000 as a registry mirror" in (
        trust.trust_verdict(target, answer(ca=digest, auth="yes", mirrors="null")) or "")


def test_group_members():
    namespace = {"clients": [("c1", {}), "c2"], "registries": (["r1"], {}), "_x": ["y"],
                 "other": 3}
    assert group_members(namespace, "clients") == ["c1", "c2"]
    assert group_members(namespace, "registries") == ["r1"]
    assert group_members(namespace, "_x") is None
    assert group_members(namespace, "other") is None
    assert group_members(namespace, "missing") is None


def test_trust_needs_the_clients_group(tmp_path, secrets_dir):
    inventory = _registry_inventory(tmp_path, secrets_dir)
    pki.ensure_ca(paths.pki_dir(secrets_dir, "reg.example.com"))
    clients = tmp_path / "clients.py"
    clients.write_text("workers = ['w1']\n")
    result = CliRunner().invoke(main, ["trust", "-i", str(inventory), "--clients",
                                       str(clients)])
    assert result.exit_code == 2 and "no group 'clients'" in result.output


# --------------------------------------------------------------------------- deploy plans


def _fake_pyinfra(inventory: Path, deploy: str, *args: str, env: dict | None = None):
    environ = {**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0",
               **(env or {})}
    return subprocess.run([sys.executable, "-m", "pyinfra", str(inventory), deploy, "-y", *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def _fake_host(secrets_dir: Path, **data) -> list:
    return [("@fake/reg1", {"registry_name": "reg.example.com",
                            "registry_secrets_dir": str(secrets_dir),
                            "fake_responses": {"uname -s": "Linux",
                                               "useradd": "/usr/sbin/useradd"}, **data})]


def test_users_deploy_plans_only_account_and_htpasswd_and_hides_passwords(tmp_path,
                                                                          secrets_dir):
    secrets.write_atomic(paths.password_path(secrets_dir, "reg.example.com", "ci"),
                         b"ci-Password-0123456789\n")
    secrets.write_atomic(paths.cli_users_dir(secrets_dir, "reg.example.com") / "ci", b"")
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {_fake_host(secrets_dir)!r}\n")
    result = _fake_pyinfra(inventory, "regops/deploy/users.py", "-vvv", "--diff")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Registry account |" in output and "Write the token service's users (2)" in output
    for other in ("Docker engine |", "TLS certificates |", "Registry |", "restart", "Restart"):
        assert other not in output
    assert "ci-Password-0123456789" not in output


def test_trust_deploy_plans_ca_and_login_without_showing_the_password(tmp_path, secrets_dir):
    registry = _registry_inventory(tmp_path, secrets_dir, registry_users=["ci"])
    password = secrets.resolve_password(secrets_dir, "reg.example.com", "ci", {})[0]
    clients = tmp_path / "clients.py"
    clients.write_text("clients = [('@fake/client1', {'fake_responses': {'uname -s': 'Linux'}})]\n")
    env = {"REGOPS_TRUST_INVENTORY": str(registry), "REGOPS_TRUST_REGISTRY": "reg1",
           "REGOPS_TRUST_USER": "ci"}
    undeployed = _fake_pyinfra(clients, "regops/deploy/trust.py", env=env)
    assert undeployed.returncode != 0 and "deploy reg1 first" in undeployed.stderr
    pki.ensure_ca(paths.pki_dir(secrets_dir, "reg.example.com"))
    clients.write_text("clients = [('@fake/client1', {'fake_responses': {'uname -s': 'Linux'}})]\n")
    env = {"REGOPS_TRUST_INVENTORY": str(registry), "REGOPS_TRUST_REGISTRY": "reg1",
           "REGOPS_TRUST_USER": "ci"}
    result = _fake_pyinfra(clients, "regops/deploy/trust.py", "-vvv", "--diff", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Trust the CA of reg.example.com:5000" in output
    assert "Log in to reg.example.com:5000 as ci" in output
    assert password not in output
    missing = _fake_pyinfra(clients, "regops/deploy/trust.py",
                            env={"REGOPS_TRUST_INVENTORY": "", "REGOPS_TRUST_REGISTRY": ""})
    assert missing.returncode != 0 and "REGOPS_TRUST_INVENTORY" in missing.stderr


def test_status_of_a_load_balancer_and_a_storage_host(secrets_dir):
    data = {"registry_name": "reg.example.com", "registry_secrets_dir": str(secrets_dir),
            "registry_storage": "s3", "registry_s3_bucket": "images",
            "registry_s3_endpoint": "http://10.0.0.20:8333", "registry_gc_enabled": False}
    env = {"REGOPS_S3_ACCESS_KEY": "a", "REGOPS_S3_SECRET_KEY": "b"}
    lb = load("lb1", {**data, "registry_role": "load_balancer"}, environ=env)
    serving = {"serving": True, "http_status": 401, "error": None}
    entry = status.role_entry("lb1", lb, answer(service="active", df=""), serving)
    assert entry["ok"] and entry["service"] == {"name": "haproxy", "state": "active"}
    down = status.role_entry("lb1", lb, answer(service="active", df=""),
                             {"serving": False, "http_status": None, "error": "refused"})
    assert not down["ok"] and down["error"] == "refused"
    st = load("st1", {**data, "registry_role": "storage"}, environ=env)
    stopped = status.role_entry("st1", st, answer(service="active\ninactive\nactive", df=DF,
                                                  replication=""), None)
    assert not stopped["ok"] and stopped["error"] == "regops-seaweedfs@volume is inactive"
    assert [sv["name"] for sv in stopped["services"]] == [
        "regops-seaweedfs@master", "regops-seaweedfs@volume", "regops-seaweedfs@filer"]
    assert stopped["disk"]["free_bytes"] == 74733314048
    healthy = status.role_entry("st1", st, answer(service="active\nactive\nactive", df=DF,
                                                  replication=""), None)
    assert healthy["ok"] and healthy["cluster"]["under_replicated_volumes"] == []
    lacking = status.role_entry("st1", st, answer(
        service="active\nactive\nactive", df=DF,
        replication="replicating volume 7 001 from a:8080 to dataNode b:8080 ...\n"), None)
    assert not lacking["ok"] and lacking["error"].startswith("1 volumes lack a copy")


def test_day2_commands_see_only_registry_hosts(tmp_path):
    from regops.inventory import load_inventory

    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "shared = {'registry_name': 'reg.example.com'}\n"
        "lb = [('lb1', {**shared, 'registry_role': 'load_balancer'})]\n"
        "registries = [('reg1', shared)]\n")
    assert [h.name for h in load_inventory(str(inventory))] == ["reg1"]
    everyone = load_inventory(str(inventory), roles=None)
    assert [h.name for h in everyone] == ["lb1", "reg1"]
    assert set(everyone[1].peers or {}) == {"lb1", "reg1"}
