"""Render what the deploy writes to a host, without a host.

Templates live in the repo's `templates/`, mirroring their target paths.
The container's `docker run` command is built here too, with a hash of its
spec: pyinfra's docker.container does not notice spec changes, so the deploy
compares this hash with the label on the running container instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2

from regops.config.settings import CONTAINER_PORT, DATA_DIR_IN_CONTAINER, Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SPEC_LABEL = "regops.spec"
MANAGED_LABEL = "regops.managed"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def template(path: str, s: Settings, **extra: Any) -> str:
    """Render templates/<path>.j2 for one host."""
    context = {
        "s": s,
        "d": s.data,
        "container_config_dir": s.container_config_dir,
        "config_dir": s.container_config_dir,
        "data_dir": DATA_DIR_IN_CONTAINER,
        "container_port": CONTAINER_PORT,
        **extra,
    }
    return _env.get_template(f"{path.lstrip('/')}.j2").render(context)


def registry_config(s: Settings, http_secret: str, readonly: bool = False) -> str:
    return template("etc/docker/registry/config.yml", s, http_secret=http_secret, readonly=readonly)


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


def container_spec(s: Settings) -> list[str]:
    """`docker run` arguments after `run -d`, without the spec label."""
    d = s.data
    cfg = s.container_config_dir
    return [
        "--name",
        d["registry_container_name"],
        "--restart",
        "unless-stopped",
        "--user",
        f"{d['registry_uid']}:{d['registry_gid']}",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,size=64m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--memory",
        d["registry_memory_limit"],
        "--memory-swap",
        d["registry_memory_limit"],
        "--pids-limit",
        str(d["registry_pids_limit"]),
        "--publish",
        f"{_publish_host(d['registry_bind_address'])}:{s.port}:{CONTAINER_PORT}",
        "--volume",
        f"{d['registry_config_dir']}:{cfg}:ro",
        "--volume",
        f"{d['registry_data_dir']}:{DATA_DIR_IN_CONTAINER}",
        "--label",
        f"{MANAGED_LABEL}=true",
        d["registry_image"],
        "serve",
        f"{cfg}/serve.yml",
    ]


def _publish_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def spec_hash(s: Settings) -> str:
    return hashlib.sha256(json.dumps(container_spec(s)).encode()).hexdigest()[:16]


def docker_run_argv(s: Settings) -> list[str]:
    spec = container_spec(s)
    image_at = spec.index(s["registry_image"])
    label = ["--label", f"{SPEC_LABEL}={spec_hash(s)}"]
    return ["docker", "run", "-d", *spec[:image_at], *label, *spec[image_at:]]
