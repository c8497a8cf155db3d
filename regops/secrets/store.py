"""Operator-side secrets: passwords, the registry's http secret, the htpasswd pepper.

Everything is stored below the secrets directory (see `regops.secrets.paths`) with
mode 0600 in 0700 directories, so a re-run reuses the same values and a
deploy stays idempotent. Nothing here prints or logs a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets as _secrets
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from regops.secrets import paths

PEPPER_FILE = "htpasswd_salt_key"

# Lower-case; compared against the lower-cased candidate.
# fmt: off
WEAK_PASSWORDS: frozenset[str] = frozenset(
    {
        "password", "password1", "password123", "password1234", "passw0rd",
        "passwordpassword", "changeme", "changeme123", "changemechangeme",
        "registry", "registry123", "registryadmin", "registrypassword",
        "admin", "admin123", "adminadmin", "administrator", "root", "toor",
        "secret", "secret123", "default", "welcome", "welcome123",
        "123456", "1234567", "12345678", "123456789", "1234567890",
        "12345678910", "123456789012", "0123456789",
        "letmein", "letmein123", "qwerty", "qwerty123", "qwertyuiop",
        "qwertyuiopasdf", "asdfghjkl", "iloveyou", "abc123", "abcdefghijkl",
        "docker", "docker123", "dockerhub", "dockerregistry", "dockeradmin",
    }
)
# fmt: on


def ensure_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700.

    `Path.mkdir(parents=True, mode=...)` applies the mode (minus umask) to the
    last component only, which would leave new parents world-readable.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # the umask may have removed owner bits


def tighten(path: Path, allowed: int = 0o600) -> None:
    """Drop permission bits outside `allowed`; never adds any."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~allowed:
        os.chmod(path, mode & allowed)


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, exclusive: bool = False) -> bool:
    """Write `data` to `path` via a temp file so readers never see a partial file.

    With `exclusive`, an existing file wins (first writer wins when two runs
    race) and False is returned; otherwise the file is replaced. The temp file
    is created 0600 and only chmod-ed to `mode` once written.
    """
    ensure_private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this filesystem: fall back to a plain rename.
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _secret_file(path: Path, generate: Callable[[], str]) -> tuple[str, bool]:
    """Like `secret_file`, also telling whether the value was generated now."""
    if not path.exists():
        value = generate()
        if write_atomic(path, (value + "\n").encode(), 0o600, exclusive=True):
            return value, True
    tighten(path)
    return path.read_text(encoding="utf-8").strip(), False


def secret_file(path: Path, generate: Callable[[], str]) -> str:
    """Return the stored secret at `path`, generating and storing it (0600) if missing.

    An existing file with group/other bits is narrowed to owner-only access.
    """
    return _secret_file(Path(path), generate)[0]


def generate_password() -> str:
    """A random password: 32 URL-safe characters, about 192 bits."""
    return _secrets.token_urlsafe(24)


def generate_http_secret() -> str:
    """The registry's `http.secret`: signs upload state, so it must be shared and random."""
    return _secrets.token_urlsafe(48)


def env_var_for_user(user: str) -> str:
    """Environment variable that overrides a user's password, e.g. REGOPS_PASSWORD_CI_BOT."""
    return "REGOPS_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


def password_problem(password: str, min_length: int, user: str | None = None) -> str | None:
    """None if the password is acceptable, else a short phrase ("is empty", ...).

    The phrase completes a sentence such as "password of user admin ...".
    """
    if not password:
        return "is empty"
    if "\0" in password:
        return "contains a NUL character"
    if len(password.encode("utf-8")) > 72:
        return "is longer than 72 bytes (bcrypt limit)"
    if password.lower() in WEAK_PASSWORDS:
        return "is a well-known weak password"
    if user is not None and password.lower() == user.lower():
        return "equals the user name"
    if len(set(password)) == 1:
        return "repeats a single character"
    if len(password) < min_length:
        return f"is shorter than {min_length} characters"
    return None


def _check_user_for_path(user: str) -> None:
    """User names become file names: keep them inside the users directory."""
    if not user or user.startswith(".") or "/" in user or "\\" in user or "\0" in user:
        raise ValueError(f"user name {user!r} cannot be used as a file name")


def resolve_password(
    base: str | os.PathLike[str],
    registry_name: str,
    user: str,
    environ: Mapping[str, str],
) -> tuple[str, str]:
    """Return (password, source) with source "env", "file" or "generated".

    An environment variable that is set wins even when empty, and an empty
    file is returned as "": the caller validates with `password_problem`.
    """
    var = env_var_for_user(user)
    if var in environ:
        return environ[var], "env"
    _check_user_for_path(user)
    path = paths.password_path(base, registry_name, user)
    value, created = _secret_file(path, generate_password)
    return value, "generated" if created else "file"


