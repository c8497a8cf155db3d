"""The audit log without a host: what the service writes, how it rotates, how
`regops audit` filters it (on the host, with this same code) and shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from regops.cli.access import audit_command, describe, since_time
from regops.errors import UsageError
from regops_token import audit
from regops_token.notify import record_event

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, *records: dict) -> None:
    with open(path, "a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def test_the_log_rotates_and_keeps_a_bounded_number_of_files(tmp_path):
    log = tmp_path / "audit.log"
    writer = audit.Audit(str(log), max_bytes=400, keep=2)
    for n in range(40):
        writer("token", subject=f"user:u{n}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.log", "audit.log.1",
                                                          "audit.log.2"]
    assert all(p.stat().st_size <= 400 + 200 for p in tmp_path.iterdir())
    kept = [r["subject"] for r in audit.records(audit.files(str(log), keep=2))]
    assert kept[-1] == "user:u39" and kept == sorted(kept, key=lambda s: int(s[6:]))
    assert "user:u0" not in kept  # the oldest went


EVENTS = [
    {"time": "2026-11-27T10:00:00Z", "event": "token", "subject": "user:alice",
     "requested": ["repository:platform/api:push,pull"],
     "granted": ["repository:platform/api:push,pull"]},
    {"time": "2026-11-27T10:00:01Z", "event": "push", "subject": "user:alice",
     "repository": "platform/api", "tag": "1.0", "digest": "sha256:aa"},
    {"time": "2026-11-27T11:00:00Z", "event": "login_failed", "subject": "mallory",
     "reason": "unknown name"},
    {"time": "2026-11-27T12:00:00Z", "event": "delete", "subject": "robot:ci-platform",
     "repository": "platform/web", "digest": "sha256:bb"},
    {"time": "2026-11-27T12:00:05Z", "event": "token", "subject": "anonymous",
     "requested": ["repository:public/base:pull"], "granted": ["repository:public/base:pull"]},
]


@pytest.mark.parametrize(("criteria", "expected"), [
    ({}, [0, 1, 2, 3, 4]),
    ({"who": "alice"}, [0, 1]),
    ({"who": "user:alice", "events": ["push"]}, [1]),
    ({"who": "ci-platform"}, [3]),
    ({"repository": "platform/**"}, [0, 1, 3]),
    ({"repository": "platform/web"}, [3]),
    ({"repository": "public/*"}, [4]),
    ({"since": "2026-11-27T11:00:00Z"}, [2, 3, 4]),
    ({"events": ["login_failed", "delete"]}, [2, 3]),
])
def test_select_filters(tmp_path, criteria, expected):
    log = tmp_path / "audit.log"
    write(log, *EVENTS)
    found = audit.select(str(log), 100, **criteria)
    assert found == [EVENTS[i] for i in expected]


def test_select_keeps_the_newest_across_rotated_files_and_skips_broken_lines(tmp_path):
    log = tmp_path / "audit.log"
    write(tmp_path / "audit.log.1", *EVENTS[:3])
    write(log, *EVENTS[3:])
    with open(log, "a") as out:
        out.write('{"time": "2026-11-27T13:00:00Z", "event": "tok')  # cut by a full disk
    assert audit.select(str(log), 2) == EVENTS[3:]
    assert audit.select(str(log), 4) == EVENTS[1:]


def test_the_host_side_command_runs_as_regops_audit_calls_it(tmp_path):
    log = tmp_path / "audit.log"
    write(log, *EVENTS)
    command = audit_command("alice", "platform/**", ("push",), None, 10)
    args = command.split("python3 -m regops_token.audit ", 1)[1]
    args = args.replace("/var/log/regops-token/audit.log", str(log))
    result = subprocess.run(f"{sys.executable} -m regops_token.audit {args}", shell=True,
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [EVENTS[1]]
    missing = subprocess.run([sys.executable, "-m", "regops_token.audit", "--log",
                              str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 3 and "no audit log" in missing.stderr


def test_since_takes_durations_and_iso_times():
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert since_time("2h", now) == "2026-11-27T10:00:00Z"
    assert since_time("7d", now) == "2026-11-20T12:00:00Z"
    assert since_time("2026-11-01", now) == "2026-11-01T00:00:00Z"
    assert since_time("2026-11-01T10:00:00+02:00", now) == "2026-11-01T08:00:00Z"
    with pytest.raises(UsageError, match="--since"):
        since_time("yesterday", now)


def test_describe_says_what_happened_in_one_line():
    assert describe(EVENTS[1]) == "platform/api:1.0"
    assert describe(EVENTS[3]) == "platform/web@sha256:bb"
    assert describe(EVENTS[2]) == "unknown name"
    narrowed = {"event": "token", "requested": ["repository:a/b:push,pull"],
                "granted": ["repository:a/b:pull"]}
    assert describe(narrowed) == "granted repository:a/b:pull (asked repository:a/b:push,pull)"


def test_notifications_become_push_and_delete_lines_with_the_actor():
    lines = []

    def capture(event, **fields):
        lines.append({"event": event, **fields})

    manifest = "application/vnd.oci.image.manifest.v1+json"
    label = {"alice": "user:alice", "ci-platform": "robot:ci-platform"}.get
    record_event(capture, {"action": "push", "actor": {"name": "ci-platform"},
                           "target": {"mediaType": manifest, "repository": "platform/api",
                                      "tag": "1", "digest": "sha256:aa"},
                           "request": {"addr": "10.0.0.7:41234"}}, label)
    record_event(capture, {"action": "push", "actor": {"name": "alice"},
                           "target": {"mediaType": "application/octet-stream"}}, label)
    record_event(capture, {"action": "pull", "actor": {"name": "alice"},
                           "target": {"mediaType": manifest}}, label)
    record_event(capture, {"action": "delete", "actor": {"name": "alice"},
                           "target": {"repository": "platform/api", "digest": "sha256:aa"}},
                 label)
    assert [(line["event"], line["subject"]) for line in lines] == [
        ("push", "robot:ci-platform"), ("delete", "user:alice")]
    assert lines[0]["client_ip"] == "10.0.0.7" and lines[0]["tag"] == "1"
