"""The web pages against the real registry binary and the real token service on
loopback: what each visitor sees, and that every action checks the rights again
(CSRF, crafted deletes, escaping, sessions). The browser tests on a sandbox host
(tests/sandbox/test_35_web.py) drive the same pages through the front door."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from regops_token import cron
from regops_token.web import Sessions, _local, _reference
from tests.support.require import require_command
from tests.support.stack import Stack, WebClient, form_value

SCRIPT_LABEL = '<script>alert("label")</script>'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_command("docker-registry", "docker-registry")
    s = Stack(tmp_path_factory.mktemp("web"), web=True)
    bob = s.bearer("repository:platform/team/svc/api:pull,push", user="bob")
    s.put_image("platform/team/svc/api", ["1.0", "latest"], bob,
                platforms=("linux/amd64", "linux/arm64"), labels={"evil": SCRIPT_LABEL})
    s.put_image("platform/team/svc/api", ["0.9"], bob, created="2025-06-01T00:00:00Z")
    s.put_image("platform/team/svc/api", ["1.1"], bob, created="2026-03-01T00:00:00Z")
    alice = s.bearer("repository:public/base:pull,push", user="alice")
    s.put_image("public/base", ["stable"], alice)
    carol = s.bearer("repository:carol/tool:pull,push", user="carol")
    s.put_image("carol/tool", ["1"], carol)
    many = s.bearer("repository:bob/many:pull,push", user="bob")
    s.put_image("bob/many", [f"v{i}" for i in range(1, 121)], many)
    try:
        yield s
    finally:
        s.close()


def _client(stack: Stack, user: str | None = None) -> WebClient:
    client = WebClient(stack.token_port)
    if user:
        assert client.login(user) == 303
    return client


def _text(page: str) -> str:
    """What a person reads: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_anonymous_visitors_see_only_public(stack):
    status, page = _client(stack).get("/repositories/")
    assert status == 200
    assert 'href="/repositories/public/"' in page
    assert "platform" not in page and "carol" not in page
    assert _client(stack).get("/repo/platform/team/svc/api")[0] == 404
    assert _client(stack).get("/image/platform/team/svc/api:1.0")[0] == 404


def test_a_wrong_password_is_refused_and_logged(stack):
    client = _client(stack)
    token = client.csrf("/login")
    status, _, page = client.request("POST", "/login", {
        "csrf": token, "username": "bob", "password": "nope"})
    assert status == 401 and "Incorrect username or password" in page
    assert "regops_session" not in client.cookies
    lines = (stack.tmp / "audit.log").read_text().splitlines()
    assert any('"login_failed"' in line and '"via": "web"' in line for line in lines)


def test_robots_cannot_log_in(stack):
    client = _client(stack)
    token = client.csrf("/login")
    status, _, _ = client.request("POST", "/login", {
        "csrf": token, "username": "ci-platform", "password": "robot-secret-value-4"})
    assert status == 401


def test_a_login_without_its_form_token_is_refused(stack):
    client = _client(stack)
    status, _, _ = client.request("POST", "/login", {"username": "bob",
                                                     "password": "bob-password-22"})
    assert status == 403 and "regops_session" not in client.cookies


def test_session_cookie_is_httponly_secure_samesite(stack):
    client = _client(stack)
    token = client.csrf("/login")
    _, headers, _ = client.request("POST", "/login", {
        "csrf": token, "username": "bob", "password": "bob-password-22"})
    cookie = headers["set-cookie"]
    assert "regops_session=" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_a_user_browses_a_three_level_namespace(stack):
    bob = _client(stack, "bob")
    _, root = bob.get("/repositories/")
    assert 'href="/repositories/platform/"' in root and "Signed in as" in root
    _, level1 = bob.get("/repositories/platform/")
    assert 'href="/repositories/platform/team/"' in level1
    _, level2 = bob.get("/repositories/platform/team/")
    assert 'href="/repositories/platform/team/svc/"' in level2
    _, level3 = bob.get("/repositories/platform/team/svc/")
    assert 'href="/repo/platform/team/svc/api"' in level3


def test_search_finds_by_part_of_the_name(stack):
    _, page = _client(stack, "bob").get("/repositories/?q=svc/a")
    assert "platform/team/svc/api" in page and "carol/tool" not in page


