"""Day-2 commands on a registry's content: catalog, tags, delete, prune, du.

All go through the registry HTTP API as a registry user, from the operator's
machine: `-i INVENTORY` (or $REGOPS_INVENTORY), `--host` picks the inventory
host (default: the first), `--user` the registry user (default: the first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from regops.cli.common import emit_json, inventory_option, progress_bars, workers_option
from regops.config.settings import Settings
from regops.errors import RegopsError, UsageError
from regops.inventory import InventoryHost, load_inventory
from regops.registry import retention
from regops.registry.client import RegistryClient, RegistryError
from regops.registry.endpoint import login_client
from regops.registry.images import Scanner, disk_usage, split_reference
from regops.registry.prune import (
    UNTAGGED_NOTE,
    apply_prune,
    delete_problem,
    image_doc,
    listed_tags,
    plan_prune,
    total_freed,
    unmatched,
)
from regops.registry.retention import Policy, PolicyError
from regops.util import format_time, human_bytes, natural_key, parallel, parse_time, plural, table

F = Callable[..., Any]


def _options(fn: F) -> F:
    """-i, --host, --user, --json: how every content command picks its registry."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(fn)
    fn = click.option(
        "--user", metavar="NAME", help="Registry user to log in as [default: the first one]."
    )(fn)
    fn = click.option(
        "--host",
        "host_name",
        metavar="NAME",
        help="Inventory host whose registry to use [default: the first].",
    )(fn)
    return inventory_option(fn)


def pick_host(inventory: str, host_name: str | None) -> InventoryHost:
    try:
        hosts = load_inventory(inventory)
    except UsageError:
        raise
    except Exception as error:  # the inventory is Python: anything can go wrong in it
        raise UsageError(f"{inventory}: cannot load the inventory: {error}") from None
    if not hosts:
        raise UsageError(f"{inventory}: no hosts in the inventory")
    if host_name is None:
        return hosts[0]
    for host in hosts:
        if host.name == host_name:
            return host
    names = ", ".join(h.name for h in hosts)
    raise UsageError(f"{inventory}: no host {host_name!r} (hosts: {names})")


@dataclass
class Target:
    """The inventory host a command works on, and a client logged in to its registry."""

    name: str
    settings: Settings
    client: RegistryClient


def connect(host: InventoryHost, user: str | None) -> Target:
    settings = host.settings()
    return Target(host.name, settings, login_client(settings, user))


def _repo_tags(client: RegistryClient, repository: str) -> list[str]:
    try:
        return sorted(client.tags(repository), key=natural_key)
    except RegistryError as error:
        if error.status == 404:
            raise RegopsError(f"repository {repository!r} not found") from None
        raise


# --------------------------------------------------------------------------- catalog, tags


@click.command()
@_options
def catalog(inventory: str, host_name: str | None, user: str | None, as_json: bool) -> None:
    """List every repository, nested namespaces included (all pages of the API)."""
    target = connect(pick_host(inventory, host_name), user)
    repositories = sorted(target.client.catalog())
    if as_json:
        emit_json({"host": target.name, "repositories": repositories})
    else:
        for name in repositories:
            click.echo(name)


@click.command()
@click.argument("repository")
@_options
@workers_option
def tags(
    repository: str,
    inventory: str,
    host_name: str | None,
    user: str | None,
    as_json: bool,
    workers: int,
) -> None:
    """List a repository's tags with digest, size, created time and platforms.

    Size is config plus layers (for a multi-arch image, of all its children);
    created comes from the image config (for a multi-arch image, its newest child).
    """
    target = connect(pick_host(inventory, host_name), user)
    names = _repo_tags(target.client, repository)
    scanner = Scanner(target.client)
    with progress_bars(not as_json)("reading manifests", len(names)) as tick:
        images = parallel(lambda t: scanner.image(repository, t), names, workers, tick)
    entries: list[dict[str, Any]] = []
    errors: list[str] = []
    for tag, image in zip(names, images, strict=True):
        if isinstance(image, Exception):
            errors.append(f"{repository}:{tag}: {image}")
            entries.append({"tag": tag, "error": str(image)})
        else:
            entries.append(image_doc(tag, image))
    if as_json:
        emit_json({"host": target.name, "repository": repository, "tags": entries})
    else:
        rows = [["TAG", "DIGEST", "SIZE", "CREATED", "PLATFORMS"]]
        for e in entries:
            if "error" in e:
                continue
            rows.append(
                [
                    e["tag"],
                    e["digest"][:19],
                    human_bytes(e["size"]),
                    e["created"] or "-",
                    ",".join(e["platforms"]) or "-",
                ]
            )
        click.echo(table(rows))
    if errors:
        raise RegopsError("; ".join(errors))


# --------------------------------------------------------------------------- delete


