"""`regops access explain` and `regops robots list` from the inventory alone."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

from regops.cli import main
from regops.sandbox.model import EXAMPLE_ACCESS, EXAMPLE_GROUPS
from regops.secrets import paths


def inventory(tmp_path: Path, **extra) -> Path:
    soon = (date.today() + timedelta(days=10)).isoformat()
    data = {
        "registry_name": "reg.example.com",
        "registry_secrets_dir": str(tmp_path / "secrets"),
        "registry_users": ["alice", "bob", "carol"],
        "registry_groups": EXAMPLE_GROUPS,
        "registry_admins": ["alice"],
        "registry_access": EXAMPLE_ACCESS,
        "registry_robots": {
            "ci": {"repositories": ["platform/**"], "actions": ["pull", "push"],
                   "expires": "2099-01-01"},
            "old": {"repositories": ["platform/**"], "actions": ["pull"],
                    "expires": "2020-01-01"},
            "soon": {"repositories": ["x/**"], "actions": ["pull"], "expires": soon},
        },
        **extra,
    }
    path = tmp_path / "inventory.py"
    path.write_text(f"hosts = [('reg1', {data!r})]\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_explain_names_every_rule_that_grants(tmp_path):
    inv = str(inventory(tmp_path))
    code, out, _ = run("access", "explain", "bob", "platform/api", "-i", inv)
    assert code == 0
    assert out.splitlines()[0] == "user:bob on platform/api: pull, push, delete"
    assert "rule 1 (platform/** -> group:platform: pull, push, delete)" in out
    assert "rule 4 (** -> authenticated: pull)" in out
    code, out, _ = run("access", "explain", "carol", "carol/tools/x", "-i", inv, "--json")
    doc = json.loads(out)
    assert doc["actions"] == ["pull", "push", "delete"] and doc["catalog"] is False
    code, out, _ = run("access", "explain", "anonymous", "platform/api", "-i", inv)
    assert out.splitlines() == ["anonymous on platform/api: nothing",
                                "  no rule matches: no right"]
    code, out, _ = run("access", "explain", "alice", "anything", "-i", inv)
    assert "; and the catalog" in out and "admin" in out
    code, out, _ = run("access", "explain", "ci", "platform/web", "-i", inv)
    assert out.splitlines()[0] == "robot:ci on platform/web: pull, push"
    # Nothing on disk: explaining generates no secret.
    assert not (tmp_path / "secrets").exists() or not any(
        (tmp_path / "secrets").rglob("*.password"))


def test_explain_refuses_unknown_names_in_one_line(tmp_path):
    code, _, err = run("access", "explain", "mallory", "x", "-i", str(inventory(tmp_path)))
    assert code == 2 and err.strip() == "regops: error: reg1: no user or robot 'mallory' " \
                                        "(or say anonymous)"


def test_bad_rules_are_one_line_naming_host_and_key(tmp_path):
    bad = inventory(tmp_path, registry_access=[
        {"repositories": "platform/**", "who": ["group:nope"], "actions": ["pull"]}])
    code, _, err = run("access", "explain", "bob", "x", "-i", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("regops: error: reg1: registry_access") and "nope" in err


def test_robots_list_shows_expiry_and_state(tmp_path):
    inv = inventory(tmp_path)
    root = tmp_path / "secrets"
    revoked = paths.robot_revoked_path(root, "reg.example.com", "ci")
    revoked.parent.mkdir(parents=True, exist_ok=True)
    revoked.write_text("")
    code, out, _ = run("robots", "list", "-i", str(inv), "--json")
    assert code == 0
    states = {r["robot"]: r for r in json.loads(out)["robots"]}
    assert states["ci"]["state"] == "revoked" and states["ci"]["secret"] is None
    assert states["old"]["state"] == "expired" and states["old"]["days_left"] < 0
    assert states["soon"]["state"] == "expires soon" and states["soon"]["days_left"] == 10
    code, out, _ = run("robots", "list", "-i", str(inv))
    assert "old" in out and "2020-01-01" in out and "expired" in out


def test_explain_answers_for_people_of_single_sign_on_with_the_groups_given(tmp_path):
    sso = {"issuer": "https://sso.example.com", "client_id": "registry"}
    rule = {"repositories": ["sso/**"], "who": ["group:oidc:platform-team"],
            "actions": ["pull", "push"]}
    inv = str(inventory(tmp_path, registry_oidc=sso,
                        registry_access=[*EXAMPLE_ACCESS, rule]))
    code, out, _ = run("access", "explain", "oidc:erin", "sso/app", "-i", inv,
                       "--group", "platform-team")
    assert code == 0 and out.splitlines()[0] == "oidc:erin on sso/app: pull, push"
    code, out, _ = run("access", "explain", "oidc:erin", "sso/app", "-i", inv)
    assert "push" not in out.splitlines()[0]  # without the group, no push
    code, _, err = run("access", "explain", "oidc:erin", "x", "-i", str(inventory(tmp_path)))
    assert code == 2 and "registry_oidc is not set" in err
