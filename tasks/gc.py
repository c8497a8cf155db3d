"""Garbage collection: a cron job running the safe, read-only GC script.

Keys: registry_gc_enabled, registry_gc_schedule, registry_gc_delete_untagged,
registry_gc_health_timeout.
"""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files

from regops.render import template
from regops.settings import Settings

SCRIPT = "/usr/local/sbin/regops-gc"
CRON = "/etc/cron.d/regops-gc"


@deploy("Garbage collection")
def apply(s: Settings) -> None:
    files.directory(
        name="Create /var/lib/regops for job state",
        path="/var/lib/regops",
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name=f"Install the safe GC script {SCRIPT}",
        src=StringIO(template(SCRIPT, s)),
        dest=SCRIPT,
        user="root",
        group="root",
        mode="0755",
    )
    if s["registry_gc_enabled"]:
        files.put(
            name=f"Schedule GC with cron ({s['registry_gc_schedule']})",
            src=StringIO(template(CRON, s)),
            dest=CRON,
            user="root",
            group="root",
            mode="0644",
        )
    else:
        files.file(
            name="Remove the GC cron job (registry_gc_enabled is false)", path=CRON, present=False
        )
