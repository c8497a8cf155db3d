"""Retention policies: parsing, validation and tag selection, without a registry."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regops.config.settings import ConfigError, check_data
from regops.registry import retention
from regops.registry.retention import Candidate, PolicyError, make_policy, parse_duration, select

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n - 1)


def builds(n: int) -> list[Candidate]:
    """build-01..build-NN, one day apart, each its own digest."""
    return [Candidate(f"build-{i:02d}", f"sha256:{i:064x}", day(i)) for i in range(1, n + 1)]


def deleted(selection: retention.Selection) -> set[str]:
    return set(selection.deleted_tags)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(retention.format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "3 0d", "1.5d", "-1d", "0d", 30, None])
def test_bad_durations_are_refused(text):
    with pytest.raises(PolicyError):
        parse_duration(text)


@pytest.mark.parametrize(
    "pattern, name, hit",
    [
        ("team/*/service", "team/a/service", True),
        ("team/*/service", "team/a/b/service", False),  # * stays within one level
        ("team/**/service", "team/a/b/service", True),
        ("team/**/service", "team/service", True),
        ("team/**", "team/a/b", True),
        ("team/**", "teamx/a", False),
        ("team/*", "team/a/b", False),
        ("t?am/x", "team/x", True),
        ("app-[0-9]", "app-7", True),
        ("app-[!0-9]", "app-7", False),
        ("re:team/(a|b)/.*", "team/b/x", True),
        ("re:team/(a|b)", "team/b/x", False),  # regexes match the whole name
        ("pr-*", "pr-12", True),
        ("pr-*", "xpr-12", False),
        ("v1.2", "v1x2", False),  # dots are literal in globs
    ],
)
def test_patterns(pattern, name, hit):
    assert bool(retention.compile_pattern(pattern).match(name)) is hit


def test_semver_keyword_protects_releases_only():
    protect = retention.Matcher.of(["latest", "semver"], keywords=True)
    for tag in ("latest", "1.2.3", "v1.2.3", "v10.0.12"):
        assert protect(tag), tag
    for tag in ("1.2", "v1.2.3-rc1", "1.2.3.4", "01.2.3", "semver", "latest-x", "v1.2.3+b"):
        assert not protect(tag), tag


def test_policy_defaults():
    policy = make_policy({"repositories": "team/*", "keep_last": 3})
    assert policy.as_dict() == {
        "repositories": ["team/*"],
        "keep_last": 3,
        "older_than": None,
        "include": ["*"],
        "exclude": [],
        "protect": ["latest", "semver"],
    }


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("team/*", "must be a map"),
        ({"keep_last": 3}, "repositories is required"),
        ({"repositories": [], "keep_last": 3}, "at least one pattern"),
        ({"repositories": "a"}, "needs keep_last and/or older_than"),
        ({"repositories": "a", "keep_last": -1}, "keep_last must be an integer >= 0"),
        ({"repositories": "a", "keep_last": True}, "keep_last must be an integer"),
        ({"repositories": "a", "keep_last": "3"}, "keep_last must be an integer"),
        ({"repositories": "a", "older_than": "soon"}, "not a duration"),
        ({"repositories": "a", "keep_last": 1, "exclude": [3]}, "exclude must be a pattern"),
        ({"repositories": "a", "keep_last": 1, "include": ["re:("]}, "not a valid pattern"),
        ({"repositories": "a", "keep_last": 1, "keep": 2}, "unknown key 'keep'"),
    ],
)
def test_bad_policies_say_what_is_wrong(raw, problem):
    with pytest.raises(PolicyError, match=problem):
        make_policy(raw)


def test_inventory_errors_are_one_line_with_host_and_key(secrets_dir):
    good = {"repositories": "a/*", "older_than": "30d"}
    assert len(retention.parse_policies([good, good])) == 2
    assert retention.parse_policies(None) == []
    data = {"registry_secrets_dir": str(secrets_dir)}
    with pytest.raises(ConfigError) as info:
        check_data("h1", {**data, retention.KEY: [good, {"repositories": "b", "keep_last": "x"}]})
    assert str(info.value) == (
        "h1: registry_retention: policy 2: keep_last must be an integer >= 0, got 'x'"
    )
    with pytest.raises(ConfigError, match=r"^h1: registry_retention: must be a list"):
        check_data("h1", {**data, retention.KEY: {"repositories": "a"}})


def test_prune_reports_bad_inventory_policy_before_touching_any_registry(tmp_path):
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "hosts = [('h1', {'registry_retention': [{'repositories': 'a/*', 'keep_last': 3,"
        " 'older_than': 'a month'}]})]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "regops.cli", "prune", "-i", str(inventory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "regops: error: h1: registry_retention: policy 1: 'a month' is not a duration "
        "like '30d', '12h' or '2w' (units s m h d w)"
    )


def test_prune_without_any_policy_is_a_usage_error(tmp_path):
    inventory = tmp_path / "inv.py"
    inventory.write_text("hosts = ['h1']\n")
    result = subprocess.run(
        [sys.executable, "-m", "regops.cli", "prune", "-i", str(inventory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no retention policy" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "regops.cli", "prune", "-i", str(inventory), "--keep-last", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--repo PATTERN is required" in result.stderr


# --------------------------------------------------------------------------- selection


def test_keep_last_keeps_the_newest_n_plus_protected():
    tags = builds(10) + [
        Candidate("latest", "sha256:" + "a" * 64, day(1)),
        Candidate("v1.2.3", "sha256:" + "b" * 64, day(1)),
    ]
    policy = make_policy({"repositories": "*", "keep_last": 3})
    result = select(tags, [policy], NOW)
    assert deleted(result) == {f"build-{i:02d}" for i in range(1, 8)}
    assert result.decisions["build-10"].reason == "newest 3"
    assert result.decisions["latest"].reason == "protected"
    assert result.decisions["build-01"].reason == "not in newest 3"


def test_newest_is_by_created_time_not_by_name_and_ties_by_natural_tag_order():
    tags = [
        Candidate("zzz-old", "sha256:" + "1" * 64, day(1)),
        Candidate("aaa-new", "sha256:" + "2" * 64, day(9)),
        Candidate("v9", "sha256:" + "3" * 64, day(5)),
        Candidate("v10", "sha256:" + "4" * 64, day(5)),  # same time: v10 counts as newer
    ]
    result = select(tags, [make_policy({"repositories": "*", "keep_last": 2, "protect": []})], NOW)
    assert deleted(result) == {"zzz-old", "v9"}


def test_older_than_and_keep_last_must_both_agree():
    tags = builds(10)
    now = day(10) + timedelta(hours=12)
    only_age = make_policy({"repositories": "*", "older_than": "5d"})
    assert deleted(select(tags, [only_age], now)) == {f"build-{i:02d}" for i in range(1, 6)}
    both = make_policy({"repositories": "*", "older_than": "5d", "keep_last": 7})
    assert deleted(select(tags, [both], now)) == {"build-01", "build-02", "build-03"}
    assert select(tags, [both], now).decisions["build-01"].reason == (
        "not in newest 7 and older than 5d"
    )
    few = make_policy({"repositories": "*", "older_than": "5d", "keep_last": 2})
    result = select(tags, [few], now)
    assert deleted(result) == {f"build-{i:02d}" for i in range(1, 6)}
    assert result.decisions["build-06"].reason == "younger than 5d"
    assert result.decisions["build-09"].reason == "newest 2"


def test_include_and_exclude_limit_the_scope():
    tags = builds(4) + [Candidate(f"pr-{i}", f"sha256:{i + 100:064x}", day(i)) for i in range(1, 5)]
    policy = make_policy(
        {"repositories": "*", "keep_last": 1, "include": ["pr-*"], "exclude": ["pr-2"]}
    )
    result = select(tags, [policy], NOW)
    assert deleted(result) == {"pr-1", "pr-3"}
    assert result.decisions["build-01"].reason == "no policy covers it"
    regex = make_policy({"repositories": "*", "keep_last": 0, "include": [r"re:build-0[12]"]})
    assert deleted(select(tags, [regex], NOW)) == {"build-01", "build-02"}


def test_a_shared_digest_goes_only_when_all_its_tags_are_selected():
    tags = builds(6)
    shared = tags[0].digest
    tags.append(Candidate("stable", shared, day(1)))  # out of scope below: kept
    tags.append(Candidate("build-01-alias", tags[1].digest, day(2)))  # selected too
    policy = make_policy({"repositories": "*", "keep_last": 2, "include": ["build-*"]})
    result = select(tags, [policy], NOW)
    assert "build-01" not in deleted(result)
    assert result.decisions["build-01"].reason == "shares its digest with kept stable"
    assert result.held == {shared: ["build-01"]}
    assert result.delete_digests[tags[1].digest] == ["build-01-alias", "build-02"]
    assert deleted(result) == {"build-01-alias", "build-02", "build-03", "build-04"}


def test_a_multi_arch_image_is_one_candidate_and_its_children_are_never_deleted_alone():
    child_a, child_b = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    tags = builds(3) + [
        Candidate("multi", "sha256:" + "e" * 64, day(20), frozenset({child_a, child_b})),
        # someone tagged one child directly; it is old, but the kept index needs it
        Candidate("amd64-only", child_a, day(0)),
    ]
    policy = make_policy({"repositories": "*", "keep_last": 1})
    result = select(tags, [policy], NOW)
    assert "multi" not in deleted(result)
    assert result.decisions["amd64-only"].reason == "its digest is part of a kept multi-arch image"
    assert child_a not in result.delete_digests
    assert deleted(result) == {"build-01", "build-02", "build-03"}
    # Once the index itself is selected, the directly tagged child may go too.
    policy = make_policy({"repositories": "*", "keep_last": 0})
    assert {"multi", "amd64-only"} <= deleted(select(tags, [policy], NOW))


def test_unknown_created_time_is_kept():
    tags = builds(3) + [Candidate("mystery", "sha256:" + "f" * 64, None)]
    result = select(tags, [make_policy({"repositories": "*", "keep_last": 0})], NOW)
    assert result.decisions["mystery"].reason == "created time unknown"
    assert deleted(result) == {"build-01", "build-02", "build-03"}


def test_several_policies_a_keep_wins():
    tags = builds(6)
    aggressive = make_policy({"repositories": "team/*", "keep_last": 1})
    careful = make_policy({"repositories": "team/app", "keep_last": 4})
    assert retention.policies_for("team/app", [aggressive, careful]) == [aggressive, careful]
    assert retention.policies_for("team/x/y", [aggressive, careful]) == []
    assert deleted(select(tags, [aggressive], NOW)) == {f"build-0{i}" for i in range(1, 6)}
    assert deleted(select(tags, [aggressive, careful], NOW)) == {"build-01", "build-02"}
    # A tag protected by one policy is not deleted by another.
    protective = make_policy({"repositories": "*", "keep_last": 6, "protect": ["build-01"]})
    assert "build-01" not in deleted(select(tags, [aggressive, protective], NOW))


def test_selection_of_a_thousand_tags_is_correct():
    tags = builds(999) + [Candidate("latest", "sha256:" + "a" * 64, day(1))]
    result = select(tags, [make_policy({"repositories": "*", "keep_last": 10})], NOW)
    assert len(result.deleted_tags) == 989
    assert "build-999" not in result.deleted_tags and "latest" not in result.deleted_tags
