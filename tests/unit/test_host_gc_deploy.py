"""The GC task's plan on pyinfra's @fake connector: the job's code, settings, wrapper and
units, and 0.1.0's cron file removed only once the timer runs (the 0.2.0 migration)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_timer_runs_before_the_cron_job_of_0_1_0_goes(tmp_path, secrets_dir):
    inventory = tmp_path / "inventory.py"
    data = {"registry_name": "reg1.example.com", "registry_secrets_dir": str(secrets_dir),
            "fake_responses": {"uname -s": "Linux", "useradd": "/usr/sbin/useradd"}}
    inventory.write_text(f"hosts = {[('@fake/reg1', data)]!r}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", str(inventory), "deploy.py", "-y"], cwd=ROOT,
        env={**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    ops = re.findall(r"--> Starting operation: (.+?)\s*$", result.stderr, re.M)
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
