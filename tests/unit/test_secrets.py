from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from regops.secrets import paths
from regops.secrets import store as sec


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _permissive_umask():
    """A 022 umask would hide missing chmod calls behind default permissions; use 0."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_secret_file_generates_once_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "token"
    calls: list[int] = []

    def gen() -> str:
        calls.append(1)
        return f"value-{len(calls)}"

    assert sec.secret_file(path, gen) == "value-1"
    assert sec.secret_file(path, gen) == "value-1"
    assert len(calls) == 1
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700
    # No temp files left behind next to the secret.
    assert [p.name for p in path.parent.iterdir()] == ["token"]


def test_secret_file_strips_and_keeps_existing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("  kept\n\n")
    path.chmod(0o600)
    assert sec.secret_file(path, lambda: "new") == "kept"
    assert path.read_text() == "  kept\n\n"


def test_secret_file_narrows_but_never_widens(tmp_path: Path) -> None:
    wide = tmp_path / "wide"
    wide.write_text("x")
    wide.chmod(0o644)
    sec.secret_file(wide, lambda: "y")
    assert _mode(wide) == 0o600

    readonly = tmp_path / "readonly"
    readonly.write_text("x")
    readonly.chmod(0o444)
    assert sec.secret_file(readonly, lambda: "y") == "x"
    assert _mode(readonly) == 0o400  # owner write bit not added


def test_generated_values_are_random_and_long() -> None:
    assert sec.generate_password() != sec.generate_password()
    assert len(sec.generate_password()) >= 32
    assert len(sec.generate_http_secret()) >= 64
    assert sec.password_problem(sec.generate_password(), 12) is None


@pytest.mark.parametrize(
    ("user", "var"),
    [
        ("admin", "REGOPS_PASSWORD_ADMIN"),
        ("ci-bot", "REGOPS_PASSWORD_CI_BOT"),
        ("jane.doe@corp", "REGOPS_PASSWORD_JANE_DOE_CORP"),
        ("pull2", "REGOPS_PASSWORD_PULL2"),
    ],
)
def test_env_var_for_user(user: str, var: str) -> None:
    assert sec.env_var_for_user(user) == var


@pytest.mark.parametrize(
    ("password", "user", "problem"),
    [
        ("", None, "is empty"),
        ("short1", None, "is shorter than 12 characters"),
        ("Password", None, "is a well-known weak password"),
        ("CHANGEME", None, "is a well-known weak password"),
        ("123456789012", None, "is a well-known weak password"),
        ("qwerty", None, "is a well-known weak password"),
        ("docker", None, "is a well-known weak password"),
        ("aaaaaaaaaaaaaaaa", None, "repeats a single character"),
        ("deploy-robot-01", "Deploy-Robot-01", "equals the user name"),
        ("a" * 73 + "b", None, "is longer than 72 bytes (bcrypt limit)"),
        ("good\0password-xyz", None, "contains a NUL character"),
    ],
)
def test_password_problem_rejects(password: str, user: str | None, problem: str) -> None:
    assert sec.password_problem(password, 12, user) == problem


def test_password_problem_accepts_and_respects_min_length() -> None:
    assert sec.password_problem("correct horse battery", 12, "admin") is None
    assert sec.password_problem("k9#Lm2!x", 8) is None
    assert sec.password_problem("k9#Lm2!x", 9) == "is shorter than 9 characters"


def test_resolve_password_env_wins_even_when_empty(tmp_path: Path) -> None:
    stored = paths.password_path(tmp_path, "reg", "ci-bot")
    stored.parent.mkdir(parents=True)
    stored.write_text("from-file-password\n")
    assert sec.resolve_password(tmp_path, "reg", "ci-bot", {"REGOPS_PASSWORD_CI_BOT": "e"}) == (
        "e",
        "env",
    )
    assert sec.resolve_password(tmp_path, "reg", "ci-bot", {"REGOPS_PASSWORD_CI_BOT": ""}) == (
        "",
        "env",
    )


def test_resolve_password_file_then_generated(tmp_path: Path) -> None:
    stored = paths.password_path(tmp_path, "reg", "admin")
    stored.parent.mkdir(parents=True)
    stored.write_text("from-file-password\n")
    assert sec.resolve_password(tmp_path, "reg", "admin", {}) == ("from-file-password", "file")

    password, source = sec.resolve_password(tmp_path, "reg", "pusher", {})
    assert source == "generated"
    generated = paths.password_path(tmp_path, "reg", "pusher")
    assert generated.read_text().strip() == password
    assert _mode(generated) == 0o600
    assert sec.resolve_password(tmp_path, "reg", "pusher", {}) == (password, "file")


def test_resolve_password_empty_file_is_reported_not_regenerated(tmp_path: Path) -> None:
    stored = paths.password_path(tmp_path, "reg", "admin")
    stored.parent.mkdir(parents=True)
    stored.write_text("\n")
    assert sec.resolve_password(tmp_path, "reg", "admin", {}) == ("", "file")
    assert stored.read_text() == "\n"


@pytest.mark.parametrize("user", ["../evil", "a/b", ".hidden", ""])
def test_resolve_password_refuses_path_like_users(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValueError):
        sec.resolve_password(tmp_path, "reg", user, {})


def test_http_secret_is_stable_per_registry(tmp_path: Path) -> None:
    first = sec.http_secret(tmp_path, "reg")
    assert sec.http_secret(tmp_path, "reg") == first
    assert sec.http_secret(tmp_path, "other") != first
    assert paths.http_secret_path(tmp_path, "reg").read_text().strip() == first
    assert _mode(paths.http_secret_path(tmp_path, "reg")) == 0o600


def test_http_secret_refuses_empty_file(tmp_path: Path) -> None:
    path = paths.http_secret_path(tmp_path, "reg")
    path.parent.mkdir(parents=True)
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        sec.http_secret(tmp_path, "reg")


def test_htpasswd_pepper_is_stored_and_stable(tmp_path: Path) -> None:
    pepper = sec.htpasswd_pepper(tmp_path, "reg")
    assert isinstance(pepper, bytes)
    assert len(pepper) >= 32
    assert sec.htpasswd_pepper(tmp_path, "reg") == pepper
    stored = paths.registry_secrets(tmp_path, "reg") / "htpasswd_salt_key"
    assert stored.read_bytes().strip() == pepper
    assert _mode(stored) == 0o600
    assert sec.htpasswd_pepper(tmp_path, "other") != pepper


def test_write_atomic_exclusive_keeps_first_writer(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert sec.write_atomic(path, b"first", 0o600, exclusive=True) is True
    assert sec.write_atomic(path, b"second", 0o600, exclusive=True) is False
    assert path.read_bytes() == b"first"
    assert sec.write_atomic(path, b"third", 0o644) is True
    assert path.read_bytes() == b"third"
    assert _mode(path) == 0o644
