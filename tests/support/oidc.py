"""A real OpenID Connect provider for the tests: npm's `oidc-provider` 8.8.1 (panva's,
OpenID-certified) on Node.js, run by tests/support/oidc_provider/server.mjs from a
temporary directory, over HTTPS with a server certificate from a CA the test makes.

Authorization code flow with PKCE (S256) only, ID tokens signed RS256 with a key made
at start, the scopes openid, profile (preferred_username, name), email and groups, whose
claims go in the ID token too. Its own login form (`login`, `password`, "Sign in")
grants consent by itself. The accounts live in a JSON file that the server reads again
on every login and lookup: `set_account` and `remove_account` change them while it runs.

`code_flow` plays the browser and the client through a whole login, for the tests of
the support and for the negative tests of the registry's OIDC login."""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from regops.secrets import pki
from tests.support.require import IN_CI, require_command
from tests.support.slapd import free_port

PACKAGE = Path(__file__).resolve().parent / "oidc_provider"
VERSION = "8.8.1"  # oidc-provider, as package.json pins it
SETUP = "npm ci --prefix tests/support/oidc_provider"

CLIENT_ID = "regops"
# Where the default client is sent back to when the caller names no redirect URI:
# a name that never resolves (code_flow never fetches the redirect URI anyway).
DEFAULT_REDIRECT_URI = "https://registry.invalid/oidc/callback"
# login -> password; each account that a test changes is changed by that test only.
PASSWORDS = {
    "erin": "erin-oidc-pw-5",
    "frank": "frank-oidc-pw-66",
}
ACCOUNTS: dict[str, dict[str, Any]] = {
    "erin": {"password": PASSWORDS["erin"], "name": "Erin Example",
             "email": "erin@example.test", "groups": ["platform-team"]},
    "frank": {"password": PASSWORDS["frank"], "name": "Frank Example",
              "email": "frank@example.test", "groups": ["readers"]},
}

START_SECONDS = 20.0  # at most, for the provider to answer its discovery document
STOP_SECONDS = 10.0  # at most, for node to end after SIGTERM (then SIGKILL)
HTTP_SECONDS = 10.0  # each request of the helpers below