@click.command()
@click.argument("reference", metavar="REPO:TAG")
@click.option(
    "--all-tags",
    is_flag=True,
    help="Also delete the other tags on the same digest (the API deletes them all).",
)
@_options
@workers_option
def delete(
    reference: str,
    all_tags: bool,
    inventory: str,
    host_name: str | None,
    user: str | None,
    as_json: bool,
    workers: int,
) -> None:
    """Delete the image a tag points at (REPO:TAG, or REPO@sha256:... for a digest).

    The registry deletes by digest, which removes every tag on that digest:
    refused when other tags share it unless --all-tags. A multi-arch image goes
    as one: its index is deleted, its children stay as untagged manifests until
    a GC with --delete-untagged. Space returns after the next GC.
    """
    try:
        repository, ref = split_reference(reference)
    except ValueError as error:
        raise UsageError(str(error)) from None
    target = connect(pick_host(inventory, host_name), user)
    client = target.client
    try:
        digest = client.digest(repository, ref)
    except RegistryError as error:
        if error.status == 404:
            raise RegopsError(f"{reference}: no such tag or digest") from None
        raise
    scanner = Scanner(client, created=False)
    image = scanner.image(repository, digest)
    names = _repo_tags(client, repository)
    found = parallel(lambda t: scanner.image(repository, t), names, workers)
    on_digest, parents = [], []
    for tag, other in zip(names, found, strict=True):
        if isinstance(other, RegistryError) and other.status == 404:
            continue  # deleted meanwhile
        if isinstance(other, Exception):
            raise RegopsError(f"{repository}:{tag}: {other}")
        if other.digest == digest:
            on_digest.append(tag)
        elif digest in other.child_digests():
            parents.append(tag)
    doc: dict[str, Any] = {
        "host": target.name,
        "repository": repository,
        "reference": ref,
        **image_doc(None, image),
        "tags": on_digest,
        "deleted": False,
        "untagged_children": [{"digest": c.digest, "platform": c.platform} for c in image.children],
    }
    refusal = None
    if parents:
        refusal = (
            f"{repository}@{digest} is part of the multi-arch image(s) "
            f"{', '.join(parents)}; deleting it would break them"
        )
    elif ref.startswith("sha256:") and on_digest and not all_tags:
        refusal = (
            f"{repository}@{digest} carries tags {', '.join(on_digest)}; "
            "add --all-tags to delete it with all of them"
        )
    elif (others := [t for t in on_digest if t != ref]) and not all_tags:
        refusal = (
            f"{repository}:{ref} shares digest {digest} with {', '.join(others)}; the API "
            f"deletes all of them: add --all-tags to delete {', '.join(on_digest)}"
        )
    if refusal:
        doc["refused"] = refusal
        if as_json:
            emit_json(doc)
        raise RegopsError(f"refused: {refusal}")
    try:
        client.delete_manifest(repository, digest)
    except RegistryError as error:
        raise RegopsError(delete_problem(repository, digest, error)) from None
    doc["deleted"] = True
    if as_json:
        emit_json(doc)
        return
    tags_text = ", ".join(on_digest) or "no tags"
    click.echo(f"deleted {repository}@{digest} ({tags_text}; {human_bytes(image.size)})")
    if image.is_index:
        click.echo(
            f"multi-arch image ({', '.join(image.platforms) or 'no platforms'}): "
            f"deleted its index; {len(image.children)} child manifest(s) are now "
            f"untagged. {UNTAGGED_NOTE}."
        )
    click.echo("space returns after the next GC (regops-gc)")


# --------------------------------------------------------------------------- prune


def _cli_policy(
    repos: tuple[str, ...],
    keep_last: int | None,
    older_than: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    protect: tuple[str, ...],
    no_protect: bool,
) -> Policy:
    if no_protect and protect:
        raise UsageError("--protect and --no-protect exclude each other")
    raw: dict[str, Any] = {"repositories": list(repos)}
    if keep_last is not None:
        raw["keep_last"] = keep_last
    if older_than is not None:
        raw["older_than"] = older_than
    if include:
        raw["include"] = list(include)
    if exclude:
        raw["exclude"] = list(exclude)
    if protect or no_protect:
        raw["protect"] = list(protect)
    if not repos:
        raise UsageError("--repo PATTERN is required with policy options")
    try:
        return retention.make_policy(raw)
    except PolicyError as error:
        text = str(error)
        for key, option in (
            ("keep_last", "--keep-last"),
            ("older_than", "--older-than"),
            ("repositories", "--repo"),
            ("include", "--include"),
            ("exclude", "--exclude"),
            ("protect", "--protect"),
        ):
            text = text.replace(key, option)
        raise UsageError(f"prune options: {text}") from None


