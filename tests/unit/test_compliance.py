"""`regops check` logic without a host: results and exit codes, selection, cron
periods, output formats, the P-521 limitation (through sslyze's real profile
checker, fed a fake scan result), and checks fed a fake host snapshot."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from regops.cli import main
from regops.compliance import checks as checks_package
from regops.compliance import cron, facts, report, runner, schedule, tls
from regops.compliance.checks import CHECKS, Context, Options
from regops.compliance.checks._base import Registry
from regops.compliance.checks.api import registry_debug_port_closed
from regops.compliance.checks.container import (
    container_bound_address,
    container_capabilities,
    container_limits,
    container_namespaces,
    container_no_new_privileges,
    container_non_root,
    container_not_privileged,
    container_read_only,
    container_restart_policy,
    frontdoor_serving,
    image_pinned,
)
from regops.compliance.checks.disk import disk_free
from regops.compliance.checks.files import files_htpasswd, files_registry_key, files_token_keys
from regops.compliance.checks.gc import gc_job_installed, gc_last_run
from regops.compliance.checks.roles import role_services
from regops.compliance.checks.storage import storage_identity, storage_private, storage_unprivileged
from regops.compliance.checks.token_service import (
    token_anonymous_read_only,
    token_hardened,
    token_ttl,
    web_pages_protected,
)
from regops.compliance.model import (
    HostReport,
    Result,
    Run,
    Status,
    Unavailable,
    ok,
    select,
    split_ids,
)
from regops.hostops import remote
from regops.inventory import InventoryHost
from regops.secrets import pki
from tests.support.require import require_command

# --- results and exit codes ---------------------------------------------------------------


def result(host: str, check_id: str, status: Status, detail: str = "d") -> Result:
    return Result(host, check_id, f"title of {check_id}", "ref", status, detail)


def a_run(*statuses: Status, accept: bool = False) -> Run:
    results = [result("h1", f"c{i}", s) for i, s in enumerate(statuses)]
    return Run([HostReport("h1", "h1 via x:1", results)], accept_limitations=accept, started=1.0)


@pytest.mark.parametrize(("statuses", "accept", "code"), [
    ((Status.PASS, Status.PASS), False, 0),
    ((Status.PASS, Status.FAIL), False, 1),
    ((Status.PASS, Status.ERROR), False, 1),
    ((Status.PASS, Status.LIMITATION), False, 1),
    ((Status.PASS, Status.LIMITATION), True, 0),
    ((Status.FAIL, Status.LIMITATION), True, 1),
    ((Status.ERROR,), True, 1),
])
def test_exit_code(statuses, accept, code):
    assert a_run(*statuses, accept=accept).exit_code == code


def test_counts_cover_every_state():
    run = a_run(Status.PASS, Status.PASS, Status.FAIL, Status.LIMITATION, Status.ERROR)
    assert run.counts() == {"pass": 2, "fail": 1, "limitation": 1, "error": 1}


# --- selection ------------------------------------------------------------------------------


def test_split_ids_accepts_commas_and_repeats():
    assert split_ids(["a,b", " c ", "d,,"]) == ["a", "b", "c", "d"]


def test_select_only_skip_and_globs_keep_table_order():
    ids = [c.id for c in select(CHECKS, ["tls.*", "daemon.icc"], ["tls.mozilla-intermediate"])]
    assert ids == ["daemon.icc", "tls.certificate", "tls.cert-days-left"]
    assert len(select(CHECKS, [], [])) == len(CHECKS)
    assert "container.non-root" not in [c.id for c in select(CHECKS, [], ["container.*"])]


def test_select_refuses_a_pattern_that_matches_nothing():
    with pytest.raises(ValueError, match="no check matches 'tls.mozila'"):
        select(CHECKS, [], ["tls.mozila"])


def test_check_ids_are_unique_and_documented():
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    for c in CHECKS:
        assert c.title and c.rationale and c.reference, c.id
        assert c.side in ("host", "operator")
    table = report.markdown(CHECKS)
    assert all(f"| `{i}` |" in table for i in ids)
    assert all(line.count(" | ") == 5 for line in table.splitlines()[2:])


def _metadata(**changes: Any) -> dict[str, Any]:
    return {"id": "x.y", "title": "t", "rationale": "r", "reference": "regops", **changes}


def test_the_registry_refuses_a_duplicate_id():
    registry = Registry()
    registry.check(**_metadata())(lambda c: ok("one"))
    with pytest.raises(ValueError, match="'x.y' is registered twice"):
        registry.check(**_metadata(title="another"))(lambda c: ok("two"))
    assert [c.id for c in registry.checks] == ["x.y"]


@pytest.mark.parametrize("changes", [
    {"title": ""}, {"rationale": " "}, {"reference": ""}, {"side": "client"},
    {"roles": ()}, {"roles": "storage"}, {"roles": ("replica",)},
])
def test_the_registry_refuses_incomplete_metadata(changes):
    with pytest.raises(ValueError, match="'x.y'"):
        Registry().check(**_metadata(**changes))(lambda c: ok("never"))


def test_the_decorator_returns_the_check_function_itself():
    registry = Registry()

    def run(c: Context) -> Any:
        return ok("ran")

    assert registry.check(**_metadata())(run) is run
    assert registry.checks[0].run is run


def test_every_registered_check_has_its_metadata_and_lives_in_its_concern_module():
    """Complete metadata, and each id prefix in the module that the package's table names,
    the modules in the table's order (the order of CHECKS, reports and docs)."""
    table = {}
    for module, cell in re.findall(r"^\| `(\w+)` \| (.+) \|$", checks_package.__doc__ or "",
                                   re.MULTILINE):
        for prefix in re.findall(r"`([a-z]+)\.", cell):
            table[prefix] = module
    assert table, "the table of modules in regops/compliance/checks/__init__.py"
    seen: list[str] = []
    for c in CHECKS:
        assert re.fullmatch(r"[a-z]+\.[a-z0-9-]+", c.id), c.id
        assert all(v.strip() for v in (c.title, c.rationale, c.reference)), c.id
        assert c.side in ("host", "operator"), c.id
        assert c.roles and set(c.roles) <= {"registry", "load_balancer", "storage"}, c.id
        assert callable(c.run), c.id
        module = c.run.__module__.removeprefix("regops.compliance.checks.")
        assert table.get(c.id.split(".")[0]) == module, c.id
        if not seen or seen[-1] != module:
            seen.append(module)
    assert seen == list(dict.fromkeys(table.values()))


