"""What a deploy that changes nothing costs: repeat deploys of a sandbox host, timed
whole (pyinfra's start-up included), medians printed; a row for docs/measured.md.

    python bench/bench_noop.py --sandbox regops-noop [--runs 5] [--baseline REV] [--candidate REV]

The sandbox must be up and deployed once (`regops sandbox up`, then
`pyinfra -y inventories/sandbox.py deploy.py`). With `--baseline REV` a git
worktree of REV deploys too, alternating with this checkout run by run, so both
see the same machine load (this machine is shared: compare ratios of one run);
`--candidate REV` deploys a worktree of REV instead of this checkout.
REV must deploy the same host state as this checkout (say, the commit before a
change to how the deploy reads facts), or neither deploy would be a no-op. A
run that changes anything fails the benchmark: it measures no-ops only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOTAL = re.compile(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


def deploy(checkout: Path, sandbox: str) -> dict[str, Any]:
    """One `pyinfra -y inventories/sandbox.py deploy.py` from `checkout`: its seconds,
    operations and changes (the summary's Success column)."""
    env = {
        **os.environ,
        "REGOPS_SANDBOX": sandbox,
        # A worktree has no state of its own: the sandbox and secrets are this checkout's.
        "REGOPS_STATE_DIR": str(ROOT / ".regops"),
        "PYTHONPATH": str(checkout),
    }
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "deploy.py"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
    )
    seconds = time.monotonic() - start
    total = TOTAL.search(run.stdout + run.stderr)
    if run.returncode or not total:
        tail = (run.stdout + run.stderr)[-3000:]
        raise SystemExit(f"deploy from {checkout} failed:\n{tail}")
    changed = 0 if total.group(2) == "-" else int(total.group(2))
    return {"seconds": seconds, "operations": int(total.group(1)), "changed": changed}


def worktree(rev: str, into: Path) -> Path:
    path = into / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
                   check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", default=os.environ.get("REGOPS_SANDBOX", "regops"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="a git revision to compare with")
    parser.add_argument("--candidate", default=None, help="a git revision instead of this checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regops-bench-noop-") as tmp:
        candidate = args.candidate or "this checkout"
        checkouts = {candidate: worktree(args.candidate, Path(tmp)) if args.candidate else ROOT}
        if args.baseline:
            checkouts[args.baseline] = worktree(args.baseline, Path(tmp))
        try:
            for checkout in checkouts.values():  # warm-up: brings the host to that state
                deploy(checkout, args.sandbox)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
            for _ in range(args.runs):
                for name, checkout in checkouts.items():
                    runs[name].append(deploy(checkout, args.sandbox))
        finally:
            for checkout in checkouts.values():
                if checkout != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                    str(checkout)], check=False)
    report = {
        name: {
            "median_s": round(statistics.median(r["seconds"] for r in rs), 2),
            "best_s": round(min(r["seconds"] for r in rs), 2),
            "worst_s": round(max(r["seconds"] for r in rs), 2),
            "operations": rs[0]["operations"],
            "changed": sum(r["changed"] for r in rs),
        }
        for name, rs in runs.items()
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("| deploy from | operations | runs | median | best | worst |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in report.items():
            print(f"| {name} | {r['operations']} | {args.runs} | **{r['median_s']} s** | "
                  f"{r['best_s']} s | {r['worst_s']} s |")
        if args.baseline:
            ratio = report[candidate]["median_s"] / report[args.baseline]["median_s"]
            print(f"\nmedian ratio, {candidate} / {args.baseline}: {ratio:.2f}")
    changed = {name: r["changed"] for name, r in report.items() if r["changed"]}
    if changed:
        print(f"# not no-ops, operations changed something: {changed}", file=sys.stderr)
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