def require_package() -> None:
    """oidc-provider installed beside server.mjs, at the pinned version; missing, the
    test fails in CI (scripts/setup must install it) and is skipped elsewhere."""
    installed = PACKAGE / "node_modules" / "oidc-provider" / "package.json"
    try:
        version = json.loads(installed.read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = None
    if version == VERSION:
        return
    found = f"version {version} is installed" if version else "it is not installed"
    why = (f"oidc-provider {VERSION} is needed in {PACKAGE / 'node_modules'} and {found}: "
           f"run `{SETUP}` (scripts/setup does)")
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


class OidcProvider:
    """oidc-provider on `serve_on` (an IPv4 address, default 127.0.0.1) at `issuer`, https://ADDRESS:PORT,
    with a certificate naming that address (and 127.0.0.1, localhost) from the CA in
    `ca_file`.

    The default client `client_id` ("regops") has the secret `client_secret` and the
    `redirect_uris` given (several allowed); `clients` adds more, each a dict of
    client_id, client_secret (random if missing), redirect_uris (the default client's if
    missing) and any other client metadata oidc-provider takes. `accounts` (login ->
    password, name, email, groups) replaces the default ACCOUNTS. `ttl` overrides the
    provider's lifetimes in seconds (AuthorizationCode, AccessToken, IdToken, Session...).

    The CA and the log are written under `tmp`; the key, the config and the accounts
    file live in a directory of their own, removed at `stop`."""

    def __init__(self, tmp: Path, serve_on: str | None = None,
                 accounts: dict[str, dict[str, Any]] | None = None,
                 clients: list[dict[str, Any]] | None = None,
                 redirect_uris: list[str] | tuple[str, ...] = (DEFAULT_REDIRECT_URI,),
                 ttl: dict[str, int] | None = None) -> None:
        self.node = require_command("node", "nodejs")
        require_package()
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.address = serve_on or "127.0.0.1"
        self.port = free_port(self.address)
        self.issuer = f"https://{self.address}:{self.port}"
        self.ca_file = tmp / "oidc-ca.crt"
        self.log = tmp / "oidc-provider.log"
        self.client_id = CLIENT_ID
        self.client_secret = "oidc-" + secrets.token_urlsafe(24)
        self.redirect_uris = list(redirect_uris)
        self.clients: list[dict[str, Any]] = [{
            "client_id": self.client_id, "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris}]
        for extra in clients or []:
            self.clients.append({"client_secret": "oidc-" + secrets.token_urlsafe(24),
                                 "redirect_uris": self.redirect_uris, **extra})
        self._accounts = copy.deepcopy(ACCOUNTS if accounts is None else accounts)
        self.ttl = ttl
        self.home = Path(tempfile.mkdtemp(prefix="regops-oidc-"))
        self.accounts_file = self.home / "accounts.json"
        self.process: subprocess.Popen[bytes] | None = None
        self._metadata: dict[str, Any] | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> OidcProvider:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        names = list(dict.fromkeys([self.address, "127.0.0.1", "localhost"]))
        cert = pki.ensure_server_cert(self.tmp / "oidc-pki", names)
        self.ca_file.write_bytes(cert.ca_pem)
        (self.home / "server.crt").write_bytes(cert.cert_pem)
        key = self.home / "server.key"
        key.touch(mode=0o600)
        key.write_bytes(cert.key_pem)
        self._write_accounts()
        config = {
            "issuer": self.issuer, "host": self.address, "port": self.port,
            "cert": str(self.home / "server.crt"), "key": str(key),
            "accounts_file": str(self.accounts_file), "clients": self.clients,
            **({"ttl": self.ttl} if self.ttl else {}),
        }
        (self.home / "config.json").write_text(json.dumps(config, indent=2))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.node, str(PACKAGE / "server.mjs"), str(self.home / "config.json")],
                cwd=PACKAGE, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        url = f"{self.issuer}/.well-known/openid-configuration"
        last = "no answer"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited with {self.process.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=self.ssl_context()) as r:
                    if r.status == 200:
                        self._metadata = json.load(r)
                        return
                    last = f"status {r.status}"
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"oidc-provider did not answer {url} within "
                                   f"{START_SECONDS:.0f} s ({last}): {self.log_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
        self.process = None
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # --- what it is, what it saw, and the test's own changes --------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this provider's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document, as read when the provider came up."""
        if self._metadata is None:
            raise RuntimeError("the provider is not started")
        return self._metadata

    def log_text(self) -> str:
        """Its output: one `METHOD /path STATUS` line per request, and its errors."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def accounts(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._accounts)

    def set_account(self, login: str, **fields: Any) -> None:
        """Change `login`'s fields (password, name, email, groups), or add the account
        (then with a password); the next login and token or userinfo answer see it."""
        account = {**self._accounts.get(login, {}), **fields}
        if "password" not in account:
            raise ValueError(f"a new account ({login}) needs a password")
        self._accounts[login] = account
        self._write_accounts()

    def remove_account(self, login: str) -> None:
        """The account goes: its logins fail, and so do its codes not yet exchanged."""
        del self._accounts[login]
        self._write_accounts()

    def _write_accounts(self) -> None:
        staged = self.accounts_file.with_suffix(".tmp")
        staged.write_text(json.dumps(self._accounts, indent=2))
        os.replace(staged, self.accounts_file)  # the server never reads half a file


# --- a browser and a client, through a whole login --------------------------------------


class _NoRedirect(urllib.request.HTTPErrorProcessor):
    """Every answer as it is: no redirect followed, no exception for 4xx and 5xx."""

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        return response

    https_response = http_response


class Browser:
    """A user agent with its own cookies (the provider's session), trusting the
    provider's CA, that follows no redirect by itself."""

    def __init__(self, provider: OidcProvider) -> None:
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=provider.ssl_context()),
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())

    def request(self, method: str, url: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        with self._opener.open(request, timeout=HTTP_SECONDS) as response:
            body = response.read().decode(errors="replace")
            return response.status, dict(response.headers.items()), body


def pkce_pair() -> tuple[str, str]:
    """A code_verifier and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwt_part(token: str, index: int = 1) -> dict[str, Any]:
    """The header (0) or the payload (1) of a JWS, decoded and NOT verified."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def exchange_code(provider: OidcProvider, code: str, redirect_uri: str,
                  code_verifier: str | None, client_id: str | None = None,
                  client_secret: str | None = None) -> tuple[int, dict[str, Any]]:
    """The token request (client_secret_basic): its status and JSON answer."""
    client_id = client_id or provider.client_id
    if client_secret is None:
        client_secret = next(c["client_secret"] for c in provider.clients
                             if c["client_id"] == client_id)
    basic = base64.b64encode(f"{urllib.parse.quote(client_id, safe='')}:"
                             f"{urllib.parse.quote(client_secret, safe='')}".encode()).decode()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    status, _, body = Browser(provider).request(
        "POST", provider.metadata["token_endpoint"], form,
        {"Authorization": f"Basic {basic}", "Accept": "application/json"})
    return status, json.loads(body)


_FORM = re.compile(r'<form method="post" action="([^"]+)"')


def code_flow(provider: OidcProvider, login: str, password: str, redirect_uri: str, *,
              scope: str = "openid profile groups", client_id: str | None = None,
              client_secret: str | None = None, state: str | None = None,
              nonce: str | None = None, pkce: bool = True,
              params: dict[str, str | None] | None = None, exchange: bool = True,
              browser: Browser | None = None, max_hops: int = 10) -> dict[str, Any]:
    """An authorization code flow with PKCE, the browser's part and then the client's:
    the authorization request, the provider's login form filled with `login` and
    `password`, the redirects up to `redirect_uri` (never fetched), and the code's
    exchange at the token endpoint (unless `exchange` is false, or no code came).

    `params` adds to the authorization request or, with None, removes a parameter (for
    instance {"code_challenge": None}). `browser` keeps a session between flows; with
    a session already logged in, no form is shown. The answer has:
    state, nonce, code_verifier; login_status (of the form's POST, None without form)
    and page (the last HTML page seen); status (of the last answer before the stop);
    location (the redirect to redirect_uri, or None) and response (its query: code,
    state, iss, or error and error_description); code; token_status, tokens and
    claims (the ID token's payload, not verified) after an exchange."""
    browser = browser or Browser(provider)
    verifier, challenge = pkce_pair()
    result: dict[str, Any] = {
        "state": state if state is not None else secrets.token_urlsafe(12),
        "nonce": nonce if nonce is not None else secrets.token_urlsafe(12),
        "code_verifier": verifier if pkce else None, "login_status": None, "page": "",
        "status": None, "location": None, "response": {}, "code": None,
        "token_status": None, "tokens": None, "claims": None}
    query: dict[str, str | None] = {
        "response_type": "code", "client_id": client_id or provider.client_id,
        "redirect_uri": redirect_uri, "scope": scope, "state": result["state"],
        "nonce": result["nonce"],
        **({"code_challenge": challenge, "code_challenge_method": "S256"} if pkce else {}),
        **(params or {})}
    url = provider.metadata["authorization_endpoint"] + "?" + urllib.parse.urlencode(
        {key: value for key, value in query.items() if value is not None})
    method, form = "GET", None
    for _ in range(max_hops):
        status, headers, body = browser.request(method, url, form)
        result["status"] = status
        if form is not None:
            result["login_status"] = status
        method, form = "GET", None
        if status in (302, 303) and "Location" in headers:
            url = urllib.parse.urljoin(url, headers["Location"])
            if url.split("?", 1)[0] == redirect_uri:
                result["location"] = url
                result["response"] = dict(urllib.parse.parse_qsl(
                    urllib.parse.urlsplit(url).query))
                result["code"] = result["response"].get("code")
                break
            continue
        result["page"] = body
        action = _FORM.search(body)
        if status != 200 or result["login_status"] is not None or not action:
            return result  # an error page, or the form again after a failed login
        url = urllib.parse.urljoin(url, html.unescape(action.group(1)))
        method, form = "POST", {"login": login, "password": password}
    else:
        raise RuntimeError(f"no redirect to {redirect_uri} after {max_hops} hops: {url}")
    if exchange and result["code"]:
        status, tokens = exchange_code(provider, result["code"], redirect_uri,
                                       result["code_verifier"], client_id, client_secret)
        result["token_status"], result["tokens"] = status, tokens
        if status == 200 and "id_token" in tokens:
            result["claims"] = jwt_part(tokens["id_token"])
    return result