# --- cron periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(("schedule", "every"), [
    ("17 3 * * 0", timedelta(days=7)),
    ("17 3 * * 7", timedelta(days=7)),
    ("@weekly", timedelta(days=7)),
    ("@daily", timedelta(days=1)),
    ("*/15 * * * *", timedelta(minutes=15)),
    ("0 3 * * 1,2", timedelta(days=6)),
    ("30 2 * * mon-fri", timedelta(days=3)),
    ("0 0 1 * *", timedelta(days=31)),
    ("0 0,12 * * *", timedelta(hours=12)),
    ("0 22-23 * * *", timedelta(hours=23)),
    ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
])
def test_cron_period(schedule, every):
    assert cron.period(schedule) == every


def test_cron_day_of_month_or_day_of_week_when_both_are_set():
    # Fires on the 1st and on every Monday: never more than a week apart.
    assert cron.period("0 4 1 * 1") <= timedelta(days=7)


def test_gc_max_age_adds_a_grace_of_at_most_a_day():
    assert cron.max_age("17 3 * * 0") == timedelta(days=8)
    assert cron.max_age("@daily") == timedelta(days=2)
    assert cron.max_age("0 * * * *") == timedelta(hours=2)


def test_cron_period_refuses_a_bad_schedule():
    with pytest.raises(ValueError, match="minute field"):
        cron.period("61 * * * *")


# --- output formats -------------------------------------------------------------------------------


def mixed_run(accept: bool = False) -> Run:
    return Run([
        HostReport("sb1", "sb1.test via 127.0.0.1:5000", [
            result("sb1", "files.registry-key", Status.FAIL, "mode 0644"),
            result("sb1", "tls.mozilla-intermediate", Status.LIMITATION, "P-521"),
            result("sb1", "daemon.icc", Status.PASS),
        ]),
        HostReport("gone", "gone.test via 127.0.0.1:1", [
            result("gone", "daemon.icc", Status.ERROR, "cannot reach the host over SSH"),
        ]),
    ], accept_limitations=accept, started=100.0)


def test_junit_maps_each_state():
    root = ET.fromstring(report.junit(mixed_run()))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert (suites["sb1"].get("tests"), suites["sb1"].get("failures")) == ("3", "2")
    assert suites["gone"].get("errors") == "1"
    cases = {c.get("name"): c for c in suites["sb1"].findall("testcase")}
    assert cases["files.registry-key"].find("failure").get("type") == "fail"
    assert cases["tls.mozilla-intermediate"].find("failure").get("type") == "known-limitation"
    assert cases["daemon.icc"].find("failure") is None
    assert suites["gone"].find("testcase/error").get("message").startswith("cannot reach")


def test_junit_marks_accepted_limitations_skipped():
    root = ET.fromstring(report.junit(mixed_run(accept=True)))
    sb1 = root.find("testsuite[@name='sb1']")
    assert (sb1.get("failures"), sb1.get("skipped")) == ("1", "1")
    assert sb1.find("testcase[@name='tls.mozilla-intermediate']/skipped") is not None


def test_json_document():
    doc = json.loads(report.dumps(mixed_run()))
    assert doc["version"] == 1 and doc["exit_code"] == 1
    assert doc["counts"] == {"pass": 1, "fail": 1, "limitation": 1, "error": 1}
    first = doc["hosts"][0]["results"][0]
    assert first == {"id": "files.registry-key", "title": "title of files.registry-key",
                     "reference": "ref", "status": "fail", "detail": "mode 0644", "remedy": ""}


def test_prometheus_textfile():
    text = report.prometheus(mixed_run(), finished=160.25)
    lines = text.splitlines()
    assert 'regops_check_ok{host="sb1",check="daemon.icc"} 1' in lines
    assert 'regops_check_ok{host="sb1",check="tls.mozilla-intermediate"} 0' in lines
    assert 'regops_check_status{host="gone",check="daemon.icc",status="error"} 1' in lines
    assert 'regops_check_status{host="gone",check="daemon.icc",status="pass"} 0' in lines
    assert "regops_check_exit_code 1" in lines
    assert "regops_check_last_run_timestamp_seconds 160" in lines
    assert "regops_check_duration_seconds 60.250" in lines
    accepted = report.prometheus(mixed_run(accept=True), finished=160.0)
    assert 'regops_check_ok{host="sb1",check="tls.mozilla-intermediate"} 1' in accepted
    # Every sample line is `name{labels} value` or `name value`.
    for line in lines:
        if not line.startswith("#"):
            assert len(line.rsplit(" ", 1)) == 2 and float(line.rsplit(" ", 1)[1]) >= 0


def test_prometheus_escapes_labels():
    run = Run([HostReport('we"ird\\host', "x", [result('we"ird\\host', "c", Status.PASS)])])
    assert 'host="we\\"ird\\\\host"' in report.prometheus(run, 1.0)


def test_write_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "dir" / "regops.prom"
    report.write_atomic(target, "one\n")
    report.write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["regops.prom"]


def test_table_shows_limitations_and_remedies():
    run = mixed_run()
    run.hosts[0].results[0] = Result("sb1", "files.registry-key", "t", "r", Status.FAIL,
                                     "mode 0644", "chmod 0640")
    text = report.table(run)
    assert "FAIL (known limitation)  tls.mozilla-intermediate" in text
    assert "mode 0644 -> chmod 0640" in text
    assert text.splitlines()[-1] == ("2 host(s), 4 result(s): 1 pass, 1 fail, 1 limitation, "
                                     "1 error; exit 1")


