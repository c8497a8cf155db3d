"""OpenID Connect sign-in for the web pages (registry_oidc), as a confidential client.

The authorization code flow with PKCE (S256), `state` and `nonce`: what a browser must
carry between leaving for the provider and coming back (state, nonce, the PKCE
verifier, where to go next) travels in a short-lived HttpOnly cookie, so any replica
of the registry can finish a sign-in another one started, and a `state` is accepted
once per service. The cookie carries an HMAC keyed with the client secret (which every
replica has), so only a sign-in this registry started makes it ask the provider.

The ID token is checked with PyJWT (Debian's python3-jwt): its
signature against the provider's published keys (fetched, cached, fetched again
for an unknown key id at most once a minute), the algorithm from an allow-list
(never `none` nor a shared-secret one), `iss`, `aud` (and `azp` when several),
`exp`/`iat` within a bounded skew, and the `nonce`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regops_token import guard

# Asymmetric algorithms only: an HS* token would be checked with the client secret,
# which the provider and this service both hold, and `none` is no signature at all.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
STATE_COOKIE = "regops_oidc"
STATE_TTL = 600  # seconds a browser has at the provider
JWKS_TTL = 3600
JWKS_REFETCH = 60  # an unknown key id fetches the keys again, at most this often
MAX_RESPONSE = 1024 * 1024


class OidcError(Exception):
    """A sign-in that cannot go on: the message says why, for the page and the audit."""


class ProviderDown(OidcError):
    """The provider did not answer (or not as a provider does)."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret_file: str  # a host path: the secret is read at start
    redirect_uri: str  # https://<registry address>/oidc/callback
    ca_file: str | None = None  # the provider's CA; None: the host's trusted ones
    scopes: tuple[str, ...] = ("openid", "profile", "groups")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    leeway: int = 60  # seconds of clock skew allowed on exp, iat and nbf
    timeout: int = 5
    cli_secret_days: int = 90
    cli_secrets: str | dict[str, Any] = ""  # their store: regops_token.shared.open_store
    label: str = "single sign-on"  # the button's words on the login page

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> OidcConfig:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in doc.items() if k in known}
        if "scopes" in values:
            values["scopes"] = tuple(values["scopes"])
        return cls(**values)

    def problem(self) -> str | None:
        """None when usable; else what is wrong, in one line."""
        for name in ("issuer", "redirect_uri"):
            url = urllib.parse.urlsplit(getattr(self, name))
            if url.scheme != "https" or not url.hostname:
                return f"oidc: {name} must be an https:// URL"
        if "openid" not in self.scopes:
            return "oidc: scopes must include openid"
        if not self.client_id:
            return "oidc: client_id is required"
        if not 0 <= self.leeway <= 300:
            return "oidc: leeway must be between 0 and 300 seconds"
        if not 1 <= self.cli_secret_days <= 3650:
            return "oidc: cli_secret_days must be between 1 and 3650"
        return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier (RFC 7636)."""
    return b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass(frozen=True)
class Pending:
    """A sign-in on its way through the provider, as its cookie carries it."""

    state: str
    nonce: str
    verifier: str
    next: str
    expires: int

    @classmethod
    def new(cls, next_path: str, now: float) -> Pending:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                   secrets.token_urlsafe(48), next_path, int(now) + STATE_TTL)

    def cookie(self, key: bytes) -> str:
        doc = {"s": self.state, "n": self.nonce, "v": self.verifier, "x": self.next,
               "e": self.expires}
        body = b64url(json.dumps(doc, separators=(",", ":")).encode())
        return f"{body}.{_mac(key, body)}"

    @classmethod
    def from_cookie(cls, value: str, now: float, key: bytes) -> Pending | None:
        """The pending sign-in, or None when there is none, it is malformed, not made
        with `key` or expired."""
        if not value or len(value) > 2048:
            return None
        body, _, mac = value.partition(".")
        if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            found = cls(str(doc["s"]), str(doc["n"]), str(doc["v"]), str(doc["x"]),
                        int(doc["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return found if found.expires >= now else None


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    name: str
    groups: frozenset[str]
    subject: str  # the provider's `sub`


class UsedStates:
    """States already used, until they would have expired anyway: a replayed callback
    (the same state a second time) is refused by the service that saw the first."""

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def use(self, state: str, expires: float, now: float) -> bool:
        """True the first time a state is used; False after."""
        with self._lock:
            for old in [s for s, until in self._seen.items() if until < now]:
                del self._seen[old]
            if state in self._seen:
                return False
            if len(self._seen) >= self.limit:
                self._seen.pop(next(iter(self._seen)))
            self._seen[state] = expires
            return True


Fetch = Callable[[urllib.request.Request, float], bytes]


@dataclass
class Provider:
    """The provider as this client sees it: its discovery document and keys (cached),
    the authorization URL, the code exchange and the ID token's checks."""

    config: OidcConfig
    client_secret: str = field(repr=False)
    clock: Callable[[], float] = time.time
    fetch: Fetch | None = None
    _discovery: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _keys: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _keys_at: float = field(default=-1e18, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    used: UsedStates = field(default_factory=UsedStates, init=False, repr=False)

    @property
    def cookie_key(self) -> bytes:
        """What the state cookie's HMAC is keyed with: the client secret, which every
        replica of the registry has."""
        return self.client_secret.encode()

    # ------------------------------------------------------------------ transport

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _get(self, request: urllib.request.Request) -> bytes:
        if self.fetch is not None:
            return self.fetch(request, self.config.timeout)
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout,  # noqa: S310
                                        context=self._context()) as answer:
                return answer.read(MAX_RESPONSE + 1)[:MAX_RESPONSE]
        except urllib.error.HTTPError as error:
            body = error.read(4096).decode("utf-8", "replace")
            raise OidcError(f"the provider answered {error.code} at "
                            f"{request.full_url.split('?')[0]}: {_error_text(body)}") from None
        except (OSError, ssl.SSLError) as error:
            raise ProviderDown(f"the provider {self.config.issuer} does not answer: "
                               f"{guard.clip(str(error), 200)}") from None

    def _json(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            doc = json.loads(self._get(request))
        except ValueError:
            raise ProviderDown(f"the provider's answer at {request.full_url} is not JSON") from None
        if not isinstance(doc, dict):
            raise ProviderDown(f"the provider's answer at {request.full_url} is not an object")
        return doc

    # ------------------------------------------------------------------ metadata

    def discovery(self) -> dict[str, Any]:
        """The provider's metadata, fetched once (a restart fetches it again)."""
        with self._lock:
            if self._discovery is not None:
                return self._discovery
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = self._json(urllib.request.Request(url))
        if doc.get("issuer") != self.config.issuer:
            raise ProviderDown(f"the provider at {url} names itself {doc.get('issuer')!r}, "
                               f"not {self.config.issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not str(doc.get(key, "")).startswith("https://"):
                raise ProviderDown(f"the provider's {key} is not an https:// URL")
        with self._lock:
            self._discovery = doc
        return doc

    def _key(self, kid: str | None) -> Any:
        """The provider's public key of this id, refetching the set when it is unknown
        (keys rotate) but not more than once a minute (a forged kid must not make us
        hammer the provider)."""
        import jwt

        now = self.clock()
        with self._lock:
            stale = now - self._keys_at > JWKS_TTL
            known = self._keys.get(kid or "")
            may_fetch = now - self._keys_at > JWKS_REFETCH
        if known is not None and not stale:
            return known
        if may_fetch or stale:
            doc = self._json(urllib.request.Request(self.discovery()["jwks_uri"]))
            keys: dict[str, Any] = {}
            for entry in doc.get("keys", []):
                if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
                except (jwt.PyJWTError, ValueError, TypeError):
                    continue  # a key type this host cannot use: not ours to sign with
            with self._lock:
                self._keys, self._keys_at = keys, now
            known = keys.get(kid or "")
            if known is None and kid is None and len(keys) == 1:
                known = next(iter(keys.values()))
        if known is None:
            raise OidcError(f"the ID token is signed with a key the provider does not "
                            f"publish (kid {guard.clip(str(kid), 64)!r})")
        return known

    # ------------------------------------------------------------------ the flow

    def authorization_url(self, pending: Pending) -> str:
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": challenge(pending.verifier),
            "code_challenge_method": "S256",
        })
        endpoint = self.discovery()["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def exchange(self, code: str, pending: Pending) -> dict[str, Any]:
        """The tokens for an authorization code (client_secret_basic, the PKCE verifier)."""
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": self.config.redirect_uri, "code_verifier": pending.verifier,
        }).encode()
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.config.client_id, safe='')}:"
            f"{urllib.parse.quote(self.client_secret, safe='')}".encode()).decode()
        request = urllib.request.Request(
            self.discovery()["token_endpoint"], data=body, method="POST",
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"})
        tokens = self._json(request)
        if not isinstance(tokens.get("id_token"), str):
            raise OidcError("the provider's token answer holds no ID token")
        return tokens

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once every check passed; OidcError naming the first
        that failed."""
        import jwt

        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as error:
            raise OidcError(f"the ID token is malformed: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise OidcError(f"the ID token's algorithm {guard.clip(str(algorithm), 20)!r} "
                            "is not accepted")
        key = self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=[algorithm], audience=self.config.client_id,
                issuer=self.config.issuer, leeway=self.config.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]})
        except jwt.PyJWTError as error:
            raise OidcError(f"the ID token is refused: {error}") from None
        if float(claims["iat"]) > self.clock() + self.config.leeway:
            raise OidcError("the ID token is refused: issued in the future")
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and (
                claims.get("azp") != self.config.client_id):
            raise OidcError("the ID token is refused: several audiences and azp is not "
                            "this client")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
                claims["nonce"].encode(), nonce.encode()):
            raise OidcError("the ID token is refused: its nonce is not this sign-in's")
        return claims

    def identity(self, claims: dict[str, Any]) -> Identity:
        """The registry's name and groups of whoever the claims are about."""
        name = claims.get(self.config.username_claim)
        if not isinstance(name, str) or not name:
            raise OidcError(f"the ID token has no {self.config.username_claim!r} claim "
                            "(registry_oidc.username_claim)")
        if not guard.account_name(name):
            raise OidcError(f"the name {guard.clip(name, 64)!r} cannot be a registry user")
        found = claims.get(self.config.groups_claim, [])
        if isinstance(found, str):
            found = [found]
        if not isinstance(found, list):
            found = []
        groups = frozenset(g for g in found if isinstance(g, str) and 0 < len(g) <= 255
                           and guard.header_safe(g))
        return Identity(name, groups, str(claims["sub"]))

    def finish(self, code: str, state: str, pending: Pending | None) -> Identity:
        """The callback's checks in order: a sign-in this browser started, its state,
        used once; the code exchanged; the ID token verified."""
        now = self.clock()
        if pending is None:
            raise OidcError("no sign-in was started from this browser, or it took longer "
                            f"than {STATE_TTL // 60} minutes")
        if not state or not secrets.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("the state does not match the sign-in this browser started")
        if not self.used.use(pending.state, pending.expires, now):
            raise OidcError("this sign-in's state was used already")
        if not code:
            raise OidcError("the provider sent no code")
        tokens = self.exchange(code, pending)
        return self.identity(self.verify(tokens["id_token"], pending.nonce))


def _mac(key: bytes, body: str) -> str:
    return b64url(hmac.new(key, b"regops-oidc-state\0" + body.encode(), hashlib.sha256).digest())


def _error_text(body: str) -> str:
    try:
        doc = json.loads(body)
        text = f"{doc.get('error', '')} {doc.get('error_description', '')}".strip()
    except (ValueError, AttributeError):
        text = body
    return guard.clip(text, 200)