def test_namespace_rows_count_repositories_and_size(stack):
    stack.web.catalog.index()
    _, page = _client(stack, "alice").get("/repositories/")
    row = re.search(r'href="/repositories/platform/".*?</tr>', page, re.S)
    assert row and re.search(r'<td class="num">1</td>', row.group(0))
    assert re.search(r"\d+(\.\d)? kB", row.group(0)), row.group(0)


def test_a_repository_lists_tags_with_digest_size_platforms_and_pusher(stack):
    deadline = time.monotonic() + 15  # the registry's notifications arrive on their own time
    while True:
        _, page = _client(stack, "bob").get("/repo/platform/team/svc/api")
        if "user:bob" in page or time.monotonic() > deadline:
            break
        stack.web.catalog.changed("platform/team/svc/api")
        time.sleep(0.5)
    text = _text(page)
    assert "4 tags" in text
    assert "linux/amd64, linux/arm64" in text
    assert "user:bob" in text
    assert "docker pull reg.test:5000/platform/team/svc/api:" in page


def test_tags_sort_by_time_newest_first(stack):
    _, page = _client(stack, "bob").get("/repo/platform/team/svc/api?sort=time")
    order = re.findall(r'href="/image/platform/team/svc/api:([^"]+)"', page)
    assert order.index("1.1") < order.index("0.9")
    assert order[-1] == "0.9"


def test_thousands_of_tags_page(stack):
    bob = _client(stack, "bob")
    _, first = bob.get("/repo/bob/many")
    assert "120 tags" in _text(first) and "Page 1 of 3" in first
    assert len(re.findall(r'href="/image/bob/many:', first)) == 50
    _, last = bob.get("/repo/bob/many?page=3")
    tags = re.findall(r'href="/image/bob/many:([^"]+)"', last)
    assert len(tags) == 20 and tags[-1] == "v120"  # natural order: v120 after v99