def _render_prune(doc: dict[str, Any]) -> str:
    lines = [
        f"host {doc['host']}: {len(doc['policies'])} "
        f"{'policy' if len(doc['policies']) == 1 else 'policies'}"
    ]
    lines += [f"  policy: {p}" for p in doc["policy_text"]]
    for repo in doc["repositories"]:
        if repo["error"]:
            lines.append(f"{repo['repository']}: skipped: {repo['error']}")
            continue
        n_tags = sum(len(d["tags"]) for d in repo["delete"])
        lines.append(
            f"{repo['repository']}: {plural(repo['tags'], 'tag')}, delete {n_tags} "
            f"({plural(len(repo['delete']), 'manifest')}), "
            f"keep {repo['tags'] - n_tags}"
        )
        for d in repo["delete"]:
            kind = " multi-arch " + ",".join(d["platforms"]) if d["index"] else ""
            lines.append(
                f"  - {', '.join(d['tags'])}  {d['digest'][:19]}  {d['created']}  "
                f"{human_bytes(d['size'])}{kind}"
            )
        for h in repo["held"]:
            lines.append(f"  ! {', '.join(h['tags'])} kept: {h['reason']}")
        for f in repo["failed"]:
            lines.append(f"  x {f['digest'][:19]}: {f['error']}")
    s = doc["summary"]
    verb = "would free" if doc["dry_run"] else "frees"
    lines.append(
        f"total: {plural(s['tags_deleted'], 'tag')} "
        f"({plural(s['manifests_deleted'], 'manifest')}) in "
        f"{s['repositories']} {'repository' if s['repositories'] == 1 else 'repositories'}"
        f"; {verb} ~{human_bytes(s['freed_bytes'])} "
        "after GC (estimate)"
    )
    if s["untagged_bytes"]:
        lines.append(
            f"  +{human_bytes(s['untagged_bytes'])} only after GC with "
            f"--delete-untagged: {UNTAGGED_NOTE}"
        )
    if doc["dry_run"]:
        lines.append("dry run: nothing was deleted; add --yes to delete")
    return "\n".join(lines)


@click.command()
@_options
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="PATTERN",
    help="Repositories of a command-line policy (glob: * one level, ** any; "
    "or re:REGEX); repeatable. Replaces the inventory's registry_retention.",
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep the newest N tags in scope (by the image config's created time).",
)
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Delete only tags older than this (30d, 12h, 2w, 1d12h).",
)
@click.option(
    "--include",
    multiple=True,
    metavar="PATTERN",
    help="Tags in scope (glob or re:REGEX) [default: *]; repeatable.",
)
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Tags out of scope; repeatable.")
@click.option(
    "--protect",
    multiple=True,
    metavar="PATTERN",
    help="Tags never deleted (glob, re:REGEX, or 'semver' for v?X.Y.Z) "
    "[default: latest and semver]; repeatable.",
)
@click.option("--no-protect", is_flag=True, help="Protect no tags.")
@click.option(
    "--now", "now_text", metavar="TIME", help="Reference time for ages (RFC 3339) [default: now]."
)
@click.option("--yes", is_flag=True, help="Delete; without it, a dry run.")
@workers_option
def prune(
    inventory: str,
    host_name: str | None,
    user: str | None,
    as_json: bool,
    repos: tuple[str, ...],
    keep_last: int | None,
    older_than: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    protect: tuple[str, ...],
    no_protect: bool,
    now_text: str | None,
    yes: bool,
    workers: int,
) -> None:
    """Delete tags by retention policy (dry run unless --yes).

    Policies come from the inventory's registry_retention, or from the options.
    A tag goes when a policy selects it and none keeps it; tags sharing a
    digest go only together; a multi-arch image is one unit. Space returns
    after the next GC.
    """
    host = pick_host(inventory, host_name)
    if any((repos, keep_last is not None, older_than, include, exclude, protect, no_protect)):
        policies = [
            _cli_policy(repos, keep_last, older_than, include, exclude, protect, no_protect)
        ]
    else:
        policies = retention.parse_policies(host.checked_data()[retention.KEY])
        if not policies:
            raise UsageError(
                f"{host.name}: no retention policy: set {retention.KEY} in the "
                "inventory, or give --repo with --keep-last and/or --older-than"
            )
    now = datetime.now(UTC)
    if now_text:
        parsed = parse_time(now_text)
        if parsed is None:
            raise UsageError(f"--now: {now_text!r} is not an RFC 3339 time")
        now = parsed
    target = connect(host, user)
    catalog = sorted(target.client.catalog())
    plans = plan_prune(
        target.client, policies, now, workers, progress_bars(not as_json), catalog=catalog
    )
    if yes:
        apply_prune(target.client, plans, workers, progress_bars(not as_json))
    freed, untagged = total_freed(plans)
    repo_docs = [p.as_dict() for p in plans]
    doc = {
        "host": target.name,
        "dry_run": not yes,
        "now": format_time(now),
        "policies": [p.as_dict() for p in policies],
        "policy_text": [p.describe() for p in policies],
        "repositories": repo_docs,
        "summary": {
            "repositories": len(plans),
            "tags_deleted": sum(len(d["tags"]) for r in repo_docs for d in r.get("delete", [])),
            "manifests_deleted": sum(len(r.get("delete", [])) for r in repo_docs),
            "freed_bytes": freed,
            "untagged_bytes": untagged,
            "failed": sum(len(p.failed) for p in plans) + sum(bool(p.error) for p in plans),
        },
    }
    if as_json:
        emit_json(doc)
    else:
        click.echo(_render_prune(doc))
    problems = [f"{p.repository}: {p.error}" for p in plans if p.error]
    problems += [f"{p.repository}@{d}: {e}" for p in plans for d, e in p.failed.items()]
    among = plural(len(catalog), "repository", "repositories")
    problems += [
        f"{what} matches none of the {among} of {target.name}"
        for what in unmatched(policies, catalog)
    ]
    if problems:
        raise RegopsError(f"{len(problems)} problem(s): {problems[0]}")


