"""`regops check`: compliance checks of every host of an inventory, read-only."""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Sequence

import click

from regops.compliance import report, runner, schedule
from regops.compliance.checks import CHECKS, Options
from regops.compliance.model import select, split_ids
from regops.errors import UsageError
from regops.inventory import load_inventory

EPILOG = """\b
Exit status: 0 every selected check passed; 1 a check failed, could not run,
or hit a known limitation (unless --accept-limitations); 2 bad usage or inventory.
\b
Examples:
  regops check -i inventories/prod.py
  regops check -i inventories/prod.py --skip tls.mozilla-intermediate --junit out.xml
  regops check -i inventories/prod.py --accept-limitations \\
      --prometheus /var/lib/prometheus/node-exporter/regops.prom
  regops check --list --markdown
"""




def _unit_args(inventory: str, limit: Sequence[str], only: Sequence[str], skip: Sequence[str],
               options: Options, accept: bool, junit: str | None,
               prometheus: str | None) -> list[str]:
    """The check's own options, as the unit's ExecStart repeats them (paths made absolute)."""
    args = ["-i", os.path.abspath(inventory)]
    args += [a for host in limit for a in ("--limit", host)]
    if only:
        args += ["--only", ",".join(only)]
    if skip:
        args += ["--skip", ",".join(skip)]
    args += ["--cert-days", str(options.cert_days),
             "--disk-free-percent", f"{options.disk_free_percent:g}"]
    if options.gc_max_age_days is not None:
        args += ["--gc-max-age-days", f"{options.gc_max_age_days:g}"]
    if accept:
        args.append("--accept-limitations")
    if junit:
        args += ["--junit", os.path.abspath(junit)]
    if prometheus:
        args += ["--prometheus", os.path.abspath(prometheus)]
    return args


@click.command(epilog=EPILOG)
@click.option("-i", "--inventory", metavar="FILE", help="pyinfra inventory, as for the deploy.")
@click.option("--limit", multiple=True, metavar="HOST", help="Only this host (repeatable).")
@click.option("--only", multiple=True, metavar="IDS",
              help="Only these checks: ids or globs, comma-separated or repeated.")
@click.option("--skip", multiple=True, metavar="IDS",
              help="Leave out these checks: ids or globs, comma-separated or repeated.")
@click.option("--cert-days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Fail when the served certificate has this many days left or fewer.")
@click.option("--disk-free-percent", type=click.FloatRange(0, 100), default=10.0,
              show_default=True, help="Fail below this much free space for the data directory.")
@click.option("--gc-max-age-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Fail when the last GC is older. Default: the GC schedule's period plus up "
                   "to a day (8 days for weekly).")
@click.option("--accept-limitations", is_flag=True,
              help="Known limitations still show, but do not make the exit status 1.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--junit", metavar="FILE", help="Also write JUnit XML (one suite per host).")
@click.option("--prometheus", metavar="FILE",
              help="Also write a node-exporter textfile (regops_check_ok{host,check}).")
@click.option("--list", "list_checks", is_flag=True, help="List the checks and exit.")
@click.option("--markdown", is_flag=True,
              help="List the checks as a Markdown table (docs/reference/checks.md).")
@click.option("--write-units", metavar="DIR",
              help="Write regops-check.service/.timer running this command into DIR and exit.")
@click.option("--unit-calendar", default="hourly", show_default=True,
              help="With --write-units: the timer's OnCalendar.")
@click.option("--unit-user", default=None, help="With --write-units: user to run as "
                                                "(default: you).")
def check(inventory: str | None, limit: tuple[str, ...], only: tuple[str, ...],
          skip: tuple[str, ...], cert_days: int, disk_free_percent: float,
          gc_max_age_days: float | None, accept_limitations: bool, as_json: bool,
          junit: str | None, prometheus: str | None, list_checks: bool, markdown: bool,
          write_units: str | None, unit_calendar: str, unit_user: str | None) -> None:
    """Check deployed registry hosts against CIS Docker, Mozilla TLS and regops rules.

    Read-only: hosts are read over SSH (testinfra) and the registry is probed
    at registry_api_url from this machine. Nothing on any host changes.
    """
    only_ids, skip_ids = split_ids(only), split_ids(skip)
    try:
        chosen = select(CHECKS, only_ids, skip_ids)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if list_checks or markdown:
        click.echo(report.markdown(chosen) if markdown else report.check_list(chosen))
        return
    if not inventory:
        raise UsageError("give an inventory with -i FILE (or --list to see the checks)")
    assert inventory is not None
    options = Options(cert_days, disk_free_percent, gc_max_age_days)
    if write_units:
        args = _unit_args(inventory, limit, only_ids, skip_ids, options, accept_limitations,
                          junit, prometheus)
        rendered = schedule.render(args, inventory=os.path.abspath(inventory), workdir=os.getcwd(),
                                user=unit_user or getpass.getuser(), calendar=unit_calendar,
                                prometheus=prometheus and os.path.abspath(prometheus))
        for path in schedule.write(rendered, write_units):
            click.echo(f"wrote {path}")
        click.echo("then: systemctl daemon-reload && systemctl enable --now regops-check.timer")
        return
    try:
        hosts = load_inventory(inventory, list(limit) or None, roles=None)
    except Exception as error:  # noqa: BLE001 - inventories are Python: any error, one line
        why = " ".join(str(error).split()) or type(error).__name__
        raise UsageError(f"cannot load {inventory}: {why}") from None
    if not hosts:
        matching = f" matching --limit {','.join(limit)}" if limit else ""
        raise UsageError(f"no hosts in {inventory}{matching}")
    if not chosen:
        raise UsageError("--only/--skip leave no check to run")
    result = runner.run(hosts, chosen, options, accept_limitations=accept_limitations)
    finished = time.time()
    if junit:
        report.write_atomic(junit, report.junit(result))
    if prometheus:
        report.write_atomic(prometheus, report.prometheus(result, finished))
    click.echo(report.dumps(result) if as_json else report.table(result), nl=not as_json)
    sys.exit(result.exit_code)


COMMANDS = [check]
