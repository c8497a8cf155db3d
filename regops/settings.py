"""Turn one host's inventory data into checked settings, before anything runs.

Every problem becomes a `ConfigError` whose message is one line naming the
host, the key and what is wrong. The deploy resolves the settings of each host
while pyinfra plans, so bad data stops the run before any host is changed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regops import paths
from regops.defaults import DEFAULTS, KEY_NAMES

CONFIG_DIR_IN_CONTAINER = {2: "/etc/docker/registry", 3: "/etc/distribution"}
DATA_DIR_IN_CONTAINER = "/var/lib/registry"
CONTAINER_PORT = 5000
LOG_LEVELS = ("error", "warn", "info", "debug")

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$")
_MEMORY = re.compile(r"^[0-9]+[bkmg]?$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/:-][a-z0-9]+)*?)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class ConfigError(ValueError):
    """Bad inventory data: one line, `host: key: problem`."""

    def __init__(self, host: str, key: str, problem: str) -> None:
        super().__init__(f"{host}: {key}: {problem}")
        self.host, self.key, self.problem = host, key, problem


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    source: str  # env, file or generated


@dataclass(frozen=True)
class Settings:
    """What one host should look like; derived values included."""

    host: str
    data: dict[str, Any]
    registry_name: str
    major_version: int
    tls_names: list[str]
    secrets_root: Path
    users: list[User] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def port(self) -> int:
        return int(self.data["registry_port"])

    @property
    def registry_address(self) -> str:
        """`name:port`, the prefix of every image reference and the certs.d directory."""
        return f"{self.registry_name}:{self.port}"

    @property
    def api_url(self) -> str:
        """Where the operator's machine reaches the registry API."""
        return self.data["registry_api_url"] or f"https://{self.registry_address}"

    @property
    def container_config_dir(self) -> str:
        return CONFIG_DIR_IN_CONTAINER[self.major_version]

    @property
    def provided_tls(self) -> bool:
        return self.data["registry_tls_cert_file"] is not None

    @property
    def probe_address(self) -> str:
        """Where the host itself reaches the published port."""
        bind = self.data["registry_bind_address"]
        return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_dns_name(value: str) -> bool:
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    return all(_DNS_LABEL.match(label) for label in value.lower().split("."))


def image_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "must be an image reference such as registry:2.8.3"
    match = _IMAGE.match(image)
    if not match:
        return f"{image!r} is not a valid image reference"
    if match["digest"]:
        return None
    if not match["tag"]:
        return f"{image!r} is not pinned: add a tag or @sha256 digest"
    if match["tag"] == "latest":
        return f"{image!r} is not pinned: 'latest' moves, use a version tag or digest"
    return None


def major_from_image(image: str) -> int | None:
    match = _IMAGE.match(image)
    tag = match["tag"] if match else None
    if tag:
        head = re.match(r"^v?([0-9]+)", tag)
        if head and int(head[1]) in CONFIG_DIR_IN_CONTAINER:
            return int(head[1])
    return None


def _cron_field_problem(text: str, low: int, high: int, names: list[str]) -> str | None:
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"bad step {step!r}"
        if base == "*":
            continue
        ends = base.split("-")
        if len(ends) > 2:
            return f"bad range {base!r}"
        values = []
        for end in ends:
            if end.lower() in names:
                values.append(names.index(end.lower()) + low)
            elif end.isdigit():
                values.append(int(end))
            else:
                return f"{end!r} is not a number"
        if any(v < low or v > high for v in values):
            return f"{base!r} is outside {low}-{high}"
        if len(values) == 2 and values[0] > values[1]:
            return f"range {base!r} runs backwards"
    return None


def cron_problem(schedule: Any) -> str | None:
    """None for a valid cron.d schedule, else why it is not one."""
    if not isinstance(schedule, str) or not schedule.strip():
        return "must be a cron schedule such as '17 3 * * 0'"
    if schedule.strip() in _CRON_MACROS:
        return None
    fields = schedule.split()
    if len(fields) != 5:
        return f"{schedule!r} has {len(fields)} fields, cron needs 5"
    limits = [(0, 59, []), (0, 23, []), (1, 31, []), (1, 12, _MONTHS), (0, 7, _DAYS)]
    for what, text, (low, high, names) in zip(
        ("minute", "hour", "day of month", "month", "day of week"), fields, limits, strict=True
    ):
        problem = _cron_field_problem(text, low, high, names)
        if problem:
            return f"{schedule!r}: {what} field: {problem}"
    return None


def _user_names(host: str, raw: Any) -> list[str]:
    key = "registry_users"
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(host, key, "must be a non-empty list of user names")
    names: list[str] = []
    for entry in raw:
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if not isinstance(name, str) or not _USER.match(name):
            raise ConfigError(
                host, key, f"{name!r} is not a valid user name (lower-case letters, digits, ._-)"
            )
        if name in names:
            raise ConfigError(host, key, f"user {name!r} is listed twice")
        names.append(name)
    return names


