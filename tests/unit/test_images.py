"""Manifest parsing, sizes, times and storage accounting, without a registry.

The Scanner test uses an in-memory stand-in for the API (pure logic: what is
read and cached); the real registry is exercised in tests/sandbox/test_50_images.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from regops.registry import images
from regops.registry.images import (
    Image,
    ManifestError,
    Scanner,
    disk_usage,
    freed_estimate,
    parse_manifest,
    split_reference,
)
from regops.util import human_bytes, natural_key
from regops_token.manifests import parse_time


class FakeApi:
    """Manifests and blobs by digest, tags by name; counts reads."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.tags: dict[str, str] = {}
        self.reads = 0

    def add_image(
        self,
        created: str,
        layers: list[bytes],
        arch: str = "amd64",
        docker: bool = False,
        tag: str | None = None,
    ) -> tuple[str, bytes]:
        config = images.image_config(created, arch)
        for blob in [config, *layers]:
            self.blobs[images.sha256(blob)] = blob
        kind, body = images.image_manifest(config, layers, docker=docker)
        self.manifests[images.sha256(body)] = (kind, body)
        if tag:
            self.tags[tag] = images.sha256(body)
        return kind, body

    def add_index(
        self, children: list[tuple[str, bytes, str]], tag: str, docker: bool = False
    ) -> str:
        kind, body = images.index_manifest(children, docker=docker)
        self.manifests[images.sha256(body)] = (kind, body)
        self.tags[tag] = images.sha256(body)
        return images.sha256(body)

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        self.reads += 1
        digest = self.tags.get(reference, reference)
        kind, body = self.manifests[digest]
        return digest, kind, body

    def blob(self, repository: str, digest: str) -> bytes:
        self.reads += 1
        return self.blobs[digest]


def test_parses_docker_and_oci_images_and_lists():
    api = FakeApi()
    for docker in (False, True):
        kind, body = api.add_image("2026-01-01T00:00:00Z", [b"a" * 10, b"b" * 20], docker=docker)
        m = parse_manifest(images.sha256(body), kind, body)
        assert not m.is_index
        assert m.config is not None and m.config.size == len(
            images.image_config("2026-01-01T00:00:00Z")
        )
        assert [layer.size for layer in m.layers] == [10, 20]
        child = (kind, body, "linux/arm/v7")
        index_kind, index_body = images.index_manifest([child], docker=docker)
        index = parse_manifest("sha256:x", index_kind, index_body)
        assert index.is_index
        assert index.media_type == (images.DOCKER_LIST if docker else images.OCI_INDEX)
        assert [(c.digest, c.platform) for c in index.children] == [
            (images.sha256(body), "linux/arm/v7")
        ]


def test_media_type_may_come_from_the_body_or_the_shape():
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest("sha256:x", "", body).is_index
    body = json.dumps(
        {"schemaVersion": 2, "config": {"digest": "sha256:c", "size": 2}, "layers": []}
    ).encode()
    assert parse_manifest("sha256:x", "", body).config == images.Descriptor("sha256:c", 2)


@pytest.mark.parametrize(
    "kind, body, problem",
    [
        (images.OCI_MANIFEST, b"not json", "not JSON"),
        (images.OCI_MANIFEST, b"[]", "not a JSON object"),
        (images.OCI_MANIFEST, b'{"config": {"digest": "sha256:c"}}', "without digest and size"),
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", b"{}", "unsupported"),
    ],
)
def test_bad_manifests_are_errors(kind, body, problem):
    with pytest.raises(ManifestError, match=problem):
        parse_manifest("sha256:x", kind, body)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T05:04:05.5+02:00", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_created_times_as_go_writes_them(text, expected):
    assert parse_time(text) == expected


def test_platform_names():
    assert images.platform_name({"os": "linux", "architecture": "arm64", "variant": "v8"}) == (
        "linux/arm64/v8"
    )
    assert images.platform_name({"os": "linux", "architecture": "amd64"}) == "linux/amd64"
    assert images.platform_name({"os": "unknown"}) is None
    assert images.platform_name(None) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("team/project/service:1.0", ("team/project/service", "1.0")),
        ("app:latest", ("app", "latest")),
        ("a/b@sha256:" + "0" * 64, ("a/b", "sha256:" + "0" * 64)),
        ("my-team/my_app.x:V_1-2", ("my-team/my_app.x", "V_1-2")),
    ],
)
def test_references(text, expected):
    assert split_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    ["app", "App:1", "a//b:1", "a/b:", ":1", "a:-x", "a:1@sha256:" + "0" * 64, "a@sha256:short"],
)
def test_bad_references(text):
    with pytest.raises(ValueError):
        split_reference(text)


def test_natural_order_and_human_bytes():
    assert sorted(["v1.10", "v1.9", "v1.2"], key=natural_key) == ["v1.2", "v1.9", "v1.10"]
    assert human_bytes(999) == "999 B"
    assert human_bytes(1500) == "1.5 kB"
    assert human_bytes(3_200_000) == "3.2 MB"
    assert human_bytes(None) == "-"


def _scan(api: FakeApi, tag: str) -> Image:
    return Scanner(api).image("r", tag)


