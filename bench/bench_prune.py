"""Benchmark of `regops prune` over 1,000 tags; prints a small table for docs/measured.md.

    python bench/bench_prune.py                      # policy engine only (no registry)
    python bench/bench_prune.py -i inventories/sandbox.py --host sb1
    python bench/bench_prune.py --url https://127.0.0.1:5000 --ca ca.crt --user demo \\
        --password-file demo.password                # plus a dry run against a registry

The pure part times selection (policies, ranking, shared digests, multi-arch
units) and the freed-space estimate on synthetic tags. The registry part first
fills a repository with N tags (each its own manifest and config, through the
API, once), then times the real dry run the CLI does: catalog, tag list, one
manifest and one config read per tag, selection.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regops.registry import (
    images,
    retention,
)
from regops.registry.client import RegistryClient
from regops.registry.images import Descriptor, Image, Manifest
from regops.registry.retention import Candidate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICIES = [
    {
        "repositories": "bench/**",
        "keep_last": 10,
        "older_than": "30d",
        "exclude": ["re:release-.*"],
        "protect": ["latest", "semver", "stable"],
    },
    {"repositories": "bench/app", "keep_last": 3, "include": ["pr-*"]},
]


def synthetic(n: int) -> tuple[list[Candidate], dict[str, Image]]:
    """n tags of one repository, an hour apart: builds, PR tags, releases, a few
    aliases sharing a digest, and every 50th a multi-arch image of two children."""
    candidates, by_digest = [], {}
    start = NOW - timedelta(hours=n)
    for i in range(n):
        if i % 7 == 0:
            tag = f"pr-{i}"
        elif i % 31 == 0:
            tag = f"v1.{i // 100}.{i % 100}"
        elif i % 43 == 0:
            tag = f"release-{i}"
        else:
            tag = f"build-{i:04d}"
        created = start + timedelta(hours=i)
        layer = Descriptor(f"sha256:{i:064x}", 1_000_000 + i)
        config = Descriptor(f"sha256:{i + 10**6:064x}", 1_500)
        manifest = Manifest(
            f"sha256:{i + 2 * 10**6:064x}",
            images.OCI_MANIFEST,
            500,
            config=config,
            layers=(Descriptor("sha256:" + "b" * 64, 30_000_000), layer),
        )
        image = Image(manifest, created)
        if i % 50 == 0:
            kids = [
                Image(
                    Manifest(
                        f"sha256:{i + k * 10**7:064x}",
                        images.OCI_MANIFEST,
                        500,
                        config=config,
                        layers=(layer,),
                    ),
                    created,
                    f"linux/arch{k}",
                )
                for k in (3, 4)
            ]
            image = Image(
                Manifest(
                    manifest.digest,
                    images.OCI_INDEX,
                    400,
                    children=tuple(Descriptor(c.digest, 500) for c in kids),
                ),
                created,
                None,
                kids,
            )
        by_digest[image.digest] = image
        candidates.append(Candidate(tag, image.digest, created, frozenset(image.child_digests())))
        if i % 97 == 0:  # an alias on the same digest
            candidates.append(Candidate(f"alias-{i}", image.digest, created))
    candidates.append(Candidate("latest", candidates[-1].digest, candidates[-1].created))
    candidates.append(Candidate("stable", candidates[5].digest, candidates[5].created))
    return candidates, by_digest


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def bench_engine(n: int, runs: int) -> list[tuple[str, int, list[float]]]:
    candidates, by_digest = synthetic(n)
    policies = [retention.make_policy(p) for p in POLICIES]

    def select() -> retention.Selection:
        return retention.select(candidates, retention.policies_for("bench/app", policies), NOW)

    def plan() -> tuple[int, int]:
        chosen = select()
        gone = [by_digest[d] for d in chosen.delete_digests]
        kept = {
            c.digest: by_digest[c.digest] for c in candidates if not chosen.decisions[c.tag].delete
        }
        return images.freed_estimate(gone, kept.values())

    result = select()
    print(
        f"# synthetic: {len(candidates)} tags, {len(result.deleted_tags)} selected, "
        f"{len(result.held)} held back by shared digests"
    )
    return [
        ("selection (pure)", len(candidates), timed(select, runs)),
        ("selection + freed estimate (pure)", len(candidates), timed(plan, runs)),
    ]


def fill(client: RegistryClient, repository: str, n: int, workers: int) -> None:
    """Make sure `repository` has tags bench-0000.. with their own manifest and config."""
    try:
        have = set(client.tags(repository))
    except Exception:
        have = set()
    missing = [i for i in range(n) if f"bench-{i:04d}" not in have]
    if not missing:
        return
    print(f"# pushing {len(missing)} tags to {repository} (once)", file=sys.stderr)
    layer = os.urandom(1024)
    images.upload_blob(client, repository, layer)

    def push(i: int) -> None:
        config = images.image_config((NOW - timedelta(hours=n - i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        images.upload_blob(client, repository, config)
        kind, body = images.image_manifest(config, [layer])
        images.put_manifest(client, repository, f"bench-{i:04d}", kind, body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(push, missing))


def bench_registry(
    client: RegistryClient, repository: str, n: int, workers: int, runs: int
) -> list[tuple[str, int, list[float]]]:
    from regops.registry.prune import plan_prune

    fill(client, repository, n, workers)
    policy = retention.make_policy({"repositories": repository, "keep_last": 10})
    counted: list[int] = []

    def dry_run() -> None:
        plans = plan_prune(client, [policy], NOW, workers)
        counted.append(len(plans[0].images))

    times = timed(dry_run, runs)
    return [(f"dry run against the registry ({workers} workers)", counted[0], times)]


def table(rows: list[tuple[str, int, list[float]]]) -> str:
    lines = [
        "| benchmark | tags | runs | median | best | per tag |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, tags, times in rows:
        median = statistics.median(times)
        lines.append(
            f"| {name} | {tags} | {len(times)} | {_t(median)} | {_t(min(times))} | "
            f"{_t(median / tags)} |"
        )
    return "\n".join(lines)


def _t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _client(args: argparse.Namespace) -> RegistryClient | None:
    if args.inventory:
        from regops.cli.images import pick_host
        from regops.registry.endpoint import login_client

        return login_client(pick_host(args.inventory, args.host).settings(), args.user)
    if not args.url:
        return None
    password = os.environ.get("REGOPS_BENCH_PASSWORD")
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    return RegistryClient(args.url, args.user, password, ca_file=args.ca)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="runs of the pure benchmarks")
    parser.add_argument("--registry-runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("-i", "--inventory", help="take the registry from this inventory")
    parser.add_argument("--host", help="inventory host [default: the first]")
    parser.add_argument("--url", help="registry URL, e.g. https://127.0.0.1:5000")
    parser.add_argument("--ca", help="CA certificate of the registry")
    parser.add_argument("--user", help="registry user")
    parser.add_argument(
        "--password-file", help="file with the password [default: env REGOPS_BENCH_PASSWORD]"
    )
    parser.add_argument("--repo", default="t50/bench/app", help="repository to fill and prune")
    args = parser.parse_args()

    rows = bench_engine(args.tags, args.runs)
    client = _client(args)
    if client is not None:
        rows += bench_registry(client, args.repo, args.tags, args.workers, args.registry_runs)
    print(table(rows))


if __name__ == "__main__":
    main()