def test_a_multi_arch_image_shows_each_platform_and_escapes_labels(stack):
    status, page = _client(stack, "bob").get("/image/platform/team/svc/api:1.0")
    assert status == 200
    assert "multi-arch image (2 platforms)" in page
    assert page.count('class="platform"') == 2
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(" in page and SCRIPT_LABEL in _text(page)  # shown as text
    assert "API_TOKEN" in page and "do-not-show-me" not in page  # names, never values
    assert "8080/tcp" in page and "COPY app /app" in page
    assert "1.0, latest" in _text(page)


def test_every_page_forbids_inline_script(stack):
    _, headers, _ = _client(stack, "bob").request("GET", "/image/platform/team/svc/api:1.0")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["server-timing"].startswith("app;dur=")


def test_delete_names_the_tags_that_share_the_digest(stack):
    bob = _client(stack, "bob")
    status, page = bob.get("/delete/platform/team/svc/api:latest")
    assert status == 200 and "also delete platform/team/svc/api:1.0" in page
    assert "next garbage collection" in page
    digest, csrf = form_value(page, "digest"), form_value(page, "csrf")
    status, _, page = bob.request("POST", "/delete/platform/team/svc/api:latest",
                                  {"csrf": csrf, "digest": digest})
    assert status == 409 and "shares its image with 1.0" in page
    assert stack.web.catalog.backend.digest("platform/team/svc/api", "latest") == digest


def test_delete_without_the_right_is_refused_even_when_crafted(stack):
    carol = _client(stack, "carol")
    status, _ = carol.get("/delete/platform/team/svc/api:0.9")
    assert status == 403
    digest = stack.web.catalog.backend.digest("platform/team/svc/api", "0.9")
    csrf = carol.csrf("/repositories/")  # the logout form's token: a valid session token
    status, _, page = carol.request("POST", "/delete/platform/team/svc/api:0.9",
                                    {"csrf": csrf, "digest": digest})
    assert status == 403 and "may not delete" in page
    assert stack.web.catalog.backend.digest("platform/team/svc/api", "0.9") == digest


def test_a_post_without_the_csrf_token_is_refused(stack):
    bob = _client(stack, "bob")
    digest = stack.web.catalog.backend.digest("platform/team/svc/api", "0.9")
    status, _, _ = bob.request("POST", "/delete/platform/team/svc/api:0.9", {"digest": digest})
    assert status == 403
    csrf = bob.csrf("/repositories/")
    status, _, _ = bob.request("POST", "/delete/platform/team/svc/api:0.9",
                               {"csrf": csrf, "digest": digest},
                               headers={"Origin": "https://evil.example"})
    assert status == 403
    assert stack.web.catalog.backend.digest("platform/team/svc/api", "0.9") == digest


def test_delete_with_the_right_deletes_and_says_when_space_returns(stack):
    bob = _client(stack, "bob")
    _, page = bob.get("/delete/platform/team/svc/api:0.9")
    digest, csrf = form_value(page, "digest"), form_value(page, "csrf")
    status, headers, _ = bob.request("POST", "/delete/platform/team/svc/api:0.9",
                                     {"csrf": csrf, "digest": digest})
    assert status == 303 and "deleted=0.9" in headers["location"]
    assert stack.web.catalog.backend.digest("platform/team/svc/api", "0.9") is None
    _, page = bob.get(headers["location"])
    assert "Deleted 0.9" in page and "next garbage collection" in page


def test_a_multi_arch_image_and_its_sharing_tag_go_as_one(stack):
    bob = _client(stack, "bob")
    _, page = bob.get("/delete/platform/team/svc/api:latest")
    assert "linux/amd64, linux/arm64: deleted as one image" in page
    digest, csrf = form_value(page, "digest"), form_value(page, "csrf")
    status, _, _ = bob.request("POST", "/delete/platform/team/svc/api:latest",
                               {"csrf": csrf, "digest": digest, "also": ["1.0"]})
    assert status == 303
    backend = stack.web.catalog.backend
    assert backend.digest("platform/team/svc/api", "latest") is None
    assert backend.digest("platform/team/svc/api", "1.0") is None
    assert backend.digest("platform/team/svc/api", "1.1")  # untouched
    deadline = time.monotonic() + 15
    while '"delete"' not in (stack.tmp / "audit.log").read_text():
        assert time.monotonic() < deadline, "no delete notification"
        time.sleep(0.3)
    deletes = [json.loads(line) for line in (stack.tmp / "audit.log").read_text().splitlines()
               if '"event": "delete"' in line]
    assert {"user:bob"} == {d["subject"] for d in deletes}


def test_logout_invalidates_the_session(stack):
    bob = _client(stack, "bob")
    stolen = dict(bob.cookies)
    csrf = bob.csrf("/repositories/")
    status, _, _ = bob.request("POST", "/logout", {"csrf": csrf})
    assert status == 303
    thief = WebClient(stack.token_port)
    thief.cookies = stolen
    _, page = thief.get("/repositories/")
    assert "Signed in as" not in page and "platform" not in page


def test_my_access_explains_like_the_cli(stack):
    _, page = _client(stack, "bob").get("/access?repository=platform/x")
    text = _text(page)
    assert "group:platform" in text and "bob/**" in text
    assert "platform/x : pull, push, delete" in " ".join(text.split())


def test_robots_show_expiry_to_those_who_hold_their_rights(stack):
    _, alice = _client(stack, "alice").get("/robots")
    assert "ci-platform" in alice and "old-robot" in alice and "expired" in alice
    _, bob = _client(stack, "bob").get("/robots")
    assert "ci-platform" in bob
    _, carol = _client(stack, "carol").get("/robots")
    assert "ci-platform" not in carol


def test_the_admin_page_is_for_admins(stack):
    assert _client(stack, "bob").get("/admin")[0] == 403
    status, page = _client(stack, "alice").get("/admin?kind=logins")
    assert status == 200 and "ui_login" in page and "Disk use per namespace" in page
    _, denials = _client(stack, "alice").get("/admin?kind=denials")
    assert "login_failed" in denials and "ui_login" not in denials


def test_after_login_only_local_paths_are_followed():
    assert _local("/repo/x") == "/repo/x"
    assert _local("//evil.example/") == "" and _local("https://evil.example/") == ""


def test_references_split_at_the_last_colon_or_the_at():
    assert _reference("a/b/c:1.0") == ("a/b/c", "1.0")
    assert _reference("a/b@sha256:ab") == ("a/b", "sha256:ab")
    assert _reference("a/b") is None


def test_sessions_expire_when_idle_and_at_most_after_the_longest_time():
    now = [0.0]
    sessions = Sessions(idle=60, longest=300, clock=lambda: now[0])
    first = sessions.create("bob")
    now[0] = 59
    assert sessions.get(first.id) is first
    now[0] = 120
    assert sessions.get(first.id) is None  # idle 61 s
    second = sessions.create("bob")
    for t in range(150, 451, 50):  # every 50 s, never idle; 450 is 330 s after creation
        now[0] = t
        found = sessions.get(second.id)
    assert found is None  # 300 s after creation, however busy


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("17 3 * * 0", "2026-11-27 16:00", "2026-11-29 03:17"),  # a Friday: next Sunday
    ("*/15 * * * *", "2026-11-27 16:00", "2026-11-27 16:15"),
    ("0 0 1 * *", "2026-12-31 23:59", "2027-01-01 00:00"),
    ("30 2 * * mon-fri", "2026-11-28 10:00", "2026-11-30 02:30"),  # Saturday -> Monday
    ("0 4 13 * 5", "2026-11-01 00:00", "2026-11-06 04:00"),  # the 13th OR a Friday
    ("0 0 * * 7", "2026-11-27 00:00", "2026-11-29 00:00"),  # 7 is Sunday
])
def test_the_next_gc_time(schedule, after, expected):
    start = datetime.strptime(after, "%Y-%m-%d %H:%M")
    assert cron.next_run(schedule, start).strftime("%Y-%m-%d %H:%M") == expected


