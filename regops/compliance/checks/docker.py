"""The Docker daemon the registry runs under (`daemon.*`)."""

from __future__ import annotations

from regops.compliance.checks._base import CIS, Context, check
from regops.compliance.model import Verdict, fail, ok


def _daemon_json(c: Context) -> dict:
    return c.facts.json("daemon_json", "cannot read /etc/docker/daemon.json")


@check(
    id="daemon.live-restore",
    title="Docker keeps containers running while it restarts",
    rationale="A Docker upgrade or restart must not take the registry down.",
    reference=f"{CIS} §2.15",
)
def daemon_live_restore(c: Context) -> Verdict:
    if c.facts.docker_info().get("LiveRestoreEnabled") is True:
        return ok("live-restore is on")
    return fail("live-restore is off: restarting Docker stops the registry",
                "set \"live-restore\": true in daemon.json (redeploy)")


@check(
    id="daemon.icc",
    title="No traffic between containers on the default bridge",
    rationale="A compromised container must not reach the others' ports.",
    reference=f"{CIS} §2.2",
)
def daemon_icc(c: Context) -> Verdict:
    options = c.facts.json("bridge", "cannot inspect Docker's default bridge")
    value = (options or {}).get("com.docker.network.bridge.enable_icc", "true")
    if value == "false":
        return ok("inter-container traffic on the default bridge is off")
    return fail("containers on the default bridge can talk to each other (icc on)",
                "set \"icc\": false in daemon.json (redeploy)")


@check(
    id="daemon.log-rotation",
    title="Container logs are rotated",
    rationale="The registry logs every request; unrotated logs fill the disk it stores images on.",
    reference=f"{CIS} §2.13 (logging); regops: json-file with max-size and max-file",
)
def daemon_log_rotation(c: Context) -> Verdict:
    daemon = _daemon_json(c)
    driver = daemon.get("log-driver", "json-file")
    opts = daemon.get("log-opts") or {}
    if driver == "json-file" and not (opts.get("max-size") and opts.get("max-file")):
        return fail("json-file logs grow without bound (no max-size/max-file in daemon.json)",
                    "set log-opts max-size and max-file (registry_docker_log_max_*)")
    if driver not in ("json-file", "local", "journald", "syslog", "fluentd", "gelf"):
        return fail(f"log driver {driver!r} is not one regops knows to rotate or ship logs")
    live = c.facts.docker_info().get("LoggingDriver")
    if live != driver:
        return fail(f"daemon.json says log-driver {driver} but Docker runs {live}: restart Docker")
    if driver == "json-file":
        return ok(f"json-file, max-size {opts['max-size']}, max-file {opts['max-file']}")
    return ok(f"log driver {driver} (rotation by the driver's destination)")


@check(
    id="daemon.userland-proxy",
    title="Published ports go through iptables, not docker-proxy",
    rationale="Fewer processes and real client addresses in the registry's access log.",
    reference=f"{CIS} §2.16",
)
def daemon_userland_proxy(c: Context) -> Verdict:
    if _daemon_json(c).get("userland-proxy") is False:
        return ok("userland-proxy is off (published ports use iptables, no docker-proxy)")
    return fail("userland-proxy is on", "set \"userland-proxy\": false in daemon.json (redeploy)")
