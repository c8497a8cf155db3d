"""The compliance checks, each registered by `@check` with its metadata beside its
function, grouped by concern; `CHECKS` holds them in the order below, which the
reports and docs/reference/checks.md follow.

| module | checks |
|---|---|
| `docker` | `daemon.*`: the Docker daemon |
| `files` | `files.*`: owners and modes of trust, keys and passwords |
| `token_service` | `token.*`, `web.*`: the token service and its web pages |
| `container` | `container.*`, `frontdoor.*`, `image.*`: what serves on a replica |
| `api` | `registry.*`: the registry's API as clients see it |
| `tls` | `tls.*`: the served certificate and protocols |
| `gc` | `gc.*`: the GC job |
| `disk` | `host.disk-free` |
| `roles` | `role.*`: a load balancer's or storage host's services |
| `haproxy` | `lb.*`: the load balancer |
| `storage` | `storage.*`: SeaweedFS on a storage host |

What the modules share is in `_base` (`Context`, `Options`, the registry) and
`_helpers`.

References: "CIS Docker 1.6.0 §n" is item n of the CIS Docker Benchmark v1.6.0;
"Mozilla" is Mozilla's Server Side TLS guidelines 5.7 as shipped with sslyze;
"regops" is a rule of this project. Where a check deliberately differs from
its CIS item, its rationale says how and why.
"""

from __future__ import annotations

# Each module registers its checks when imported: this order is the order of CHECKS.
# isort: off
from . import (  # noqa: F401
    docker,
    files,
    token_service,
    container,
    api,
    tls,
    gc,
    disk,
    roles,
    haproxy,
    storage,
)
# isort: on
from regops.compliance.checks._base import CHECKS, Context, Options, check

__all__ = ["CHECKS", "CHECK_IDS", "Context", "Options", "check"]

CHECK_IDS = [c.id for c in CHECKS]
