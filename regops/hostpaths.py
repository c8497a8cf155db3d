"""Where regops keeps things on the registry hosts: defined once, used by the deploy,
its templates (as `paths`), the day-2 commands and the compliance checks."""

from __future__ import annotations

STATE_DIR = "/var/lib/regops"  # job records and uploaded image archives
IMAGES_DIR = f"{STATE_DIR}/images"
GC_SCRIPT = "/usr/local/sbin/regops-gc"
GC_CRON = "/etc/cron.d/regops-gc"
GC_STATE = f"{STATE_DIR}/gc-last.json"
GC_LOG = "/var/log/regops-gc.log"  # cron appends the job's output here too
LOCK = "/run/lock/regops-gc.lock"
TRUST_DIR = "/var/lib/regops-trust"  # root-only; holds a login password for a moment
DOCKER_SOCK = "/var/run/docker.sock"
DAEMON_JSON = "/etc/docker/daemon.json"


def certs_d(address: str) -> str:
    """Docker's per-registry trust directory for `name:port`."""
    return f"/etc/docker/certs.d/{address}"