# --------------------------------------------------------------------------- du


def in_namespace(repository: str, namespace: str | None) -> bool:
    return not namespace or repository == namespace or repository.startswith(namespace + "/")


@click.command()
@click.argument("namespace", required=False)
@_options
@workers_option
def du(
    namespace: str | None,
    inventory: str,
    host_name: str | None,
    user: str | None,
    as_json: bool,
    workers: int,
) -> None:
    """Storage per repository and per namespace, from the API [only under NAMESPACE].

    Each line counts a blob once however many of its repositories share it, as
    the registry stores it once; so does the total. Only what tags reach is
    seen: untagged manifests and blobs awaiting GC are not.
    """
    namespace = namespace.strip("/") if namespace else None
    target = connect(pick_host(inventory, host_name), user)
    client = target.client
    repositories = sorted(r for r in client.catalog() if in_namespace(r, namespace))
    if namespace and not repositories:
        raise RegopsError(f"no repository in namespace {namespace!r} on {target.name}")
    listed = parallel(lambda r: listed_tags(client, r), repositories, workers)
    work: list[tuple[str, str]] = []
    problems = []
    for repository, names in zip(repositories, listed, strict=True):
        if isinstance(names, Exception):
            problems.append(f"{repository}: {names}")
        else:
            work += [(repository, t) for t in names]
    scanner = Scanner(client, created=False)
    with progress_bars(not as_json)("reading manifests", len(work)) as tick:
        found = parallel(lambda item: scanner.image(*item), work, workers, tick)
    blobs: dict[str, dict[str, int]] = {r: {} for r in repositories}
    tag_count = dict.fromkeys(repositories, 0)
    for (repository, tag), image in zip(work, found, strict=True):
        if isinstance(image, RegistryError) and image.status == 404:
            continue
        if isinstance(image, Exception):
            problems.append(f"{repository}:{tag}: {image}")
            continue
        blobs[repository].update(image.all_blobs())
        tag_count[repository] += 1
    per_repo, per_ns, total = disk_usage(blobs, tag_count)
    # Namespaces above the one asked for would only count part of their repositories.
    per_ns = {n: u for n, u in per_ns.items() if in_namespace(n, namespace)}

    def usage(u: Any, with_repos: bool = False) -> dict[str, int]:
        doc = {"bytes": u.bytes, "blobs": u.blobs, "tags": u.tags}
        return {**doc, "repositories": u.repositories} if with_repos else doc

    if as_json:
        emit_json(
            {
                "host": target.name,
                "namespace": namespace,
                "repositories": {r: usage(u) for r, u in per_repo.items()},
                "namespaces": {n: usage(u, True) for n, u in per_ns.items()},
                "total": usage(total, True),
                "errors": problems,
            }
        )
    else:
        entries = [(r, False, u) for r, u in per_repo.items()]
        entries += [(n, True, u) for n, u in per_ns.items()]
        entries.sort(key=lambda e: (e[0].split("/"), not e[1]))
        rows = [["SIZE", "BLOBS", "TAGS", "NAME"]]
        for name, is_ns, u in entries:
            rows.append(
                [
                    human_bytes(u.bytes),
                    str(u.blobs),
                    str(u.tags),
                    f"{name}/ ({u.repositories} repositories)" if is_ns else name,
                ]
            )
        rows.append(
            [
                human_bytes(total.bytes),
                str(total.blobs),
                str(total.tags),
                f"total ({total.repositories} repositories)",
            ]
        )
        click.echo(table(rows))
    if problems:
        raise RegopsError(f"{len(problems)} problem(s): {problems[0]}")


COMMANDS = [catalog, tags, delete, prune, du]