def test_scanner_resolves_sizes_times_and_platforms_of_a_multi_arch_image():
    api = FakeApi()
    shared = b"s" * 100
    amd = api.add_image("2026-01-01T00:00:00Z", [shared, b"a" * 10])
    arm = api.add_image("2026-01-03T00:00:00Z", [shared, b"r" * 20], arch="arm64")
    api.add_index([(*amd, "linux/amd64"), (*arm, "linux/arm64/v8")], "multi")
    image = _scan(api, "multi")
    assert image.is_index
    assert image.platforms == ["linux/amd64", "linux/arm64/v8"]
    assert image.created == datetime(2026, 1, 3, tzinfo=UTC)  # the newest child
    config_sizes = sum(c.manifest.config.size for c in image.children)
    assert image.size == 100 + 10 + 20 + config_sizes  # the shared layer once
    # An index's own blobs are just itself: the children stay behind, untagged.
    assert image.own_blobs() == {image.digest: image.manifest.size}
    assert set(image.all_blobs()) == {
        image.digest,
        *image.child_digests(),
        *image.children[0].content(),
        *image.children[1].content(),
    }


def test_scanner_caches_children_and_configs_by_digest():
    api = FakeApi()
    single = api.add_image("2026-01-01T00:00:00Z", [b"x"], tag="a")
    api.tags["b"] = api.tags["a"]
    api.add_index([(*single, "linux/amd64")], "multi")
    scanner = Scanner(api)
    first = scanner.image("r", "a")
    reads = api.reads
    assert reads == 2  # manifest and config
    assert scanner.image("r", "b").digest == first.digest
    assert api.reads == reads + 1  # tags are always re-read, the config is cached
    scanner.image("r", "multi")
    assert api.reads == reads + 2  # the index; its child and config are cached
    assert Scanner(api, created=False).image("r", "a").created is None


def test_freed_estimate_counts_only_what_no_survivor_references():
    api = FakeApi()
    base = b"B" * 1000
    old = _scan(api, images.sha256(api.add_image("2026-01-01T00:00:00Z", [base, b"o" * 300])[1]))
    new = _scan(api, images.sha256(api.add_image("2026-01-02T00:00:00Z", [base, b"n" * 50])[1]))
    own = old.manifest.size + old.manifest.config.size + 300
    assert freed_estimate([old], [new]) == (own, 0)
    assert freed_estimate([old, new], []) == (
        own + new.manifest.size + new.manifest.config.size + 50 + 1000,
        0,
    )


def test_freed_estimate_of_a_multi_arch_image_needs_delete_untagged_for_its_children():
    api = FakeApi()
    amd = api.add_image("2026-01-01T00:00:00Z", [b"a" * 500])
    arm = api.add_image("2026-01-01T00:00:00Z", [b"r" * 700], arch="arm64")
    api.add_index([(*amd, "linux/amd64"), (*arm, "linux/arm64")], "multi")
    multi = _scan(api, "multi")
    plain, untagged = freed_estimate([multi], [])
    assert plain == multi.manifest.size
    assert untagged == sum(c.manifest.size + c.size for c in multi.children)
    # A survivor that shares a child (same digest) keeps it entirely.
    assert freed_estimate([multi], [multi.children[0]])[1] == (
        multi.children[1].manifest.size + multi.children[1].size
    )


def test_disk_usage_counts_shared_blobs_once_per_aggregate():
    blobs = {
        "team/a/svc": {"sha256:base": 1000, "sha256:a": 10},
        "team/a/web": {"sha256:base": 1000, "sha256:w": 20},
        "team/b": {"sha256:b": 30},
        "other": {"sha256:base": 1000},
        "team/a": {"sha256:x": 1},  # a repository and a namespace of the same name
    }
    per_repo, per_ns, total = disk_usage(blobs, {"team/a/svc": 2, "team/a/web": 1})
    assert per_repo["team/a/svc"].bytes == 1010 and per_repo["team/a/svc"].tags == 2
    assert set(per_ns) == {"team", "team/a"}  # `other` has no namespace
    assert per_ns["team/a"].bytes == 1000 + 10 + 20 + 1
    assert per_ns["team/a"].repositories == 3
    assert per_ns["team"].bytes == 1000 + 10 + 20 + 30 + 1
    assert per_ns["team"].tags == 3
    assert total.bytes == 1000 + 10 + 20 + 30 + 1 and total.blobs == 5
    assert total.repositories == 5
    assert images.namespaces("a/b/c") == ["a", "a/b"]


def test_policies_that_match_nothing_are_named():
    from regops.registry.prune import unmatched
    from regops.registry.retention import make_policy

    policies = [make_policy({"repositories": "team/*/app", "keep_last": 1}),
                make_policy({"repositories": "no/such/repo", "keep_last": 1})]
    assert unmatched(policies, ["team/a/app", "other/x"]) == ["policy 2 (no/such/repo)"]
    assert unmatched(policies, []) == ["policy 1 (team/*/app)", "policy 2 (no/such/repo)"]


@pytest.mark.parametrize("command", [["catalog"], ["tags", "a/b"], ["delete", "a/b:1"],
                                     ["prune", "--repo", "a/*", "--keep-last", "1"], ["du"]])
def test_a_missing_ca_file_is_one_line_not_a_traceback(tmp_path, command):
    inventory = tmp_path / "inventory.py"
    data = {"registry_secrets_dir": str(tmp_path / "secrets"),
            "registry_api_url": "https://127.0.0.1:9"}
    inventory.write_text(f"hosts = [('reg.example.org', {data!r})]\n")
    result = subprocess.run([sys.executable, "-m", "regops.cli", *command, "-i", str(inventory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("regops: error: reg.example.org: no CA certificate at ")
