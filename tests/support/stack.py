"""A registry with token auth, our token service (and its web pages) on loopback: the
real registry binary (Debian's docker-registry, as on the hosts) and our real
code, for the tests that need no host and for the benchmarks."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import bcrypt

from regops.registry.images import image_config, image_manifest, push_image, sha256
from regops.sandbox.model import EXAMPLE_ACCESS, EXAMPLE_GROUPS
from regops.secrets import pki
from regops_token.config import Config
from regops_token.http import Server, make_handler, make_notify_handler, make_web
from regops_token.rules import parse_policy, policy_to_json
from regops_token.tokens import TokenService

SERVICE = "reg.test"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3"}
ROBOT_SECRET = "robot-secret-value-4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd(path: Path, entries: dict[str, str]) -> None:
    path.write_text("".join(f"{n}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for n, p in entries.items()))


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Stack:
    """A registry with token auth and our token service, on loopback."""

    def __init__(self, tmp: Path, today: date = date(2026, 1, 1), web: bool = False,
                 log_level: str = "error", ldap: dict[str, Any] | None = None,
                 access: list[dict[str, Any]] | None = None,
                 oidc: dict[str, Any] | None = None) -> None:
        """`ldap`: the token service's directory section (registry_ldap, as the deploy
        writes it); `oidc`: its single sign-on section (registry_oidc, the same);
        `access`: rules after the docs' example ones."""
        self.tmp = tmp
        signer = pki.ensure_token_signer(tmp / "pki")
        (tmp / "token-ca.crt").write_bytes(signer.ca_pem)
        (tmp / "signer.key").write_bytes(signer.key_pem)
        (tmp / "signer.crt").write_bytes(signer.cert_pem)
        htpasswd(tmp / "users", PASSWORDS)
        htpasswd(tmp / "robots", {"ci-platform": ROBOT_SECRET, "old-robot": ROBOT_SECRET})
        policy = parse_policy(list(PASSWORDS), groups=EXAMPLE_GROUPS, admins=["alice"],
                              access=[*EXAMPLE_ACCESS, *(access or [])],
                              directory=ldap is not None, sso=oidc is not None, robots={
            "ci-platform": {"repositories": ["platform/**"], "actions": ["pull", "push"],
                            "expires": "2027-06-30"},
            "old-robot": {"repositories": ["platform/**"], "actions": ["pull"],
                          "expires": "2025-12-31"},
        })
        self.token_port, self.port, self.notify_port = free_port(), free_port(), free_port()
        config = {
            "service": SERVICE, "issuer": "regops-token", "ttl": 300,
            "listen": f"127.0.0.1:{self.token_port}", "key": str(tmp / "signer.key"),
            "chain": str(tmp / "signer.crt"), "users": str(tmp / "users"),
            "robots": str(tmp / "robots"), "audit": str(tmp / "audit.log"),
            "policy": policy_to_json(policy),
            "ldap": ldap,
            "oidc": oidc,
        }
        notifications = ""
        if web:
            (tmp / "notify.secret").write_text("notify-secret-for-tests\n")
            config["notify_secret"] = str(tmp / "notify.secret")
            config["web"] = {"address": "reg.test:5000", "registry_ports": [self.port,
                                                                           free_port()],
                             "gc_schedule": "17 3 * * 0", "gc_state": str(tmp / "gc-last.json")}
            notifications = f"""
notifications:
  events: {{includereferences: false}}
  endpoints:
    - name: web
      url: http://127.0.0.1:{self.notify_port}/notify
      headers: {{Authorization: ["Bearer notify-secret-for-tests"]}}
      timeout: 2s
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore: {{actions: [pull]}}
"""
        (tmp / "token.json").write_text(json.dumps(config))
        self.service = TokenService(Config.load(str(tmp / "token.json")), today=lambda: today)
        self.web = make_web(self.service)
        self.server = Server(("127.0.0.1", self.token_port),
                                          make_handler(self.service, self.web))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.notify_server = Server(("127.0.0.1", self.notify_port),
                                    make_notify_handler(self.service, self.web), limit=8)
        threading.Thread(target=self.notify_server.serve_forever, daemon=True).start()
        (tmp / "registry.yml").write_text(f"""
version: 0.1
log: {{level: {log_level}}}
storage:
  filesystem: {{rootdirectory: {tmp / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{self.port}
  secret: not-a-secret-here
auth:
  token:
    realm: http://127.0.0.1:{self.token_port}/auth/token
    service: {SERVICE}
    issuer: regops-token
    rootcertbundle: {tmp / 'token-ca.crt'}
{notifications}""")
        self.registry = subprocess.Popen(
            ["docker-registry", "serve", str(tmp / "registry.yml")],
            stdout=subprocess.DEVNULL, stderr=(tmp / "registry.log").open("w"))
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.status("GET", "/v2/")[0] == 401:
                    break
            except urllib.error.URLError:
                pass  # not listening yet
            assert time.monotonic() < deadline, (tmp / "registry.log").read_text()
            time.sleep(0.2)

    def close(self) -> None:
        self.registry.terminate()
        self.registry.wait(10)
        self.server.shutdown()
        self.notify_server.shutdown()

    # ---------------------------------------------------------------- clients

    def token(self, *scopes: str, user: str | None = None, password: str | None = None,
              extra: str = "") -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode([("service", SERVICE), *(("scope", s) for s in scopes)])
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.token_port}/auth/token?{query}{extra}")
        if user is not None:
            secret = password if password is not None else PASSWORDS.get(user, ROBOT_SECRET)
            basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
            request.add_header("Authorization", f"Basic {basic}")
        return open_json(request)

    def post_token(self, **form: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.token_port}/auth/token",
            data=urllib.parse.urlencode({"service": SERVICE, **form}).encode(), method="POST")
        return open_json(request)

    def bearer(self, *scopes: str, **who: Any) -> str:
        status, doc = self.token(*scopes, **who)
        assert status == 200, doc
        return str(doc["token"])

    def call(self, method: str, path: str, token: str | None = None, data: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30) -> _Answer:
        """One request to the registry (a path, or an upload's absolute URL)."""
        url = path if path.startswith("http") else f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return _Answer(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:
            return _Answer(error.code, dict(error.headers.items()), error.read())

    def status(self, method: str, path: str, token: str | None = None, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        answer = self.call(method, path, token, data, headers, timeout=10)
        return answer.status, answer.headers

    def put_blob(self, repository: str, blob: bytes, token: str) -> int:
        status, headers = self.status("POST", f"/v2/{repository}/blobs/uploads/", token)
        if status != 202:
            return status
        location = headers["Location"]
        joiner = "&" if "?" in location else "?"
        return self.status("PUT", f"{location}{joiner}digest={sha256(blob)}", token, data=blob,
                           headers={"Content-Type": "application/octet-stream"})[0]

    def put_image(self, repository: str, tags: list[str], token: str, **options: Any) -> str:
        """`regops.registry.images.push_image` with a bearer token; returns the digest."""
        return push_image(_Bearer(self, token), repository, tags, **options)

    def push(self, repository: str, tag: str, token: str) -> int:
        """Blob, config and manifest; the status of the first refused step or 201."""
        layer = os.urandom(1024)
        config = image_config("2026-01-01T00:00:00Z")
        for blob in (layer, config):
            status = self.put_blob(repository, blob, token)
            if status != 201:
                return status
        media_type, body = image_manifest(config, [layer])
        status, _ = self.status("PUT", f"/v2/{repository}/manifests/{tag}", token, data=body,
                                headers={"Content-Type": media_type})
        return status


def open_json(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")




class _Bearer:
    """The write-client protocol of `regops.registry.images` over one bearer token."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.stack, self.token = stack, token

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                data: bytes | None = None, auth: bool = True) -> _Answer:
        return self.stack.call(method, path, self.token, data, headers)


def form_value(page: str, name: str) -> str:
    """The value of the first form field `name` on a page."""
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, (name, page[:2000])
    return found.group(1)


class WebClient:
    """A browser's part in a conversation with the web pages: cookies, forms, no
    redirects followed (the tests look at them)."""

    def __init__(self, port: int, host: str = "reg.test:5000") -> None:
        self.port, self.host = port, host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": self.host, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        answer = conn.getresponse()
        text = answer.read().decode()
        for name, value in answer.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookie_value = rest.split(";", 1)[0]
                if "Max-Age=0" in value:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = cookie_value
        conn.close()
        headers: dict[str, str] = {}
        for name, value in answer.getheaders():  # Set-Cookie lines joined by newlines
            key = name.lower()
            headers[key] = f"{headers[key]}\n{value}" if key in headers else value
        return answer.status, headers, text

    def get(self, path: str) -> tuple[int, str]:
        status, _, text = self.request("GET", path)
        return status, text

    def csrf(self, path: str) -> str:
        """The CSRF token of the first form on a page."""
        return form_value(self.get(path)[1], "csrf")

    def login(self, user: str, password: str | None = None) -> int:
        token = self.csrf("/login")
        status, _, _ = self.request("POST", "/login", {
            "csrf": token, "username": user, "password": password or PASSWORDS[user]},
            headers={"Origin": f"https://{self.host}"})
        return status
