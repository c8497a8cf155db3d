"""The load balancer's haproxy (`lb.*`)."""

from __future__ import annotations

from regops import hostpaths
from regops.compliance.checks._base import Context, check
from regops.compliance.checks._helpers import mode_problem
from regops.compliance.model import Verdict, fail, ok


@check(
    id="lb.config",
    title="The haproxy config and the CA it verifies replicas with are root:root, 0644 or stricter",
    rationale="Whoever writes them picks where the registry's clients are sent.",
    reference="regops",
    roles=("load_balancer",),
)
def lb_config(c: Context) -> Verdict:
    for path in (hostpaths.HAPROXY_CONFIG, hostpaths.HAPROXY_CA):
        problem = mode_problem(c.facts.stat(path), path, "root", {"root"}, 0o644)
        if problem:
            return fail(problem, f"redeploy, or chown root:root and chmod 0644 {path}")
    return ok(f"{hostpaths.HAPROXY_CONFIG} and {hostpaths.HAPROXY_CA} root:root, 0644")
