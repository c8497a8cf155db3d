"""Replicas behind a load balancer against one host on its own disk, measured in one run:
pull and push throughput, and the GC read-only window for the same content.

    regops sandbox up --name ha --topology ha && REGOPS_SANDBOX=ha pyinfra -y \\
        inventories/sandbox.py deploy.py                       # replicas on S3
    regops sandbox up --name one && REGOPS_SANDBOX=one pyinfra -y \\
        inventories/sandbox.py deploy.py                       # one host, local disk
    python bench/bench_ha.py --ha ha --single one [--seconds 20]

Both go through TLS from this machine: the load balancer (TLS passed through to a
replica's front door) and the single host's front door. Throughput: --pullers
threads pulling one image of --layer-mb in a loop, then --pushers threads pushing
new images of that size, each for --seconds. GC: --garbage images of 4 MiB pushed
and deleted on each, then `regops gc` (the cluster GC for the replicas).
Bounded by --seconds; it prints JSON and a row for docs/measured.md.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from regops.hostops.gc import run_gc
from regops.hostops.remote import load_hosts
from regops.inventory import InventoryHost
from regops.registry.client import RegistryClient
from regops.registry.endpoint import login_client
from regops.sandbox.load import Refused, pull, push

INVENTORY = "inventories/sandbox.py"
MIB = 1024 * 1024


def hosts_of(sandbox: str) -> list[InventoryHost]:
    os.environ["REGOPS_SANDBOX"] = sandbox  # the sandbox inventory reads it when loaded
    return load_hosts(INVENTORY, roles=None)


def front(hosts: list[InventoryHost]) -> InventoryHost:
    """Where clients go: the load balancer if there is one, else the first host."""
    for h in hosts:
        if h.checked_data()["registry_role"] == "load_balancer":
            return h
    return hosts[0]


def loop(work: Callable[[RegistryClient, int], int], client: Callable[[], RegistryClient],
         threads: int, seconds: float) -> tuple[float, int, int]:
    """(MB/s, operations, failures) of `work` in `threads` threads for `seconds`."""
    done = [0, 0, 0]  # bytes, operations, failures
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        c = client()
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                moved = work(c, index * 100000 + n)
                with lock:
                    done[0] += moved
                    done[1] += 1
            except (Refused, Exception):  # noqa: BLE001 - counted, not fatal
                with lock:
                    done[2] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0] / MIB / (time.monotonic() - started), done[1], done[2]


def measure(name: str, hosts: list[InventoryHost], args: argparse.Namespace) -> dict[str, Any]:
    entry = front(hosts)
    settings = entry.settings()

    def client() -> RegistryClient:
        return login_client(settings)

    layer = args.layer_mb * MIB
    seed = push(client(), "bench/ha/seed", "v1", layer)
    pull_rate, pulls, pull_failed = loop(
        lambda c, _n: (pull(c, seed.repository, seed.tag), layer)[1], client,
        args.pullers, args.seconds)
    push_rate, pushes, push_failed = loop(
        lambda c, n: (push(c, "bench/ha/pushed", f"n{n}", layer), layer)[1], client,
        args.pushers, args.seconds)
    seeder = client()
    for n in range(args.garbage):
        doomed = push(seeder, f"bench/ha/garbage{n}", "v1", 4 * MIB)
        seeder.delete_manifest(doomed.repository, doomed.digest)
    gc = run_gc(hosts)["hosts"]
    replicas = [h for h in hosts if h.checked_data()["registry_role"] == "registry"]
    return {
        "target": name, "via": entry.name, "replicas": len(replicas),
        "storage": settings["registry_storage"],
        "pull_mb_s": round(pull_rate, 1), "pulls": pulls, "pull_failures": pull_failed,
        "push_mb_s": round(push_rate, 1), "pushes": pushes, "push_failures": push_failed,
        "gc_ok": all(e["ok"] for e in gc),
        "gc_readonly_s": max((e["readonly_seconds"] or 0) for e in gc),
        "gc_blobs_deleted": sum((e["blobs_deleted"] or 0) for e in gc),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ha", required=True, help="sandbox made with --topology ha")
    parser.add_argument("--single", required=True, help="sandbox whose sb1 is one host")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pullers", type=int, default=4)
    parser.add_argument("--pushers", type=int, default=4)
    parser.add_argument("--layer-mb", type=int, default=32)
    parser.add_argument("--garbage", type=int, default=5)
    args = parser.parse_args()
    rows = [measure("replicas on S3", hosts_of(args.ha), args),
            measure("one host, local disk", [hosts_of(args.single)[0]], args)]
    print(json.dumps(rows, indent=2))
    print("| target | replicas | pull MB/s | push MB/s | failures | GC read-only |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} (via {r['via']}) | {r['replicas']} | {r['pull_mb_s']} | "
              f"{r['push_mb_s']} | {r['pull_failures'] + r['push_failures']} | "
              f"{r['gc_readonly_s']} s ({r['gc_blobs_deleted']} blobs) |")


if __name__ == "__main__":
    main()
