"""The registry's notifications (`POST /notify`, on their own listener): the bearer
secret checked, manifest pushes and deletes written to the audit log, and the web
pages' catalog told. Apart from the token endpoint: the registry, not a client,
calls it."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from regops_token.rules import ANONYMOUS

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def _read_secret(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def authorized(secret_file: str | None, authorization: str) -> bool:
    """Whether the request's Authorization header carries the registry's secret."""
    secret = _read_secret(secret_file)
    return bool(secret) and hmac.compare_digest(authorization.encode(),
                                                f"Bearer {secret}".encode())


def deliver(body: str, audit: Callable[..., None], label: Callable[[str], str],
            web: Any = None) -> None:
    """Each event of a notification recorded, and the web pages' catalog told."""
    try:
        events = json.loads(body).get("events", [])
    except (ValueError, AttributeError):
        events = []
    for event in events:
        recorded = record_event(audit, event, label)
        if web is not None and recorded:
            target = event.get("target") or {}
            web.catalog.notified(str(event.get("action")), recorded,
                                 target.get("tag"), target.get("digest"))


def record_event(audit: Callable[..., None], event: Mapping[str, Any],
                 label: Callable[[str], str] = lambda name: name) -> str | None:
    """A registry notification as an audit line: manifest pushes and deletes, with the
    actor (the token's subject) named as token decisions name it. Returns the
    repository of what it recorded."""
    action = event.get("action")
    target = event.get("target") or {}
    if action == "delete" or (action == "push" and target.get("mediaType") in MANIFEST_TYPES):
        actor = (event.get("actor") or {}).get("name")
        audit(
            action,
            subject=label(actor) if actor else ANONYMOUS,
            repository=target.get("repository"),
            tag=target.get("tag"),
            digest=target.get("digest"),
            client_ip=((event.get("request") or {}).get("addr") or "").rsplit(":", 1)[0],
        )
        return str(target.get("repository") or "") or None
    return None
