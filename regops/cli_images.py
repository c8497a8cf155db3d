"""Day-2 commands on a registry's content: catalog, tags, delete, prune, du.

All go through the registry HTTP API as a registry user, from the operator's
machine: `-i INVENTORY` (or $REGOPS_INVENTORY), `--host` picks the inventory
host (default: the first), `--user` the registry user (default: the first).
Exit status: 0 ok, 1 the registry refused or an operation failed, 2 bad usage
or bad inventory data (nothing was changed).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from regops import endpoint, retention
from regops.client import RegistryClient, RegistryError
from regops.images import (
    Image,
    ManifestError,
    Scanner,
    disk_usage,
    format_time,
    freed_estimate,
    human_bytes,
    natural_key,
    parse_time,
    split_reference,
)
from regops.inventory import InventoryHost, load_inventory
from regops.retention import Candidate, Policy, PolicyError, Selection
from regops.settings import ConfigError

F = Callable[..., Any]
T = TypeVar("T")
R = TypeVar("R")

UNTAGGED_NOTE = (
    "children of a deleted multi-arch image stay as untagged manifests: the registry's GC "
    "reclaims them only with --delete-untagged (registry_gc_delete_untagged; on 2.8 that also "
    "collects the children of multi-arch images that are still tagged)"
)


class Failure(Exception):
    """Ends the command with one `regops: error:` line and exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _guard(fn: F) -> F:
    """Known failures become one line and the documented exit status, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Failure as error:
            message, code = str(error), error.code
        except ConfigError as error:
            message, code = str(error), 2
        except (RegistryError, ManifestError) as error:
            message, code = str(error), 1
        click.echo(f"regops: error: {message}", err=True)
        sys.exit(code)

    return wrapper


def _options(fn: F) -> F:
    """-i, --host, --user, --json: how every content command picks its registry."""
    for option in reversed(
        [
            click.option(
                "-i",
                "--inventory",
                envvar="REGOPS_INVENTORY",
                required=True,
                metavar="PATH",
                help="pyinfra inventory [env REGOPS_INVENTORY].",
            ),
            click.option(
                "--host",
                "host_name",
                metavar="NAME",
                help="Inventory host whose registry to use [default: the first].",
            ),
            click.option(
                "--user",
                metavar="NAME",
                help="Registry user to log in as [default: the first registry user].",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts)."),
        ]
    ):
        fn = option(fn)
    return fn


def _workers(fn: F) -> F:
    return click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=8,
        show_default=True,
        help="Concurrent API requests.",
    )(fn)


@dataclass
class Target:
    host: InventoryHost
    client: RegistryClient


def pick_host(inventory: str, host_name: str | None) -> InventoryHost:
    try:
        hosts = load_inventory(inventory)
    except ConfigError:
        raise
    except Exception as error:  # the inventory is Python: anything can go wrong in it
        raise Failure(f"{inventory}: cannot load inventory: {error}", 2) from None
    if not hosts:
        raise Failure(f"{inventory}: no hosts in the inventory", 2)
    if host_name is None:
        return hosts[0]
    for host in hosts:
        if host.name == host_name:
            return host
    names = ", ".join(h.name for h in hosts)
    raise Failure(f"{inventory}: no host {host_name!r} (hosts: {names})", 2)


def connect(host: InventoryHost, user: str | None) -> Target:
    settings = host.settings()
    try:
        client = endpoint.client(settings, user)
    except ValueError as error:
        raise Failure(str(error), 2) from None
    return Target(host, client)


def _emit(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2))


@contextlib.contextmanager
def _progress(length: int, label: str, show: bool) -> Iterator[Callable[[], None]]:
    """A click progress bar on stderr (so JSON on stdout stays clean); a no-op if off."""
    if not show or length == 0:
        yield lambda: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def parallel(
    fn: Callable[[T], R], items: Sequence[T], workers: int, label: str = "", show: bool = False
) -> list[R | Exception]:
    """fn over items on `workers` threads; results (or the exception) in item order."""
    results: list[R | Exception] = [Exception("not run")] * len(items)
    with _progress(len(items), label, show) as tick, ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(fn, item): n for n, item in enumerate(items)}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except Exception as error:  # reported per item by the caller
                results[futures[future]] = error
            tick()
    return results


def _repo_tags(client: RegistryClient, repository: str) -> list[str]:
    try:
        return sorted(client.tags(repository), key=natural_key)
    except RegistryError as error:
        if error.status == 404:
            raise Failure(f"repository {repository!r} not found") from None
        raise


def listed_tags(client: RegistryClient, repository: str) -> list[str]:
    """Tags of a repository from the catalog; none when the registry does not know the
    name (the catalog also lists repositories that only hold blobs of an unfinished push)."""
    try:
        return client.tags(repository)
    except RegistryError as error:
        if error.status == 404:
            return []
        raise


def _image_doc(tag: str | None, image: Image) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "digest": image.digest,
        "media_type": image.manifest.media_type,
        "index": image.is_index,
        "size": image.size,
        "created": format_time(image.created),
        "platforms": image.platforms,
    }
    return {"tag": tag, **doc} if tag is not None else doc


def _delete_problem(repository: str, digest: str, error: RegistryError) -> str:
    if error.status == 405:
        return (
            f"{repository}@{digest}: the registry refuses deletes (HTTP 405): "
            "registry_delete_enabled is off, or it is read-only while GC runs"
        )
    return str(error)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --------------------------------------------------------------------------- catalog, tags


@click.command()
@_options
@_guard
def catalog(inventory: str, host_name: str | None, user: str | None, as_json: bool) -> None:
    """List every repository, nested namespaces included (all pages of the API)."""
    target = connect(pick_host(inventory, host_name), user)
    repositories = sorted(target.client.catalog())
    if as_json:
        _emit({"host": target.host.name, "repositories": repositories})
    else:
        for name in repositories:
            click.echo(name)


@click.command()
@click.argument("repository")
@_options
@_workers
@_guard
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
    images = parallel(
        lambda t: scanner.image(repository, t),
        names,
        workers,
        label="reading manifests",
        show=not as_json,
    )
    entries, errors = [], []
    for tag, image in zip(names, images, strict=True):
        if isinstance(image, Exception):
            errors.append(f"{repository}:{tag}: {image}")
            entries.append({"tag": tag, "error": str(image)})
        else:
            entries.append(_image_doc(tag, image))
    if as_json:
        _emit({"host": target.host.name, "repository": repository, "tags": entries})
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
        click.echo(_table(rows))
    if errors:
        raise Failure("; ".join(errors))


# --------------------------------------------------------------------------- delete


@click.command()
@click.argument("reference", metavar="REPO:TAG")
@click.option(
    "--all-tags",
    is_flag=True,
    help="Also delete the other tags on the same digest (the API deletes them all).",
)
@_options
@_workers
@_guard
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
        raise Failure(str(error), 2) from None
    target = connect(pick_host(inventory, host_name), user)
    client = target.client
    try:
        digest = client.digest(repository, ref)
    except RegistryError as error:
        if error.status == 404:
            raise Failure(f"{reference}: no such tag or digest") from None
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
            raise Failure(f"{repository}:{tag}: {other}")
        if other.digest == digest:
            on_digest.append(tag)
        elif digest in other.child_digests():
            parents.append(tag)
    doc: dict[str, Any] = {
        "host": target.host.name,
        "repository": repository,
        "reference": ref,
        **_image_doc(None, image),
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
            _emit(doc)
        raise Failure(f"refused: {refusal}")
    try:
        client.delete_manifest(repository, digest)
    except RegistryError as error:
        raise Failure(_delete_problem(repository, digest, error)) from None
    doc["deleted"] = True
    if as_json:
        _emit(doc)
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


@dataclass
class RepoPlan:
    """One repository: what it holds, what goes, what that frees."""

    repository: str
    images: dict[str, Image] = field(default_factory=dict)  # tag -> image
    selection: Selection | None = None
    freed_bytes: int = 0
    untagged_bytes: int = 0
    error: str | None = None
    deleted: list[str] = field(default_factory=list)  # digests
    failed: dict[str, str] = field(default_factory=dict)  # digest -> error

    def as_dict(self) -> dict[str, Any]:
        s = self.selection
        doc: dict[str, Any] = {
            "repository": self.repository,
            "tags": len(self.images),
            "error": self.error,
        }
        if s is None:
            return doc
        by_digest = {i.digest: i for i in self.images.values()}
        doc["delete"] = [
            {**_image_doc(None, by_digest[d]), "tags": tags}
            for d, tags in sorted(s.delete_digests.items(), key=lambda kv: natural_key(kv[1][0]))
        ]
        doc["held"] = [
            {"digest": d, "tags": tags, "reason": s.decisions[tags[0]].reason}
            for d, tags in sorted(s.held.items(), key=lambda kv: natural_key(kv[1][0]))
        ]
        doc["keep"] = [
            {"tag": d.tag, "digest": d.digest, "reason": d.reason}
            for d in sorted(s.decisions.values(), key=lambda d: natural_key(d.tag))
            if not d.delete
        ]
        doc.update(
            freed_bytes=self.freed_bytes,
            untagged_bytes=self.untagged_bytes,
            deleted=self.deleted,
            failed=[{"digest": d, "error": e} for d, e in self.failed.items()],
        )
        return doc


def plan_prune(
    client: RegistryClient,
    policies: Sequence[Policy],
    now: datetime,
    workers: int = 8,
    show: bool = False,
) -> list[RepoPlan]:
    """Read every repository a policy covers and decide; deletes nothing."""
    repositories = [r for r in sorted(client.catalog()) if retention.policies_for(r, policies)]
    listed = parallel(lambda r: listed_tags(client, r), repositories, workers)
    plans, work = [], []
    for repository, names in zip(repositories, listed, strict=True):
        plan = RepoPlan(repository)
        plans.append(plan)
        if isinstance(names, Exception):
            plan.error = str(names)
            continue
        work += [(plan, tag) for tag in names]
    scanner = Scanner(client)
    found = parallel(
        lambda item: scanner.image(item[0].repository, item[1]),
        work,
        workers,
        label="reading tags",
        show=show,
    )
    for (plan, tag), image in zip(work, found, strict=True):
        if isinstance(image, RegistryError) and image.status == 404:
            continue  # deleted meanwhile
        if isinstance(image, Exception):
            plan.error = plan.error or f"{plan.repository}:{tag}: {image}"
        else:
            plan.images[tag] = image
    for plan in plans:
        if plan.error:
            continue  # a partial view could delete what a tag we could not read still needs
        candidates = [
            Candidate(t, i.digest, i.created, frozenset(i.child_digests()))
            for t, i in plan.images.items()
        ]
        plan.selection = retention.select(
            candidates, retention.policies_for(plan.repository, policies), now
        )
        by_digest = {i.digest: i for i in plan.images.values()}
        gone = [by_digest[d] for d in plan.selection.delete_digests]
        kept = {
            i.digest: i for t, i in plan.images.items() if not plan.selection.decisions[t].delete
        }
        plan.freed_bytes, plan.untagged_bytes = freed_estimate(gone, kept.values())
    return plans


def total_freed(plans: Sequence[RepoPlan]) -> tuple[int, int]:
    """Across repositories: a blob that a kept image of any scanned repository holds
    (a shared base layer, say) is not counted."""
    gone, kept = [], []
    for plan in plans:
        if plan.selection is None:
            continue
        by_digest = {i.digest: i for i in plan.images.values()}
        gone += [by_digest[d] for d in plan.selection.delete_digests]
        kept += [i for t, i in plan.images.items() if not plan.selection.decisions[t].delete]
    return freed_estimate(gone, kept)


def _moved_meanwhile(client: RegistryClient, plan: RepoPlan) -> set[str]:
    """Digests to spare because a tag pushed since the scan now points at them."""
    assert plan.selection is not None
    doomed = set(plan.selection.delete_digests)
    spared = set()
    for tag in set(client.tags(plan.repository)) - set(plan.images):
        with contextlib.suppress(RegistryError):
            digest = client.digest(plan.repository, tag)
            if digest in doomed:
                spared.add(digest)
    return spared


def apply_prune(
    client: RegistryClient, plans: Sequence[RepoPlan], workers: int, show: bool
) -> None:
    """Delete the selected digests (never a child of a multi-arch image by itself)."""
    work: list[tuple[RepoPlan, str]] = []
    for plan in plans:
        if plan.selection is None or not plan.selection.delete_digests:
            continue
        try:
            spared = _moved_meanwhile(client, plan)
        except RegistryError as error:
            plan.error = f"re-listing tags before deleting: {error}"
            continue
        for digest in plan.selection.delete_digests:
            if digest in spared:
                plan.failed[digest] = "a tag pushed since the scan points at it: kept"
            else:
                work.append((plan, digest))

    def remove(item: tuple[RepoPlan, str]) -> None:
        plan, digest = item
        try:
            client.delete_manifest(plan.repository, digest)
        except RegistryError as error:
            if error.status != 404:  # 404: gone already, which is what we wanted
                raise

    results = parallel(remove, work, workers, label="deleting", show=show)
    for (plan, digest), outcome in zip(work, results, strict=True):
        if isinstance(outcome, RegistryError):
            plan.failed[digest] = _delete_problem(plan.repository, digest, outcome)
        elif isinstance(outcome, Exception):
            plan.failed[digest] = str(outcome)
        else:
            plan.deleted.append(digest)


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
        raise Failure("--protect and --no-protect exclude each other", 2)
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
        raise Failure("--repo PATTERN is required with policy options", 2)
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
        raise Failure(f"prune options: {text}", 2) from None


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
            f"{repo['repository']}: {_plural(repo['tags'], 'tag')}, delete {n_tags} "
            f"({_plural(len(repo['delete']), 'manifest')}), "
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
        f"total: {_plural(s['tags_deleted'], 'tag')} "
        f"({_plural(s['manifests_deleted'], 'manifest')}) in "
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
@_workers
@_guard
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
        policies = retention.parse_policies(host.name, host.data.get(retention.KEY))
        if not policies:
            raise Failure(
                f"{host.name}: no retention policy: set {retention.KEY} in the "
                "inventory, or give --repo with --keep-last and/or --older-than",
                2,
            )
    now = datetime.now(UTC)
    if now_text:
        parsed = parse_time(now_text)
        if parsed is None:
            raise Failure(f"--now: {now_text!r} is not an RFC 3339 time", 2)
        now = parsed
    target = connect(host, user)
    plans = plan_prune(target.client, policies, now, workers, show=not as_json)
    if yes:
        apply_prune(target.client, plans, workers, show=not as_json)
    freed, untagged = total_freed(plans)
    repo_docs = [p.as_dict() for p in plans]
    doc = {
        "host": host.name,
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
        _emit(doc)
    else:
        click.echo(_render_prune(doc))
    problems = [f"{p.repository}: {p.error}" for p in plans if p.error]
    problems += [f"{p.repository}@{d}: {e}" for p in plans for d, e in p.failed.items()]
    if problems:
        raise Failure(f"{len(problems)} problem(s): {problems[0]}")


# --------------------------------------------------------------------------- du


def in_namespace(repository: str, namespace: str | None) -> bool:
    return not namespace or repository == namespace or repository.startswith(namespace + "/")


@click.command()
@click.argument("namespace", required=False)
@_options
@_workers
@_guard
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
    listed = parallel(lambda r: listed_tags(client, r), repositories, workers)
    work: list[tuple[str, str]] = []
    problems = []
    for repository, names in zip(repositories, listed, strict=True):
        if isinstance(names, Exception):
            problems.append(f"{repository}: {names}")
        else:
            work += [(repository, t) for t in names]
    scanner = Scanner(client, created=False)
    found = parallel(
        lambda item: scanner.image(*item),
        work,
        workers,
        label="reading manifests",
        show=not as_json,
    )
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
        _emit(
            {
                "host": target.host.name,
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
        click.echo(_table(rows))
    if problems:
        raise Failure(f"{len(problems)} problem(s): {problems[0]}")


COMMANDS = [catalog, tags, delete, prune, du]
