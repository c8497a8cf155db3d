"""The registry's web pages, served by the token service on the registry's own origin.

Everything is rendered on the server (reading works with JavaScript off) from
what the access rules let the visitor pull; every action checks the rights
again, whatever the page showed. Logins are the users' (not robots'), checked
like `docker login` (bcrypt, refused for a while when repeated, audited); a session is
a random id in an HttpOnly, Secure, SameSite cookie, known only to this
process, and every form that changes something carries the session's CSRF
token. Templates escape everything they print.
"""

from __future__ import annotations

import hmac
import mimetypes
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode

import jinja2

from regops_token import audit as audit_log
from regops_token import cron, guard
from regops_token.authn import Busy, Unavailable
from regops_token.backend import BackendError
from regops_token.catalog import Catalog, Summary, read_gc_record
from regops_token.clisecrets import CliSecrets
from regops_token.guard import local_path
from regops_token.manifests import ManifestError
from regops_token.oidc import STATE_COOKIE, STATE_TTL, OidcError, Pending, Provider, ProviderDown
from regops_token.rules import (
    ACTIONS,
    ANONYMOUS,
    LDAP,
    OIDC,
    Policy,
    Subject,
    compile_pattern,
)
from regops_token.shared import StoreDown
from regops_token.text import human_bytes, natural_key

HERE = Path(__file__).parent
SESSION_COOKIE = "regops_session"
LOGIN_COOKIE = "regops_login"
PER_PAGE = 50
ROBOT_WARNING_DAYS = 30
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_DENIALS = ("login_failed", "refresh_refused", "ui_refused")


@dataclass(frozen=True)
class WebConfig:
    address: str  # name:port as clients pull from it
    gc_schedule: str | None  # None: no GC job
    gc_state: str
    audit: str
    session_idle: int = 3600
    session_max: int = 12 * 3600


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    form: Mapping[str, list[str]]
    address: str

    def arg(self, name: str, default: str = "") -> str:
        return (self.query.get(name) or [default])[0]

    def field(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]

    def cookie(self, name: str) -> str:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Session:
    id: str
    user: str
    csrf: str
    created: float
    seen: float
    credential: str | None = None  # the user's credential generation at login
    kind: str = "user"  # or ldap: a person of the directory, re-read while the session lasts
    groups: frozenset[str] = frozenset()  # oidc: the provider's groups at the sign-in


class Sessions:
    """Sessions in memory: a restart logs everyone out, nothing lies on disk."""

    def __init__(self, idle: int, longest: int, clock: Callable[[], float] = time.monotonic):
        self.idle, self.longest, self.clock = idle, longest, clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, credential: str | None = None, kind: str = "user",
               groups: frozenset[str] = frozenset()) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now,
                          credential, kind, groups)
        with self._lock:
            if len(self._by_id) >= 10000:  # bounded: the oldest goes
                self._by_id.pop(next(iter(self._by_id)))
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.created > self.longest:
                del self._by_id[session_id]
                return None
            session.seen = now
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)


class Accounts(Protocol):
    """What the pages need of the token service."""

    @property
    def policy(self) -> Policy: ...

    def login_user(self, name: str, password: str, address: str) -> Subject | None: ...

    def credential(self, name: str) -> str | None: ...

    def person(self, name: str) -> Subject | None: ...

    def audit(self, event: str, **fields: Any) -> None: ...


@dataclass
class Visitor:
    subject: Subject
    session: Session | None

    @property
    def user(self) -> str | None:
        return self.subject.name if self.subject.person else None


