"""The services of a load balancer or storage host (`role.*`)."""

from __future__ import annotations

from regops.compliance.checks._base import Context, check
from regops.compliance.model import Verdict, fail, ok


@check(
    id="role.services",
    title="A load balancer's or storage host's services run and start at boot (haproxy; each "
          "SeaweedFS part, and etcd on a master host of three)",
    rationale="A stopped part is a replica, gateway or copy the cluster counts on and lacks.",
    reference="regops",
    roles=("load_balancer", "storage"),
)
def role_services(c: Context) -> Verdict:
    units = c.facts.units()
    down = [f"{name} is {active}" if active != "active" else f"{name} is {enabled} at boot"
            for name, active, enabled in units if active != "active" or enabled != "enabled"]
    if down:
        return fail("; ".join(down), "redeploy, or systemctl enable --now the service")
    return ok(", ".join(name for name, _, _ in units) + ": running, enabled")
