"""The token service and the web pages under attack: one test per defect of the
security review (issue 24), each failing on the code before the fix. The real token
service (and, for some, the real registry binary) on loopback; no host needed."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from regops.secrets import htpasswd as operator_htpasswd
from regops_token import guard
from regops_token.audit import Audit
from regops_token.authn import Authn, Busy, Throttle
from regops_token.config import Config
from regops_token.http import make_handler
from regops_token.rules import Subject, compile_pattern, contains, parse_policy
from regops_token.web import _local, _redirect
from tests.support.require import require_command
from tests.support.stack import PASSWORDS, SERVICE, Stack, WebClient

PEPPER = b"a pepper of sixteen bytes or more"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_command("docker-registry", "docker-registry")
    s = Stack(tmp_path_factory.mktemp("attacks"), web=True)
    try:
        yield s
    finally:
        s.close()


def _audit(stack: Stack) -> list[str]:
    return (stack.tmp / "audit.log").read_text().splitlines()


def _raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are; the answer's bytes until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"Content-Length: 0" in chunks[0]:
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("target", [
    "/\t/evil.example/", "/%09/evil.example/".replace("%09", "\t"), "/\\evil.example",
    "//evil.example/", "https://evil.example/", "/repo\r\nSet-Cookie: x=1", "/a\nb",
    "javascript:alert(1)", " /repo", "/\x7f/x", "evil.example",
])
def test_only_plain_local_paths_are_followed(target):
    assert _local(target) == ""
    assert guard.local_path(target) == ""


def test_local_paths_still_are():
    assert _local("/repo/team/app?sort=time") == "/repo/team/app?sort=time"
    assert _local("/delete/team/app:1.0") == "/delete/team/app:1.0"


def _login_then(stack: Stack, target: str) -> tuple[int, str]:
    """bob's web login with `next=target`: the status and where it sends him."""
    client = WebClient(stack.token_port)
    token = client.csrf("/login")
    status, headers, _ = client.request("POST", "/login", {
        "csrf": token, "username": "bob", "password": PASSWORDS["bob"],
        "next": target}, headers={"Origin": "https://reg.test:5000"})
    return status, headers["location"]


def test_a_login_with_a_tab_redirect_stays_on_the_site(stack):
    assert _login_then(stack, "/\t/evil.example/") == (303, "/repositories/")


def test_a_header_value_with_cr_lf_is_never_sent(stack):
    response = _redirect("/x\r\nSet-Cookie: stolen=1")
    assert dict(response.headers)["Location"] == "/repositories/"
    original = stack.web.respond
    stack.web.respond = lambda *a, **k: type(response)(303, b"", [
        ("Location", "/x\r\nSet-Cookie: stolen=1")])
    try:
        answer = _raw(stack.token_port, b"GET /anything HTTP/1.1\r\nHost: reg.test\r\n"
                      b"Connection: close\r\n\r\n")
    finally:
        stack.web.respond = original
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 500") and b"stolen" not in head


# --------------------------------------------------------------------------- audit flood


def test_a_long_scope_is_refused_and_its_audit_line_stays_short(stack):
    status, doc = stack.token(f"repository:{'a' * 8000}:pull")
    assert status == 400 and "longer than" in doc["errors"][0]["message"]
    last = _audit(stack)[-1]
    assert json.loads(last)["event"] == "token_refused" and len(last) < 1024
    status, _ = stack.token(*[f"repository:team/r{i}:pull" for i in range(guard.MAX_SCOPES + 1)])
    assert status == 400


def test_many_scopes_within_the_limits_write_a_bounded_line(stack):
    scopes = [f"repository:team/{'x' * 100}{i:02d}:pull" for i in range(guard.MAX_SCOPES)]
    status, _ = stack.token(*scopes)
    assert status == 200
    last = _audit(stack)[-1]
    assert len(last) < 3 * 1024 and "more)" in last


