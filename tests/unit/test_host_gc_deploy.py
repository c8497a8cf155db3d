"""The GC task's plan on pyinfra's @fake connector: the job's code, settings, wrapper and
units, and 0.1.0's cron file removed only once the timer runs (the 0.2.0 migration)."""

from __future__ import annotations

from tests.support.plan import planned_operations


def test_the_timer_runs_before_the_cron_job_of_0_1_0_goes(tmp_path, secrets_dir):
    ops = planned_operations(tmp_path, secrets_dir)
    gc = [op for op in ops if op.startswith("Garbage collection |")]
    for wanted in ("Install the GC job's code /usr/local/lib/regops/regops_host/gc.py",
                   "Write the GC job's settings",
                   "Install /usr/local/sbin/regops-gc, which runs the GC job",
                   "Install regops-gc.service, which runs the GC job",
                   "Schedule GC with regops-gc.timer (17 3 * * 0)",
                   "Start regops-gc.timer now and at every boot"):
        assert f"Garbage collection | {wanted}" in gc
    cron = ops.index("Remove the GC cron job of regops 0.1.0 (regops-gc.timer runs GC now)")
    assert ops.index(gc[-1]) < cron
