"""What garbage collection costs clients: the GC job, run as cron runs it, under 10
concurrent pushers and a loop of pulls; prints a row for docs/measured.md.

    python bench/bench_gc.py -i inventories/sandbox.py --host sb1 [--runs 3]

Each run: a few seed images to pull, a few images pushed and deleted so GC has
something to collect, then pushers and pullers through the front door while the
job runs. Reported: pulls and failed pulls, pushes acknowledged, refused with
503 (and retried) or failed, acknowledged images that can no longer be pulled,
the read-only window and what the job freed. Bounded: --before and --after
seconds of load around each job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from regops.cli.images import pick_host
from regops.hostops.gc import run_gc
from regops.registry.endpoint import login_client
from regops.sandbox.load import Load, push, verify
from regops.util import human_bytes


def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    host = pick_host(args.inventory, args.host)
    settings = host.settings()

    def client():  # one per thread: each opens its own connections
        return login_client(settings)

    seeder = client()
    seeds = []
    for n in range(args.seeds):
        pushed = push(seeder, f"bench/seed{n}", f"run{run}", 2 * 1024 * 1024)
        seeds.append((pushed.repository, pushed.tag))
    for n in range(args.garbage):
        doomed = push(seeder, f"bench/garbage{n}", f"run{run}", 4 * 1024 * 1024)
        seeder.delete_manifest(doomed.repository, doomed.digest)

    load = Load(client, seeds, pushers=args.pushers, pullers=args.pullers)
    load.start()
    time.sleep(args.before)
    started = time.monotonic()
    gc = run_gc([host])["hosts"][0]
    gc_seconds = time.monotonic() - started
    time.sleep(args.after)
    result = load.stop()
    result.lost = verify(seeder, result.acknowledged)
    return {
        **result.as_dict(),
        "gc_ok": gc["ok"],
        "gc_error": gc["error"],
        "readonly_seconds": gc["readonly_seconds"],
        "gc_seconds": round(gc_seconds, 1),
        "bytes_freed": gc["bytes_freed"],
        "blobs_deleted": gc.get("blobs_deleted"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default=os.environ.get("REGOPS_INVENTORY"),
                        required=not os.environ.get("REGOPS_INVENTORY"))
    parser.add_argument("--host", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushers", type=int, default=10)
    parser.add_argument("--pullers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--garbage", type=int, default=3)
    parser.add_argument("--before", type=float, default=8.0)
    parser.add_argument("--after", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [one_run(args, n) for n in range(1, args.runs + 1)]
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    print("| run | pushers | pulls | failed pulls | pushes acknowledged | refused (503, retried) "
          "| failed pushes | lost images | read-only window | GC job | freed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in enumerate(runs, start=1):
        print(f"| {n} | {args.pushers} | {r['pulls']} | {r['failed_pulls']} | "
              f"{r['pushes_acknowledged']} | {r['pushes_refused_503']} | {r['failed_pushes']} | "
              f"{r['lost_images']} | {r['readonly_seconds']} s | {r['gc_seconds']} s | "
              f"{human_bytes(r['bytes_freed'])} |")
    bad = [r for r in runs if r["failed_pulls"] or r["lost_images"] or not r["gc_ok"]]
    for r in bad:
        print(f"# problems: {r['examples']} {r['gc_error'] or ''}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
