"""Output formats: a table per host for people, JSON, JUnit XML for CI, and a
Prometheus node-exporter textfile for alerting. Plus the check list as Markdown
for docs/reference/checks.md."""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regops.compliance.model import Check, Run, Status

JSON_VERSION = 1


def _columns(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)),
                                r[-1]]).rstrip() for r in rows]


def table(run: Run) -> str:
    """One block per host: status, check id and the one-line detail (and remedy if failed)."""
    lines: list[str] = []
    for report in run.hosts:
        failing = sum(r.counts_as_failure(run.accept_limitations) for r in report.results)
        verdict = "ok" if not failing else f"{failing} not passing"
        lines.append(f"{report.host}  ({report.target})  {verdict}")
        rows: list[tuple[str, ...]] = [("STATUS", "CHECK", "DETAIL")]
        for r in report.results:
            label = r.status.label
            if r.status is Status.LIMITATION and run.accept_limitations:
                label = "FAIL (known limitation, accepted)"
            detail = r.detail + (f" -> {r.remedy}" if r.remedy and r.status is not Status.PASS
                                 else "")
            rows.append((label, r.check_id, detail))
        lines += _columns(rows)
        lines.append("")
    lines.append(summary(run))
    return "\n".join(lines)


def summary(run: Run) -> str:
    counts = run.counts()
    parts = [f"{counts[s.value]} {s.value}" for s in Status if counts[s.value]]
    accepted = " (known limitations accepted)" if run.accept_limitations and counts[
        "limitation"] else ""
    return (f"{len(run.hosts)} host(s), {sum(counts.values())} result(s): "
            f"{', '.join(parts) or 'nothing checked'}{accepted}; exit {run.exit_code}")


def as_json(run: Run) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "started": run.started,
        "exit_code": run.exit_code,
        "accept_limitations": run.accept_limitations,
        "counts": run.counts(),
        "hosts": [{"host": h.host, "target": h.target,
                   "results": [r.as_dict() for r in h.results]} for h in run.hosts],
    }


def junit(run: Run) -> str:
    """One testsuite per host, one testcase per check: fail -> <failure>, error -> <error>,
    known limitation -> <failure type="known-limitation"> (or <skipped> when accepted)."""
    suites = ET.Element("testsuites", name="regops check")
    for report in run.hosts:
        counts = {s: sum(r.status is s for r in report.results) for s in Status}
        accepted = counts[Status.LIMITATION] if run.accept_limitations else 0
        suite = ET.SubElement(suites, "testsuite", name=report.host,
                              tests=str(len(report.results)),
                              failures=str(counts[Status.FAIL] + counts[Status.LIMITATION]
                                           - accepted),
                              errors=str(counts[Status.ERROR]), skipped=str(accepted))
        for r in report.results:
            case = ET.SubElement(suite, "testcase", classname=f"regops.{report.host}",
                                 name=r.check_id)
            message = r.detail + (f" -> {r.remedy}" if r.remedy else "")
            if r.status is Status.FAIL:
                ET.SubElement(case, "failure", message=message, type="fail").text = r.reference
            elif r.status is Status.ERROR:
                ET.SubElement(case, "error", message=message, type="error").text = r.reference
            elif r.status is Status.LIMITATION and run.accept_limitations:
                ET.SubElement(case, "skipped", message=f"accepted known limitation: {message}")
            elif r.status is Status.LIMITATION:
                ET.SubElement(case, "failure", message=message,
                              type="known-limitation").text = r.reference
            ET.SubElement(case, "system-out").text = f"{r.title}: {r.detail}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus(run: Run, finished: float) -> str:
    """node-exporter textfile. Alert on `regops_check_ok == 0`, and on
    `time() - regops_check_last_run_timestamp_seconds` growing past the timer period."""
    lines = [
        "# HELP regops_check_ok 1 when the check passed (or is an accepted known limitation).",
        "# TYPE regops_check_ok gauge",
    ]
    for r in run.results():
        ok = 0 if r.counts_as_failure(run.accept_limitations) else 1
        labels = f'host="{_label(r.host)}",check="{_label(r.check_id)}"'
        lines.append(f"regops_check_ok{{{labels}}} {ok}")
    lines += ["# HELP regops_check_status 1 for the check's current state, 0 for the others.",
              "# TYPE regops_check_status gauge"]
    for r in run.results():
        for s in Status:
            lines.append(f'regops_check_status{{host="{_label(r.host)}",'
                         f'check="{_label(r.check_id)}",status="{s.value}"}} '
                         f"{int(r.status is s)}")
    lines += [
        "# HELP regops_check_exit_code Exit code of the last run (0 all pass, 1 any fails).",
        "# TYPE regops_check_exit_code gauge",
        f"regops_check_exit_code {run.exit_code}",
        "# HELP regops_check_last_run_timestamp_seconds When the last run finished.",
        "# TYPE regops_check_last_run_timestamp_seconds gauge",
        f"regops_check_last_run_timestamp_seconds {finished:.0f}",
        "# HELP regops_check_duration_seconds How long the last run took.",
        "# TYPE regops_check_duration_seconds gauge",
        f"regops_check_duration_seconds {max(0.0, finished - run.started):.3f}",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write then rename, so node-exporter or CI never reads half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_list(checks: Sequence[Check]) -> str:
    rows: list[tuple[str, ...]] = [("ID", "TITLE", "REFERENCE")]
    rows += [(c.id, c.title, c.reference) for c in checks]
    return "\n".join(_columns(rows, indent=""))


def markdown(checks: Sequence[Check]) -> str:
    """The check table for docs/reference/checks.md."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| ID | Checks | Why | Reference | Read from | Hosts |",
             "|---|---|---|---|---|---|"]
    for c in checks:
        where = "host (SSH)" if c.side == "host" else "operator's machine"
        roles = ", ".join(r.replace("_", " ") for r in c.roles)
        lines.append(f"| `{c.id}` | {cell(c.title)} | {cell(c.rationale)} | "
                     f"{cell(c.reference)} | {where} | {roles} |")
    return "\n".join(lines) + "\n"


def dumps(run: Run) -> str:
    return json.dumps(as_json(run), indent=2) + "\n"
