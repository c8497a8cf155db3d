"""Benchmarks of token auth behind the TLS front door; prints small tables for docs/measured.md.

    REGOPS_SANDBOX=bench python bench/bench_auth.py -i inventories/sandbox.py --host sb1
    ... [--json] [--parts v2,tokens,prune,blob] [--duration 3] [--blob-mb 500] [--tags 1000]

Every number is a rate or a ratio taken in one run on one host, each phase bounded
by time or count. Where the point is the server's cost, the load comes from the
registry host itself (bench/auth_host.py, run over SSH by Debian's python3 and
curl), so the operator's network path is not what is measured:

1. GET /v2/ through the front door (TLS, keep-alive, --connections processes on the
   host), without credentials (the registry answers 401) and with an admin's bearer
   token (200), in alternating rounds. With htpasswd the registry ran bcrypt on
   every request and the authenticated side reached 0.02x; a token costs the
   registry a signature check, so the target is >= 0.5x. For scale, the same load
   on a path nginx answers itself (404): the ceiling of client, TLS and nginx.
2. Tokens per second. (a) Cold logins: the token service remembers a verified
   password for 120 s, so repeated logins of one user are warm and the live service
   would need as many distinct users as logins, which the deployed data does not
   have (and the bench must not add). So the deployed `regops_token` code runs in a
   process on the host against a temporary htpasswd of --cold-logins users at the
   deployed bcrypt cost, with a throwaway key, config and audit log:
   TokenService.authenticate + issue, each user once (so each login is a full
   bcrypt), in 1 and in as many threads as the host has cores (the service is
   threaded and bcrypt releases the GIL). This leaves out HTTP and TLS, which (b)
   shows cost about a millisecond, little beside a bcrypt.
   (b) Warm logins: one admin's Basic login again and again, GET /auth/token through
   the front door with keep-alive. (c) Anonymous tokens, the same way (no bcrypt).
   Every token of (b) and (c) is a line in the host's audit log.
3. `regops prune` dry run over --tags tags (bench/bench_prune.py's registry part,
   from this machine through the published port as the CLI runs it): target <= 5 s
   (over a minute with htpasswd, where every request paid a bcrypt).
4. Pull of one --blob-mb MB random blob (pushed once, monolithic, to --blob-repo)
   with curl on the host, through https://<name>:<port> (the front door) and from
   http://127.0.0.1:<registry_backend_port> (the registry) with the same bearer
   token, --pulls alternating runs each after one warm-up each: target >= 0.8x.
   For scale, a third path: a throwaway nginx on loopback serving the same bytes
   from disk over the same certificate, protocols and curves (what TLS allows).
   The blob is unlinked afterwards; its bytes go at the next GC. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from regops import hostpaths
from regops.cli.images import pick_host
from regops.config.settings import Settings
from regops.inventory import InventoryHost
from regops.registry.endpoint import login_client

HERE = Path(__file__).resolve().parent
HOST_SCRIPT = HERE / "auth_host.py"
PARTS = ("v2", "tokens", "prune", "blob")
V2_TARGET, PRUNE_TARGET, BLOB_TARGET = 0.5, 5.0, 0.8


def on_host(host: InventoryHost, mode: str, params: dict[str, Any], timeout: float
            ) -> dict[str, Any]:
    """Run one mode of auth_host.py on the host (as root) and return its JSON answer.
    The script and its parameters (a password among them) travel on stdin, never on a
    command line."""
    t = host.ssh_target()
    checking = str(host.data.get("ssh_strict_host_key_checking") or "accept-new")
    command = ["ssh", "-p", str(t["port"]), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
               "-o", f"StrictHostKeyChecking={checking}", "-o", "ConnectTimeout=15"]
    if host.data.get("ssh_known_hosts_file"):
        command += ["-o", f"UserKnownHostsFile={host.data['ssh_known_hosts_file']}"]
    if t["key"]:
        command += ["-i", str(t["key"])]
    command += [f"{t['user']}@{t['hostname']}", ("sudo " if t["sudo"] else "")
                + f"env PYTHONPATH={hostpaths.TOKEN_CODE} python3 -"]
    source = HOST_SCRIPT.read_text() + f"\nmain({mode!r}, json.loads({json.dumps(params)!r}))\n"
    done = subprocess.run(command, input=source, stdout=subprocess.PIPE, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{host.name}: {mode} failed on the host (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def host_params(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    client = login_client(s)  # the first admin, as the CLI logs in
    return {
        "name": s.registry_name,
        "port": s.port,
        "connect": s.probe_address,
        "backend": s["registry_backend_port"],
        "ca": f"{hostpaths.certs_d(s.registry_address)}/ca.crt",
        "user": client.username,
        "password": client.password,
        "token_code": hostpaths.TOKEN_CODE,
        "config_file": hostpaths.TOKEN_CONFIG,
        "users_file": hostpaths.TOKEN_USERS,
        "connections": args.connections,
        "rounds": args.rounds,
        "duration": args.duration,
        "repo": args.token_repo,
    }


# --------------------------------------------------------------------------- parts


def part_v2(host: InventoryHost, p: dict[str, Any]) -> dict[str, Any]:
    found = on_host(host, "v2", p, timeout=120 + 3 * p["rounds"] * p["duration"])
    anonymous, bearer, frontdoor = (
        _summed(found["runs"][k]) for k in ("anonymous", "bearer", "frontdoor"))
    ratio = bearer["per_second"] / anonymous["per_second"] if anonymous["per_second"] else 0.0
    expected = {"anonymous": "401", "bearer": "200", "frontdoor": "404"}
    return {"anonymous": anonymous, "bearer": bearer, "frontdoor": frontdoor,
            "ratio": round(ratio, 3), "target": V2_TARGET, "met": ratio >= V2_TARGET,
            "runs": found["runs"], "problems": _problems(found["runs"], expected)}


def part_tokens(host: InventoryHost, p: dict[str, Any], cold_logins: int, cpus: int
                ) -> dict[str, Any]:
    threads = sorted({1, max(1, cpus)})
    cold = on_host(host, "cold", {**p, "cold_logins": cold_logins, "cold_threads": threads},
                   timeout=300 + cold_logins * 2)
    http = on_host(host, "tokens", p, timeout=120 + 3 * p["rounds"] * p["duration"])
    # One address past registry_auth_rate (and its burst) gets 429 from nginx: that is
    # the limit working, and what the tokens-per-second rows then show.
    problems = _problems(http["runs"], {"warm": "200", "anonymous": "200"},
                         also=frozenset({"429"}))
    problems += [f"cold logins: {r['logins'] - r['ok']} refused" for r in cold["runs"]
                 if r["ok"] != r["logins"]]
    return {"cold": cold, "warm": _summed(http["runs"]["warm"]),
            "anonymous": _summed(http["runs"]["anonymous"]), "scope": http["scope"],
            "runs": http["runs"], "problems": problems}


def part_prune(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """bench_prune.py's registry part, as it is: fill once, time the dry runs."""
    spec = importlib.util.spec_from_file_location("bench_prune", HERE / "bench_prune.py")
    assert spec and spec.loader
    bench_prune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_prune)
    rows = bench_prune.bench_registry(login_client(s), args.prune_repo, args.tags, args.workers,
                                      args.prune_runs)
    name, tags, times = rows[0]
    median = statistics.median(times)
    return {"name": name, "tags": tags, "times": [round(t, 3) for t in times],
            "median": round(median, 3), "table": bench_prune.table(rows),
            "target": PRUNE_TARGET, "met": median <= PRUNE_TARGET,
            "problems": [] if tags >= args.tags else [f"prune saw {tags} of {args.tags} tags"]}


