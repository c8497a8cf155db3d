from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path

import bcrypt
import pytest

from regops.secrets import htpasswd
from tests.support.require import require_command

PEPPER = b"p" * 32
COST = 4  # fast tests; the caller enforces the production minimum


def test_same_input_gives_same_hash() -> None:
    first = htpasswd.hash_password("admin", "s3cret-password", COST, PEPPER)
    assert htpasswd.hash_password("admin", "s3cret-password", COST, PEPPER) == first


def test_salt_depends_on_user_pepper_and_password() -> None:
    base = htpasswd.hash_password("admin", "same-password", COST, PEPPER)
    assert htpasswd.hash_password("other", "same-password", COST, PEPPER) != base
    assert htpasswd.hash_password("admin", "same-password", COST, b"q" * 32) != base
    salt = base[:29]
    assert htpasswd.hash_password("admin", "another-password", COST, PEPPER)[:29] != salt


def test_salt_is_the_hmac_in_bcrypt_base64() -> None:
    hashed = htpasswd.hash_password("admin", "pw-123456789", COST, PEPPER)
    assert hashed.startswith("$2b$04$")
    encoded = hashed[7:29]
    # Decode with an independent translation back to standard base64.
    std = encoded.translate(
        str.maketrans(
            "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        )
    )
    raw = base64.b64decode(std + "==")
    expected = hmac.new(PEPPER, b"admin\0pw-123456789", hashlib.sha256).digest()[:16]
    assert raw == expected
    # bcrypt itself reproduces the hash from the salt: the encoding is canonical.
    assert bcrypt.hashpw(b"pw-123456789", hashed[:29].encode()).decode() == hashed


def test_checkpw_verifies_and_rejects() -> None:
    hashed = htpasswd.hash_password("admin", "right-password", COST, PEPPER)
    assert bcrypt.checkpw(b"right-password", hashed.encode())
    assert not bcrypt.checkpw(b"wrong-password", hashed.encode())


def test_cost_appears_in_hash() -> None:
    assert htpasswd.hash_password("u", "pw", 10, PEPPER).startswith("$2b$10$")
    assert htpasswd.hash_password("u", "pw", 5, PEPPER).startswith("$2b$05$")


@pytest.mark.parametrize("cost", [3, 32, -1])
def test_cost_out_of_range(cost: int) -> None:
    with pytest.raises(ValueError, match="cost"):
        htpasswd.hash_password("u", "pw", cost, PEPPER)


def test_short_pepper_refused() -> None:
    with pytest.raises(ValueError, match="pepper"):
        htpasswd.hash_password("u", "pw", COST, b"")


def test_too_long_password_refused() -> None:
    with pytest.raises(ValueError, match="72"):
        htpasswd.hash_password("u", "x" * 73, COST, PEPPER)


def test_render_sorts_and_formats() -> None:
    text = htpasswd.render([("zed", "$2b$04$z"), ("admin", "$2b$04$a")])
    assert text == "admin:$2b$04$a\nzed:$2b$04$z\n"
    assert htpasswd.render([("admin", "$2b$04$a"), ("zed", "$2b$04$z")]) == text


@pytest.mark.parametrize("user", ["", "a:b", "a b", "tab\tuser", "new\nline", "#comment"])
def test_render_rejects_bad_user_names(user: str) -> None:
    with pytest.raises(ValueError):
        htpasswd.render([(user, "$2b$04$x")])


def test_render_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="twice"):
        htpasswd.render([("a", "$2b$04$x"), ("a", "$2b$04$y")])


def test_parse_and_verify_round_trip() -> None:
    entries = [
        ("admin", htpasswd.hash_password("admin", "admin-password", COST, PEPPER)),
        ("ci", htpasswd.hash_password("ci", "ci-password-xyz", COST, PEPPER)),
    ]
    text = htpasswd.render(entries)
    assert htpasswd.parse(text) == dict(entries)
    assert htpasswd.verify(text, "admin", "admin-password")
    assert htpasswd.verify(text, "ci", "ci-password-xyz")
    assert not htpasswd.verify(text, "admin", "ci-password-xyz")
    assert not htpasswd.verify(text, "nobody", "admin-password")


def test_parse_skips_blank_and_comment_lines_like_the_registry() -> None:
    assert htpasswd.parse("\n# admin:nope\nuser:$2y$x:y\n") == {"user": "$2y$x:y"}
    with pytest.raises(ValueError, match="line 2"):
        htpasswd.parse("ok:hash\nbroken\n")


def test_verify_false_on_garbage_hash() -> None:
    assert not htpasswd.verify("admin:not-a-bcrypt-hash\n", "admin", "pw")


def test_apache_htpasswd_accepts_our_file(tmp_path: Path) -> None:
    require_command("htpasswd", "apache2-utils")
    password = "Apache-Compat-Password-1"
    path = tmp_path / "htpasswd"
    path.write_text(
        htpasswd.render(
            [
                ("admin", htpasswd.hash_password("admin", password, 10, PEPPER)),
                ("other", htpasswd.hash_password("other", "x-other-password", 10, PEPPER)),
            ]
        )
    )
    ok = subprocess.run(["htpasswd", "-v", "-b", str(path), "admin", password], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        ["htpasswd", "-v", "-b", str(path), "admin", "wrong-password"], capture_output=True
    )
    assert bad.returncode != 0