def _check_scalars(host: str, d: dict[str, Any]) -> None:
    def fail(key: str, problem: str) -> None:
        raise ConfigError(host, key, problem)

    def int_between(key: str, low: int, high: int) -> None:
        if not _is_int(d[key]) or not low <= d[key] <= high:
            fail(key, f"must be an integer {low}-{high}, got {d[key]!r}")

    if d["registry_docker_source"] not in ("debian", "docker-ce"):
        fail(
            "registry_docker_source",
            f"must be 'debian' or 'docker-ce', got {d['registry_docker_source']!r}",
        )
    url = d["registry_docker_ce_repo_url"]
    if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
        fail("registry_docker_ce_repo_url", "must be an https:// URL")
    if not isinstance(d["registry_docker_log_max_size"], str) or not _MEMORY.match(
        d["registry_docker_log_max_size"]
    ):
        fail(
            "registry_docker_log_max_size",
            f"must look like '10m', got {d['registry_docker_log_max_size']!r}",
        )
    int_between("registry_docker_log_max_file", 1, 100)
    if not isinstance(d["registry_docker_daemon_options"], Mapping):
        fail("registry_docker_daemon_options", "must be a mapping of daemon.json keys")
    int_between("registry_port", 1, 65535)
    api = d["registry_api_url"]
    if api is not None and (not isinstance(api, str) or not api.startswith("https://")):
        fail("registry_api_url", f"must be an https:// URL, got {api!r}")
    int_between("registry_debug_port", 1, 65535)
    if d["registry_debug_enabled"] and d["registry_debug_port"] == 5000:
        fail(
            "registry_debug_port", "must differ from the registry's own port 5000 in the container"
        )
    if not isinstance(d["registry_bind_address"], str) or not _is_ip(d["registry_bind_address"]):
        fail("registry_bind_address", f"must be an IP address, got {d['registry_bind_address']!r}")
    problem = image_problem(d["registry_image"])
    if problem:
        fail("registry_image", problem)
    archive = d["registry_image_archive"]
    if archive is not None and (not isinstance(archive, str) or not Path(archive).is_file()):
        fail("registry_image_archive", f"no such file on this machine: {archive!r}")
    if not isinstance(d["registry_container_name"], str) or not re.match(
        r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", d["registry_container_name"]
    ):
        fail("registry_container_name", "must be a valid container name")
    if not isinstance(d["registry_user"], str) or not _USER.match(d["registry_user"]):
        fail("registry_user", f"{d['registry_user']!r} is not a valid account name")
    int_between("registry_uid", 1, 2**31 - 1)
    int_between("registry_gid", 1, 2**31 - 1)
    if not isinstance(d["registry_memory_limit"], str) or not _MEMORY.match(
        d["registry_memory_limit"]
    ):
        fail("registry_memory_limit", f"must look like '512m', got {d['registry_memory_limit']!r}")
    int_between("registry_pids_limit", 16, 1_000_000)
    for key in ("registry_config_dir", "registry_data_dir"):
        value = d[key]
        if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") == "":
            fail(key, f"must be an absolute path below /, got {value!r}")
    if d["registry_log_level"] not in LOG_LEVELS:
        fail("registry_log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    for key in (
        "registry_debug_enabled",
        "registry_delete_enabled",
        "registry_gc_enabled",
        "registry_gc_delete_untagged",
    ):
        if not isinstance(d[key], bool):
            fail(key, f"must be true or false, got {d[key]!r}")
    int_between("registry_tls_days", 1, 366)
    int_between("registry_tls_renew_days", 1, d["registry_tls_days"] - 1)
    suites = d["registry_tls_cipher_suites"]
    if (
        not isinstance(suites, (list, tuple))
        or not suites
        or not all(isinstance(s, str) and s.startswith("TLS_") for s in suites)
    ):
        fail("registry_tls_cipher_suites", "must be a non-empty list of Go TLS suite names")
    extra = d["registry_extra_names"]
    if not isinstance(extra, (list, tuple)) or not all(
        isinstance(n, str) and (is_dns_name(n) or _is_ip(n)) for n in extra
    ):
        fail("registry_extra_names", "must be a list of DNS names or IP addresses")
    int_between("registry_htpasswd_bcrypt_cost", 10, 16)
    int_between("registry_password_min_length", 8, 1024)
    if not isinstance(d["registry_auth_realm"], str) or not d["registry_auth_realm"]:
        fail("registry_auth_realm", "must be a non-empty string")
    problem = cron_problem(d["registry_gc_schedule"])
    if problem:
        fail("registry_gc_schedule", problem)
    int_between("registry_gc_health_timeout", 5, 3600)
    if not isinstance(d["registry_secrets_dir"], str) or not d["registry_secrets_dir"]:
        fail("registry_secrets_dir", "must be a directory path on this machine")