class Web:
    def __init__(self, accounts: Accounts, catalog: Catalog, config: WebConfig,
                 today: Callable[[], date] = date.today, oidc: Provider | None = None,
                 cli: CliSecrets | None = None) -> None:
        self.accounts = accounts
        self.oidc = oidc  # registry_oidc: sign-in by single sign-on
        self.cli = cli  # and the CLI secrets of the people who do
        self.catalog = catalog
        self.config = config
        self.today = today
        self.sessions = Sessions(config.session_idle, config.session_max)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "pages"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            bytes=human_bytes, short=_short, when=_when, quote=lambda s: quote(str(s)))
        # The assets are small and change only with a deploy (which restarts the service).
        self.static = {p.name: (p.read_bytes(), _content_type(p.name))
                       for p in (HERE / "static").iterdir() if p.is_file()}

    # ------------------------------------------------------------------ dispatch

    def respond(self, method: str, path: str, query: str, headers: Mapping[str, str],
                body: str, address: str) -> Response:
        """One HTTP request as the server read it (path unquoted, header names lower-case)."""
        return self.handle(Request(method, path, parse_qs(query), headers,
                                   parse_qs(body, keep_blank_values=True), address))

    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = self._route(request)
        except BackendError as error:
            response = self._page(None, "error.html", 503 if error.status >= 500 else 502,
                                  message=f"The registry answered: {error}")
        except ManifestError as error:
            response = self._page(None, "error.html", 502, message=str(error))
        except StoreDown as error:  # the bucket the replicas share their CLI secrets in
            print(f"regops-token: {error}", file=sys.stderr)
            response = self._page(None, "error.html", 503,
                                  message="The CLI secrets' store does not answer; try "
                                          "again later (the service log says why).")
        except Exception:  # a page that fails says so; the service goes on
            traceback.print_exc(file=sys.stderr)
            response = self._page(None, "error.html", 500,
                                  message="This page failed; the service log says why.")
        response.headers.append(
            ("Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}"))
        return response

    def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path.startswith("/static/") and method in ("GET", "HEAD"):
            return self._asset(path[len("/static/"):])
        visitor = self._visitor(request)
        if method == "POST" and path not in ("/login",) and not self._csrf_ok(request, visitor):
            self.accounts.audit("ui_refused", subject=visitor.subject.label,
                                client_ip=request.address, reason="CSRF check failed", path=path)
            return self._page(visitor, "error.html", 403,
                              message="This form has expired or did not come from this site. "
                                      "Go back, reload the page and try again.")
        routes: dict[tuple[str, str], Callable[[Request, Visitor, str], Response]] = {
            ("GET", "/login"): self.login_form,
            ("POST", "/login"): self.login,
            ("POST", "/logout"): self.logout,
            ("GET", "/access"): self.access,
            ("GET", "/robots"): self.robots,
            ("GET", "/admin"): self.admin,
            ("GET", "/oidc/login"): self.oidc_start,
            ("GET", "/oidc/callback"): self.oidc_callback,
            ("GET", "/cli-secret"): self.cli_secret,
            ("POST", "/cli-secret"): self.cli_secret_change,
        }
        if (method, path) in routes:
            return routes[(method, path)](request, visitor, "")
        if method == "GET" and path in ("/", ""):
            return _redirect("/repositories/")
        prefixes: list[tuple[str, str, Callable[[Request, Visitor, str], Response]]] = [
            ("GET", "/repositories/", self.tree),
            ("GET", "/repo/", self.repository),
            ("GET", "/image/", self.image),
            ("GET", "/delete/", self.delete_form),
            ("POST", "/delete/", self.delete),
        ]
        for verb, prefix, handler in prefixes:
            if method == verb and path.startswith(prefix):
                return handler(request, visitor, path[len(prefix):])
        return self._page(visitor, "error.html", 404, message="No such page.")

    # ------------------------------------------------------------------ visitors

    def _visitor(self, request: Request) -> Visitor:
        """The session's user, while they are in the rules and their credential is the
        one they logged in with (a new password, `regops users passwd` or a removal
        ends every session of theirs)."""
        session = self.sessions.get(request.cookie(SESSION_COOKIE))
        if session and session.kind == OIDC:  # as the provider said at the sign-in
            if self.oidc is not None:
                return Visitor(Subject(OIDC, session.user, session.groups), session)
            self.sessions.drop(session.id)
            return Visitor(Subject(ANONYMOUS), None)
        if session and session.kind == LDAP:  # the directory says who they are now
            person = self.accounts.person(session.user)
            if person is not None:
                return Visitor(person, session)
            self.sessions.drop(session.id)
            return Visitor(Subject(ANONYMOUS), None)
        if session and session.user in self.accounts.policy.users:
            credential = self.accounts.credential(session.user)
            if credential is not None and hmac.compare_digest(credential,
                                                              session.credential or ""):
                return Visitor(Subject("user", session.user), session)
            self.sessions.drop(session.id)
        return Visitor(Subject(ANONYMOUS), None)

    def _csrf_ok(self, request: Request, visitor: Visitor) -> bool:
        if visitor.session is None or not _same_origin(request):
            return False
        return hmac.compare_digest(request.field("csrf").encode(),
                                   visitor.session.csrf.encode())

    def _rights(self, visitor: Visitor, repository: str) -> frozenset[str]:
        return self.accounts.policy.allowed(visitor.subject, repository)

    # ------------------------------------------------------------------ login

    def login_form(self, request: Request, visitor: Visitor, _: str,
                   error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self._page(visitor, "login.html", status, login_csrf=token, error=error,
                              next=_local(request.arg("next") or request.field("next")),
                              sso=self.oidc.config.label if self.oidc else "")
        response.headers.append(("Set-Cookie", _cookie(LOGIN_COOKIE, token, 900)))
        return response

    def login(self, request: Request, visitor: Visitor, _: str) -> Response:
        given = request.field("csrf")
        if not given or not _same_origin(request) or not hmac.compare_digest(
                given.encode(), request.cookie(LOGIN_COOKIE).encode()):
            return self.login_form(request, visitor, "", status=403,
                                   error="The login form expired; please try again.")
        name, password = request.field("username").strip(), request.field("password")
        try:
            found = self.accounts.login_user(name, password, request.address) if (
                name and password) else None
        except Unavailable:
            return self.login_form(request, visitor, "", status=503,
                                   error="The directory does not answer; people of the "
                                         "directory cannot log in now. Try again later.")
        except Busy as busy:
            response = self.login_form(request, visitor, "", status=429,
                                       error="Too many login attempts at once; try again in "
                                             f"{busy.retry_after} s.")
            response.headers.append(("Retry-After", str(busy.retry_after)))
            return response
        if found is None:
            return self.login_form(request, visitor, "", status=401,
                                   error="Incorrect username or password.")
        if visitor.session:
            self.sessions.drop(visitor.session.id)
        session = self.sessions.create(found.name, self.accounts.credential(found.name)
                                       if found.kind == "user" else None, found.kind)
        self.accounts.audit("ui_login", subject=found.label, client_ip=request.address)
        response = _redirect(request.field("next"))  # a local path, else the start
        response.headers.append(("Set-Cookie", _cookie(SESSION_COOKIE, session.id,
                                                       self.config.session_max)))
        response.headers.append(("Set-Cookie", _cookie(LOGIN_COOKIE, "", 0)))
        return response

    def logout(self, request: Request, visitor: Visitor, _: str) -> Response:
        if visitor.session:
            self.sessions.drop(visitor.session.id)
            self.accounts.audit("ui_logout", subject=visitor.subject.label,
                                client_ip=request.address)
        response = _redirect("/repositories/")
        response.headers.append(("Set-Cookie", _cookie(SESSION_COOKIE, "", 0)))
        return response

    # ------------------------------------------------------------------ single sign-on

    def oidc_start(self, request: Request, visitor: Visitor, _: str) -> Response:
        """Off to the provider, with this sign-in's state, nonce and PKCE verifier in a
        cookie for the way back."""
        if self.oidc is None:
            return self._page(visitor, "error.html", 404, message="No such page.")
        pending = Pending.new(_local(request.arg("next")), time.time())
        try:
            target = self.oidc.authorization_url(pending)
        except ProviderDown as error:
            return self._page(visitor, "error.html", 503, message=f"{error}. Try again later.")
        return Response(303, b"", [
            ("Location", target), ("Cache-Control", "no-store"),
            ("Set-Cookie", _cookie(STATE_COOKIE, pending.cookie(self.oidc.cookie_key),
                                   STATE_TTL))])

    def oidc_callback(self, request: Request, visitor: Visitor, _: str) -> Response:
        """Back from the provider: the state checked, the code exchanged, the ID token
        verified; then a session of `oidc:NAME` with the provider's groups."""
        if self.oidc is None:
            return self._page(visitor, "error.html", 404, message="No such page.")
        pending = Pending.from_cookie(request.cookie(STATE_COOKIE), time.time(),
                                      self.oidc.cookie_key)
        cleared = ("Set-Cookie", _cookie(STATE_COOKIE, "", 0))
        try:
            if request.arg("error"):
                raise OidcError("the provider refused the sign-in: " + guard.clip(
                    f"{request.arg('error')} {request.arg('error_description')}".strip(), 200))
            who = self.oidc.finish(request.arg("code"), request.arg("state"), pending)
            if who.name in self.accounts.policy.users or who.name in self.accounts.policy.robots:
                raise OidcError(f"the name {who.name!r} belongs to a local account of this "
                                "registry; the provider's account cannot use it")
        except ProviderDown as error:
            self.accounts.audit("login_failed", subject="oidc", client_ip=request.address,
                                via="web", reason=str(error))
            response = self._page(visitor, "error.html", 503, message=f"{error}. Try again later.")
            response.headers.append(cleared)
            return response
        except OidcError as error:
            self.accounts.audit("login_failed", subject="oidc", client_ip=request.address,
                                via="web", reason=str(error))
            response = self._page(visitor, "error.html", 401,
                                  message=f"Single sign-on failed: {error}.")
            response.headers.append(cleared)
            return response
        if visitor.session:
            self.sessions.drop(visitor.session.id)
        session = self.sessions.create(who.name, None, OIDC, who.groups)
        if self.cli is not None:
            self.cli.signed_in(who.name, who.groups)
        self.accounts.audit("ui_login", subject=f"{OIDC}:{who.name}", client_ip=request.address,
                            groups=sorted(who.groups))
        response = _redirect(pending.next if pending else "")
        response.headers += [
            ("Set-Cookie", _cookie(SESSION_COOKIE, session.id, self.config.session_max)),
            cleared]
        return response

    def cli_secret(self, request: Request, visitor: Visitor, _: str, secret: str = "",
                   message: str = "") -> Response:
        """The signed-in person's CLI secret: when it was made and expires (never the
        secret itself, which only the page that creates it shows)."""
        if visitor.subject.kind != OIDC or self.cli is None:
            if not visitor.user:
                return _redirect(f"/login?next={quote('/cli-secret')}")
            return self._page(visitor, "error.html", 404, message=(
                "CLI secrets are for people who sign in by single sign-on; use your "
                "password with docker login."))
        return self._page(visitor, "cli-secret.html", entry=self.cli.get(visitor.subject.name),
                          secret=secret, message=message, days=self.cli.days)

    def cli_secret_change(self, request: Request, visitor: Visitor, _: str) -> Response:
        """Create, replace or revoke one's own CLI secret; an admin also revokes anyone's
        (a person who left keeps no docker password until it would expire)."""
        owner = request.field("name")
        if owner and self.cli is not None and self.accounts.policy.is_admin(visitor.subject):
            if self.cli.revoke(owner):
                self.accounts.audit("cli_secret_revoked", subject=visitor.subject.label,
                                    client_ip=request.address, owner=f"{OIDC}:{owner}")
            return _redirect("/admin#cli-secrets")
        if visitor.subject.kind != OIDC or self.cli is None:
            return self.cli_secret(request, visitor, "")
        name, action = visitor.subject.name, request.field("action")
        if action == "create":
            secret, entry = self.cli.create(name, visitor.subject.groups)
            self.accounts.audit("cli_secret_created", subject=visitor.subject.label,
                                client_ip=request.address, id=entry.id)
            return self.cli_secret(request, visitor, "", secret=secret)
        if action == "revoke" and self.cli.revoke(name):
            self.accounts.audit("cli_secret_revoked", subject=visitor.subject.label,
                                client_ip=request.address)
            return self.cli_secret(request, visitor, "", message="Your CLI secret is revoked: "
                                   "docker logins with it are refused from now on.")
        return self.cli_secret(request, visitor, "")

    # ------------------------------------------------------------------ browsing

    def visible(self, visitor: Visitor) -> list[str]:
        """The repositories this visitor may pull, sorted."""
        policy = self.accounts.policy
        return [r for r in self.catalog.repositories()
                if "pull" in policy.allowed(visitor.subject, r)]

    def tree(self, request: Request, visitor: Visitor, rest: str) -> Response:
        prefix = rest.strip("/")
        repos = self.visible(visitor)
        query = request.arg("q").strip().lower()
        if query:
            found = [r for r in repos if query in r.lower()]
            return self._page(visitor, "tree.html", query=query, prefix="", crumbs=[],
                              namespaces=[], repositories=[self._repo_row(r) for r in
                                                           found[:500]],
                              more=max(0, len(found) - 500), total=len(repos))
        base = prefix + "/" if prefix else ""
        inside = [r for r in repos if r.startswith(base)]
        if prefix and not inside:
            return self._page(visitor, "error.html", 404,
                              message=f"No namespace {prefix} (or nothing in it you may pull).")
        groups: dict[str, list[str]] = {}
        direct = []
        for repo in inside:
            head, sep, _ = repo[len(base):].partition("/")
            if sep:
                groups.setdefault(base + head, []).append(repo)
            else:
                direct.append(repo)
        namespaces = [self._namespace_row(name, members)
                      for name, members in sorted(groups.items())]
        crumbs = []
        parts = prefix.split("/") if prefix else []
        for i in range(len(parts)):
            crumbs.append(("/".join(parts[:i + 1]), parts[i]))
        return self._page(visitor, "tree.html", query="", prefix=prefix, crumbs=crumbs,
                          namespaces=namespaces,
                          repositories=[self._repo_row(r) for r in direct], more=0,
                          total=len(repos))

    def _namespace_row(self, name: str, members: list[str]) -> dict[str, Any]:
        blobs: dict[str, int] = {}
        counted = 0
        for repo in members:
            found = self.catalog.repo_blobs(repo)
            if found is not None:
                blobs.update(found)
                counted += 1
        return {"name": name, "leaf": name.rsplit("/", 1)[-1], "repositories": len(members),
                "size": sum(blobs.values()), "complete": counted == len(members)}

    def _repo_row(self, name: str) -> dict[str, Any]:
        blobs = self.catalog.repo_blobs(name)
        return {"name": name, "leaf": name.rsplit("/", 1)[-1],
                "size": sum(blobs.values()) if blobs is not None else None}

    def repository(self, request: Request, visitor: Visitor, name: str) -> Response:
        rights = self._rights(visitor, name)
        if "pull" not in rights:
            return self._hidden(visitor, name)
        sort = "time" if request.arg("sort") == "time" else "name"
        try:
            page = max(1, int(request.arg("page", "1")))
        except ValueError:
            page = 1
        rows, total = self.catalog.rows(name, sort, page, PER_PAGE)
        if not total and name not in self.catalog.repositories():
            return self._hidden(visitor, name)
        pages = max(1, -(-total // PER_PAGE))
        deleted = request.arg("deleted")
        return self._page(
            visitor, "repo.html", repository=name, rows=rows, total=total, page=page,
            pages=pages, sort=sort, may_delete="delete" in rights,
            crumbs=_crumbs(name), deleted=deleted.split(",") if deleted else [],
            next_gc=self._next_gc(), platforms=_platforms)

    def image(self, request: Request, visitor: Visitor, rest: str) -> Response:
        parsed = _reference(rest)
        if parsed is None:
            return self._page(visitor, "error.html", 404, message="Not an image reference.")
        name, ref = parsed
        rights = self._rights(visitor, name)
        if "pull" not in rights:
            return self._hidden(visitor, name)
        try:
            detail = self.catalog.detail(name, ref)
        except BackendError as error:
            if error.status == 404:
                return self._page(visitor, "error.html", 404, message=f"No image {name}:{ref}.")
            raise
        return self._page(visitor, "image.html", d=detail, reference=ref,
                          may_delete="delete" in rights and not ref.startswith("sha256:"),
                          crumbs=_crumbs(name))

    # ------------------------------------------------------------------ delete

    def _plan(self, name: str, tag: str) -> dict[str, Any]:
        """What deleting `name:tag` would take: like `regops delete`, by digest."""
        self.catalog.changed(name)  # decide on the registry's present state
        digests = self.catalog.tag_digests(name)
        digest = digests.get(tag)
        if digest is None:
            return {"missing": True}
        summary = self.catalog.summary(name, digest)
        sharing = sorted((t for t, d in digests.items() if d == digest and t != tag),
                         key=natural_key)
        parents = []
        for other_tag, other in digests.items():
            if other == digest:
                continue
            found: Summary = self.catalog.summary(name, other)
            if digest in found.children:
                parents.append(other_tag)
        return {"missing": False, "digest": digest, "summary": summary, "sharing": sharing,
                "parents": sorted(parents, key=natural_key)}

    def _delete_target(self, request: Request, visitor: Visitor, rest: str
                       ) -> Response | tuple[str, str, dict[str, Any]]:
        """(repository, tag, plan) of a delete page or form, or the page that refuses it."""
        parsed = _reference(rest)
        if parsed is None or parsed[1].startswith("sha256:"):
            return self._page(visitor, "error.html", 404, message="Not a tag.")
        name, tag = parsed
        refusal = self._delete_refusal(request, visitor, name)
        if refusal:
            return refusal
        plan = self._plan(name, tag)
        if plan["missing"]:
            return self._page(visitor, "error.html", 404, message=f"No tag {name}:{tag}.")
        return name, tag, plan

    def _delete_page(self, visitor: Visitor, name: str, tag: str, plan: dict[str, Any],
                     status: int = 200, problem: str = "") -> Response:
        return self._page(visitor, "delete.html", status, repository=name, tag=tag, plan=plan,
                          next_gc=self._next_gc(), crumbs=_crumbs(name), problem=problem)

    def delete_form(self, request: Request, visitor: Visitor, rest: str) -> Response:
        target = self._delete_target(request, visitor, rest)
        if isinstance(target, Response):
            return target
        return self._delete_page(visitor, *target)

    def delete(self, request: Request, visitor: Visitor, rest: str) -> Response:
        target = self._delete_target(request, visitor, rest)
        if isinstance(target, Response):
            return target
        name, tag, plan = target
        problem = ""
        if plan["digest"] != request.field("digest"):
            problem = f"{name}:{tag} was pushed again since the page was shown; look again."
        elif plan["parents"]:
            problem = (f"{name}:{tag} is part of the multi-arch image "
                       f"{', '.join(plan['parents'])}; deleting it would break it.")
        elif plan["sharing"] and sorted(request.form.get("also", [])) != sorted(plan["sharing"]):
            problem = (f"{name}:{tag} shares its image with {', '.join(plan['sharing'])}; the "
                       "registry deletes them together. Tick each of them to go ahead.")
        if problem:
            return self._delete_page(visitor, name, tag, plan, 409, problem)
        try:
            self.catalog.backend.delete_manifest(name, plan["digest"], visitor.subject.name,
                                                 request.address)
        except BackendError as error:
            why = ("the registry is read-only while garbage collection runs; try again in a "
                   "minute" if error.status in (405, 503) else str(error))
            return self._delete_page(visitor, name, tag, plan, 503, f"Not deleted: {why}.")
        finally:
            self.catalog.changed(name)
        gone = ",".join([tag, *plan["sharing"]])
        return _redirect(f"/repo/{quote(name)}?{urlencode({'deleted': gone})}")

    def _delete_refusal(self, request: Request, visitor: Visitor, name: str) -> Response | None:
        rights = self._rights(visitor, name)
        if "pull" not in rights:
            return self._hidden(visitor, name)
        if "delete" in rights:
            return None
        self.accounts.audit("ui_refused", subject=visitor.subject.label,
                            client_ip=request.address, repository=name,
                            reason="no delete right")
        if visitor.session is None:
            return _redirect(f"/login?{urlencode({'next': request.path})}")
        return self._page(visitor, "error.html", 403,
                          message=f"You may not delete in {name}: no rule gives you the delete "
                                  "right there (see My access).")

    # ------------------------------------------------------------------ access

    def access(self, request: Request, visitor: Visitor, _: str) -> Response:
        policy = self.accounts.policy
        subject = visitor.subject
        labels = policy.labels(subject)
        user = visitor.user
        rules = []
        for number, rule in enumerate(policy.rules, start=1):
            via = [w for w in rule.who if w in labels]
            if via:
                rules.append({"number": number, "via": via, "actions": [
                    a for a in ACTIONS if a in rule.actions],
                    "repositories": [p.replace("${user}", user) if user else p
                                     for p in rule.repositories
                                     if user or "${user}" not in p]})
        repository = request.arg("repository").strip()
        explained = None
        if repository:
            explained = {"repository": repository,
                         "actions": [a for a in ACTIONS
                                     if a in policy.allowed(subject, repository)],
                         "reasons": policy.reasons(subject, repository)}
        groups = sorted(g for g, members in policy.groups.items() if user in members)
        return self._page(visitor, "access.html", rules=[r for r in rules if r["repositories"]],
                          groups=groups, explained=explained, repository=repository,
                          open_policy=policy.open)

    def robots(self, request: Request, visitor: Visitor, _: str) -> Response:
        if visitor.session is None:
            return _redirect("/login?next=/robots")
        policy = self.accounts.policy
        today = self.today()
        rows = []
        for robot in sorted(policy.robots.values(), key=lambda r: r.name):
            if not self._administers(visitor, robot.repositories, robot.actions):
                continue
            left = (robot.expires - today).days
            rows.append({"robot": robot, "days_left": left,
                         "state": "expired" if left < 0 else
                         "soon" if left <= ROBOT_WARNING_DAYS else "ok",
                         "last_use": self.catalog.history.robot_last_use.get(robot.name)})
        return self._page(visitor, "robots.html", rows=rows, warning_days=ROBOT_WARNING_DAYS)

    def _administers(self, visitor: Visitor, patterns: tuple[str, ...],
                     actions: frozenset[str]) -> bool:
        """Admins see every robot; a user those whose every repository pattern lies
        inside patterns where the user holds at least the robot's rights."""
        policy = self.accounts.policy
        return all(policy.covers(visitor.subject, pattern, actions) for pattern in patterns)

    # ------------------------------------------------------------------ admin

    def admin(self, request: Request, visitor: Visitor, _: str) -> Response:
        if visitor.session is None:
            return _redirect("/login?next=/admin")
        if not self.accounts.policy.is_admin(visitor.subject):
            return self._page(visitor, "error.html", 403, message="Only admins see this page.")
        kind = request.arg("kind", "all")
        who = request.arg("who").strip() or None
        repository = request.arg("repository").strip() or None
        if repository and compile_pattern(repository) is None:
            repository = None
        try:
            last = min(1000, max(1, int(request.arg("last", "100"))))
        except ValueError:
            last = 100
        events = {"logins": ("ui_login", "login_failed"), "pushes": ("push",),
                  "deletes": ("delete",), "denials": (*_DENIALS, "token")}.get(kind, ())
        records = audit_log.select(self.config.audit, last * 4 if kind == "denials" else last,
                                   who=who, repository=repository, events=events)
        if kind == "denials":
            records = [r for r in records if _denied(r)][-last:]
        records.reverse()  # newest first
        repos = self.catalog.repositories()
        top: dict[str, list[str]] = {}
        for repo in repos:
            top.setdefault(repo.split("/", 1)[0], []).append(repo)
        usage = [self._namespace_row(name, members) for name, members in sorted(top.items())]
        total = self._namespace_row("", repos)
        return self._page(visitor, "admin.html", records=records, kind=kind, who=who or "",
                          repository=repository or "", last=last, gc=read_gc_record(
                              self.config.gc_state), next_gc=self._next_gc(), usage=usage,
                          total=total, indexed_at=self.catalog.indexed_at,
                          cli_secrets=self.cli.entries() if self.cli is not None else None,
                          now=int(time.time()))

    # ------------------------------------------------------------------ helpers

    def _next_gc(self) -> datetime | None:
        if not self.config.gc_schedule:
            return None
        try:
            return cron.next_run(self.config.gc_schedule, datetime.now().astimezone())
        except ValueError:
            return None

    def _hidden(self, visitor: Visitor, name: str) -> Response:
        """Not allowed to pull looks like not there: names are not disclosed."""
        if visitor.session is None:
            return self._page(visitor, "error.html", 404,
                              message=f"No repository {name} you may see. Log in to see more.")
        return self._page(visitor, "error.html", 404, message=f"No repository {name} you may see.")

    def _asset(self, name: str) -> Response:
        found = self.static.get(name)
        if found is None:
            return Response(404, b"not found\n", [("Content-Type", "text/plain")])
        body, kind = found
        return Response(200, body, [
            ("Content-Type", kind),
            ("Cache-Control", "public, max-age=3600"),
            ("X-Content-Type-Options", "nosniff")])

    def _page(self, visitor: Visitor | None, template: str, status: int = 200,
              **context: Any) -> Response:
        visitor = visitor or Visitor(Subject(ANONYMOUS), None)
        policy = self.accounts.policy
        body = self.templates.get_template(template).render(
            me=visitor.user, admin=policy.is_admin(visitor.subject),
            sso_person=visitor.subject.kind == OIDC,
            csrf=visitor.session.csrf if visitor.session else "",
            registry=self.config.address, **context).encode()
        return Response(status, body, [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", _CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"),
        ])


# --------------------------------------------------------------------------- pure helpers


def _content_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    text = kind.startswith("text/") or kind.endswith("javascript")
    return kind + ("; charset=utf-8" if text else "")


def _redirect(location: str) -> Response:
    """A redirect on this site: a target that is not a local path goes to the start."""
    return Response(303, b"", [("Location", local_path(location) or "/repositories/"),
                               ("Cache-Control", "no-store")])


def _cookie(name: str, value: str, max_age: int) -> str:
    return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"


def _same_origin(request: Request) -> bool:
    """A browser's Origin (or Referer) names this host; a missing one passes (the CSRF
    token still has to match)."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True
    return origin.split("://", 1)[-1].split("/", 1)[0] == host


def _local(target: str) -> str:
    """Only paths on this site are followed after a login (no open redirect)."""
    return local_path(target)


def _reference(text: str) -> tuple[str, str] | None:
    """`team/app:1.0` or `team/app@sha256:...` -> (repository, reference)."""
    if "@" in text:
        name, _, ref = text.partition("@")
    else:
        name, sep, ref = text.rpartition(":")
        if not sep or "/" in ref:
            return None
    return (name, ref) if name and ref else None


def _crumbs(repository: str) -> list[tuple[str, str]]:
    parts = repository.split("/")[:-1]
    return [("/".join(parts[:i + 1]), parts[i]) for i in range(len(parts))]


def _platforms(summary: Summary | None) -> str:
    return ", ".join(summary.platforms) if summary and summary.platforms else "-"


def _short(digest: str | None) -> str:
    return (digest or "").removeprefix("sha256:")[:12]


def _when(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("T", " ").removesuffix("Z") + (" UTC" if value.endswith("Z")
                                                              else "")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() == UTC.utcoffset(None):
            return value.strftime("%Y-%m-%d %H:%M UTC")
        return value.strftime("%Y-%m-%d %H:%M %Z").strip()
    if isinstance(value, int) and not isinstance(value, bool):  # seconds since the epoch
        return _when(datetime.fromtimestamp(value, UTC))
    return "-"


def _denied(record: Mapping[str, Any]) -> bool:
    if record.get("event") in _DENIALS:
        return True
    if record.get("event") != "token":
        return False
    granted = {g.rsplit(":", 1)[0]: set(g.rsplit(":", 1)[1].split(",")) - {""}
               for g in record.get("granted", []) if g.count(":") >= 2}
    for asked in record.get("requested", []):
        scope, _, actions = str(asked).rpartition(":")
        got = granted.get(scope, set())
        if not got or ("*" not in actions.split(",") and set(actions.split(",")) - got):
            return True
    return False

