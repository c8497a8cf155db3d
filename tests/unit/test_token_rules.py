"""The access rules and the token service's pure parts, without a registry."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from regops.sandbox.model import EXAMPLE_ACCESS, EXAMPLE_GROUPS
from regops_token import authn, jws
from regops_token.authn import Htpasswd, Throttle
from regops_token.rules import (
    RuleError,
    Subject,
    compile_pattern,
    parse_policy,
    policy_from_json,
    policy_to_json,
)
from regops_token.tokens import parse_scope, scopes_of

USERS = ["alice", "bob", "carol", "ci"]
EXAMPLE = {
    "groups": EXAMPLE_GROUPS,
    "admins": ["alice"],
    "access": EXAMPLE_ACCESS,
    "robots": {"ci-platform": {"repositories": ["platform/**"], "actions": ["pull", "push"],
                               "expires": "2027-06-30"}},
}
ALICE, BOB, CAROL = Subject("user", "alice"), Subject("user", "bob"), Subject("user", "carol")
ANON, ROBOT = Subject("anonymous"), Subject("robot", "ci-platform")


@pytest.fixture
def policy():
    return parse_policy(USERS, **EXAMPLE)


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("platform/**", "platform/app", True),
    ("platform/**", "platform/a/b/c", True),
    ("platform/**", "platform", False),
    ("platform/**", "platformx/app", False),
    ("team/*/svc", "team/a/svc", True),
    ("team/*/svc", "team/a/b/svc", False),
    ("team/app-*", "team/app-1", True),
    ("**", "a", True),
    ("a.b/c", "aXb/c", False),
])
def test_globs(pattern, name, matches):
    assert bool(compile_pattern(pattern).match(name)) is matches


def test_rights_are_the_union_of_matching_rules(policy):
    assert policy.allowed(BOB, "platform/app") == {"pull", "push", "delete"}
    assert policy.allowed(CAROL, "platform/app") == {"pull"}
    assert policy.allowed(CAROL, "carol/tool") == {"pull", "push", "delete"}
    assert policy.allowed(CAROL, "bob/tool") == {"pull"}
    assert policy.allowed(ANON, "public/x/y") == {"pull"}
    assert policy.allowed(ANON, "platform/app") == frozenset()
    assert policy.allowed(ROBOT, "platform/app") == {"pull", "push"}
    assert policy.allowed(ROBOT, "carol/tool") == frozenset()  # robots are not users
    assert policy.allowed(ROBOT, "public/x") == {"pull"}  # what anonymous may, anyone may


def test_grant_answers_star_with_concrete_actions_and_catalog_only_to_admins(policy):
    assert policy.grant(BOB, "repository", "platform/app", ["*"]) == ["pull", "push", "delete"]
    assert policy.grant(CAROL, "repository", "platform/app", ["*"]) == ["pull"]
    assert policy.grant(CAROL, "repository", "platform/app", ["pull", "push"]) == ["pull"]
    assert policy.grant(CAROL, "repository", "platform/app", ["delete"]) == []
    assert policy.grant(ALICE, "registry", "catalog", ["*"]) == ["*"]
    assert policy.grant(BOB, "registry", "catalog", ["*"]) == []
    assert policy.grant(ALICE, "registry", "catalog", ["pull"]) == []  # catalog needs `*`
    assert policy.grant(ALICE, "repository", "anything/at/all", ["delete"]) == ["delete"]


def test_without_access_rules_every_user_may_do_everything_as_before():
    open_policy = parse_policy(USERS)
    assert open_policy.open
    assert open_policy.allowed(CAROL, "any/thing") == {"pull", "push", "delete"}
    assert open_policy.grant(CAROL, "registry", "catalog", ["*"]) == ["*"]
    assert open_policy.allowed(ANON, "any/thing") == frozenset()


def test_explain_names_the_rules(policy):
    reasons = [why for why, _ in policy.reasons(BOB, "platform/app")]
    assert reasons == ["rule 1 (platform/** -> group:platform: pull, push, delete)",
                       "rule 4 (** -> authenticated: pull)"]


def test_robot_expiry(policy):
    robot = policy.robots["ci-platform"]
    assert not robot.expired(date(2027, 6, 30)) and robot.expired(date(2027, 7, 1))


@pytest.mark.parametrize(("data", "problem"), [
    ({"access": [{"repositories": "a/**", "who": ["group:nope"], "actions": ["pull"]}]},
     "no group 'nope'"),
    ({"access": [{"repositories": "a/**", "who": ["dave"], "actions": ["pull"]}]},
     "no user 'dave'"),
    ({"access": [{"repositories": "a/**", "who": ["anonymous"], "actions": ["push"]}]},
     "anonymous may only pull"),
    ({"access": [{"repositories": "a/**x", "who": ["alice"], "actions": ["pull"]}]},
     "must be a whole path segment"),
    ({"access": [{"repositories": "a//b", "who": ["alice"], "actions": ["pull"]}]},
     "not a path segment"),
    ({"access": [{"repositories": "a/*", "who": ["alice"], "actions": ["write"]}]},
     "unknown action 'write'"),
    ({"access": [{"repositories": "a/*", "who": ["alice"], "actions": ["pull"], "x": 1}]},
     "unknown key 'x'"),
    ({"admins": ["dave"]}, "'dave' is not in registry_users"),
    ({"groups": {"g": ["dave"]}}, "'dave' is not in registry_users"),
    ({"robots": {"r1": {"repositories": ["a/**"], "actions": ["pull"]}}}, "expires is required"),
    ({"robots": {"r1": {"repositories": ["a/**"], "actions": ["pull"], "expires": "soon"}}},
     "is not a date"),
    ({"robots": {"alice": {"repositories": ["a/**"], "actions": ["pull"],
                           "expires": "2030-01-01"}}}, "a user has that name too"),
])
def test_bad_rules_say_what_is_wrong(data, problem):
    with pytest.raises(RuleError, match=problem):
        parse_policy(USERS, **data)


def test_the_policy_survives_json(policy):
    assert policy_from_json(policy_to_json(policy)) == policy


def test_scopes():
    assert parse_scope("repository:team/app:pull,push") == ("repository", "team/app",
                                                            ["pull", "push"])
    assert parse_scope("repository(plugin):x:pull") == ("repository", "x", ["pull"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    assert parse_scope("nonsense") is None
    assert scopes_of(["repository:a:pull repository:b:push", "registry:catalog:*"]) == [
        ("repository", "a", ["pull"]), ("repository", "b", ["push"]),
        ("registry", "catalog", ["*"])]


def test_jws_round_trip_and_tampering():
    key = ec.generate_private_key(ec.SECP256R1())
    token = jws.sign({"sub": "alice"}, key, [])
    assert jws.verify(token, key.public_key())["sub"] == "alice"
    head, claims, sig = token.split(".")
    forged = ".".join([head, jws.b64url(b'{"sub":"mallory"}'), sig])
    with pytest.raises(jws.TokenError):
        jws.verify(forged, key.public_key())
    with pytest.raises(jws.TokenError):
        jws.verify(token, ec.generate_private_key(ec.SECP256R1()).public_key())


def test_throttle_waits_longer_after_repeated_failures():
    throttle = Throttle(free=2, ceiling=8)
    assert throttle.delay("bob", "1.2.3.4") == 0
    for _ in range(4):
        throttle.failed("bob", "1.2.3.4")
    assert throttle.delay("bob", "1.2.3.4") == 4.0
    assert throttle.delay("bob", "5.6.7.8") == 0  # another address is not slowed
    throttle.succeeded("bob", "1.2.3.4")
    assert throttle.delay("bob", "1.2.3.4") == 0


def test_a_verified_password_skips_bcrypt_until_it_changes(tmp_path, monkeypatch):
    import bcrypt

    path = tmp_path / "users.htpasswd"
    path.write_text(f"alice:{bcrypt.hashpw(b'one', bcrypt.gensalt(4)).decode()}\n")
    users = Htpasswd(str(path))
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(authn.bcrypt, "checkpw", lambda p, h: calls.append(p) or real(p, h))
    assert users.check("alice", "one") and users.check("alice", "one")
    assert len(calls) == 1  # the second login came from memory
    assert users.check("alice", "two") is False and users.check("alice", "two") is False
    assert len(calls) == 3  # failures always cost a bcrypt
    path.write_text(f"alice:{bcrypt.hashpw(b'two', bcrypt.gensalt(4)).decode()}\n"
                    "# a longer file, so the change is seen within the same second\n")
    assert users.check("alice", "one") is False  # the old password is not remembered
    assert users.check("alice", "two") is True
    monkeypatch.setattr(authn.time, "monotonic", lambda: 1e12)  # long after
    calls.clear()
    assert users.check("alice", "two") and len(calls) == 1
    path.write_text("")
    assert users.check("alice", "two") is None  # removed: unknown, whatever was remembered


def test_the_token_package_needs_only_the_standard_library_and_its_debian_packages():
    """It runs on hosts from plain files with Debian's python3, python3-cryptography,
    python3-bcrypt, python3-jinja2 (the web pages), with registry_ldap python3-ldap3
    (only `directory` imports it) and with registry_oidc python3-jwt (only `oidc`):
    nothing from the toolkit."""
    allowed = {"cryptography", "bcrypt", "jinja2", "regops_token", "ldap3", "jwt"}
    package = Path(__file__).resolve().parents[2] / "regops_token"
    import sys

    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, (path.name, name)
                assert top != "ldap3" or path.name == "directory.py", (path.name, name)
                assert top != "jwt" or path.name == "oidc.py", (path.name, name)


def test_people_of_the_directory_get_rights_through_their_directory_groups():
    from regops_token.rules import LDAP, RuleError

    access = [
        {"repositories": ["platform/**"], "who": ["group:ldap:platform-team"],
         "actions": ["pull", "push"]},
        {"repositories": ["${user}/**"], "who": ["authenticated"], "actions": ["pull", "push"]},
        {"repositories": ["ops/**"], "who": ["ldap:dana"], "actions": ["pull"]},
    ]
    policy = parse_policy(["admin"], admins=["admin", "group:ldap:registry-admins"],
                          access=access, directory=True)
    erin = Subject(LDAP, "erin", frozenset({"platform-team"}))
    assert policy.allowed(erin, "platform/app") == {"pull", "push"}
    assert policy.allowed(erin, "erin/tool") == {"pull", "push"}  # ${user} is theirs too
    assert policy.allowed(Subject(LDAP, "erin"), "platform/app") == frozenset()  # left it
    assert policy.allowed(Subject(LDAP, "dana"), "ops/x") == {"pull"}
    assert policy.allowed(Subject("user", "dana"), "ops/x") == frozenset()  # not the same
    assert policy.is_admin(Subject(LDAP, "root", frozenset({"registry-admins"})))
    assert not policy.is_admin(erin)
    assert policy_from_json(policy_to_json(policy)) == policy
    with pytest.raises(RuleError, match="registry_ldap is not set"):
        parse_policy(["admin"], access=access)
    with pytest.raises(RuleError, match="registry_ldap is not set"):
        parse_policy(["admin"], admins=["ldap:root"])
    with pytest.raises(RuleError, match="say ldap:NAME"):
        parse_policy(["admin"], access=[{"repositories": ["**"], "who": ["ldap:a*"],
                                         "actions": ["pull"]}], directory=True)