def test_a_long_username_costs_no_bcrypt_and_a_short_line(stack):
    status, _ = stack.post_token(grant_type="password", username="u" * 60000,
                                 password="whatever-it-is")
    assert status == 401
    last = json.loads(_audit(stack)[-1])
    assert last["event"] == "login_failed" and len(json.dumps(last)) < 1024


def test_a_body_over_the_limit_is_refused_unread(stack):
    for length in (b"99999999", b"9" * 5000):
        answer = _raw(stack.token_port, b"POST /auth/token HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: " + length + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413")
    answer = _raw(stack.token_port, b"POST /auth/token HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")


def test_a_redirect_outside_latin_1_stays_on_the_site(stack):
    assert _local("/repositories/\u00e9\u2028") == ""
    assert not guard.header_safe("/x\u2028")
    assert _login_then(stack, "/repositories/\u00e9\u2028") == (303, "/repositories/")


# --------------------------------------------------------------------------- logins


def _authn(tmp: Path, cost: int = 4) -> Authn:
    (tmp / "users").write_text("".join(
        f"{n}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(cost)).decode()}\n"
        for n, p in PASSWORDS.items()))
    (tmp / "robots").write_text(
        f"ci-bot:{bcrypt.hashpw(b'robot-secret', bcrypt.gensalt(cost)).decode()}\n")
    policy = parse_policy(list(PASSWORDS), robots={"ci-bot": {
        "repositories": ["platform/**"], "actions": ["pull"], "expires": "2099-01-01"}})
    config = Config(service=SERVICE, issuer="t", ttl=300, refresh_days=90, listen="",
                    notify_listen=None, notify_secret_file=None, key="", chain="",
                    users=str(tmp / "users"), robots=str(tmp / "robots"),
                    audit=str(tmp / "audit.log"), policy=policy)
    return Authn(config, Audit(config.audit))


class _Bcrypts:
    """Every bcrypt the token service runs, with its cost, and how many ran at once:
    what a login costs, counted instead of timed (timings flake on a shared machine)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import regops_token.authn as authn_module

        self.costs: list[int | None] = []
        self.running = self.most = 0
        self._lock = threading.Lock()
        real = authn_module.checkpw

        def counted(password: str, digest: bytes) -> bool:
            with self._lock:
                self.costs.append(authn_module._cost(digest))
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                time.sleep(0.05)  # widen the window two overlapping checks would share
                return real(password, digest)
            finally:
                with self._lock:
                    self.running -= 1

        monkeypatch.setattr(authn_module, "checkpw", counted)


def test_parallel_wrong_logins_wait_their_turn_and_the_rest_are_turned_away(tmp_path,
                                                                           monkeypatch):
    """12 different guesses at once from one address: they are checked one after
    another, the throttle's free three get a verdict, every other is turned away at
    once (Busy: 429 with Retry-After) without a bcrypt, and no worker sleeps."""
    authn = _authn(tmp_path, cost=10)
    bcrypts = _Bcrypts(monkeypatch)
    results: list[tuple[str, float]] = []
    lock = threading.Lock()
    together = threading.Barrier(12)
    start = time.monotonic()

    def guess(n: int) -> None:
        together.wait()
        try:
            authn.authenticate("alice", f"guess-{n}", "203.0.113.9")
            outcome = "refused"
        except Busy as busy:
            outcome = f"busy {busy.retry_after}"
        with lock:
            results.append((outcome, time.monotonic() - start))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = time.monotonic() - start
    refused = sorted(t for outcome, t in results if outcome == "refused")
    busy = [outcome for outcome, _ in results if outcome.startswith("busy")]
    assert len(results) == 12 and len(refused) == authn.throttle.free
    assert len(busy) == 12 - authn.throttle.free and all(b != "busy 0" for b in busy)
    # One after another, and the turned-away cost nothing: one bcrypt per verdict.
    assert bcrypts.most == 1 and bcrypts.costs == [10] * authn.throttle.free
    assert total < 30
    assert authn.throttle.count("alice", "203.0.113.9") == authn.throttle.free
    assert authn.throttle.wait("alice", "203.0.113.9") > 0  # the next one is told to wait


def test_a_stale_password_retried_is_refused_but_never_locks_the_pair_out(tmp_path):
    """A CI job with an old password retries it: each try is 401, none is a new guess.
    Three different wrong passwords still lock the pair out for a while."""
    authn = _authn(tmp_path)
    for _ in range(10):
        assert authn.authenticate("bob", "last-years-password", "192.0.2.7") == (
            None, "wrong password")
    assert authn.throttle.count("bob", "192.0.2.7") == 1
    for n in range(2):
        authn.authenticate("bob", f"another-guess-{n}", "192.0.2.7")
    with pytest.raises(Busy):
        authn.authenticate("bob", "a-fourth-guess", "192.0.2.7")


def test_guesses_from_elsewhere_do_not_lock_the_owner_out(tmp_path):
    authn = _authn(tmp_path)
    for n in range(6):
        with contextlib.suppress(Busy):
            authn.authenticate("alice", f"guess-{n}", "203.0.113.9")
    assert authn.throttle.wait("alice", "203.0.113.9") > 0
    found, _ = authn.authenticate("alice", PASSWORDS["alice"], "198.51.100.20")
    assert found == Subject("user", "alice")


def test_the_same_login_at_once_costs_one_bcrypt(tmp_path, monkeypatch):
    from regops_token import authn as module

    authn = _authn(tmp_path, cost=10)
    calls = []
    real = module.checkpw
    monkeypatch.setattr(module, "checkpw", lambda p, h: calls.append(p) or real(p, h))
    together = threading.Barrier(10)

    def login() -> None:
        together.wait()
        authn.authenticate("bob", "the-same-wrong-guess", "198.51.100.1")

    threads = [threading.Thread(target=login) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1  # one verdict for all ten
    assert authn.throttle.count("bob", "198.51.100.1") == 1


def test_counters_of_real_names_are_bounded_too():
    throttle = Throttle(known=100)
    for n in range(1000):
        throttle.failed("alice", f"2001:db8::{n:x}", known=True)
    assert sum(1 for n in range(1000) if throttle.count("alice", f"2001:db8::{n:x}")) <= 101


def test_a_spray_of_made_up_names_keeps_the_victims_counter():
    throttle = Throttle(free=2, unknown=500)
    for _ in range(5):
        throttle.failed("alice", "203.0.113.9", known=True)
    before = throttle.delay("alice", "203.0.113.9")
    for n in range(2000):
        throttle.failed(f"nobody-{n}", "203.0.113.9", known=False)
    assert before > 0 and throttle.delay("alice", "203.0.113.9") == before


def test_failures_are_forgotten_after_the_window():
    now = [0.0]
    throttle = Throttle(free=1, window=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("bob", "192.0.2.1")
    assert throttle.delay("bob", "192.0.2.1") > 0
    now[0] = 61
    assert throttle.delay("bob", "192.0.2.1") == 0


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_unknown_names_users_and_robots_take_the_same_time(tmp_path, monkeypatch):
    """Each attempt costs one bcrypt at the users' cost, whoever the name is (an unknown
    name against the dummy hash): counted, so a name's existence does not show in the
    time a wrong password takes."""
    authn = _authn(tmp_path, cost=10)
    bcrypts = _Bcrypts(monkeypatch)
    for n, name in enumerate(("nobody-here", "alice", "ci-bot")):
        before = len(bcrypts.costs)
        authn.authenticate(name, "a-wrong-password", f"10.9.0.{n}")
        assert bcrypts.costs[before:] == [10], name


# --------------------------------------------------------------------------- listeners


def test_the_notify_listener_serves_only_post_notify(stack):
    answer = _raw(stack.notify_port, b"GET /auth/token?service=reg.test HTTP/1.1\r\n"
                  b"Host: x\r\nAuthorization: Basic YWxpY2U6eA==\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404")
    answer = _raw(stack.notify_port, b"POST /login HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404")


def test_a_negative_length_is_refused_at_once(stack):
    request = (b"POST /notify HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer notify-secret-for-tests\r\nContent-Length: -1\r\n\r\n")
    started = time.monotonic()
    answer = _raw(stack.notify_port, request)
    assert answer.startswith(b"HTTP/1.1 400") and time.monotonic() - started < 3
    answer = _raw(stack.token_port, request.replace(b"/notify", b"/auth/token"))
    assert answer.startswith(b"HTTP/1.1 400")


def test_the_main_listener_does_not_take_notifications(stack):
    answer = _raw(stack.token_port, b"POST /notify HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer notify-secret-for-tests\r\n"
                  b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 404")


def test_a_silent_client_is_dropped_after_the_timeout(stack, monkeypatch):
    handler = stack.notify_server.RequestHandlerClass
    monkeypatch.setattr(handler, "timeout", 0.5)
    with socket.create_connection(("127.0.0.1", stack.notify_port), timeout=5) as conn:
        conn.sendall(b"POST /notify HTTP/1.1\r\n")  # and then nothing
        started = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 3


def test_a_client_trickling_bytes_is_cut_at_the_deadline(stack, monkeypatch):
    handler = stack.notify_server.RequestHandlerClass
    monkeypatch.setattr(handler, "deadline", 1.0)
    with socket.create_connection(("127.0.0.1", stack.notify_port), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(b"POST /notify HTTP/1.1\r\n")
        with pytest.raises(OSError):
            for _ in range(40):  # a header byte every 0.2 s, never an end
                conn.sendall(b"X")
                time.sleep(0.2)
                if conn.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    raise ConnectionResetError("closed")
    assert time.monotonic() - started < 4


class _Peer:
    """A request as the handler sees it, for `_address` alone."""

    def __init__(self, peer: str, real: str | None) -> None:
        self.client_address = (peer, 40000)
        self.headers = {"X-Real-IP": real} if real else {}


def test_x_real_ip_is_believed_from_loopback_only(stack):
    handler = make_handler(stack.service)
    assert handler._address(_Peer("127.0.0.1", "198.51.100.7")) == "198.51.100.7"
    assert handler._address(_Peer("172.17.0.5", "203.0.113.1")) == "172.17.0.5"
    assert handler._address(_Peer("172.17.0.5", None)) == "172.17.0.5"


# --------------------------------------------------------------------------- credentials


def _write_users(stack: Stack, generation: int, carol: str | None = None) -> None:
    """The users file as the deploy writes it, carol at `generation` (and `carol`'s
    password when given)."""
    entries = {**PASSWORDS, **({"carol": carol} if carol else {})}
    lines = []
    for name, secret in entries.items():
        hashed = operator_htpasswd.hash_password(name, secret, 4, PEPPER,
                                                 generation if name == "carol" else 0)
        lines.append(f"{name}:{hashed}\n")
    # a comment of changing length, so the change is seen within the same second
    (stack.tmp / "users").write_text("".join(lines) + "#" * (10 + generation) + "\n")


@pytest.fixture
def carol_credentials(stack: Stack) -> Iterator[None]:
    _write_users(stack, 0)
    yield
    from tests.support.stack import htpasswd

    htpasswd(stack.tmp / "users", PASSWORDS)


def test_a_session_ends_when_the_password_is_set_again_even_to_itself(stack, carol_credentials):
    client = WebClient(stack.token_port)
    assert client.login("carol") == 303
    assert "Signed in as <strong>carol" in client.get("/access")[1]
    _write_users(stack, 1)  # `regops users passwd carol` with the same password
    status, page = client.get("/access")
    assert status == 200 and "Signed in as" not in page
    fresh = WebClient(stack.token_port)
    assert fresh.login("carol") == 303  # the same password logs in anew


def test_a_session_ends_when_the_password_changes(stack, carol_credentials):
    client = WebClient(stack.token_port)
    assert client.login("carol") == 303
    _write_users(stack, 0, carol="carol-other-password-7")
    status, headers, _ = client.request("GET", "/robots")
    assert status == 303 and headers["location"].startswith("/login")


def test_a_refresh_token_ends_when_the_password_is_set_again(stack, carol_credentials):
    status, doc = stack.token(user="carol", extra="&offline_token=true&client_id=docker")
    assert status == 200 and doc["refresh_token"]
    assert stack.post_token(grant_type="refresh_token",
                            refresh_token=doc["refresh_token"])[0] == 200
    _write_users(stack, 1)
    status, _ = stack.post_token(grant_type="refresh_token", refresh_token=doc["refresh_token"])
    assert status == 401


def test_the_generation_changes_the_hash_and_generation_zero_keeps_the_old_one():
    old = operator_htpasswd.hash_password("carol", "pw-one-two-three", 4, PEPPER)
    assert operator_htpasswd.hash_password("carol", "pw-one-two-three", 4, PEPPER, 0) == old
    new = operator_htpasswd.hash_password("carol", "pw-one-two-three", 4, PEPPER, 1)
    assert new != old and bcrypt.checkpw(b"pw-one-two-three", new.encode())


# --------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(("pattern", "name"), [
    ("*-*-*-*-x", "-" * 255),
    ("a*a*a*a*a*b", "a" * 255),
    ("**/**/**/**/x", "/".join(["a"] * 128)),
    ("*/**/*-*-*/**", "/".join(["-" * 3] * 64)),
])
def test_a_worst_case_name_matches_in_a_few_milliseconds(pattern, name):
    compiled = compile_pattern(pattern)
    assert compiled is not None
    best = min(_timed(lambda: compiled.match(name)) for _ in range(5))
    assert best < 0.05, f"{pattern}: {best * 1000:.1f} ms"  # backtracking: seconds


@pytest.mark.parametrize(("outer", "inner", "inside"), [
    ("x/**", "x/ci/**", True),
    ("x/**", "**/app", False),
    ("x/**", "*/app", False),
    ("x/**", "x/*", True),
    ("**", "team/*/svc", True),
    ("team/*", "team/app-*", True),
    ("team/app-*", "team/*", False),
    ("team/*/svc", "team/**/svc", False),
    ("team/**", "team/**", True),
    ("a*", "ab*c", True),
])
def test_pattern_containment(outer, inner, inside):
    assert contains(outer, inner) is inside


def test_a_user_named_x_does_not_see_robots_of_every_namespace():
    policy = parse_policy(["x"], access=[
        {"repositories": ["${user}/**"], "who": ["authenticated"],
         "actions": ["pull", "push"]}], robots={
        "everywhere": {"repositories": ["**/app"], "actions": ["pull"],
                       "expires": "2099-01-01"},
        "star": {"repositories": ["*/app"], "actions": ["pull"], "expires": "2099-01-01"},
        "mine": {"repositories": ["x/ci/**"], "actions": ["pull", "push"],
                 "expires": "2099-01-01"}})
    x = Subject("user", "x")
    seen = {name for name, robot in policy.robots.items()
            if all(policy.covers(x, p, robot.actions) for p in robot.repositories)}
    assert seen == {"mine"}


def test_the_robots_page_shows_a_user_only_robots_inside_their_rights(stack):
    client = WebClient(stack.token_port)
    assert client.login("carol") == 303  # carol pulls everywhere, pushes only carol/**
    page = client.get("/robots")[1]
    assert "ci-platform" not in page  # it pushes to platform/**
    bob = WebClient(stack.token_port)
    assert bob.login("bob") == 303  # bob's group pushes platform/**
    assert "ci-platform" in bob.get("/robots")[1]


def test_scope_names_are_bounded_before_matching():
    with pytest.raises(guard.Refused):
        guard.name("a" * 256, "repository name")
    assert guard.name("a" * 255, "repository name") == "a" * 255
