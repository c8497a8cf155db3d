"""Day-2 content commands against a real registry: catalog, tags, delete, prune, du.

The CLI runs as a subprocess against the sandbox inventory, so option parsing,
inventory loading, login and output are the real ones. Images are pushed by
skopeo, or straight through the registry API where many small ones are needed
(105 repositories). Only sb1, and only repositories under t50/.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from regops.registry import images
from regops.sandbox import oci
from tests.support.sandbox import (
    ROOT,
    SANDBOX,
    assert_blobs_hash_to_their_digests,
    client,
    pull,
    push,
    registry_du,
    ssh_host,
)

pytestmark = pytest.mark.sandbox

KiB = 1024


@pytest.fixture(scope="module")
def sb1(hosts: dict[str, dict]) -> dict:
    return hosts["sb1"]


def cli(*args: str, inventory: str = "inventories/sandbox.py") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "regops.cli", *args, "-i", inventory, "--host", "sb1"],
        cwd=ROOT,
        env={**os.environ, "REGOPS_SANDBOX": SANDBOX},
        capture_output=True,
        text=True,
        timeout=900,
    )


def cli_json(*args: str, expect: int = 0, **kwargs: Any) -> Any:
    result = cli(*args, "--json", **kwargs)
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout)


def api_push(
    c, repository: str, tag: str, created: str, layers: list[bytes], docker: bool = False
) -> str:
    config = images.image_config(created)
    for blob in [config, *layers]:
        images.upload_blob(c, repository, blob)
    kind, body = images.image_manifest(config, layers, docker=docker)
    return images.put_manifest(c, repository, tag, kind, body)


def pull_and_verify(
    h: dict, repository: str, tag: str, dest: Path, digest: str, all_images: bool = False
) -> None:
    """skopeo pulls the tag; the manifest digest matches and every blob hashes right."""
    result = pull(h, repository, tag, dest, all_images=all_images)
    assert result.returncode == 0, result.stderr
    top = json.loads((dest / "index.json").read_text())["manifests"]
    assert [m["digest"] for m in top] == [digest]
    assert_blobs_hash_to_their_digests(dest)


def oci_index(layout: Path, tag: str, children: dict[str, oci.Descriptor]) -> oci.Descriptor:
    """An OCI index over images already in `layout` (oci.multiarch fixes their created time)."""
    entries = [
        {**d.as_dict(), "platform": {"os": "linux", "architecture": arch}}
        for arch, d in children.items()
    ]
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": oci.INDEX, "manifests": entries}, sort_keys=True
    ).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    top = oci.Descriptor(oci.INDEX, f"sha256:{digest}", len(body))
    tag_in_layout(layout, tag, top)
    return top


def tag_in_layout(layout: Path, tag: str, top: oci.Descriptor) -> None:
    """Point one more tag of the layout at an existing manifest or index."""
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "manifests": []}
    )
    index["manifests"].append(
        {**top.as_dict(), "annotations": {"org.opencontainers.image.ref.name": tag}}
    )
    index_path.write_text(json.dumps(index))


def registry_tags(c, repository: str) -> dict[str, str]:
    return {t: c.digest(repository, t) for t in c.tags(repository)}


# --------------------------------------------------------------------------- catalog, tags


def test_catalog_and_tags_follow_pagination_across_three_level_namespaces(sb1):
    c = client(sb1)
    layer, config = os.urandom(512), images.image_config("2026-01-05T06:07:08.123456789Z")
    kind, body = images.image_manifest(config, [layer])
    first = "t50/pages/ns0/svc000"
    repositories = [f"t50/pages/ns{i % 3}/svc{i:03d}" for i in range(105)]
    images.upload_blob(c, first, layer)
    images.upload_blob(c, first, config)

    bare_kind, bare = images.image_manifest(config, [])  # config only: fewer requests

    def push(repository: str) -> None:
        if repository == first:
            images.put_manifest(c, repository, "1.0", kind, body)
        else:
            images.upload_blob(c, repository, config, mount_from=first)
            images.put_manifest(c, repository, "1.0", bare_kind, bare)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push, repositories))
        # tags/list is not paged by distribution 2.8 (it ignores n), so a few tags do.
        list(pool.map(lambda n: images.put_manifest(c, first, f"t{n:03d}", kind, body), range(3)))
    # The registry really pages: one page holds 100, and it links to the next.
    page = c.request("GET", "/v2/_catalog?n=100")
    assert len(page.json()["repositories"]) == 100
    assert 'rel="next"' in page.headers.get("Link", "")

    listed = cli_json("catalog")["repositories"]
    assert set(repositories) <= set(listed)
    assert listed == sorted(set(listed))

    doc = cli_json("tags", first)
    assert doc["repository"] == first
    by_tag = {t["tag"]: t for t in doc["tags"]}
    assert {"1.0", "t000", "t001", "t002"} <= set(by_tag)
    entry = by_tag["t002"]
    assert entry == {
        "tag": "t002",
        "digest": images.sha256(body),
        "media_type": kind,
        "index": False,
        "size": len(config) + len(layer),
        "created": "2026-01-05T06:07:08Z",
        "platforms": [],
    }

    text = cli("tags", first)
    assert text.returncode == 0 and "t002" in text.stdout and "2026-01-05T06:07:08Z" in text.stdout
    missing = cli("tags", "t50/pages/nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "regops: error: repository 't50/pages/nope' not found"


def test_tags_show_platforms_sizes_and_newest_child_time_of_multi_arch_images(sb1, tmp_path):
    layout = tmp_path / "multi"
    amd = oci.image(
        layout,
        "x-amd64",
        [{"bin": os.urandom(3 * KiB)}],
        arch="amd64",
        created="2026-01-02T00:00:00Z",
        write_tag=False,
    )
    arm = oci.image(
        layout,
        "x-arm64",
        [{"bin": os.urandom(5 * KiB)}],
        arch="arm64",
        created="2026-01-04T00:00:00Z",
        write_tag=False,
    )
    top = oci_index(layout, "multi", {"amd64": amd, "arm64": arm})
    assert push(sb1, layout, "multi", "t50/tags/multi", all_images=True).returncode == 0
    doc = cli_json("tags", "t50/tags/multi")
    [entry] = doc["tags"]
    assert entry["digest"] == top.digest and entry["index"] is True
    assert entry["platforms"] == ["linux/amd64", "linux/arm64"]
    assert entry["created"] == "2026-01-04T00:00:00Z"
    children = [
        json.loads((layout / "blobs" / "sha256" / d.digest[7:]).read_bytes()) for d in (amd, arm)
    ]
    assert entry["size"] == sum(
        m["config"]["size"] + sum(x["size"] for x in m["layers"]) for m in children
    )


# --------------------------------------------------------------------------- delete


def test_delete_of_a_shared_digest_is_refused_then_all_tags_go_with_all_tags(sb1, tmp_path):
    c, repo = client(sb1), "t50/del/app"
    layout = tmp_path / "app"
    shared = oci.image(layout, "a", [{"f": os.urandom(4 * KiB)}])
    tag_in_layout(layout, "b", shared)
    other = oci.image(layout, "c", [{"f": os.urandom(4 * KiB)}])
    for tag in ("a", "b", "c"):
        assert push(sb1, layout, tag, repo).returncode == 0
    assert registry_tags(c, repo) == {"a": shared.digest, "b": shared.digest, "c": other.digest}

    refused = cli("delete", f"{repo}:a")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"regops: error: refused: {repo}:a shares digest {shared.digest} with b; the API "
        "deletes all of them: add --all-tags to delete a, b"
    )
    doc = cli_json("delete", f"{repo}:a", expect=1)
    assert doc["deleted"] is False and doc["tags"] == ["a", "b"]
    assert registry_tags(c, repo) == {"a": shared.digest, "b": shared.digest, "c": other.digest}

    doc = cli_json("delete", f"{repo}:a", "--all-tags")
    assert doc["deleted"] is True and doc["tags"] == ["a", "b"]
    assert registry_tags(c, repo) == {"c": other.digest}
    assert cli("delete", f"{repo}:a").stderr.strip() == (
        f"regops: error: {repo}:a: no such tag or digest"
    )


def test_delete_of_an_oci_index_and_a_docker_manifest_list(sb1, tmp_path):
    c, repo = client(sb1), "t50/del/multi"
    layout = tmp_path / "oci"
    top = oci.multiarch(
        layout,
        "oci",
        {"amd64": [{"a": os.urandom(2 * KiB)}], "arm64": [{"r": os.urandom(2 * KiB)}]},
    )
    assert push(sb1, layout, "oci", repo, all_images=True).returncode == 0

    # A Docker manifest list over Docker v2 schema 2 images, through the API.
    children = []
    for platform in ("linux/amd64", "linux/arm64/v8"):
        config = images.image_config("2026-01-03T00:00:00Z", platform.split("/")[1])
        layer = os.urandom(3 * KiB)
        for blob in (config, layer):
            images.upload_blob(c, repo, blob)
        kind, body = images.image_manifest(config, [layer], docker=True)
        images.put_manifest(c, repo, images.sha256(body), kind, body)
        children.append((kind, body, platform))
    kind, body = images.index_manifest(children, docker=True)
    docker_list = images.put_manifest(c, repo, "docker", kind, body)
    # Someone also tagged one child directly.
    amd64 = images.put_manifest(c, repo, "amd64-only", children[0][0], children[0][1])

    listed = {t["tag"]: t for t in cli_json("tags", repo)["tags"]}
    assert listed["docker"]["media_type"] == images.DOCKER_LIST
    assert listed["docker"]["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert listed["oci"]["media_type"] == images.OCI_INDEX

    # Deleting the child by itself would break the list: refused.
    refused = cli("delete", f"{repo}:amd64-only")
    assert refused.returncode == 1
    assert "part of the multi-arch image(s) docker" in refused.stderr

    doc = cli_json("delete", f"{repo}:oci")
    assert doc["deleted"] is True and doc["index"] is True and doc["digest"] == top.digest
    assert sorted(ch["platform"] for ch in doc["untagged_children"]) == [
        "linux/amd64",
        "linux/arm64",
    ]
    text = cli("delete", f"{repo}:docker")
    assert text.returncode == 0, text.stderr
    assert f"deleted {repo}@{docker_list}" in text.stdout
    assert "2 child manifest(s) are now untagged" in text.stdout
    assert "--delete-untagged" in text.stdout

    assert registry_tags(c, repo) == {"amd64-only": amd64}
    for digest in (top.digest, docker_list):
        assert c.request("GET", f"/v2/{repo}/manifests/{digest}").status == 404
    # The children were not deleted one by one: they stay, untagged, for GC to decide.
    for child in [*doc["untagged_children"], {"digest": images.sha256(children[1][1])}]:
        assert (
            c.request(
                "HEAD",
                f"/v2/{repo}/manifests/{child['digest']}",
                headers={"Accept": ",".join(images.IMAGE_TYPES)},
            ).status
            == 200
        )


# --------------------------------------------------------------------------- prune, du, gc


PRUNE_REPO = "t50/prune/app"


@pytest.fixture(scope="module")
def prune_repo(sb1, tmp_path_factory) -> dict[str, Any]:
    """10 builds a day apart, `latest` on build-02, an old release, an old and a new
    multi-arch image; every image has its own 256 KiB layer."""
    layout = tmp_path_factory.mktemp("prune") / "layout"
    pushed: dict[str, str] = {}
    for n in range(1, 11):
        tag = f"build-{n:02d}"
        top = oci.image(
            layout, tag, [{"l": os.urandom(256 * KiB)}], created=f"2026-01-{n:02d}T00:00:00Z"
        )
        pushed[tag] = top.digest
        if n == 2:
            tag_in_layout(layout, "latest", top)
    pushed["v1.2.3"] = oci.image(
        layout, "v1.2.3", [{"l": os.urandom(256 * KiB)}], created="2025-06-01T00:00:00Z"
    ).digest
    for tag, created in (
        ("multi-old", "2025-12-01T00:00:00Z"),
        ("multi-new", "2026-02-01T00:00:00Z"),
    ):
        kids = {
            arch: oci.image(
                layout,
                f"{tag}-{arch}",
                [{"l": os.urandom(256 * KiB)}],
                arch=arch,
                created=created,
                write_tag=False,
            )
            for arch in ("amd64", "arm64")
        }
        pushed[tag] = oci_index(layout, tag, kids).digest
    pushed["latest"] = pushed["build-02"]
    for tag in pushed:
        result = push(sb1, layout, tag, PRUNE_REPO, all_images=tag.startswith("multi"))
        assert result.returncode == 0, result.stderr
    c = client(sb1)
    assert registry_tags(c, PRUNE_REPO) == pushed
    return pushed


def test_prune_keep_last_3_dry_run_then_apply_then_gc(sb1, prune_repo, tmp_path):
    c = client(sb1)
    doomed = {f"build-0{n}" for n in (1, 3, 4, 5, 6, 7, 8)} | {"multi-old"}
    survivors = set(prune_repo) - doomed

    plan = cli_json("prune", "--repo", "t50/prune/*", "--keep-last", "3")
    assert plan["dry_run"] is True
    [repo] = plan["repositories"]
    assert {t for d in repo["delete"] for t in d["tags"]} == doomed
    assert [d["index"] for d in repo["delete"] if d["tags"] == ["multi-old"]] == [True]
    assert repo["held"] == [
        {
            "digest": prune_repo["build-02"],
            "tags": ["build-02"],
            "reason": "shares its digest with kept latest",
        }
    ]
    reasons = {k["tag"]: k["reason"] for k in repo["keep"]}
    assert reasons["v1.2.3"] == reasons["latest"] == "protected"
    assert reasons["multi-new"] == reasons["build-10"] == reasons["build-09"] == "newest 3"
    assert repo["freed_bytes"] >= 7 * 256 * KiB
    assert repo["untagged_bytes"] >= 2 * 256 * KiB  # multi-old's children, until --delete-untagged
    assert plan["summary"]["tags_deleted"] == 8 and plan["summary"]["manifests_deleted"] == 8
    assert registry_tags(c, PRUNE_REPO) == prune_repo  # the dry run changed nothing

    text = cli("prune", "--repo", "t50/prune/*", "--keep-last", "3")
    assert text.returncode == 0, text.stderr
    assert "dry run: nothing was deleted" in text.stdout
    assert "build-02 kept: shares its digest with kept latest" in text.stdout

    usage_before = cli_json("du", "t50/prune")
    done = cli_json("prune", "--repo", "t50/prune/*", "--keep-last", "3", "--yes")
    assert done["dry_run"] is False
    assert len(done["repositories"][0]["deleted"]) == 8
    assert done["repositories"][0]["failed"] == []
    assert registry_tags(c, PRUNE_REPO) == {t: prune_repo[t] for t in survivors}
    usage_after = cli_json("du", "t50/prune/")
    assert (
        usage_before["repositories"][PRUNE_REPO]["bytes"]
        - usage_after["repositories"][PRUNE_REPO]["bytes"]
    ) >= 7 * 256 * KiB
    # Pruning again finds nothing more to do.
    again = cli_json("prune", "--repo", "t50/prune/*", "--keep-last", "3")
    assert again["summary"]["tags_deleted"] == 0

    before = registry_du(sb1)
    gc = ssh_host(sb1).run("/usr/local/sbin/regops-gc")
    assert gc.rc == 0, gc.stdout[-2000:] + gc.stderr[-2000:]
    after = registry_du(sb1)
    assert before - after >= 0.9 * repo["freed_bytes"]

    for tag in sorted(survivors):
        pull_and_verify(
            sb1,
            PRUNE_REPO,
            tag,
            tmp_path / tag,
            prune_repo[tag],
            all_images=tag.startswith("multi"),
        )
    # The old multi-arch image went as one: its tag, not a child by itself. Its
    # children stay, untagged, because GC runs without --delete-untagged.
    old_index = next(d for d in repo["delete"] if d["tags"] == ["multi-old"])
    assert c.request("GET", f"/v2/{PRUNE_REPO}/manifests/{old_index['digest']}").status == 404


def test_prune_with_the_policy_from_the_inventory(sb1, tmp_path):
    c, repo = client(sb1), "t50/inventory/app"
    for n in range(1, 5):
        api_push(c, repo, f"pr-{n}", f"2026-01-0{n}T00:00:00Z", [os.urandom(KiB)])
    api_push(c, repo, "main", "2026-01-01T00:00:00Z", [os.urandom(KiB)])
    inventory = tmp_path / "inventory.py"
    policy = [{"repositories": "t50/inventory/*", "keep_last": 1, "include": ["pr-*"]}]
    inventory.write_text(
        "import runpy\n"
        f"_base = runpy.run_path({str(ROOT / 'inventories' / 'sandbox.py')!r})\n"
        f"sandbox = [(n, {{**d, 'registry_retention': {policy!r}}}) for n, d in _base['sandbox']]\n"
    )
    plan = cli_json("prune", inventory=str(inventory))
    assert plan["policies"][0]["include"] == ["pr-*"]
    [entry] = plan["repositories"]
    assert {t for d in entry["delete"] for t in d["tags"]} == {"pr-1", "pr-2", "pr-3"}
    assert len(c.tags(repo)) == 5


def test_du_counts_a_blob_shared_across_repositories_once(sb1):
    c = client(sb1)
    base, own_a, own_b = os.urandom(64 * KiB), os.urandom(KiB), os.urandom(2 * KiB)
    api_push(c, "t50/du/team/a", "1", "2026-01-03T00:00:00Z", [base, own_a])
    api_push(c, "t50/du/team/b", "1", "2026-01-01T00:00:00Z", [base, own_b])
    api_push(c, "t50/du/team/b", "2", "2026-01-02T00:00:00Z", [base, own_b])
    # An unfinished push: the catalog lists the name, its tag list is a 404.
    images.upload_blob(c, "t50/du/partial", os.urandom(KiB))
    doc = cli_json("du", "t50/du")
    assert doc["namespace"] == "t50/du"
    repos, spaces = doc["repositories"], doc["namespaces"]
    a, b = repos["t50/du/team/a"], repos["t50/du/team/b"]
    team = spaces["t50/du/team"]
    assert a["bytes"] > len(base) + len(own_a) and b["tags"] == 2
    # Each repository holds the base; the namespace counts it once.
    assert team["bytes"] == a["bytes"] + b["bytes"] - len(base)
    assert team["repositories"] == 2 and team["tags"] == 3
    assert set(spaces) == {"t50/du", "t50/du/team"}  # not t50: it has more than these
    assert repos["t50/du/partial"] == {"bytes": 0, "blobs": 0, "tags": 0}
    assert spaces["t50/du"]["repositories"] == 3
    assert spaces["t50/du"]["bytes"] == team["bytes"] == doc["total"]["bytes"]
    assert doc["total"]["blobs"] == 1 + 2 + 3 + 3  # base, two own layers, configs, manifests
    text = cli("du", "t50/du")
    assert text.returncode == 0
    assert "t50/du/team/ (2 repositories)" in text.stdout


def test_patterns_that_match_nothing_say_so_and_fail(sb1):
    typo = cli("prune", "--repo", "no/such/repo", "--keep-last", "1")
    assert typo.returncode == 1
    assert "policy 1 (no/such/repo) matches none of the" in typo.stderr
    assert typo.stderr.count("\n") == 1
    empty = cli("du", "no/such")
    assert empty.returncode == 1 and "no repository in namespace 'no/such'" in empty.stderr
