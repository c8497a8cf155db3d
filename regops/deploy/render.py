"""Render what the deploy writes to a host, without a host.

Templates live in `regops/templates/`, mirroring the paths they are written to.
Every template sees the host's settings (`s`, its data as `d`), where things live
on hosts (`paths`), the registry's loopback ports (`ports`) and a few derived
values; callers add their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from regops import hostpaths
from regops.config.keys import INTERMEDIATE_CURVES
from regops.config.settings import CONTAINER_PORT, DATA_DIR_IN_CONTAINER, Settings
from regops.config.validators import duration_seconds
from regops.secrets import store

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Ports:
    """The registry's loopback ports behind the front door."""

    primary: int
    standby: int


def ports(s: Settings) -> Ports:
    return Ports(s["registry_backend_port"], s["registry_backend_port"] + 1)


def listen(s: Settings) -> str:
    """nginx's `listen` address for the front door."""
    address = s["registry_bind_address"]
    return f"[{address}]:{s.port}" if ":" in address else f"{address}:{s.port}"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def upload_max_age_minutes(s: Settings) -> int:
    return max(1, (duration_seconds(s["registry_gc_upload_max_age"]) or 0) // 60)


def template(path: str, s: Settings, **extra: Any) -> str:
    """Render templates/<path>.j2 for one host."""
    context = {
        "s": s,
        "d": s.data,
        "container_config_dir": s.container_config_dir,
        "config_dir": s.container_config_dir,
        "data_dir": DATA_DIR_IN_CONTAINER,
        "container_port": CONTAINER_PORT,
        "paths": hostpaths,
        "ports": ports(s),
        "listen": listen(s),
        "curves": INTERMEDIATE_CURVES,
        "upload_max_age_minutes": upload_max_age_minutes(s),
        **extra,
    }
    return _env.get_template(f"{path.lstrip('/')}.j2").render(context)


def registry_config(s: Settings, http_secret: str, readonly: bool = False,
                    notify_secret: str = "") -> str:
    redis_password = store.redis_password(s.secrets_root, s.registry_name) if s.redis else ""
    return template("etc/docker/registry/config.yml", s, http_secret=http_secret,
                    readonly=readonly, notify_secret=notify_secret,
                    redis_password=redis_password)


def daemon_json(s: Settings) -> str:
    """Hardened daemon.json (CIS Docker Benchmark 2.x), ops' extra keys merged over it."""
    options: dict[str, Any] = {
        "live-restore": True,
        "icc": False,
        "userland-proxy": False,
        "no-new-privileges": True,
        "log-driver": "json-file",
        "log-opts": {
            "max-size": s["registry_docker_log_max_size"],
            "max-file": str(s["registry_docker_log_max_file"]),
        },
    }
    options.update(s["registry_docker_daemon_options"])
    return json.dumps(options, indent=2, sort_keys=True) + "\n"
