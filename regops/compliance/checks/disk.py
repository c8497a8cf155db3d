"""Free space for the data (`host.disk-free`)."""

from __future__ import annotations

from regops.compliance.checks._base import Context, check
from regops.compliance.model import Unavailable, Verdict, fail, ok


@check(
    id="host.disk-free",
    title="The data directory's file system has free space above the threshold",
    rationale="A full disk fails every push, and GC itself needs room.",
    reference="regops (--disk-free-percent, default 10)",
    roles=("registry", "storage"),
)
def disk_free(c: Context) -> Verdict:
    key = "registry_seaweedfs_data_dir" if c.s.role == "storage" else "registry_data_dir"
    data_dir = c.s[key]
    fields = c.facts.text("data_fs", f"{data_dir} is missing").split()
    try:
        total, available, _block = (int(x) for x in fields[:3])
    except ValueError:
        raise Unavailable(f"cannot read free space of {data_dir}") from None
    percent = 100.0 * available / total if total else 0.0
    threshold = c.options.disk_free_percent
    if percent < threshold:
        return fail(f"{percent:.1f}% free on the file system of {data_dir} (threshold "
                    f"{threshold:g}%)", "delete images and run GC, or grow the disk")
    return ok(f"{percent:.1f}% free on the file system of {data_dir} (threshold {threshold:g}%)")