def test_a_schedule_that_never_fires_is_an_error():
    with pytest.raises(ValueError, match="never fires"):
        cron.next_run("0 0 30 2 *", datetime(2026, 1, 1))


def test_notifications_update_what_is_known_without_reading_it_again(stack):
    catalog = stack.web.catalog
    bob = stack.bearer("repository:bob/notified:pull,push,delete", user="bob")
    first = stack.put_image("bob/notified", ["1"], bob)
    catalog.changed("bob/notified")
    assert catalog.tag_digests("bob/notified") == {"1": first}
    read_at = catalog._tag_state["bob/notified"].read_at
    second = stack.put_image("bob/notified", ["2", "2-alias"], bob)
    deadline = time.monotonic() + 15
    while catalog.tag_names("bob/notified") != ["1", "2", "2-alias"]:
        assert time.monotonic() < deadline, catalog.tag_names("bob/notified")
        time.sleep(0.2)
    assert catalog.tag_digests("bob/notified") == {"1": first, "2": second, "2-alias": second}
    catalog.backend.delete_manifest("bob/notified", second, "bob")
    while catalog.tag_names("bob/notified") != ["1"]:
        assert time.monotonic() < deadline, catalog.tag_names("bob/notified")
        time.sleep(0.2)
    assert catalog._tag_state["bob/notified"].read_at == read_at  # never read again


def test_assets_ship_with_the_service(stack):
    status, headers, body = _client(stack).request("GET", "/static/app.css")
    assert status == 200 and headers["content-type"] == "text/css; charset=utf-8"
    assert "[hidden]" in body
    assert _client(stack).request("GET", "/static/nope.js")[0] == 404


def test_the_next_gc_time_of_a_cron_macro():
    # registry_gc_schedule takes cron.d's macros too (regops.config.validators accepts them).
    assert cron.next_run("@daily", datetime(2026, 11, 27, 16, 0)) == datetime(2026, 11, 28)


def test_the_admin_page_shows_the_last_gc_and_what_it_freed(stack):
    (stack.tmp / "gc-last.json").write_text(json.dumps({
        "time": "2026-11-22T03:17:09Z", "result": "ok", "bytes_freed": 123456789,
        "blobs_deleted": 42, "uploads_deleted": 1, "readonly_seconds": 7, "message": ""}))
    _, page = _client(stack, "alice").get("/admin")
    text = " ".join(_text(page).split())
    assert ("2026-11-22 03:17:09 UTC: ok, 123.5 MB freed (42 blobs, 1 uploads), "
            "read-only 7 s") in text
