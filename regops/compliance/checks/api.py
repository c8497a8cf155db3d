"""The registry's API as clients see it (`registry.*`): anonymous requests refused, the
debug port closed."""

from __future__ import annotations

from regops.compliance.checks._base import CIS, Context, check
from regops.compliance.checks._helpers import host_config
from regops.compliance.facts import listening
from regops.compliance.model import Verdict, fail, ok
from regops.config.settings import CONTAINER_PORT


@check(
    id="registry.anonymous-refused",
    title="Anonymous API requests are refused (401)",
    rationale="Without credentials nobody may list, pull or push.",
    reference="regops",
    side="operator",
)
def registry_anonymous_refused(c: Context) -> Verdict:
    statuses = {path: c.probes.anonymous_status(path) for path in ("/v2/", "/v2/_catalog")}
    open_paths = [f"{p} -> {code}" for p, code in statuses.items() if code != 401]
    if open_paths:
        return fail(f"anonymous requests are not refused: {', '.join(open_paths)}",
                    "redeploy (auth in the registry config)")
    return ok("GET /v2/ and /v2/_catalog without credentials -> 401")


@check(
    id="registry.debug-port-closed",
    title="The debug/metrics port is not reachable from outside",
    rationale="The debug listener has no authentication and shows internals.",
    reference=f"regops; {CIS} §5.8 (only needed ports)",
)
def registry_debug_port_closed(c: Context) -> Verdict:
    debug = int(c.s["registry_debug_port"])
    problems = []
    bindings = host_config(c).get("PortBindings") or {}
    for port, targets in sorted(bindings.items()):
        if port != f"{CONTAINER_PORT}/tcp":
            where = ", ".join(f"{t.get('HostIp') or '0.0.0.0'}:{t.get('HostPort')}"
                              for t in targets or [])
            problems.append(f"container port {port} is published on {where}")
    listeners = listening(c.facts.text("listen", "cannot read /proc/net/tcp"))
    exposed = sorted({addr for addr, port in listeners
                      if port == debug and not addr.startswith(("127.", "::1"))})
    if exposed:
        problems.append(f"port {debug} listens on {', '.join(exposed)} on the host")
    if c.probes.target.port == c.s.port and c.probes.tcp_open(debug):
        problems.append(f"{c.probes.target.host}:{debug} accepts connections from here")
    if problems:
        return fail("; ".join(problems), "redeploy: only the registry port is published and "
                                         "the debug listener stays on 127.0.0.1 in the container")
    return ok(f"only {CONTAINER_PORT}/tcp is published; nothing serves port {debug} outside")