# --- the Mozilla profile, through sslyze's real profile checker -------------------------------


def _attempt(result: Any) -> SimpleNamespace:
    from sslyze import ScanCommandAttemptStatusEnum

    return SimpleNamespace(status=ScanCommandAttemptStatusEnum.COMPLETED, result=result)


def _suites(supported: bool, *names: str) -> SimpleNamespace:
    accepted = [SimpleNamespace(cipher_suite=SimpleNamespace(name=n), ephemeral_key=None)
                for n in names]
    return _attempt(SimpleNamespace(is_tls_version_supported=supported,
                                    accepted_cipher_suites=accepted))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Any:
    from cryptography import x509

    pki_dir = tmp_path_factory.mktemp("pki")
    server = pki.ensure_server_cert(pki_dir, ["reg.example.com"])
    return x509.load_pem_x509_certificate(server.cert_pem)


def fake_scan(certificate: Any, curves: list[str], tls10: bool = False) -> SimpleNamespace:
    """What sslyze 6 returns for a server with TLS 1.2/1.3, AEAD suites, the given curves."""
    from sslyze import RobotScanResultEnum, ServerScanStatusEnum

    deployment = SimpleNamespace(received_certificate_chain=[certificate],
                                 verified_certificate_chain=[certificate])
    scan = SimpleNamespace(
        ssl_2_0_cipher_suites=_suites(False), ssl_3_0_cipher_suites=_suites(False),
        tls_1_0_cipher_suites=_suites(tls10, *(["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]
                                               if tls10 else [])),
        tls_1_1_cipher_suites=_suites(False),
        tls_1_2_cipher_suites=_suites(True, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        tls_1_3_cipher_suites=_suites(True, "TLS_AES_128_GCM_SHA256"),
        certificate_info=_attempt(SimpleNamespace(certificate_deployments=[deployment])),
        elliptic_curves=_attempt(SimpleNamespace(
            supported_curves=[SimpleNamespace(name=c) for c in curves])),
        heartbleed=_attempt(SimpleNamespace(is_vulnerable_to_heartbleed=False)),
        robot=_attempt(SimpleNamespace(robot_result=RobotScanResultEnum.NOT_VULNERABLE_NO_ORACLE)),
        openssl_ccs_injection=_attempt(SimpleNamespace(is_vulnerable_to_ccs_injection=False)),
        tls_fallback_scsv=_attempt(SimpleNamespace(supports_fallback_scsv=True)),
        tls_compression=_attempt(SimpleNamespace(supports_compression=False)),
        session_renegotiation=_attempt(SimpleNamespace(supports_secure_renegotiation=True)),
        tls_extended_master_secret=_attempt(SimpleNamespace(supports_ems_extension=True)),
    )
    return SimpleNamespace(scan_status=ServerScanStatusEnum.COMPLETED, scan_result=scan)


GO_CURVES = ["X25519", "secp256r1", "secp384r1"]


def test_profile_passes_without_p521(certificate):
    assert tls.evaluate(fake_scan(certificate, GO_CURVES)).status is Status.PASS


def test_p521_fails_and_says_the_registry_answers_not_the_front_door(certificate):
    verdict = tls.evaluate(fake_scan(certificate, [*GO_CURVES, "secp521r1"]))
    assert verdict.status is Status.FAIL
    assert "P-521" in verdict.detail and "not the front door" in verdict.detail
    assert "redeploy" in verdict.remedy


def test_p521_does_not_hide_another_problem(certificate):
    verdict = tls.evaluate(fake_scan(certificate, [*GO_CURVES, "secp521r1"], tls10=True))
    assert verdict.status is Status.FAIL
    assert "TLSv1" in verdict.detail and "secp521r1" in verdict.detail


def test_another_curve_is_a_plain_failure(certificate):
    verdict = tls.evaluate(fake_scan(certificate, [*GO_CURVES, "secp521r1", "secp224r1"]))
    assert verdict.status is Status.FAIL and "secp224r1" in verdict.detail


def test_an_incomplete_scan_cannot_check(certificate):
    from sslyze import ServerScanStatusEnum

    scan = fake_scan(certificate, GO_CURVES)
    scan.scan_status = ServerScanStatusEnum.ERROR_NO_CONNECTIVITY
    scan.connectivity_error_trace = None
    with pytest.raises(Unavailable, match="could not connect"):
        tls.evaluate(scan)


# --- checks on a fake host snapshot ---------------------------------------------------------------


NOW = 1_800_000_000


@pytest.fixture
def settings(base_data):
    return runner.settings_without_secrets(InventoryHost("reg.example.com", base_data))


def stat_line(path: str, user: str = "root", group: str = "root", mode: str = "644",
              uid: int = 0, gid: int = 0, kind: str = "regular file", ctime: int = NOW) -> str:
    return f"{path}\t{kind}\t{user}\t{group}\t{uid}\t{gid}\t{mode}\t{ctime}\t{ctime}"


def container(**host_config: Any) -> dict:
    hc = {"ReadonlyRootfs": True, "CapDrop": ["ALL"], "CapAdd": None, "Privileged": False,
          "NetworkMode": "bridge", "PidMode": "", "IpcMode": "private", "UTSMode": "",
          "Memory": 536870912, "PidsLimit": 256, "SecurityOpt": ["no-new-privileges:true"],
          "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
          "PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5010"}]}}
    hc.update(host_config)
    return {"Image": "sha256:abc", "Config": {"User": "5000:5000", "Image": "registry:2.8.3"},
            "State": {"Running": True, "StartedAt": "2030-01-01T00:00:00.1Z"}, "HostConfig": hc}


