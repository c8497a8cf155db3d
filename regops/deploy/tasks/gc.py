"""Garbage collection: a cron job running the safe, read-only GC script.

Its keys: the `gc` concern of `regops.config.keys` (README: Data keys).
"""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy.render import template


@deploy("Garbage collection")
def apply(s: Settings) -> None:
    files.directory(
        name=f"Create {hostpaths.STATE_DIR} for job state",
        path=hostpaths.STATE_DIR,
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name=f"Install the safe GC script {hostpaths.GC_SCRIPT}",
        src=StringIO(template(hostpaths.GC_SCRIPT, s)),
        dest=hostpaths.GC_SCRIPT,
        user="root",
        group="root",
        mode="0755",
    )
    if s["registry_gc_enabled"]:
        files.put(
            name=f"Schedule GC with cron ({s['registry_gc_schedule']})",
            src=StringIO(template(hostpaths.GC_CRON, s)),
            dest=hostpaths.GC_CRON,
            user="root",
            group="root",
            mode="0644",
        )
    else:
        files.file(
            name="Remove the GC cron job (registry_gc_enabled is false)",
            path=hostpaths.GC_CRON,
            present=False,
        )