def credential_generation(base: str | os.PathLike[str], registry_name: str, user: str) -> int:
    """The user's credential generation (0 when never raised); ValueError naming the
    file when it is not a number."""
    path = paths.generation_path(base, registry_name, user)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit():
        raise ValueError(f"{path}: {text[:20]!r} is not a credential generation (a number)")
    return int(text)


def raise_generation(base: str | os.PathLike[str], registry_name: str, user: str) -> int:
    """One more than the user's credential generation, stored (0600); the new value."""
    generation = credential_generation(base, registry_name, user) + 1
    write_atomic(paths.generation_path(base, registry_name, user),
                 f"{generation}\n".encode(), 0o600)
    return generation


def fingerprint(*values: str) -> str:
    """A digest to tell secrets apart in memory without keeping them as keys."""
    return hashlib.sha256("\0".join(values).encode()).hexdigest()


S3_ENV = {"access": "REGOPS_S3_ACCESS_KEY", "secret": "REGOPS_S3_SECRET_KEY"}


def s3_credentials(
    base: str | os.PathLike[str], registry_name: str, environ: Mapping[str, str]
) -> tuple[str, str, str] | str:
    """(access key, secret key, source) from env, else the operator's files; else the problem.

    Both come from one place: an access key from env with a secret from a file is
    refused, since that is how one store's key ends up signed with another's secret.
    """
    if any(var in environ for var in S3_ENV.values()):
        values = [environ.get(var, "") for var in S3_ENV.values()]
        if not all(values):
            return f"set both {' and '.join(S3_ENV.values())} (one is missing or empty)"
        return values[0], values[1], "env"
    files = [paths.s3_credential_path(base, registry_name, w) for w in S3_ENV]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return (f"no S3 credentials: set {' and '.join(S3_ENV.values())}, or write "
                f"{' and '.join(missing)} (mode 0600)")
    for path in files:
        tighten(path)
    values = [f.read_text(encoding="utf-8").strip() for f in files]
    if not all(values):
        return f"{files[values.index('')]} is empty"
    return values[0], values[1], "file"


def _non_empty(path: Path, generate: Callable[[], str]) -> str:
    value = secret_file(path, generate)
    if not value:
        raise ValueError(f"{path} is empty; delete it to generate a new value")
    return value


def http_secret(base: str | os.PathLike[str], registry_name: str) -> str:
    """The registry's shared `http.secret`, generated once per registry name."""
    return _non_empty(paths.http_secret_path(base, registry_name), generate_http_secret)


def redis_password(base: str | os.PathLike[str], registry_name: str) -> str:
    """The replicas' shared redis password, generated once per registry name."""
    return _non_empty(paths.redis_password_path(base, registry_name), generate_password)


def htpasswd_pepper(base: str | os.PathLike[str], registry_name: str) -> bytes:
    """Key for deriving deterministic bcrypt salts (see `regops.secrets.htpasswd`).

    Kept secret so the salts cannot be predicted from user and password alone.
    """
    path = paths.registry_secrets(base, registry_name) / PEPPER_FILE
    return _non_empty(path, lambda: _secrets.token_urlsafe(32)).encode("utf-8")


def env_var_for_robot(robot: str) -> str:
    """Environment variable that overrides a robot's secret, e.g. REGOPS_ROBOT_SECRET_CI."""
    return "REGOPS_ROBOT_SECRET_" + re.sub(r"[^A-Z0-9]", "_", robot.upper())


def generate_robot_secret() -> str:
    """A robot's secret: 43 URL-safe characters, 256 bits (robots never type it)."""
    return _secrets.token_urlsafe(32)


def robot_secret(
    base: str | os.PathLike[str], registry_name: str, robot: str, environ: Mapping[str, str]
) -> str | None:
    """The robot's secret (env, else its file, else generated there); None once revoked."""
    if paths.robot_revoked_path(base, registry_name, robot).exists():
        return None
    var = env_var_for_robot(robot)
    if var in environ:
        return environ[var]
    _check_user_for_path(robot)
    return secret_file(paths.robot_secret_path(base, registry_name, robot), generate_robot_secret)


def notify_secret(base: str | os.PathLike[str], registry_name: str) -> str:
    """The bearer secret the registry's notifications carry to the token service."""
    path = paths.registry_secrets(base, registry_name) / "notify_secret"
    return _non_empty(path, lambda: _secrets.token_urlsafe(32))