def snapshot(**overrides: Any) -> facts.HostFacts:
    stats = "\n".join([
        stat_line("/etc/docker", mode="755", kind="directory"),
        stat_line("/etc/nginx/regops/tls/server.key", mode="400"),
        stat_line("/usr/local/sbin/regops-gc", mode="755", ctime=NOW - 3600),
        stat_line("/etc/systemd/system/regops-gc.service"),
        stat_line("/etc/systemd/system/regops-gc.timer"),
    ])
    sections = {
        "now": (0, str(NOW)),
        "stat": (0, stats),
        "container": (0, json.dumps([container()])),
        "image": (0, "sha256:abc"),
        "gc_state": (1, "cat: /var/lib/regops/gc-last.json: No such file or directory"),
        "gc_timer": (0, "Triggers=regops-gc.service\nActiveState=active\n"
                        "UnitFileState=enabled"),
        "nginx_active": (0, "active"),
        "frontdoor_mode": (0, "registry-normal.conf"),
        "listen": (0, "  sl  local_address rem_address   st\n"
                      "   0: 00000000:1388 00000000:0000 0A 00000000:00000000 00:00000000 0"),
        "data_fs": (0, "1000 50 4096"),
    }
    sections.update(overrides)
    return facts.HostFacts(sections=sections)


class FakeProbes:
    def __init__(self, port: int = 5000) -> None:
        self.target = SimpleNamespace(host="127.0.0.1", port=port)

    def tcp_open(self, port: int) -> bool:
        raise AssertionError("the outside probe must only run when the API port is the host's")


def ctx(settings, host_facts: facts.HostFacts, **options: Any) -> Context:
    return Context(settings, host_facts, FakeProbes(port=41000), Options(**options))  # type: ignore[arg-type]


def test_parse_reads_sections_and_their_exit_status():
    output = ("@@regops-section now\n123\n\n@@regops-rc now 0\n"
              "@@regops-section gc_state\ncat: nope\n\n@@regops-rc gc_state 1\n")
    assert remote.parse(output) == {"now": (0, "123"), "gc_state": (1, "cat: nope")}


def test_the_snapshot_script_reads_no_secret(settings):
    commands = facts.sections(settings)
    for secret in ("htpasswd", "server.key", "config", "ca.key"):
        for name, command in commands.items():
            if name == "directory":
                # The token service's own probe reads its config and the bind password
                # on the host, and prints only `ok URL`, `down REASON` or `none`
                # (regops_token.probe; the directory's tests show the password is never in
                # a message).
                assert command == facts.DIRECTORY_PROBE
                continue
            if secret in command:
                assert command.startswith("stat "), name
    script = facts.script(settings)
    assert script.startswith(f"timeout {remote.SCRIPT_TIMEOUT} sh -c ")
    assert all(f"@@regops-section {name}" in script for name in commands)


def test_listening_decodes_proc_net_tcp():
    text = ("  sl  local_address rem_address   st\n"
            "   0: 0100007F:1389 00000000:0000 0A\n"
            "   1: 00000000:1388 00000000:0000 0A\n"
            "   2: 00000000:1F90 0100007F:9C40 01\n"
            "   0: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A")
    assert facts.listening(text) == [("127.0.0.1", 5001), ("0.0.0.0", 5000), ("::1", 5001)]


def test_key_mode_and_owner(settings):
    assert files_registry_key(ctx(settings, snapshot())).status is Status.PASS
    loose = snapshot(stat=(0, stat_line("/etc/nginx/regops/tls/server.key",
                                        group="regops-registry", gid=5000, mode="440")))
    verdict = files_registry_key(ctx(settings, loose))
    assert verdict.status is Status.FAIL and "mode 0440" in verdict.detail
    assert "group regops-registry" in verdict.detail
    missing = files_registry_key(ctx(settings, snapshot(stat=(0, ""))))
    assert missing.status is Status.FAIL and "missing" in missing.detail


@pytest.mark.parametrize(("changes", "check", "words"), [
    ({"Privileged": True}, container_not_privileged, "privileged"),
    ({"ReadonlyRootfs": False}, container_read_only, "writable"),
    ({"CapAdd": ["NET_ADMIN"]}, container_capabilities, "NET_ADMIN"),
    ({"PidMode": "host", "NetworkMode": "host"}, container_namespaces, "network, pid"),
    ({"PidsLimit": 0}, container_limits, "no pids limit"),
    ({"SecurityOpt": None}, container_no_new_privileges, "no-new-privileges"),
    ({"RestartPolicy": {"Name": "always"}}, container_restart_policy, "always"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0}},
     container_restart_policy, "unlimited"),
    ({"PortBindings": {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5010"}]}},
     container_bound_address, "0.0.0.0:5010"),
])
def test_container_checks_fail_on_what_they_guard(settings, changes, check, words):
    assert check(ctx(settings, snapshot())).status is Status.PASS
    broken = snapshot(container=(0, json.dumps([container(**changes)])))
    verdict = check(ctx(settings, broken))
    assert verdict.status is Status.FAIL and words in verdict.detail


def test_root_user_fails(settings):
    as_root = container()
    as_root["Config"]["User"] = "0:0"
    root_snapshot = snapshot(container=(0, json.dumps([as_root])))
    verdict = container_non_root(ctx(settings, root_snapshot))
    assert verdict.status is Status.FAIL and "root" in verdict.detail


def test_debug_port_published_or_listening_fails(settings):
    assert registry_debug_port_closed(ctx(settings, snapshot())).status is Status.PASS
    published = container(PortBindings={
        "5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5010"}],
        "5001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5001"}]})
    verdict = registry_debug_port_closed(
        ctx(settings, snapshot(container=(0, json.dumps([published])))))
    assert verdict.status is Status.FAIL and "5001/tcp" in verdict.detail
    listening = snapshot(listen=(0, "   0: 00000000:1389 00000000:0000 0A"))
    verdict = registry_debug_port_closed(ctx(settings, listening))
    assert verdict.status is Status.FAIL and "listens on 0.0.0.0" in verdict.detail


