"""Managed units without a host: when the deploy applies a unit, and what a unit's
digest depends on."""

from __future__ import annotations

from regops.deploy.units import Input, Unit, UnitState, reason_to_apply


def _unit(*contents: bytes) -> Unit:
    return Unit("u", "the unit", "/usr/local/sbin/regops-u",
                tuple(Input(f"/etc/u/{n}", c) for n, c in enumerate(contents)))


def test_digest_follows_every_input_and_its_path():
    base = _unit(b"a", b"b").digest
    assert _unit(b"a", b"b").digest == base
    assert _unit(b"a", b"c").digest != base
    assert _unit(b"b", b"a").digest != base  # same contents, other files
    moved = Unit("u", "the unit", "/x", (Input("/etc/other/0", b"a"), Input("/etc/u/1", b"b")))
    assert moved.digest != base
    secret = Unit("u", "the unit", "/x", (Input("/etc/u/0", b"a", mode="0400", secret=True),
                                          Input("/etc/u/1", b"b")))
    assert secret.digest == base  # who may read a file is not what the unit runs


def test_the_unit_is_applied_unless_it_runs_what_is_declared():
    digest = _unit(b"a").digest
    assert reason_to_apply({"running": "yes", "applied": digest}, digest) is None
    assert reason_to_apply({}, digest) == "it is not there yet"
    assert reason_to_apply({"running": "missing"}, digest) == "it is not there yet"
    assert reason_to_apply({"running": "no", "applied": digest}, digest) == "it is not running"
    assert reason_to_apply({"running": "yes", "applied": "0" * 16}, digest) == (
        "it runs other inputs than declared")
    assert reason_to_apply({"running": "yes", "applied": ""}, digest) is not None
    left = {"running": "yes", "applied": digest, "mode": "gc"}
    assert reason_to_apply(left, digest) == "it was left in mode gc"
    assert reason_to_apply({**left, "mode": "normal"}, digest) is None


def test_state_is_read_from_key_value_lines():
    fact = UnitState()
    assert fact.process(["busy=garbage collection (since x)", "running=yes", "applied=abc",
                         "mode=normal", "noise"]) == {
        "busy": "garbage collection (since x)", "running": "yes", "applied": "abc",
        "mode": "normal"}
    assert "running=missing" in fact.command("/usr/local/sbin/regops-u")
