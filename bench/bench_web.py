"""Benchmark of the web pages' server time with 1,000 repositories and a repository of
1,000 tags, against the real registry binary and the real token service on loopback.

    python -m bench.bench_web                 # from the checkout's root
    python -m bench.bench_web --repositories 200 --tags 200 --runs 3

The registry (Debian's docker-registry, as on the hosts) is filled through its
API: N repositories three namespaces deep with one image each, and one
repository with N tags, each its own image (manifest, config, layer). Server
time is what the page's `Server-Timing` header says (the service's own clock,
from request to rendered page), read over HTTP like a browser would.

"Cold" is a service that has read nothing yet (every cache empty: catalog,
tags, manifests, configs), as right after it starts; "after the walk" is the
first view of a page once the service's background walk has read the registry
(what a visitor meets normally); "again" is the same page once more.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from regops.registry.images import push_image
from regops_token.backend import Backend
from regops_token.catalog import Catalog
from tests.support.stack import Stack, WebClient, _Bearer

TARGET_MS = 1000.0


def fill(stack: Stack, repositories: int, tags: int) -> tuple[float, list[str]]:
    """Push the content; returns (seconds, the repositories' names)."""
    names = [f"team{i % 10}/project{i // 10 % 10}/svc{i:04d}" for i in range(repositories)]
    started = time.monotonic()

    def one_repo(name: str) -> None:
        token, _ = stack.service.mint("alice", [("repository", name, ["pull", "push"])])
        push_image(_Bearer(stack, token), name, ["1.0"], layer_bytes=256)

    def one_tag(n: int) -> None:
        token, _ = stack.service.mint("alice", [("repository", "big/service", ["pull", "push"])])
        push_image(_Bearer(stack, token), "big/service", [f"1.0.{n}"], layer_bytes=256,
                   created=f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_repo, names))
        list(pool.map(one_tag, range(tags)))
    return time.monotonic() - started, names


def server_ms(client: WebClient, path: str) -> float:
    status, headers, body = client.request("GET", path)
    assert status == 200, (path, status, body[:300])
    found = re.search(r"app;dur=([\d.]+)", headers.get("server-timing", ""))
    assert found, headers
    return float(found.group(1))


def forget(stack: Stack) -> None:
    """A service that has read nothing yet: every cache empty."""
    old = stack.web.catalog
    stack.web.catalog = Catalog(Backend(old.backend.ports, stack.service.mint))
    stack.web.catalog.history = old.history


def _ms(value: float) -> str:
    text = f"{value:.0f} ms"
    return text if value < TARGET_MS else f"**{text}**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per page (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), web=True)
        try:
            seconds, names = fill(stack, args.repositories, args.tags)
            print(f"filled {args.repositories} repositories and {args.tags} tags "
                  f"in {seconds:.0f} s")
            alice, bob = WebClient(stack.token_port), WebClient(stack.token_port)
            assert alice.login("alice") == 303 and bob.login("bob") == 303
            pages = [
                ("namespace tree, top level (admin: every repository)", alice,
                 "/repositories/"),
                ("namespace tree, top level (a user: the rules filter all of them)", bob,
                 "/repositories/"),
                ("namespace tree, third level", alice, "/repositories/team3/project4/"),
                ("search by name", alice, "/repositories/?q=svc09"),
                (f"tags page, {args.tags} tags by name, first page", alice,
                 "/repo/big/service"),
                (f"tags page, {args.tags} tags newest first", alice,
                 "/repo/big/service?sort=time"),
                (f"tags page, {args.tags} tags by name, last page", alice,
                 f"/repo/big/service?page={max(1, -(-args.tags // 50))}"),
                ("image page", alice, "/image/big/service:1.0.7"),
            ]
            rows = []
            for label, client, path in pages:
                forget(stack)
                cold = server_ms(client, path)
                again = statistics.median(server_ms(client, path) for _ in range(args.runs))
                rows.append([label, cold, None, again])
            forget(stack)
            started = time.monotonic()
            stack.web.catalog.index()
            walk = time.monotonic() - started
            for row, (_, client, path) in zip(rows, pages, strict=True):
                row[2] = server_ms(client, path)
        finally:
            stack.close()
    print()
    print("| page | cold: nothing read yet | first view after the background walk | "
          f"again (median of {args.runs}) |")
    print("|---|---:|---:|---:|")
    for label, cold, walked, again in rows:
        print(f"| {label} | {_ms(cold)} | {_ms(walked)} | {_ms(again)} |")
    print()
    print(f"background walk counting every repository's size (cold): {walk:.1f} s")
    print(f"peak memory of this process (the service's code and caches, and the filling): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