def test_front_door_must_listen_and_send_v2_to_the_registry(settings):
    assert frontdoor_serving(ctx(settings, snapshot())).status is Status.PASS
    stopped = frontdoor_serving(ctx(settings, snapshot(nginx_active=(3, "inactive"))))
    assert stopped.status is Status.FAIL and "nginx is not running" in stopped.detail
    stuck = frontdoor_serving(
        ctx(settings, snapshot(frontdoor_mode=(0, "registry-gc.conf"))))
    assert stuck.status is Status.FAIL and "registry-gc.conf" in stuck.detail
    deaf = frontdoor_serving(ctx(settings, snapshot(listen=(0, ""))))
    assert deaf.status is Status.FAIL and "nothing listens on 0.0.0.0:5000" in deaf.detail


def test_image_must_be_the_inventorys_and_unmoved(settings):
    assert image_pinned(ctx(settings, snapshot())).status is Status.PASS
    moved = image_pinned(ctx(settings, snapshot(image=(0, "sha256:def"))))
    assert moved.status is Status.FAIL and "tag moved" in moved.detail
    latest = container()
    latest["Config"]["Image"] = "registry:latest"
    verdict = image_pinned(ctx(settings, snapshot(container=(0, json.dumps([latest])))))
    assert verdict.status is Status.FAIL and "not pinned" in verdict.detail


def gc_record(age: timedelta, result: str = "ok", code: int = 0) -> tuple[int, str]:
    when = datetime.fromtimestamp(NOW, UTC) - age
    return 0, json.dumps({"time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "result": result,
                          "exit_code": code, "bytes_freed": 10, "readonly_seconds": 2})


def test_gc_never_run_passes_only_while_the_job_is_young(settings):
    young = gc_last_run(ctx(settings, snapshot()))
    assert young.status is Status.PASS and "no run yet" in young.detail
    old_script = snapshot(stat=(0, stat_line("/usr/local/sbin/regops-gc", mode="755",
                                             ctime=NOW - 9 * 86400)))
    verdict = gc_last_run(ctx(settings, old_script))
    assert verdict.status is Status.FAIL and "never ran" in verdict.detail


@pytest.mark.parametrize(("state", "options", "status", "words"), [
    (gc_record(timedelta(days=2)), {}, Status.PASS, "ok"),
    (gc_record(timedelta(days=9)), {}, Status.FAIL, "9.0 days ago (limit 8.0 days)"),
    (gc_record(timedelta(days=2)), {"gc_max_age_days": 1}, Status.FAIL, "limit 24.0 h"),
    (gc_record(timedelta(hours=1), "failed", 1), {}, Status.FAIL, "failed (exit 1)"),
    ((0, "{not json"), {}, Status.FAIL, "not a GC record"),
])
def test_gc_last_run_states(settings, state, options, status, words):
    verdict = gc_last_run(ctx(settings, snapshot(gc_state=state), **options))
    assert verdict.status is status and words in verdict.detail


def test_gc_job_needs_the_timer_file_enabled_and_active(settings):
    assert gc_job_installed(ctx(settings, snapshot())).status is Status.PASS
    no_timer = snapshot(stat=(0, "\n".join([
        stat_line("/usr/local/sbin/regops-gc", mode="755"),
        stat_line("/etc/systemd/system/regops-gc.service")])))
    verdict = gc_job_installed(ctx(settings, no_timer))
    assert verdict.status is Status.FAIL
    assert "/etc/systemd/system/regops-gc.timer is missing" in verdict.detail
    stopped = gc_job_installed(ctx(settings, snapshot(gc_timer=(0, (
        "Triggers=regops-gc.service\nActiveState=inactive\nUnitFileState=disabled")))))
    assert stopped.status is Status.FAIL
    assert "regops-gc.timer is not active" in stopped.detail
    assert "regops-gc.timer is not enabled" in stopped.detail


def test_disk_free_threshold(settings):
    low = disk_free(ctx(settings, snapshot()))  # 50 of 1000 blocks: 5%
    assert low.status is Status.FAIL and "5.0% free" in low.detail
    assert disk_free(ctx(settings, snapshot(), disk_free_percent=5)).status is Status.PASS


def test_unreachable_host_makes_host_checks_errors_not_exceptions(settings, base_data):
    def refuse(_host: InventoryHost) -> Any:
        def run(_command: str) -> Any:
            raise RuntimeError(SimpleNamespace(stderr="ssh: connect to host x port 22: "
                                                      "Connection refused\n"))
        return SimpleNamespace(run=run)

    host_checks = [c for c in CHECKS if c.side == "host"]
    report_ = runner.check_host(InventoryHost("reg.example.com", base_data), host_checks,
                                Options(), connect=refuse)
    assert {r.status for r in report_.results} == {Status.ERROR}
    assert all("Connection refused" in r.detail for r in report_.results)


def test_bad_inventory_data_is_one_error_row(base_data):
    bad = InventoryHost("reg.example.com", {**base_data, "registry_prot": 1})
    report_ = runner.check_host(bad, CHECKS, Options())
    (only,) = report_.results
    assert only.status is Status.ERROR and "registry_prot: unknown key" in only.detail


def test_settings_for_checking_touch_no_secret(base_data, secrets_dir: Path):
    runner.settings_without_secrets(InventoryHost("reg.example.com", base_data))
    assert not secrets_dir.exists()


# --- systemd units and the command line ----------------------------------------------------------


