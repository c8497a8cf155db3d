"""The prune engine: read what retention policies cover, decide with
`regops.registry.retention`, delete what they select, estimate what GC frees.

No CLI here: `regops prune` and the benchmark both drive it. Deleting is
conservative: a repository that could not be read completely is skipped, and a
digest a tag pushed since the scan points at is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from regops.registry import retention
from regops.registry.client import RegistryClient, RegistryError
from regops.registry.images import Image, Scanner, freed_estimate
from regops.registry.retention import Candidate, Policy, Selection
from regops.util import format_time, natural_key, parallel

Tick = Callable[[], None]
# A progress display for `length` steps called `label`, entered around the work.
Progress = Callable[[str, int], contextlib.AbstractContextManager[Tick]]


@contextlib.contextmanager
def no_progress(_label: str, _length: int) -> Iterator[Tick]:
    yield lambda: None


UNTAGGED_NOTE = (
    "children of a deleted multi-arch image stay as untagged manifests: the registry's GC "
    "reclaims them only with --delete-untagged (registry_gc_delete_untagged; on 2.8 that also "
    "collects the children of multi-arch images that are still tagged)"
)




def listed_tags(client: RegistryClient, repository: str) -> list[str]:
    """Tags of a repository from the catalog; none when the registry does not know the
    name (the catalog also lists repositories that only hold blobs of an unfinished push)."""
    try:
        return client.tags(repository)
    except RegistryError as error:
        if error.status == 404:
            return []
        raise


def image_doc(tag: str | None, image: Image) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "digest": image.digest,
        "media_type": image.manifest.media_type,
        "index": image.is_index,
        "size": image.size,
        "created": format_time(image.created),
        "platforms": image.platforms,
    }
    return {"tag": tag, **doc} if tag is not None else doc


def delete_problem(repository: str, digest: str, error: RegistryError) -> str:
    if error.status == 405:
        return (
            f"{repository}@{digest}: the registry refuses deletes (HTTP 405): "
            "registry_delete_enabled is off, or it is read-only while GC runs"
        )
    return str(error)



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
            {**image_doc(None, by_digest[d]), "tags": tags}
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
    progress: Progress = no_progress,
    catalog: Sequence[str] | None = None,
) -> list[RepoPlan]:
    """Read every repository a policy covers and decide; deletes nothing."""
    listing = sorted(client.catalog() if catalog is None else catalog)
    repositories = [r for r in listing if retention.policies_for(r, policies)]
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
    with progress("reading tags", len(work)) as tick:
        found = parallel(
            lambda item: scanner.image(item[0].repository, item[1]), work, workers, tick
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


def unmatched(policies: Sequence[Policy], catalog: Sequence[str]) -> list[str]:
    """The policies whose repository patterns match no repository (a typo, most likely)."""
    return [
        f"policy {n} ({', '.join(p.repositories.patterns)})"
        for n, p in enumerate(policies, start=1)
        if not any(p.repositories(r) for r in catalog)
    ]


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
    client: RegistryClient,
    plans: Sequence[RepoPlan],
    workers: int,
    progress: Progress = no_progress,
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

    with progress("deleting", len(work)) as tick:
        results = parallel(remove, work, workers, tick)
    for (plan, digest), outcome in zip(work, results, strict=True):
        if isinstance(outcome, RegistryError):
            plan.failed[digest] = delete_problem(plan.repository, digest, outcome)
        elif isinstance(outcome, Exception):
            plan.failed[digest] = str(outcome)
        else:
            plan.deleted.append(digest)


