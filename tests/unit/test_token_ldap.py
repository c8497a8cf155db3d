"""People from a directory through the whole token path: a real OpenLDAP (Debian's
slapd, tests/support/slapd.py), our token service configured as the deploy writes
`registry_ldap`, and the real registry binary checking the tokens. Local users
(alice, bob, carol of tests/support/stack.py) come first; dave, erin and eve exist
only in the directory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from regops_token import jws
from tests.support.require import require_command
from tests.support.slapd import GROUPS, PASSWORDS, PEOPLE, SERVICE_DN, Slapd
from tests.support.stack import Stack, WebClient

ACCESS = [
    {"repositories": ["platform/**"], "who": ["group:ldap:platform-team"],
     "actions": ["pull", "push"]},
    {"repositories": ["ops/**"], "who": ["group:ldap:developers"], "actions": ["pull", "push"]},
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with Slapd(tmp_path_factory.mktemp("slapd")) as directory:
        yield directory


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[Stack]:
    require_command("docker-registry", "docker-registry")
    ldap = {
        "urls": [slapd.ldaps_url], "ca_file": slapd.ca_file, "starttls": False,
        "allow_plain": False, "bind_dn": SERVICE_DN, "bind_password_file": slapd.password_file,
        "user_base": PEOPLE, "user_filter": "(uid={name})", "group_base": GROUPS,
        "group_filter": "(member={dn})", "group_attribute": "cn", "timeout": 5,
    }
    s = Stack(tmp_path_factory.mktemp("token-ldap"), web=True, ldap=ldap, access=ACCESS)
    try:
        yield s
    finally:
        s.close()


def _last(stack: Stack) -> dict:
    return json.loads((stack.tmp / "audit.log").read_text().splitlines()[-1])


def _granted(doc: dict) -> list[dict]:
    return json.loads(jws.unb64url(doc["token"].split(".")[1]))["access"]


def test_a_person_of_the_directory_pushes_where_their_group_may(stack):
    status, doc = stack.token("repository:platform/ldap-app:pull,push", user="dave",
                              password=PASSWORDS["dave"])
    assert status == 200
    assert _granted(doc) == [{"type": "repository", "name": "platform/ldap-app",
                              "actions": ["pull", "push"]}]
    assert _last(stack)["subject"] == "ldap:dave"  # the audit names the source
    assert stack.push("platform/ldap-app", "1", doc["token"]) == 201


def test_a_wrong_password_or_an_injected_filter_logs_in_nobody(stack):
    assert stack.token(user="dave", password="not-daves")[0] == 401
    for name in ("*)(uid=*", "dave)(|(uid=*", "*", "dave\x00"):
        assert stack.token(user=name, password=PASSWORDS["dave"])[0] == 401
    assert stack.token(user="dave", password="")[0] == 401


def test_a_local_user_comes_first(stack):
    # alice is in registry_users and in the directory: only her local password counts.
    assert stack.token(user="alice", password=PASSWORDS["alice"])[0] == 401
    assert stack.token(user="alice")[0] == 200


def test_leaving_a_group_takes_its_rights_at_the_next_token(stack, slapd):
    scope = "repository:ops/tool:pull,push"
    status, doc = stack.token(scope, user="erin", password=PASSWORDS["erin"])
    assert status == 200 and _granted(doc)[0]["actions"] == ["pull", "push"]
    slapd.remove_member("developers", "erin")
    status, doc = stack.token(scope, user="erin", password=PASSWORDS["erin"])
    assert status == 200 and _granted(doc)[0]["actions"] == ["pull"]  # `**` for everyone
    slapd.add_member("developers", "erin")


def test_a_disabled_or_deleted_account_is_refused_at_the_next_token(stack, slapd):
    assert stack.token(user="eve", password=PASSWORDS["eve"])[0] == 200
    status, doc = stack.token(user="eve", password=PASSWORDS["eve"],
                              extra="&offline_token=true&client_id=docker")
    assert status == 200 and doc["refresh_token"]
    slapd.delete("eve")
    assert stack.token(user="eve", password=PASSWORDS["eve"])[0] == 401  # even remembered
    status, _ = stack.post_token(grant_type="refresh_token", refresh_token=doc["refresh_token"])
    assert status == 401


def test_the_web_pages_log_in_a_person_of_the_directory(stack, slapd):
    client = WebClient(stack.token_port)
    assert client.login("dave", PASSWORDS["dave"]) == 303
    status, page = client.get("/access")
    assert status == 200 and "Signed in as <strong>dave" in page
    assert "group:ldap:platform-team" in page


def test_the_probe_regops_check_runs_on_hosts(stack, tmp_path, capsys):
    from regops_token import probe

    config = json.loads((stack.tmp / "token.json").read_text())
    with_directory, without = tmp_path / "with.json", tmp_path / "without.json"
    with_directory.write_text(json.dumps(config))
    without.write_text(json.dumps({**config, "ldap": None}))
    assert probe.main(["--config", str(with_directory)]) == 0
    assert capsys.readouterr().out.startswith(f"ok {config['ldap']['urls'][0]}")
    assert probe.main(["--config", str(without)]) == 0
    assert capsys.readouterr().out.startswith("none")
    assert probe.main(["--config", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().out.startswith("cannot read")
    wrong = {**config, "ldap": {**config["ldap"], "bind_password_file": str(tmp_path / "pw")}}
    (tmp_path / "pw").write_text("not-the-service-password\n")
    with_directory.write_text(json.dumps(wrong))
    assert probe.main(["--config", str(with_directory)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("down") and "not-the-service-password" not in out


def test_the_directory_down_costs_its_people_their_logins_not_the_local_users(stack, slapd):
    """Last: it stops the directory."""
    slapd.stop()
    status, doc = stack.token(user="dave", password=PASSWORDS["dave"] + "x")
    assert status == 503 and "directory" in doc["errors"][0]["message"]
    assert stack.token(user="alice")[0] == 200  # the break-glass admin logs in
    assert "directory unreachable" in _last(stack).get("reason", "") or any(
        "directory unreachable" in line
        for line in (stack.tmp / "audit.log").read_text().splitlines()[-5:])
