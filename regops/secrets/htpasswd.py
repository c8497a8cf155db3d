"""Deterministic bcrypt htpasswd files.

A fresh random salt on every run would change the file on every deploy, so
the registry would be restarted for nothing. Instead each salt is derived from
a secret pepper, the (user, password) pair and the user's credential
generation: the same inputs give the same file, while salts still differ
between users and between installations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

import bcrypt

_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = str.maketrans(_STD_B64, _BCRYPT_B64)

MIN_COST = 4
MAX_COST = 31
MIN_PEPPER_BYTES = 16


def _bcrypt_b64(raw: bytes) -> str:
    """bcrypt's base64: same bit order as RFC 4648, own alphabet, no padding."""
    return base64.b64encode(raw).decode("ascii").rstrip("=").translate(_TO_BCRYPT)


def derive_salt(user: str, password: str, cost: int, pepper: bytes,
                generation: int = 0) -> bytes:
    """The bcrypt salt string ("$2b$NN$" + 22 chars) for one user, password and
    credential generation (generation 0 gives the salt of earlier releases)."""
    if not MIN_COST <= cost <= MAX_COST:
        raise ValueError(f"bcrypt cost must be between {MIN_COST} and {MAX_COST}, not {cost}")
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"pepper must be at least {MIN_PEPPER_BYTES} bytes")
    message = user.encode("utf-8") + b"\0" + password.encode("utf-8")
    if generation:
        message += b"\0" + str(generation).encode("ascii")
    raw = hmac.new(pepper, message, hashlib.sha256).digest()[:16]
    return f"$2b${cost:02d}${_bcrypt_b64(raw)}".encode("ascii")


def check_user(user: str) -> None:
    """htpasswd lines are `user:hash`; a ':' or whitespace would corrupt the file,
    and the registry skips lines starting with '#' as comments."""
    if not user:
        raise ValueError("user name is empty")
    if ":" in user or any(ch.isspace() for ch in user):
        raise ValueError(f"user name {user!r} contains ':' or whitespace")
    if user.startswith("#"):
        raise ValueError(f"user name {user!r} starts with '#' (a comment in htpasswd)")


def hash_password(user: str, password: str, cost: int, pepper: bytes,
                  generation: int = 0) -> str:
    """bcrypt hash ("$2b$<cost>$...") with a salt derived from pepper, user, password and
    credential generation: the same inputs give the same hash (a second deploy changes
    nothing); a raised generation gives another, which the token service reads as a new
    credential (sessions and refresh tokens of the old one end)."""
    check_user(user)
    secret = password.encode("utf-8")
    if len(secret) > 72:
        raise ValueError("password is longer than 72 bytes (bcrypt limit)")
    if b"\0" in secret:
        raise ValueError("password contains a NUL character")
    salt = derive_salt(user, password, cost, pepper, generation)
    return bcrypt.hashpw(secret, salt).decode("ascii")


def render(entries: Iterable[tuple[str, str]]) -> str:
    """The htpasswd file: one `user:hash` line per user, sorted so output is stable."""
    table: dict[str, str] = {}
    for user, hashed in entries:
        check_user(user)
        if user in table:
            raise ValueError(f"user {user!r} appears twice")
        if not hashed or any(ch.isspace() for ch in hashed):
            raise ValueError(f"hash of user {user!r} is empty or contains whitespace")
        table[user] = hashed
    return "".join(f"{user}:{table[user]}\n" for user in sorted(table))


def parse(text: str) -> dict[str, str]:
    """Map user to hash; blank lines and `#` comments are skipped like the registry does."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise ValueError(f"htpasswd line {number} is not 'user:hash'")
        result[user] = hashed
    return result


def verify(text: str, user: str, password: str) -> bool:
    """True if `user` is in the htpasswd `text` and `password` matches its hash."""
    hashed = parse(text).get(user)
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False