def test_units_run_the_same_command(tmp_path):
    rendered = schedule.render(["-i", "/srv/regops/inventories/prod.py", "--only", "tls.*"],
                            inventory="/srv/regops/inventories/prod.py", workdir="/srv/regops",
                            user="regops", calendar="*-*-* *:17", python="/usr/bin/python3",
                            prometheus="/var/lib/node-exporter/regops.prom")
    service, timer = rendered["regops-check.service"], rendered["regops-check.timer"]
    assert ("ExecStart=/usr/bin/python3 -m regops.cli check -i "
            "/srv/regops/inventories/prod.py --only 'tls.*'") in service
    assert "WorkingDirectory=/srv/regops" in service and "User=regops" in service
    assert "OnCalendar=*-*-* *:17" in timer and "Persistent=true" in timer
    written = schedule.write(rendered, tmp_path)
    assert sorted(p.name for p in written) == ["regops-check.service", "regops-check.timer"]


def test_units_pass_systemd_analyze_verify(tmp_path):
    """systemd's own parser accepts the units (when systemd-analyze is installed)."""
    import getpass
    import subprocess
    import sys

    analyze = require_command("systemd-analyze", "systemd")
    rendered = schedule.render(["-i", str(tmp_path / "inv.py"), "--skip", "files.*"],
                            inventory=str(tmp_path / "inv.py"), workdir=str(tmp_path),
                            user=getpass.getuser(), calendar="hourly", python=sys.executable,
                            prometheus=str(tmp_path / "regops.prom"))
    paths = schedule.write(rendered, tmp_path / "units")
    result = subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "regops-check" not in result.stderr, result.stderr


def test_exec_quote_escapes_what_systemd_expands():
    assert schedule.exec_quote(["echo", "50%", "$HOME"]) == "echo 50%% '$$HOME'"


def test_cli_list_and_one_line_errors(tmp_path):
    cli = CliRunner()
    listed = cli.invoke(main, ["check", "--list", "--only", "gc.*"])
    assert listed.exit_code == 0 and "gc.last-run" in listed.output
    assert "daemon.icc" not in listed.output
    typo = cli.invoke(main, ["check", "--list", "--skip", "gc.lastrun"])
    assert typo.exit_code == 2
    assert typo.output.strip() == ("regops: error: no check matches 'gc.lastrun' "
                                   "(see `regops check --list`)")
    missing = cli.invoke(main, ["check", "-i", str(tmp_path / "nope.py")])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1


def test_cli_write_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inv.py").write_text("hosts = ['reg.example.com']\n")
    out = CliRunner().invoke(main, ["check",
        "-i", "inv.py", "--accept-limitations", "--prometheus", "metrics/regops.prom",
        "--write-units", "units", "--unit-user", "ops"])
    assert out.exit_code == 0, out.output
    service = (tmp_path / "units" / "regops-check.service").read_text()
    assert f"-i {tmp_path}/inv.py" in service and "--accept-limitations" in service
    assert f"--prometheus {tmp_path}/metrics/regops.prom" in service
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert "--write-units" not in exec_start and "User=ops" in service


# --- the token service ---------------------------------------------------------------


TOKEN_FILES = ("/etc/regops/token/users.htpasswd", "/etc/regops/token/robots.htpasswd",
               "/etc/regops/token/signer.key", "/etc/regops/token/notify.secret",
               "/etc/regops/token/config.json")
HARDENED = ("ActiveState=active\nUser=regops-token\nNoNewPrivileges=yes\nProtectSystem=strict\n"
            "ProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\nCapabilityBoundingSet=\n"
            "AmbientCapabilities=\nRestrictSUIDSGID=yes\nMemoryMax=268435456")


def token_stats(mode: str = "640", group: str = "regops-token") -> tuple[int, str]:
    gid = 5001 if group == "regops-token" else 0
    return 0, "\n".join(stat_line(p, group=group, gid=gid, mode=mode) for p in TOKEN_FILES)


def test_token_files_are_root_regops_token_0640(settings):
    assert settings.token_auth
    good = ctx(settings, snapshot(stat=token_stats()))
    assert files_htpasswd(good).status is Status.PASS
    assert files_token_keys(good).status is Status.PASS
    loose = ctx(settings, snapshot(stat=token_stats(mode="644")))
    verdict = files_token_keys(loose)
    assert verdict.status is Status.FAIL and "signer.key" in verdict.detail
    assert "mode 0644" in verdict.detail
    wrong_group = files_htpasswd(ctx(settings, snapshot(stat=token_stats(group="root"))))
    assert wrong_group.status is Status.FAIL and "users.htpasswd" in wrong_group.detail


def test_htpasswd_mode_checks_the_registrys_file_and_has_no_token_service(base_data):
    s = runner.settings_without_secrets(
        InventoryHost("reg.example.com", {**base_data, "registry_auth": "htpasswd"}))
    stats = (0, stat_line("/etc/docker/registry/htpasswd", group="regops-registry", gid=5000,
                          mode="640"))
    assert files_htpasswd(ctx(s, snapshot(stat=stats))).status is Status.PASS
    assert files_htpasswd(ctx(s, snapshot(stat=token_stats()))).status is Status.FAIL
    for check in (files_token_keys, token_hardened, token_ttl, token_anonymous_read_only):
        assert "htpasswd" in check(ctx(s, snapshot())).detail


@pytest.mark.parametrize(("line", "words"), [
    ("User=root", "User=root"),
    ("NoNewPrivileges=no", "NoNewPrivileges=no"),
    ("CapabilityBoundingSet=cap_net_admin", "CapabilityBoundingSet=cap_net_admin"),
    ("MemoryMax=infinity", "MemoryMax=infinity"),
    ("ActiveState=failed", "ActiveState=failed"),
])
def test_token_service_hardening(settings, line, words):
    assert token_hardened(
        ctx(settings, snapshot(token_unit=(0, HARDENED)))).status is Status.PASS
    key = line.split("=")[0]
    changed = "\n".join(line if row.startswith(f"{key}=") else row
                        for row in HARDENED.splitlines())
    verdict = token_hardened(ctx(settings, snapshot(token_unit=(0, changed))))
    assert verdict.status is Status.FAIL and words in verdict.detail


