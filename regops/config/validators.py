"""The words data keys are checked with: each check takes a value and returns None
when it is good, else the problem as a phrase ("must be ...", "... is not ...").

A key names its check beside its default and doc (`regops.config.keys`), so one
place says what a key is, what it defaults to and what it accepts. Checks are
pure: a value Docker, the registry or nginx would refuse is refused here, before
any host is changed.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from regops_token import cron

Check = Callable[[Any], str | None]

MIB = 1024 * 1024
# Docker refuses containers with less memory than this ("Minimum memory limit
# allowed is 6MB"), after the old container is gone: refuse it up front.
DOCKER_MIN_MEMORY = 6 * MIB

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MEMORY = re.compile(r"^([0-9]+)([bkmg]?)$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/:-][a-z0-9]+)*?)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# Directories whose contents belong to the system: a data or config directory there
# would be chowned to the registry's account or emptied by a mistake.
SYSTEM_DIRS = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt",
        "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
        "/usr/lib", "/usr/local", "/usr/sbin", "/var", "/var/lib", "/var/log", "/var/tmp",
        "/etc/docker", "/var/lib/docker",
    }
)  # fmt: skip
_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).strip("[]"))
    except ValueError:
        return False
    return isinstance(value, str)


def is_dns_name(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    return all(_DNS_LABEL.match(label) for label in value.lower().split("."))


# --------------------------------------------------------------------------- checks


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if is_int(value) and low <= value <= high:
            return None
        return f"must be an integer {low}-{high}, got {value!r}"

    return check


def port(value: Any) -> str | None:
    return integer(1, 65535)(value)


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def text(pattern: str | None = None, what: str = "") -> Check:
    """A non-empty string (matching `pattern`, described as `what`)."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return "must be a non-empty string"
        if compiled and not compiled.match(value):
            return f"{value!r} is not {what}"
        return None

    return check


def optional(inner: Check) -> Check:
    """None (unset) or what `inner` accepts."""

    def check(value: Any) -> str | None:
        return None if value is None else inner(value)

    return check


def mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "must be a mapping"


def https_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("https://") and len(value) > len("https://"):
        return None
    return f"must be an https:// URL, got {value!r}"


def endpoint_url(value: Any) -> str | None:
    """`http(s)://host[:port]`: where a service answers, without a path."""
    problem = f"must be http(s)://host[:port] without a path, got {value!r}"
    if not isinstance(value, str):
        return problem
    match = re.fullmatch(r"(https?)://([^/:\[\]]+|\[[0-9a-fA-F:]+\])(?::([0-9]{1,5}))?/?", value)
    if not match or host_name(match[2].strip("[]")) or (match[3] and port(int(match[3]))):
        return problem
    return None


def s3_prefix(value: Any) -> str | None:
    """A key prefix: `/` then segments of safe characters, no trailing `/`."""
    if isinstance(value, str) and re.fullmatch(r"(/[A-Za-z0-9._-]+)+", value):
        return None
    return f"must look like /registry (segments of letters, digits, ._-), got {value!r}"


def ip_address(value: Any) -> str | None:
    return None if is_ip(value) else f"must be an IP address, got {value!r}"


def host_name(value: Any) -> str | None:
    if isinstance(value, str) and (is_dns_name(value) or is_ip(value)):
        return None
    return f"{value!r} is not a DNS name or IP address"


