"""Directory logins per second (registry_ldap): the token service's own directory code
against a real slapd (Debian's, on loopback, as tests/support/slapd.py runs it).

    PYTHONPATH=. python bench/bench_ldap.py [--seconds 3] [--rounds 3] [--json]

(`PYTHONPATH=.`: it runs slapd with the tests' own helper, tests/support/slapd.py.)

Three kinds of login, in alternating rounds of --seconds each, one thread:
- cold: a login the service has not verified lately (its memory cleared first): the
  service account's search, a bind as the person, and the group search;
- remembered: the same login again within two minutes: the two searches, no bind;
- local: a user of the users file whose password was verified lately, for scale (no
  directory at all).
Every figure is from one run on one machine: compare them as ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt

from regops_token.authn import Htpasswd
from regops_token.directory import Directory, DirectoryConfig
from tests.support.slapd import GROUPS, PASSWORDS, PEOPLE, SERVICE_DN, Slapd


def rate(fn: Callable[[], object], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += 1
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regops-bench-ldap-") as tmp, \
            Slapd(Path(tmp) / "slapd") as slapd:
        directory = Directory(DirectoryConfig(
            urls=(slapd.ldaps_url,), bind_dn=SERVICE_DN, bind_password_file=slapd.password_file,
            user_base=PEOPLE, group_base=GROUPS, ca_file=slapd.ca_file))
        users = Path(tmp) / "users"
        users.write_text(f"admin:{bcrypt.hashpw(b'admin-pw', bcrypt.gensalt(10)).decode()}\n")
        local = Htpasswd(str(users))
        assert local.check("admin", "admin-pw")
        person, password = "dave", PASSWORDS["dave"]

        def cold() -> None:
            directory._verified.clear()
            assert directory.login(person, password) is not None

        def remembered() -> None:
            assert directory.login(person, password) is not None

        def from_file() -> None:
            assert local.check("admin", "admin-pw")

        kinds = {"cold": cold, "remembered": remembered, "local": from_file}
        found: dict[str, list[float]] = {k: [] for k in kinds}
        for n in range(args.rounds):
            order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
            for name in order:
                found[name].append(rate(kinds[name], args.seconds))
        binds = slapd.binds()
    medians = {k: statistics.median(v) for k, v in found.items()}
    report = {"per_second": {k: round(v, 1) for k, v in medians.items()},
              "remembered_vs_cold": round(medians["remembered"] / medians["cold"], 2),
              "binds_seen_by_slapd": binds, "rounds": args.rounds, "seconds": args.seconds}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| login | per second (median of rounds) |")
    print("|---|---:|")
    for name, label in (("cold", "cold: search, bind as the person, groups"),
                        ("remembered", "remembered: search and groups, no bind"),
                        ("local", "local user, verified lately (no directory)")):
        print(f"| {label} | {medians[name]:,.0f} |")
    print(f"| **remembered / cold** | **{report['remembered_vs_cold']}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
