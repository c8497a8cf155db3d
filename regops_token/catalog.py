"""What the web pages show, read from the registry and kept warm.

Manifests are content-addressed, so what a digest holds (size, platforms, created
time, blobs) is cached for good, within a bound. Which digest a tag points at is
not: a repository's tags are re-read as soon as the registry's notifications say
it changed, and anyway when older than `max_age`. A background walk reads every
repository ahead of the visitors (its tags, their images, its size) and again
when half of `max_age` has passed, so pages rarely wait for the registry and the
namespace tree never waits for a size. Who
pushed what comes from the audit log's push records.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from regops_token import audit as audit_log
from regops_token import manifests
from regops_token.backend import Backend, BackendError
from regops_token.text import natural_key


@dataclass(frozen=True)
class Summary:
    """One manifest digest, resolved: what a tag row shows."""

    digest: str
    media_type: str
    size: int  # config and layers; a blob two platforms share counts once
    platforms: tuple[str, ...]
    created: datetime | None
    blobs: Mapping[str, int]  # every blob stored for it, manifests included
    children: tuple[str, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in manifests.INDEX_TYPES


@dataclass(frozen=True)
class Push:
    subject: str
    time: str
    digest: str


@dataclass
class TagRow:
    tag: str
    digest: str
    summary: Summary | None
    pushed: Push | None


@dataclass
class _Tags:
    names: list[str]
    digests: dict[str, str]  # filled as pages need them; all of them once `complete`
    read_at: float
    complete: bool = False


@dataclass
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass
class ImageView:
    """One image (one platform) for the image page."""

    digest: str
    platform: str | None
    size: int
    created: datetime | None
    layers: list[Layer]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env_names: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Detail:
    repository: str
    reference: str
    digest: str
    media_type: str
    size: int
    images: list[ImageView]
    tags: list[str]  # every tag on this digest

    @property
    def is_index(self) -> bool:
        return self.media_type in manifests.INDEX_TYPES


class History:
    """From the audit log: the last push of every tag and digest, and when each robot
    last got a token."""

    def __init__(self) -> None:
        self._by_tag: dict[tuple[str, str], Push] = {}
        self._by_digest: dict[tuple[str, str], Push] = {}
        self.robot_last_use: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self, path: str) -> None:
        for record in audit_log.records(audit_log.files(path)):  # oldest first
            self.record(record)

    def record(self, record: Mapping[str, Any]) -> None:
        event, subject = record.get("event"), str(record.get("subject") or "")
        if event == "token" and subject.startswith("robot:"):
            with self._lock:
                self.robot_last_use[subject[6:]] = str(record.get("time", ""))
            return
        if event != "push" or not record.get("repository"):
            return
        push = Push(subject, str(record.get("time", "")), str(record.get("digest", "")))
        repo = str(record["repository"])
        with self._lock:
            if record.get("tag"):
                self._by_tag[(repo, str(record["tag"]))] = push
            if push.digest:
                self._by_digest[(repo, push.digest)] = push
            for index in (self._by_tag, self._by_digest):
                while len(index) > 200_000:
                    index.pop(next(iter(index)))

    def pushed(self, repository: str, tag: str, digest: str) -> Push | None:
        with self._lock:
            push = self._by_tag.get((repository, tag))
            if push and push.digest == digest:
                return push
            return self._by_digest.get((repository, digest))


class Catalog:
    def __init__(self, backend: Backend, max_age: float = 600.0, workers: int = 8,
                 cache_entries: int = 50_000) -> None:
        self.backend = backend
        self.max_age = max_age
        self.workers = workers
        self.cache_entries = cache_entries
        self.history = History()
        self._summaries: OrderedDict[str, Summary] = OrderedDict()
        self._tag_state: dict[str, _Tags] = {}
        self._repo_blobs: dict[str, dict[str, int]] = {}
        self._repos: tuple[list[str], float] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="catalog")
        self.indexed_at: float | None = None

    # ------------------------------------------------------------------ freshness

    def changed(self, repository: str) -> None:
        """Forget what is known of `repository`: it is read again when next needed."""
        with self._lock:
            self._tag_state.pop(repository, None)
            self._repo_blobs.pop(repository, None)
            if self._repos and repository not in self._repos[0]:
                self._repos = None

    def notified(self, action: str, repository: str, tag: str | None,
                 digest: str | None) -> None:
        """The registry's notification of a manifest push or delete, applied to what is
        known instead of forgetting it: a busy repository is not read again whole
        after every push. Its size is counted again (from cached digests)."""
        with self._lock:
            self._repo_blobs.pop(repository, None)
            if self._repos and repository not in self._repos[0]:
                self._repos = (sorted({*self._repos[0], repository}), self._repos[1])
            state = self._tag_state.get(repository)
            if state is None:
                return
            if action == "push" and tag and digest:
                if tag not in state.digests and tag not in state.names:
                    state.names = sorted([*state.names, tag], key=natural_key)
                state.digests[tag] = digest
            elif action == "delete" and digest:
                gone = {t for t, d in state.digests.items() if d == digest}
                if tag:
                    gone.add(tag)
                if gone and not state.complete:
                    self._tag_state.pop(repository)  # tags not yet read may be among them
                    return
                state.names = [t for t in state.names if t not in gone]
                for name in gone:
                    state.digests.pop(name, None)
            elif action == "delete" and tag:
                state.names = [t for t in state.names if t != tag]
                state.digests.pop(tag, None)

    def repositories(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._repos
        if cached and now - cached[1] < self.max_age:
            return cached[0]
        names = sorted(self.backend.catalog())
        with self._lock:
            self._repos = (names, now)
        return names

    def _tags(self, repository: str) -> _Tags:
        now = time.monotonic()
        with self._lock:
            cached = self._tag_state.get(repository)
        if cached and now - cached.read_at < self.max_age:
            return cached
        found = _Tags(self._read_names(repository), {}, now)
        with self._lock:
            self._tag_state[repository] = found
        return found

    def _read_names(self, repository: str) -> list[str]:
        return sorted(self.backend.tags(repository), key=natural_key)

    def _read_digests(self, repository: str, tags: list[str]) -> dict[str, str]:
        """tag -> digest from the registry, in parallel; a tag gone meanwhile is left out."""
        found = self._map(functools.partial(self.backend.digest, repository), tags)
        return {t: d for t, d in zip(tags, found, strict=True) if isinstance(d, str) and d}

    def tag_names(self, repository: str) -> list[str]:
        """Every tag, in natural order (`v1.10` after `v1.9`)."""
        return self._tags(repository).names

    def digests_of(self, repository: str, tags: list[str]) -> dict[str, str]:
        """tag -> digest for these tags (a tag deleted meanwhile is left out); only the
        ones not yet known are asked for."""
        state = self._tags(repository)
        with self._lock:
            missing = [t for t in tags if t not in state.digests]
        found = self._read_digests(repository, missing)
        with self._lock:
            state.digests.update(found)
            return {t: state.digests[t] for t in tags if t in state.digests}

    def tag_digests(self, repository: str) -> dict[str, str]:
        """tag -> digest, every tag of the repository."""
        state = self._tags(repository)
        if state.complete:
            return state.digests
        digests = self.digests_of(repository, state.names)
        state.complete = True
        return digests

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        def safe(item: Any) -> Any:
            try:
                return fn(item)
            except (BackendError, manifests.ManifestError) as error:
                return error
        if len(items) < 2:
            return [safe(i) for i in items]
        return list(self._pool.map(safe, items))

    # ------------------------------------------------------------------ digests

    def summary(self, repository: str, digest: str) -> Summary:
        with self._lock:
            found = self._summaries.get(digest)
            if found:
                self._summaries.move_to_end(digest)
                return found
        found = self._summarize(repository, digest)
        with self._lock:
            self._summaries[digest] = found
            while len(self._summaries) > self.cache_entries:
                self._summaries.popitem(last=False)
        return found

    def _summarize(self, repository: str, digest: str) -> Summary:
        got, media_type, body = self.backend.manifest(repository, digest)
        manifest = manifests.parse_manifest(got or digest, media_type, body)
        if manifest.is_index:
            children = [self.summary(repository, c.digest) for c in manifest.children]
            content: dict[str, int] = {}
            blobs = {manifest.digest: manifest.size}
            for child in children:
                blobs.update(child.blobs)
                content.update({d: s for d, s in child.blobs.items() if d != child.digest})
            times = [c.created for c in children if c.created]
            platforms = tuple(c.platform for c in manifest.children if c.platform)
            return Summary(manifest.digest, manifest.media_type, sum(content.values()),
                           platforms, max(times) if times else None, blobs,
                           tuple(c.digest for c in manifest.children))
        config = manifest.config
        created, platform = None, None
        if config is not None:
            doc = _json_object(self.backend.blob(repository, config.digest))
            created = manifests.parse_time(doc.get("created"))
            platform = manifests.config_platform(doc)
        content = manifest.content()
        return Summary(manifest.digest, manifest.media_type, sum(content.values()),
                       (platform,) if platform else (), created,
                       {manifest.digest: manifest.size, **content})

    # ------------------------------------------------------------------ pages

    def rows(self, repository: str, sort: str = "name", page: int = 1,
             per_page: int = 50) -> tuple[list[TagRow], int]:
        """One page of a repository's tags, resolved; and how many tags it has.

        By name only the page's tags are read; newest first needs every tag's
        created time (then cached, so the next page is quick)."""
        names = list(self.tag_names(repository))
        start = (max(page, 1) - 1) * per_page
        if sort == "time":
            digests = self.tag_digests(repository)
            names = [t for t in names if t in digests]
            summaries = self._summaries_of(repository, [digests[t] for t in names])
            names.sort(key=lambda t: _time_key(summaries.get(digests[t])), reverse=True)
        chosen = names[start:start + per_page]
        digests = self.digests_of(repository, chosen)
        summaries = self._summaries_of(repository, list(digests.values()))
        rows = [TagRow(t, digests[t], summaries.get(digests[t]),
                       self.history.pushed(repository, t, digests[t]))
                for t in chosen if t in digests]
        return rows, len(names)

    def _summaries_of(self, repository: str, digests: Iterable[str]) -> dict[str, Summary]:
        unique = list(dict.fromkeys(digests))
        found = self._map(lambda d: self.summary(repository, d), unique)
        return {d: s for d, s in zip(unique, found, strict=True) if isinstance(s, Summary)}

    def repo_blobs(self, repository: str, compute: bool = False,
                   again: bool = False) -> dict[str, int] | None:
        """Every blob the repository's tags hold (for sizes); None when not yet counted."""
        with self._lock:
            found = self._repo_blobs.get(repository)
        if (found is not None and not again) or not compute:
            return found
        digests = self.tag_digests(repository)
        blobs: dict[str, int] = {}
        for summary in self._summaries_of(repository, digests.values()).values():
            blobs.update(summary.blobs)
        with self._lock:
            self._repo_blobs[repository] = blobs
        return blobs

    def index(self) -> None:
        """The background walk: every repository read whose tags are older than half
        of `max_age` (read anew, then swapped in: pages meanwhile use the old ones),
        or whose size is not counted."""
        for repository in self.repositories():
            now = time.monotonic()
            with self._lock:
                state = self._tag_state.get(repository)
                counted = repository in self._repo_blobs
            fresh = state is not None and state.complete and (
                now - state.read_at < self.max_age / 2)
            if fresh and counted:
                continue
            try:
                if not fresh:
                    names = self._read_names(repository)
                    digests = self._read_digests(repository, names)
                    with self._lock:
                        self._tag_state[repository] = _Tags(names, digests, now, True)
                self.repo_blobs(repository, compute=True, again=not fresh)
            except (BackendError, manifests.ManifestError):
                continue
        self.indexed_at = time.time()

    def run_indexer(self, every: float = 60.0, audit_path: str | None = None,
                    settle: float = 15.0) -> None:
        def loop() -> None:
            if audit_path:
                with contextlib.suppress(OSError):
                    self.history.load(audit_path)
            while True:
                with contextlib.suppress(BackendError, manifests.ManifestError, OSError):
                    self.index()
                deadline = time.monotonic() + every
                time.sleep(settle)  # at most one walk per `settle` seconds, however busy
                while time.monotonic() < deadline:
                    with self._lock:
                        stale = self._repos is not None and any(
                            r not in self._repo_blobs for r in self._repos[0])
                    if stale:
                        break
                    time.sleep(5)
        threading.Thread(target=loop, name="catalog-index", daemon=True).start()

    # ------------------------------------------------------------------ one image

    def detail(self, repository: str, reference: str) -> Detail:
        digest, media_type, body = self.backend.manifest(repository, reference)
        manifest = manifests.parse_manifest(digest, media_type, body)
        summary = self.summary(repository, manifest.digest)
        if manifest.is_index:
            images = [self._image(repository, c.digest, c.platform)
                      for c in manifest.children]
        else:
            images = [self._image(repository, manifest.digest, None, manifest)]
        tags = sorted((t for t, d in self.tag_digests(repository).items()
                       if d == manifest.digest), key=natural_key)
        return Detail(repository, reference, manifest.digest, manifest.media_type,
                      summary.size, images, tags)

    def _image(self, repository: str, digest: str, platform: str | None,
               manifest: manifests.Manifest | None = None) -> ImageView:
        if manifest is None:
            got, media_type, body = self.backend.manifest(repository, digest)
            manifest = manifests.parse_manifest(got or digest, media_type, body)
        doc: dict[str, Any] = {}
        if manifest.config is not None:
            doc = _json_object(self.backend.blob(repository, manifest.config.digest))
        run = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        assert isinstance(run, dict)
        layers = [Layer(d.digest, d.size, d.media_type) for d in manifest.layers]
        return ImageView(
            digest=manifest.digest,
            platform=platform or manifests.config_platform(doc),
            size=sum(manifest.content().values()),
            created=manifests.parse_time(doc.get("created")),
            layers=layers,
            entrypoint=_strings(run.get("Entrypoint")),
            cmd=_strings(run.get("Cmd")),
            # Names only: values are where people put tokens.
            env_names=[str(e).split("=", 1)[0] for e in run.get("Env") or []],
            labels={str(k): str(v) for k, v in (run.get("Labels") or {}).items()},
            ports=sorted(str(p) for p in (run.get("ExposedPorts") or {})),
            workdir=str(run.get("WorkingDir") or ""),
            user=str(run.get("User") or ""),
            history=[h for h in doc.get("history") or [] if isinstance(h, dict)],
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _strings(value: Any) -> list[str] | None:
    return [str(v) for v in value] if isinstance(value, list) else None


def _time_key(summary: Summary | None) -> float:
    return summary.created.timestamp() if summary and summary.created else 0.0


def read_gc_record(path: str) -> dict[str, Any] | None:
    try:
        return _json_object(Path(path).read_bytes()) or None
    except OSError:
        return None