def host_names(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return "must be a list of DNS names or IP addresses"
    for name in value:
        if host_name(name):
            return f"must be a list of DNS names or IP addresses; {name!r} is neither"
    return None


def host_dir(value: Any) -> str | None:
    """An absolute, normalised path for a directory regops owns on the host."""
    if not isinstance(value, str) or not value.startswith("/"):
        return f"must be an absolute path below /, got {value!r}"
    if posixpath.normpath(value) != value or "//" in value:
        return f"{value!r} is not a plain path (no '..', '.', '//' or trailing '/')"
    if value in SYSTEM_DIRS:
        return f"{value!r} is a system directory; use one of its own, such as {value}/registry"
    return None


def local_file(value: Any) -> str | None:
    """A file on the operator's machine."""
    if isinstance(value, str) and Path(value).is_file():
        return None
    return f"no such file on this machine: {value!r}"


def memory_bytes(value: str) -> int | None:
    """Docker's memory syntax (`512m`, `1g`, `6291456`) in bytes; None if it is not one."""
    match = _MEMORY.match(value.lower()) if isinstance(value, str) else None
    if not match:
        return None
    unit = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[match[2]]
    return int(match[1]) * unit


def memory(minimum: int = 0) -> Check:
    def check(value: Any) -> str | None:
        amount = memory_bytes(value)
        if amount is None:
            return f"must look like '512m' or '1g', got {value!r}"
        if amount < minimum:
            return f"{value!r} is below the minimum of {minimum // MIB}m"
        return None

    return check


def duration_seconds(value: Any) -> int | None:
    """`30d`, `12h`, `90m`, `1d12h`, `45s` in seconds; None if it is not one."""
    if not isinstance(value, str):
        return None
    compact = value.strip().lower()
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        return None
    return sum(int(n) * _SECONDS[u] for n, u in parts)


def duration(minimum: int = 1) -> Check:
    def check(value: Any) -> str | None:
        seconds = duration_seconds(value)
        if seconds is None:
            return f"must be a duration such as '1h', '30m' or '2d', got {value!r}"
        if seconds < minimum:
            return f"{value!r} is shorter than {minimum}s"
        return None

    return check


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


def image_tag(image: str) -> str | None:
    match = _IMAGE.match(image)
    return match["tag"] if match else None


def _cron_field_problem(field: str, low: int, high: int, names: list[str]) -> str | None:
    for part in field.split(","):
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
    if schedule.strip() in cron.MACROS:
        return None
    fields = schedule.split()
    if len(fields) != 5:
        return f"{schedule!r} has {len(fields)} fields, cron needs 5"
    limits: list[tuple[int, int, list[str]]] = [
        (0, 59, []),
        (0, 23, []),
        (1, 31, []),
        (1, 12, cron.MONTHS),
        (0, 7, cron.DAYS),
    ]
    names = ("minute", "hour", "day of month", "month", "day of week")
    for what, field, (low, high, words) in zip(names, fields, limits, strict=True):
        problem = _cron_field_problem(field, low, high, words)
        if problem:
            return f"{schedule!r}: {what} field: {problem}"
    return None


def openssl_ciphers(value: Any) -> str | None:
    """TLS 1.2 cipher suite names as OpenSSL (and so nginx) spells them, each one known."""
    if not isinstance(value, (list, tuple)) or not value:
        return "must be a non-empty list of OpenSSL cipher names"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name in value:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Z0-9][A-Z0-9_-]*", name):
            return f"{name!r} is not an OpenSSL cipher name such as ECDHE-ECDSA-AES128-GCM-SHA256"
        try:
            context.set_ciphers(name)
        except ssl.SSLError:
            return f"unknown cipher {name!r} (OpenSSL names, e.g. ECDHE-ECDSA-AES128-GCM-SHA256)"
        if name not in {c["name"] for c in context.get_ciphers()}:
            return f"{name!r} is a group of ciphers; name each suite instead"
    return None


def ca_file_problem(value: Any) -> str | None:
    """None when `value` names a file on this machine holding a PEM certificate (a CA
    the deploy ships to hosts); else the problem, as a key's `ca_file` sub-key."""
    ca = Path(str(value))
    if not ca.is_file():
        return f"ca_file: no such file on this machine: {str(ca)!r}"
    if b"-----BEGIN CERTIFICATE-----" not in ca.read_bytes():
        return f"ca_file {str(ca)!r} holds no PEM certificate"
    return None