def _check_tls(host: str, d: dict[str, Any], names: list[str]) -> None:
    from regops import pki

    cert, key = d["registry_tls_cert_file"], d["registry_tls_key_file"]
    if cert is None and key is None:
        if d["registry_tls_ca_file"] is not None:
            raise ConfigError(
                host, "registry_tls_ca_file", "is only used with registry_tls_cert_file"
            )
        return
    if cert is None or key is None:
        missing = "registry_tls_key_file" if key is None else "registry_tls_cert_file"
        raise ConfigError(host, missing, "must be set together with the other TLS file")
    for k in ("registry_tls_cert_file", "registry_tls_key_file", "registry_tls_ca_file"):
        if d[k] is not None and not Path(d[k]).is_file():
            raise ConfigError(host, k, f"no such file on this machine: {d[k]!r}")
    problems = pki.check_provided(Path(cert).read_bytes(), Path(key).read_bytes(), names)
    if problems:
        raise ConfigError(host, "registry_tls_cert_file", "; ".join(problems))


def cli_users(root: Path, registry_name: str) -> list[str]:
    """Users added by `regops users add` (marker files in `cli-users/`), sorted."""
    directory = paths.cli_users_dir(root, registry_name)
    if not directory.is_dir():
        return []
    return sorted(
        p.name for p in directory.iterdir() if not p.name.startswith(".") and p.is_file()
    )


def _resolve_users(
    host: str, d: dict[str, Any], registry_name: str, root: Path, environ: Mapping[str, str]
) -> list[User]:
    """Users of `registry_users` (in their order), then those added with `regops users add`."""
    from regops import secrets

    names = _user_names(host, d["registry_users"])
    for name in cli_users(root, registry_name):
        if name in names:
            continue
        if not _USER.match(name):
            bad_file = paths.password_path(root, registry_name, name)
            raise ConfigError(
                host,
                "registry_users",
                f"{bad_file}: {name!r} is not a valid user "
                "name (lower-case letters, digits, ._-); rename or delete the file",
            )
        names.append(name)
    users = []
    for name in names:
        password, source = secrets.resolve_password(root, registry_name, name, environ)
        problem = secrets.password_problem(password, d["registry_password_min_length"], user=name)
        if problem:
            where = (
                f"env {secrets.env_var_for_user(name)}"
                if source == "env"
                else str(paths.password_path(root, registry_name, name))
            )
            raise ConfigError(host, "registry_users", f"password of {name!r} ({where}) {problem}")
        users.append(User(name, password, source))
    return users


def check_data(host: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with the host's data, every value checked; no side effects."""
    unknown = sorted(k for k in data if k.startswith("registry_") and k not in KEY_NAMES)
    if unknown:
        raise ConfigError(host, unknown[0], "unknown key (typo?); see the README's data table")
    merged = {**DEFAULTS, **{k: v for k, v in data.items() if k in KEY_NAMES}}
    name = merged["registry_name"] if merged["registry_name"] is not None else host
    if not isinstance(name, str) or not (is_dns_name(name) or _is_ip(name)):
        raise ConfigError(host, "registry_name", f"{name!r} is not a DNS name or IP address")
    merged["registry_name"] = name
    _check_scalars(host, merged)
    major = merged["registry_major_version"]
    if major is None:
        major = major_from_image(merged["registry_image"])
        if major is None:
            raise ConfigError(
                host,
                "registry_major_version",
                f"cannot tell from {merged['registry_image']!r}; set 2 or 3",
            )
    elif major not in CONFIG_DIR_IN_CONTAINER:
        raise ConfigError(host, "registry_major_version", f"must be 2 or 3, got {major!r}")
    merged["registry_major_version"] = major
    _user_names(host, merged["registry_users"])
    from regops.retention import parse_policies

    parse_policies(host, merged["registry_retention"])
    _check_tls(host, merged, tls_names(merged))
    return merged


def tls_names(data: Mapping[str, Any]) -> list[str]:
    names = [data["registry_name"], *data["registry_extra_names"]]
    return list(dict.fromkeys(names))


def load(host: str, data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Check the data, then resolve passwords (generating missing ones operator-side)."""
    merged = check_data(host, data)
    root = Path(merged["registry_secrets_dir"]).absolute()
    users = _resolve_users(
        host, merged, merged["registry_name"], root, os.environ if environ is None else environ
    )
    return Settings(
        host=host,
        data=merged,
        registry_name=merged["registry_name"],
        major_version=merged["registry_major_version"],
        tls_names=tls_names(merged),
        secrets_root=root,
        users=users,
    )


def load_or_exit(host: str, data: Mapping[str, Any]) -> Settings:
    """`load` for deploy files: bad data ends the run with one line on stderr."""
    import sys

    try:
        return load(host, data)
    except ConfigError as error:
        print(f"regops: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