class TokenProbes(FakeProbes):
    """Answers anonymous token requests as a token service with `grants` would."""

    def __init__(self, ttl: int = 300, grants: dict[str, list[str]] | None = None,
                 header: dict | None = None) -> None:
        super().__init__(port=41000)
        self.ttl, self.grants, self.asked = ttl, grants or {}, []
        self.header = header or {"alg": "ES256", "x5c": ["MII..."]}

    def anonymous_token(self, scopes: list[str]) -> tuple[dict, dict]:
        self.asked += scopes
        access = []
        for scope in scopes:
            kind, _, name = scope.partition(":")
            name = name.rsplit(":", 1)[0]
            if name in self.grants:
                access.append({"type": kind, "name": name, "actions": self.grants[name]})
        return self.header, {"aud": "reg.example.com", "iat": NOW, "exp": NOW + self.ttl,
                             "access": access}


def token_ctx(settings, probes: TokenProbes) -> Context:
    return Context(settings, snapshot(), probes, Options())  # type: ignore[arg-type]


def test_token_ttl_and_header(settings):
    verdict = token_ttl(token_ctx(settings, TokenProbes()))
    assert verdict.status is Status.PASS and "300 s" in verdict.detail
    long_lived = token_ttl(token_ctx(settings, TokenProbes(ttl=86400)))
    assert long_lived.status is Status.FAIL and "86400 s" in long_lived.detail
    hs256 = token_ttl(token_ctx(settings, TokenProbes(header={"alg": "HS256"})))
    assert hs256.status is Status.FAIL and "x5c missing" in hs256.detail


def test_anonymous_may_at_most_pull(base_data):
    rules = {
        "registry_users": ["alice"], "registry_admins": ["alice"],
        "registry_access": [{"repositories": "public/**", "who": ["anonymous"],
                             "actions": ["pull"]}],
    }
    s = runner.settings_without_secrets(InventoryHost("reg.example.com", {**base_data, **rules}))
    probes = TokenProbes(grants={"public/regops-probe": ["pull"]})
    verdict = token_anonymous_read_only(token_ctx(s, probes))
    assert verdict.status is Status.PASS, verdict.detail
    assert "repository:public/regops-probe:pull,push,delete,*" in probes.asked
    assert "registry:catalog:*" in probes.asked
    pushes = TokenProbes(grants={"public/regops-probe": ["pull", "push"]})
    verdict = token_anonymous_read_only(token_ctx(s, pushes))
    assert verdict.status is Status.FAIL and "public/regops-probe:pull,push" in verdict.detail
    catalog = TokenProbes(grants={"catalog": ["*"]})
    verdict = token_anonymous_read_only(token_ctx(s, catalog))
    assert verdict.status is Status.FAIL and "registry:catalog" in verdict.detail


class PageProbes(FakeProbes):
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(port=41000)
        self.status, self.headers = status, headers

    def anonymous_page(self, path: str) -> tuple[int, dict[str, str]]:
        assert path == "/repositories/"
        return self.status, self.headers


def _page_headers() -> dict[str, str]:
    """What the service's pages really send (rendered by regops_token.web)."""
    from regops_token.rules import parse_policy
    from regops_token.web import Web, WebConfig

    accounts = SimpleNamespace(policy=parse_policy(["alice"]))
    web = Web(accounts, None, WebConfig("r:5000", None, "", ""))  # type: ignore[arg-type]
    return {k.lower(): v for k, v in web._page(None, "error.html", message="x").headers}


def test_the_web_pages_send_their_protections(settings):
    good = web_pages_protected(token_ctx(settings, PageProbes(200, _page_headers())))
    assert good.status is Status.PASS, good.detail
    inline = {**_page_headers(), "content-security-policy": "script-src 'self' 'unsafe-inline'"}
    bad = web_pages_protected(token_ctx(settings, PageProbes(200, inline)))
    assert bad.status is Status.FAIL and "frame-ancestors" in bad.detail
    assert "inline" in bad.detail


def test_without_web_pages_the_root_is_404(base_data):
    s = runner.settings_without_secrets(InventoryHost("reg.example.com",
                                                      {**base_data, "registry_ui": False}))
    assert web_pages_protected(token_ctx(s, PageProbes(404, {}))).status is Status.PASS
    served = web_pages_protected(token_ctx(s, PageProbes(200, _page_headers())))
    assert served.status is Status.FAIL and "registry_ui is off" in served.detail


# --- load balancers and storage hosts ------------------------------------------------------------


def _cluster_hosts(base_data: dict) -> dict[str, InventoryHost]:
    """A name with a balancer, a replica and three storage hosts, as load_inventory gives."""
    shared = {**base_data, "registry_storage": "s3", "registry_s3_bucket": "images",
              "registry_gc_enabled": False}
    every = {"lb1": {**shared, "registry_role": "load_balancer",
                     "registry_private_address": "10.0.0.2"},
             "reg1": {**shared, "registry_private_address": "10.0.0.11"}}
    for i in (1, 2, 3):
        every[f"st{i}"] = {**shared, "registry_role": "storage",
                           "registry_private_address": f"10.0.0.2{i}"}
    return {name: InventoryHost(name, data, peers=every) for name, data in every.items()}


def _tcp(address: str, port: int) -> str:
    """One listening line of /proc/net/tcp."""
    raw = bytes(int(x) for x in address.split("."))
    return (f"   0: {raw[::-1].hex().upper()}:{port:04X} 00000000:0000 0A 00000000:00000000 "
            "00:00000000 0")


def _storage_snapshot(**overrides: Any) -> facts.HostFacts:
    sections = {
        "now": (0, str(NOW)),
        "units": (0, "regops-seaweedfs@master active enabled\n"
                     "regops-seaweedfs@volume active enabled\n"
                     "regops-seaweedfs@filer active enabled\netcd active enabled"),
        "stat": (0, stat_line("/etc/seaweedfs/s3.json", group="seaweedfs", gid=5002,
                              mode="640")),
        "listen": (0, "\n".join(_tcp("10.0.0.21", p) for p in (9333, 8080, 8888, 8333, 2379))
                   + "\n" + _tcp("0.0.0.0", 22)),
        "weed_users": (0, "seaweedfs"),
        "data_fs": (0, "1000 500 4096"),
    }
    sections.update(overrides)
    return facts.HostFacts(sections=sections)