def part_blob(host: InventoryHost, p: dict[str, Any], args: argparse.Namespace
              ) -> dict[str, Any]:
    params = {**p, "blob_bytes": int(args.blob_mb * 1_000_000), "pulls": args.pulls,
              "repo": args.blob_repo}
    found = on_host(host, "blob", params, timeout=600 + args.blob_mb * args.pulls)
    speeds = {k: statistics.median(r["mb_per_s"] for r in v) for k, v in found["pulls"].items()}
    ratio = speeds["frontdoor"] / speeds["direct"] if speeds["direct"] else 0.0
    of_tls = speeds["frontdoor"] / speeds["tls_static"] if speeds.get("tls_static") else 0.0
    bad = [f"pull {k}: HTTP {r['status']}, {r['bytes']} bytes" for k, v in found["pulls"].items()
           for r in v if r["status"] != 200 or r["bytes"] != found["bytes"]]
    return {**found, "median_mb_per_s": speeds, "ratio": round(ratio, 3), "target": BLOB_TARGET,
            "met": ratio >= BLOB_TARGET, "of_tls_ceiling": round(of_tls, 3), "problems": bad}


def _summed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one phase as one: expected answers over the whole time."""
    seconds = sum(r["seconds"] for r in runs)
    ok = sum(r["ok"] for r in runs)
    return {"ok": ok, "seconds": seconds, "per_second": round(ok / seconds, 1),
            "rounds": [r["per_second"] for r in runs],
            "reconnects": sum(r["reconnects"] for r in runs)}


def _problems(runs: dict[str, list[dict[str, Any]]], expected: dict[str, str],
              also: frozenset[str] = frozenset()) -> list[str]:
    """Answers other than the expected one (and `also`) and errors, per phase."""
    found = []
    for name, rounds in runs.items():
        for r in rounds:
            other = {k: v for k, v in r["statuses"].items()
                     if k != expected[name] and k not in also}
            if other or r["errors"]:
                found.append(f"{name}: unexpected answers {other}, {r['errors']} errors")
    return found


# --------------------------------------------------------------------------- tables


def tables(report: dict[str, Any], args: argparse.Namespace) -> str:
    out = []
    info = report["host"]
    out.append(f"# {info['name']}: {info['cpus']} cores, load average {_load(info['loadavg'])} "
               f"before, {_load(report['loadavg_after'])} after; nginx {info['nginx']}, "
               f"bcrypt cost {info['bcrypt_cost']}")
    if "v2" in report:
        r = report["v2"]
        out += [
            "",
            f"GET /v2/ through the front door on the host: {args.connections} keep-alive "
            f"connections, {args.rounds} x {_n(args.duration)} s each, alternating",
            "",
            "| request | answer | answers | per second |",
            "|---|---:|---:|---:|",
            f"| no credentials | 401 | {r['anonymous']['ok']} | "
            f"{r['anonymous']['per_second']:,.0f} |",
            f"| bearer token | 200 | {r['bearer']['ok']} | {r['bearer']['per_second']:,.0f} |",
            f"| **ratio** | | | **{r['ratio']:.2f}x** (target >= {V2_TARGET}x"
            f"{'' if r['met'] else ', missed'}) |",
            f"| for scale: a path nginx answers itself | 404 | {r['frontdoor']['ok']} | "
            f"{r['frontdoor']['per_second']:,.0f} |",
        ]
    if "tokens" in report:
        r = report["tokens"]
        cold = r["cold"]
        out += [
            "",
            "Tokens per second on the host",
            "",
            "| token | how | tokens | per second |",
            "|---|---|---:|---:|",
        ]
        for run in cold["runs"]:
            out.append(
                f"| cold login (bcrypt cost {cold['cost']}) | deployed code in process, "
                f"{run['threads']} thread{'s' if run['threads'] > 1 else ''} | {run['ok']} | "
                f"{run['per_second']:,.1f} |")
        warm = cold["warm_in_process"]
        out.append(f"| warm login | deployed code in process, 1 thread | {warm['logins']} | "
                   f"{warm['per_second']:,.0f} |")
        for key, label in (("warm", "warm login (same Basic credentials)"),
                           ("anonymous", "anonymous")):
            x = r[key]
            out.append(f"| {label} | GET /auth/token through the front door, "
                       f"{args.connections} keep-alive connections, one address (nginx's "
                       f"registry_auth_rate applies) | {x['ok']} | {x['per_second']:,.0f} |")
    if "prune" in report:
        r = report["prune"]
        out += ["", f"`regops prune` dry run through tokens, from this machine through the "
                f"published port (target <= {PRUNE_TARGET:g} s{'' if r['met'] else ', missed'})",
                "", r["table"]]
    if "blob" in report:
        r = report["blob"]
        mb = r["bytes"] / 1e6
        out += [
            "",
            f"Pull of a {mb:,.0f} MB blob with curl on the host ({args.pulls} alternating runs "
            f"each; pushed once in {r['push_seconds']:.1f} s, {mb / r['push_seconds']:,.0f} MB/s)",
            "",
            "| path | runs | median | best |",
            "|---|---:|---:|---:|",
        ]
        for key, label in (("frontdoor", f"https://{info['registry']} (front door, TLS)"),
                           ("direct", f"http://127.0.0.1:{info['backend']} (registry)"),
                           ("tls_static", "nginx serving the same bytes from disk over the "
                                          "same TLS (what TLS allows here)")):
            speeds = [x["mb_per_s"] for x in r["pulls"][key]]
            out.append(f"| {label} | {len(speeds)} | {statistics.median(speeds):,.0f} MB/s | "
                       f"{max(speeds):,.0f} MB/s |")
        out.append(f"| **ratio** | | **{r['ratio']:.2f}x** (target >= {BLOB_TARGET}x"
                   f"{'' if r['met'] else ', missed'}) | |")
        out.append(f"| front door / what TLS allows | | {r['of_tls_ceiling']:.2f}x | |")
    return "\n".join(out)


def _load(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _n(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default=os.environ.get("REGOPS_INVENTORY"),
                        required=not os.environ.get("REGOPS_INVENTORY"))
    parser.add_argument("--host", default=None, help="inventory host [default: the first]")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " +
                        ", ".join(PARTS))
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each phase")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--token-repo", default="bench/auth", help="scope of the token load")
    parser.add_argument("--cold-logins", type=int, default=40, help="distinct users, once each")
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="workers of the prune dry run")
    parser.add_argument("--prune-runs", type=int, default=3)
    parser.add_argument("--prune-repo", default="t50/bench/app")
    parser.add_argument("--blob-mb", type=float, default=500)
    parser.add_argument("--blob-repo", default="bench/auth-blob")
    parser.add_argument("--pulls", type=int, default=3, help="timed pulls per path")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")

    host = pick_host(args.inventory, args.host)
    settings = host.settings()
    if not settings.token_auth:
        raise SystemExit(f"{host.name}: registry_auth is not token")
    params = host_params(settings, args)
    info = on_host(host, "info", params, timeout=60)
    report: dict[str, Any] = {"host": {
        "name": host.name, "registry": settings.registry_address,
        "backend": settings["registry_backend_port"], **info,
    }}
    if "v2" in parts:
        print("# GET /v2/ ...", file=sys.stderr)
        report["v2"] = part_v2(host, params)
    if "tokens" in parts:
        print("# tokens ...", file=sys.stderr)
        report["tokens"] = part_tokens(host, params, args.cold_logins, info["cpus"])
    if "prune" in parts:
        print("# prune dry run ...", file=sys.stderr)
        report["prune"] = part_prune(settings, args)
    if "blob" in parts:
        print("# blob pulls ...", file=sys.stderr)
        report["blob"] = part_blob(host, params, args)
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    problems = [p for part in PARTS if part in report for p in report[part]["problems"]]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(tables(report, args))
    for problem in problems:
        print(f"# problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
