"""The directory client (regops_token.directory) against a real OpenLDAP slapd on
loopback (tests/support/slapd.py): logins, groups, escaping, what is remembered and
what is re-read, TLS and failover; and its config's validation, which needs none."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regops_token import directory as directory_module
from regops_token.directory import (
    VERIFIED_SECONDS,
    Directory,
    DirectoryConfig,
    DirectoryDown,
    DirectoryUser,
    usable_name,
)
from tests.support.require import require_command
from tests.support.slapd import (
    DNS,
    GROUPS,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    free_port,
)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with Slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def config(slapd: Slapd, **changes: Any) -> DirectoryConfig:
    base = DirectoryConfig(urls=(slapd.ldaps_url,), ca_file=slapd.ca_file,
                           bind_dn=SERVICE_DN, bind_password_file=slapd.password_file,
                           user_base=PEOPLE, group_base=GROUPS, timeout=2)
    return dataclasses.replace(base, **changes)


@pytest.fixture
def directory(slapd: Slapd) -> Iterator[Directory]:
    made = Directory(config(slapd))
    yield made
    made.close()


@pytest.fixture
def silent() -> Iterator[str]:
    """An address that takes connections and never says a word (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def people_binds(slapd: Slapd) -> int:
    """Binds as anyone but the service account."""
    return slapd.binds() - slapd.binds(SERVICE_DN)


def dead_url() -> str:
    return f"ldaps://127.0.0.1:{free_port()}"  # nothing listens there


# --- logins -----------------------------------------------------------------------------


def test_a_right_password_logs_in_with_the_groups(directory: Directory):
    user = directory.login("alice", PASSWORDS["alice"])
    assert user == DirectoryUser("alice", DNS["alice"],
                                 frozenset({"platform-team", "developers"}))


def test_a_wrong_password_or_an_unknown_name_logs_in_nobody(directory: Directory,
                                                             slapd: Slapd):
    assert directory.login("bob", "not-bobs-password") is None
    assert directory.login("bob", PASSWORDS["alice"]) is None
    before = people_binds(slapd)
    assert directory.login("nobody", PASSWORDS["bob"]) is None
    assert people_binds(slapd) == before  # nobody to bind as: not even tried


def test_an_empty_password_never_logs_in(directory: Directory, slapd: Slapd):
    """This slapd answers "success" to a DN with an empty password (an unauthenticated
    bind, as some directories do); the client never sends one."""
    whoami = require_command("ldapwhoami", "ldap-utils")
    naive = subprocess.run([whoami, "-x", "-H", slapd.ldap_url, "-D", DNS["bob"], "-w", ""],
                           capture_output=True, text=True, timeout=10)
    assert naive.returncode == 0, naive.stderr  # the danger is real
    before = slapd.binds(DNS["bob"])
    assert directory.login("bob", "") is None
    assert slapd.binds(DNS["bob"]) == before


def test_a_name_that_finds_two_entries_logs_in_nobody(slapd: Slapd):
    loose = Directory(config(slapd, user_filter="(|(uid={name})(uid=bob))"))
    assert loose.login("alice", PASSWORDS["alice"]) is None
    assert loose.groups("alice") is None


def test_the_name_is_the_directorys_spelling(directory: Directory):
    user = directory.login("ALICE", PASSWORDS["alice"])
    assert user is not None and user.name == "alice"


@pytest.mark.parametrize("name", ["*", "alic*", "*)(uid=*", "alice)(|(uid=*", "a*e",
                                  "alice)(uid=bob", "\\2a", "(uid=alice)"])
def test_filter_injection_logs_in_nobody(directory: Directory, slapd: Slapd, name: str):
    """`alic*` would find alice alone and bind as her with her password, were the
    name not escaped (RFC 4515)."""
    before = people_binds(slapd)
    for password in PASSWORDS.values():
        assert directory.login(name, password) is None
    assert people_binds(slapd) == before


@pytest.mark.parametrize("name", ["alice\x00", "\x00", "alice\x00)(uid=*", "ali\nce",
                                  "alice\x7f", "a" * 256, "", " alice", "alice "])
def test_an_unusable_name_is_refused_without_asking_the_directory(slapd: Slapd, name: str):
    """Pointed at no server at all: an answer without DirectoryDown means nothing asked."""
    unreachable = Directory(config(slapd, urls=(dead_url(),)))
    assert unreachable.login(name, PASSWORDS["alice"]) is None
    assert unreachable.groups(name) is None
    assert not usable_name(name)


# --- groups ---------------------------------------------------------------------------


def test_groups_are_read_with_the_service_account(directory: Directory):
    assert directory.groups("alice") == {"platform-team", "developers"}
    assert directory.groups("bob") == {"developers"}
    assert directory.groups("nobody") is None


def test_a_dn_with_special_characters_is_escaped_in_the_group_filter(directory: Directory):
    """eve's DN holds `(`, `)` and an escaped comma: unescaped in `(member={dn})` it
    would be no filter at all."""
    user = directory.login("eve", PASSWORDS["eve"])
    assert user is not None
    assert user.dn == "cn=Eve (ops)\\2C Jr,ou=people,dc=example,dc=test"
    assert user.groups == {"platform-team"}


def test_posix_groups_by_name_beside_groups_of_names(slapd: Slapd):
    both = Directory(config(slapd, group_filter="(|(member={dn})(memberUid={name}))"))
    user = both.login("bob", PASSWORDS["bob"])
    assert user is not None and user.groups == {"developers", "ops"}
    assert both.groups("BOB") == {"developers", "ops"}  # memberUid with the real spelling


# --- what is remembered, and what is not ----------------------------------------------------


def test_a_second_login_is_served_from_memory(directory: Directory, slapd: Slapd):
    service, bob = slapd.binds(SERVICE_DN), slapd.binds(DNS["bob"])
    for _ in range(5):
        assert directory.login("bob", PASSWORDS["bob"]) is not None
    assert slapd.binds(DNS["bob"]) == bob + 1  # one bind as bob for five logins
    assert slapd.binds(SERVICE_DN) == service + 1  # the service account's one connection


def test_a_failed_login_is_never_remembered(directory: Directory, slapd: Slapd):
    assert directory.login("bob", PASSWORDS["bob"]) is not None
    before = slapd.binds(DNS["bob"])
    for _ in range(3):
        assert directory.login("bob", "wrong") is None
    assert slapd.binds(DNS["bob"]) == before + 3


def test_memory_ends_after_its_time(slapd: Slapd):
    now = [1000.0]
    timed = Directory(config(slapd), clock=lambda: now[0])
    before = slapd.binds(DNS["bob"])
    assert timed.login("bob", PASSWORDS["bob"]) is not None
    now[0] += VERIFIED_SECONDS - 1
    assert timed.login("bob", PASSWORDS["bob"]) is not None
    assert slapd.binds(DNS["bob"]) == before + 1
    now[0] += 2
    assert timed.login("bob", PASSWORDS["bob"]) is not None
    assert slapd.binds(DNS["bob"]) == before + 2


def test_a_member_removed_from_a_group_loses_it_at_the_next_login(directory: Directory,
                                                                   slapd: Slapd):
    first = directory.login("dave", PASSWORDS["dave"])
    assert first is not None and first.groups == {"platform-team", "developers"}
    binds = slapd.binds(DNS["dave"])
    slapd.remove_member("developers", "dave")
    again = directory.login("dave", PASSWORDS["dave"])
    assert again is not None and again.groups == {"platform-team"}
    assert slapd.binds(DNS["dave"]) == binds  # the password still remembered
    assert directory.groups("dave") == {"platform-team"}


def test_a_deleted_account_is_refused_though_a_group_still_names_it(directory: Directory,
                                                                     slapd: Slapd):
    assert directory.login("carol", PASSWORDS["carol"]) is not None  # now remembered
    slapd.delete("carol")
    assert directory.login("carol", PASSWORDS["carol"]) is None
    assert directory.groups("carol") is None


def test_a_disabled_account_is_refused_though_its_password_was_remembered(
        directory: Directory, slapd: Slapd):
    """erin's password removed: her entry changed, so the memory does not count and the
    bind that follows fails."""
    assert directory.login("erin", PASSWORDS["erin"]) is not None
    binds = slapd.binds(DNS["erin"])
    slapd.remove_password("erin")
    assert directory.login("erin", PASSWORDS["erin"]) is None
    assert slapd.binds(DNS["erin"]) == binds + 1


def test_logins_at_once_share_the_service_connection(directory: Directory):
    results: list[DirectoryUser | None] = []
    lock = threading.Lock()

    def logins(name: str) -> None:
        for _ in range(5):
            user = directory.login(name, PASSWORDS[name])
            with lock:
                results.append(user)

    threads = [threading.Thread(target=logins, args=(n,)) for n in ("alice", "bob") * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 40
    assert {u.name if u else None for u in results} == {"alice", "bob"}


# --- TLS ------------------------------------------------------------------------------


def test_starttls_on_ldap_urls(slapd: Slapd):
    upgraded = Directory(config(slapd, urls=(slapd.ldap_url,), starttls=True))
    assert upgraded.login("alice", PASSWORDS["alice"]) is not None
    assert slapd.bind_ssf(DNS["alice"])[-1] > 0  # the password went over TLS


def test_ldaps_with_a_wrong_ca_is_refused(slapd: Slapd):
    for url, starttls in ((slapd.ldaps_url, False), (slapd.ldap_url, True)):
        wrong = Directory(config(slapd, urls=(url,), starttls=starttls,
                                 ca_file=slapd.wrong_ca_file))
        before = slapd.binds()
        with pytest.raises(DirectoryDown) as caught:
            wrong.login("alice", PASSWORDS["alice"])
        message = str(caught.value)
        assert url in message and "certificate" in message and "\n" not in message
        assert SERVICE_PASSWORD not in message and PASSWORDS["alice"] not in message
        assert slapd.binds() == before  # no password sent to an unverified server


def test_a_certificate_that_does_not_name_the_host_is_refused(slapd: Slapd):
    misnamed = Directory(config(slapd, urls=(slapd.misnamed_url,)))
    with pytest.raises(DirectoryDown, match="127.0.0.2"):
        misnamed.login("alice", PASSWORDS["alice"])


def test_plain_ldap_only_when_the_config_says_so(slapd: Slapd):
    with pytest.raises(ValueError, match="plain LDAP"):
        Directory(config(slapd, urls=(slapd.ldap_url,)))
    plain = Directory(config(slapd, urls=(slapd.ldap_url,), allow_plain=True, ca_file=None))
    assert plain.login("alice", PASSWORDS["alice"]) is not None
    assert slapd.bind_ssf(DNS["alice"])[-1] == 0


# --- servers down ------------------------------------------------------------------------


def test_the_first_url_dead_and_the_second_alive(slapd: Slapd):
    dead = dead_url()
    failover = Directory(config(slapd, urls=(dead, slapd.ldaps_url)))
    assert failover.login("alice", PASSWORDS["alice"]) is not None
    assert failover.probe() == slapd.ldaps_url


def test_a_hung_first_server_costs_one_timeout_then_is_tried_last(slapd: Slapd, silent: str):
    hung = f"ldaps://{silent}"
    failover = Directory(config(slapd, urls=(hung, slapd.ldaps_url), timeout=1))
    started = time.monotonic()
    assert failover.login("alice", PASSWORDS["alice"]) is not None  # the hung one: 1 s
    assert failover.login("bob", PASSWORDS["bob"]) is not None  # it goes last now
    assert time.monotonic() - started < 3.5


def test_all_urls_dead_is_directory_down_naming_them_quickly(slapd: Slapd, silent: str):
    urls = (dead_url(), f"ldaps://{silent}", f"ldap://{silent}")
    down = Directory(config(slapd, urls=urls, starttls=True, timeout=1))
    started = time.monotonic()
    with pytest.raises(DirectoryDown) as caught:
        down.login("alice", PASSWORDS["alice"])
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert all(url in message for url in urls), message
    assert "connection refused" in message and "timed out" in message
    assert "\n" not in message and SERVICE_PASSWORD not in message
    assert elapsed < 2 * 1 + 2.0  # one timeout per hung URL, none for the refusing one


def test_while_the_directory_is_down_waiting_logins_are_answered_at_once(silent: str,
                                                                        slapd: Slapd):
    now = [1000.0]
    down = Directory(config(slapd, urls=(f"ldaps://{silent}",), timeout=1),
                     clock=lambda: now[0])
    with pytest.raises(DirectoryDown, match="timed out"):
        down.login("alice", PASSWORDS["alice"])
    started = time.monotonic()
    with pytest.raises(DirectoryDown, match="timed out"):
        down.login("bob", PASSWORDS["bob"])  # the same verdict, not another timeout
    assert time.monotonic() - started < 0.5
    now[0] += directory_module.VERDICT_SECONDS
    started = time.monotonic()
    with pytest.raises(DirectoryDown):
        down.login("bob", PASSWORDS["bob"])  # asked again
    assert time.monotonic() - started >= 0.9


def test_a_stopped_directory_is_directory_down_even_for_a_remembered_login(
        tmp_path: Path):
    with Slapd(tmp_path) as own:
        used = Directory(config(own))
        assert used.login("alice", PASSWORDS["alice"]) is not None
        own.stop()
        started = time.monotonic()
        with pytest.raises(DirectoryDown, match=own.ldaps_url):
            used.login("alice", PASSWORDS["alice"])  # even though it was remembered
        assert time.monotonic() - started < 3


def test_the_service_account_refused_says_so_without_its_password(slapd: Slapd,
                                                                  tmp_path: Path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-service-password\n")
    refused = Directory(config(slapd, bind_password_file=str(wrong)))
    with pytest.raises(DirectoryDown) as caught:
        refused.login("alice", PASSWORDS["alice"])
    message = str(caught.value)
    assert SERVICE_DN in message and "invalidCredentials" in message
    assert "not-the-service-password" not in message
    missing = Directory(config(slapd, bind_password_file=str(tmp_path / "none")))
    with pytest.raises(DirectoryDown, match="cannot read"):
        missing.groups("alice")
    (tmp_path / "empty").write_text("\n")
    empty = Directory(config(slapd, bind_password_file=str(tmp_path / "empty")))
    with pytest.raises(DirectoryDown, match="is empty"):
        empty.groups("alice")


# --- config, no server needed -------------------------------------------------------------

GOOD = {
    "urls": ["ldaps://ldap1.example.test", "ldaps://ldap2.example.test:1636"],
    "ca_file": "/etc/regops/ldap-ca.crt",
    "bind_dn": "cn=regops,ou=services,dc=example,dc=test",
    "bind_password_file": "/etc/regops/ldap-password",
    "user_base": "ou=people,dc=example,dc=test",
    "group_base": "ou=groups,dc=example,dc=test",
}


def problem(**changes: Any) -> str | None:
    return DirectoryConfig.from_json({**GOOD, **changes}).problem()


def test_config_from_json():
    made = DirectoryConfig.from_json(GOOD)
    assert made.urls == ("ldaps://ldap1.example.test", "ldaps://ldap2.example.test:1636")
    assert (made.user_filter, made.group_filter, made.group_attribute, made.timeout) == (
        "(uid={name})", "(member={dn})", "cn", 5)
    assert made.problem() is None


@pytest.mark.parametrize(("doc", "message"), [
    ({**GOOD, "url": "ldaps://x"}, "unknown key"),
    ({k: v for k, v in GOOD.items() if k != "bind_dn"}, "missing key(s) bind_dn"),
    ({**GOOD, "urls": [1]}, "urls must be a list"),
    ({**GOOD, "starttls": "yes"}, "starttls must be true or false"),
    ({**GOOD, "timeout": 2.5}, "timeout must be a whole number"),
    ({**GOOD, "timeout": True}, "timeout must be a whole number"),
    ({**GOOD, "user_base": None}, "user_base must be a string"),
])
def test_config_from_json_refuses(doc: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DirectoryConfig.from_json(doc)


def test_config_problems():
    assert problem() is None
    assert "plain LDAP" in (problem(urls=["ldap://ldap.example.test"]) or "")
    assert problem(urls=["ldap://ldap.example.test"], starttls=True) is None
    assert problem(urls=["ldap://ldap.example.test"], allow_plain=True, ca_file=None) is None
    assert "needs ca_file" in (problem(ca_file=None) or "")
    assert "needs ca_file" in (problem(urls=["ldap://h"], starttls=True, ca_file=None) or "")
    assert "urls is empty" in (problem(urls=[]) or "")
    assert "not an ldap://" in (problem(urls=["https://ldap.example.test"]) or "")
    assert "credentials" in (problem(urls=["ldaps://u:p@ldap.example.test"]) or "")
    assert "not part of the URL" in (problem(urls=["ldaps://h/dc=x??sub"]) or "")
    assert "bad port" in (problem(urls=["ldaps://h:99999"]) or "")
    assert "names no host" in (problem(urls=["ldaps://"]) or "")
    assert "control" in (problem(urls=["ldaps://h\n"]) or "")
    assert "bind_dn is empty" in (problem(bind_dn=" ") or "")
    assert "must contain {name}" in (problem(user_filter="(uid=alice)") or "")
    assert "only {name}" in (problem(user_filter="(uid={name.__class__})") or "")
    assert "only {name}, {dn}" in (problem(group_filter="(member={user})") or "")
    assert "{dn} or {name}" in (problem(group_filter="(cn=admins)") or "")
    assert "parenthesised" in (problem(user_filter="uid={name}") or "")
    assert "parenthesised" in (problem(user_filter="(uid={name}))(") or "")
    assert "parenthesised" in (problem(user_filter="(uid={name})(cn=x)") or "")
    assert "parenthesised" in (problem(user_filter="((uid={name})") or "")
    assert problem(user_filter="(&(objectClass=person)(|(uid={name})(mail={name})))") is None
    assert problem(group_filter="(member:1.2.840.113556.1.4.1941:={dn})") is None
    assert "not an attribute name" in (problem(group_attribute="cn)(x") or "")
    assert "timeout must be 1..60" in (problem(timeout=0) or "")
    assert "timeout must be 1..60" in (problem(timeout=61) or "")


def test_a_bad_config_is_refused_by_the_directory():
    with pytest.raises(ValueError, match="needs ca_file"):
        Directory(DirectoryConfig.from_json({**GOOD, "ca_file": None}))


def test_values_are_escaped_per_rfc_4515():
    fill = directory_module._fill
    assert fill("(uid={name})", name="*)(uid=*") == r"(uid=\2a\29\28uid=\2a)"
    assert fill("(uid={name})", name="a\\b\x00") == r"(uid=a\5cb\00)"
    assert fill("(|(member={dn})(memberUid={name}))", dn="cn=a\\2Cb (x)", name="b") == (
        r"(|(member=cn=a\5c2Cb \28x\29)(memberUid=b))")