def test_each_role_gets_its_own_checks_and_snapshot(base_data):
    hosts = _cluster_hosts(base_data)
    st1 = runner.settings_without_secrets(hosts["st1"])
    assert st1.storage.shared_store  # the peers are there: it knows it is a master host
    commands = facts.sections(st1)
    assert "systemctl is-active etcd" in commands["units"]
    assert "docker" not in " ".join(commands.values())  # a storage host runs no Docker
    assert "s3.json" in commands["stat"] and not any(
        c.startswith("cat") and "s3.json" in c for c in commands.values())  # stat only

    def snapshot_of(name: str) -> Any:
        def run(command: str) -> Any:
            texts = {"lb1": {"units": "haproxy active enabled",
                             "stat": "\n".join([stat_line("/etc/haproxy/haproxy.cfg"),
                                                stat_line("/etc/haproxy/regops-ca.crt")]),
                             "listen": _tcp("0.0.0.0", 5000)},
                     "st1": {k: v for k, (_, v) in _storage_snapshot().sections.items()}}[name]
            texts.setdefault("now", str(NOW))
            out = "".join(f"{remote.SECTION_MARK} {k}\n{v}\n\n{remote.RC_MARK} {k} 0\n"
                          for k, v in texts.items())
            return SimpleNamespace(stdout=out, stderr="")
        return SimpleNamespace(run=run)

    for name, expected in (("lb1", {"role.services", "lb.config"}),
                           ("st1", {"role.services", "storage.s3-identity", "host.disk-free",
                                    "storage.unprivileged", "storage.private-only"})):
        report_ = runner.check_host(hosts[name], CHECKS, Options(),
                                    connect=lambda h: snapshot_of(h.name))
        assert {r.check_id for r in report_.results} == expected, name
        assert all(r.status is Status.PASS for r in report_.results), report_.results
        assert report_.target.startswith("reg.example.com its ")


def test_storage_checks_fail_on_what_they_guard(base_data):
    st1 = runner.settings_without_secrets(_cluster_hosts(base_data)["st1"])

    def verdict(check: Any, **overrides: Any) -> Any:
        return check(ctx(st1, _storage_snapshot(**overrides)))

    stopped = verdict(role_services, units=(0, "regops-seaweedfs@volume active enabled\n"
                                               "etcd failed enabled"))
    assert stopped.status is Status.FAIL and stopped.detail == "etcd is failed"
    off = verdict(role_services, units=(0, "haproxy active disabled"))
    assert off.detail == "haproxy is disabled at boot"
    world = verdict(storage_identity, stat=(0, stat_line(
        "/etc/seaweedfs/s3.json", group="seaweedfs", gid=5002, mode="644")))
    assert world.status is Status.FAIL and "mode 0644" in world.detail
    root = verdict(storage_unprivileged, weed_users=(0, "root\nseaweedfs"))
    assert root.status is Status.FAIL and "weed runs as root, seaweedfs" in root.detail
    wide = verdict(storage_private, listen=(0, _tcp("0.0.0.0", 2379) + "\n"
                                            + _tcp("10.0.0.21", 9101)))
    assert wide.status is Status.FAIL
    assert "etcd on 0.0.0.0:2379" in wide.detail and "10.0.0.21:9101" in wide.detail
    full = verdict(disk_free, data_fs=(0, "1000 50 4096"))
    assert full.status is Status.FAIL and "/var/lib/seaweedfs" in full.detail


def test_the_directory_check_reads_the_probe_from_the_host(base_data, tmp_path):
    from regops.compliance.checks.token_service import token_directory
    from regops.secrets import pki

    ca = tmp_path / "ldap-ca.pem"
    ca.write_bytes(pki.ensure_token_signer(tmp_path / "pki").ca_pem)
    ldap = {"urls": ["ldaps://ldap.example.com"], "ca_file": str(ca),
            "bind_dn": "cn=regops,dc=example,dc=com", "user_base": "ou=people,dc=example,dc=com",
            "group_base": "ou=groups,dc=example,dc=com"}
    s = runner.settings_without_secrets(InventoryHost("reg.example.com", {
        **base_data, "registry_ldap": ldap}))
    without = runner.settings_without_secrets(InventoryHost("reg.example.com", base_data))
    assert "directory" in facts.sections(s)
    none = token_directory(ctx(without, snapshot(directory=(0, "none: no directory"))))
    assert none.status is Status.PASS
    stale = token_directory(ctx(without, snapshot(directory=(0, "ok ldaps://old.example"))))
    assert stale.status is Status.FAIL
    with pytest.raises(Unavailable, match="cannot be read"):  # the runner: an error
        token_directory(ctx(s, snapshot(directory=(1, "cannot read /etc/regops/token/"
                                                      "config.json: No such file"))))
    answered = token_directory(ctx(s, snapshot(directory=(0, "ok ldaps://ldap.example.com"))))
    assert answered.status is Status.PASS and "over TLS" in answered.detail
    down = token_directory(ctx(s, snapshot(directory=(
        0, "down ldaps://ldap.example.com: certificate verify failed"))))
    assert down.status is Status.FAIL and "certificate verify failed" in down.detail
    plain = runner.settings_without_secrets(InventoryHost("reg.example.com", {
        **base_data, "registry_ldap": {**ldap, "urls": ["ldap://ldap.example.com"],
                                       "allow_plain": True}}))
    clear = token_directory(ctx(plain, snapshot(directory=(0, "ok ldap://ldap.example.com"))))
    assert clear.status is Status.FAIL and "in clear" in clear.detail
