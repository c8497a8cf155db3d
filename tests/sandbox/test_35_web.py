"""The web pages in a real browser (Debian's chromium, driven by Playwright) through a
sandbox host's front door, as a person uses them; the screenshots in docs/access.md
come from here (docs/screenshots/).

Who is who (regops.sandbox.model.ACCESS_DATA): bob is in group platform (pull,
push, delete on platform/**), carol may pull everywhere but delete only under
carol/**, anonymous may pull public/**.
"""

from __future__ import annotations

import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from regops.registry import images
from tests.support.browser import CHROMIUM_ARGS, spki_pin
from tests.support.sandbox import ROOT, client, password

pytestmark = pytest.mark.sandbox

SHOTS = ROOT / "docs" / "screenshots"
REPO = "platform/web/svc/api"
LABEL = '<script>document.title="owned"</script>'
# Chromium as the machine's probe found it works here: no network of its own.
def _spki_pin(h: dict) -> str:
    return spki_pin("127.0.0.1", h["registry_published_port"], h["ca_path"])


@pytest.fixture(scope="module")
def sb1(hosts: dict[str, dict]) -> dict:
    h = hosts["sb1"]
    bob = client(h, password(h, "bob"), username="bob")
    images.push_image(bob, REPO, ["1.0", "latest"], platforms=("linux/amd64", "linux/arm64"),
                      labels={"org.opencontainers.image.title": "api", "note": LABEL})
    images.push_image(bob, REPO, ["0.9"], created="2025-10-01T12:00:00Z")
    images.push_image(bob, "platform/web/svc/worker", ["2.3"])
    demo = client(h)
    images.push_image(demo, "public/base/debian", ["12"])
    return h


@pytest.fixture(scope="module")
def chromium(sb1: dict) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "chromium is missing (scripts/setup installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={_spki_pin(sb1)}"])
        yield browser
        browser.close()


def _base(h: dict) -> str:
    return f"https://127.0.0.1:{h['registry_published_port']}"


@pytest.fixture
def page(chromium: Any, sb1: dict) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=_base(sb1))
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(20000)
    yield page
    context.close()


def _login(page: Any, h: dict, user: str) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password(h, user))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/repositories/")
    assert f"Signed in as {user}" in page.locator("header").inner_text()


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_user_logs_in_browses_three_levels_and_opens_a_multi_arch_image(page, sb1):
    _login(page, sb1, "bob")
    _shot(page, "repositories")
    for name in ("platform/", "web/", "svc/"):
        page.get_by_role("link", name=name, exact=True).click()
    assert page.locator("h1").inner_text() == "platform/web/svc/"
    page.get_by_role("link", name="api", exact=True).click()
    assert "3 tags" in page.locator("main").inner_text()
    _shot(page, "repository")
    page.get_by_role("link", name="1.0", exact=True).click()
    headings = page.locator("section.platform h2").all_inner_texts()
    assert [h.split()[0] for h in headings] == ["linux/amd64", "linux/arm64"]
    # The label is text on the page, not a script that ran.
    assert page.title() != "owned"
    assert page.get_by_text(LABEL).count() == 2
    _shot(page, "image")


def test_the_pull_command_copies(page, sb1):
    _login(page, sb1, "bob")
    page.goto(f"/image/{REPO}:1.0")
    command = page.get_by_label("Pull command").input_value()
    assert command == f"docker pull {sb1['registry_name']}:5000/{REPO}:1.0"
    page.get_by_role("button", name=f"Copy: {command}").click()
    assert page.evaluate("navigator.clipboard.readText()") == command


def test_delete_names_the_shared_digest_and_deletes_with_the_right(page, sb1):
    _login(page, sb1, "bob")
    page.goto(f"/repo/{REPO}")
    page.get_by_role("link", name="Delete latest").click()
    warning = page.locator("fieldset.warning").inner_text()
    assert "Other tags share this image" in warning and f"{REPO}:1.0" in warning
    assert "deleted as one image" in page.locator("main").inner_text()
    _shot(page, "delete")
    page.get_by_role("button", name="Delete latest and 1 more").click()
    assert "shares its image with 1.0" in page.get_by_role("alert").inner_text()
    page.get_by_label(f"also delete {REPO}:1.0").check()
    page.get_by_role("button", name="Delete latest and 1 more").click()
    page.wait_for_url(f"**/repo/{REPO}?deleted=*")
    assert "Deleted latest, 1.0" in page.get_by_role("status").inner_text()
    assert "next garbage collection" in page.get_by_role("status").inner_text()
    bob = client(sb1, password(sb1, "bob"), username="bob")
    assert sorted(bob.tags(REPO)) == ["0.9"]


def test_without_the_delete_right_there_is_no_delete(page, sb1):
    _login(page, sb1, "carol")
    page.goto(f"/repo/{REPO}")
    assert page.get_by_role("link", name="Delete 0.9").count() == 0
    page.goto(f"/delete/{REPO}:0.9")
    assert "may not delete" in page.get_by_role("alert").inner_text()
    assert client(sb1, password(sb1, "bob"), username="bob").tags(REPO) == ["0.9"]


def test_an_anonymous_visitor_sees_only_public(page, sb1):
    page.goto("/")
    main = page.locator("main").inner_text()
    assert "public/" in main and "platform" not in main
    _shot(page, "anonymous")
    page.goto(f"/repo/{REPO}")
    assert "No repository" in page.locator("main").inner_text()


def test_keyboard_only_and_every_control_labelled(page, sb1):
    page.goto("/repositories/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/repositories/"
    page.goto("/login")  # the user name field has the focus
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("bob")
    page.keyboard.press("Tab")
    page.keyboard.type(password(sb1, "bob"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/repositories/")
    for path in ("/repositories/", f"/repo/{REPO}", f"/image/{REPO}:0.9", "/access",
                 "/robots", f"/delete/{REPO}:0.9"):
        page.goto(path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')]
            .filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)""")
        assert unlabelled == [], path


def test_readable_at_phone_width(chromium, sb1):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, base_url=_base(sb1),
                                   is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        _login(page, sb1, "bob")
        for path in ("/repositories/", f"/repo/{REPO}", f"/image/{REPO}:0.9", "/access"):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)  # wide tables scroll inside their box
        page.goto(f"/repo/{REPO}")
        _shot(page, "phone")
    finally:
        context.close()


def test_reading_works_with_javascript_off(chromium, sb1):
    context = chromium.new_context(base_url=_base(sb1), java_script_enabled=False)
    page = context.new_page()
    try:
        _login(page, sb1, "bob")
        page.goto(f"/repo/{REPO}")
        page.get_by_role("link", name="0.9", exact=True).click()
        assert page.get_by_label("Pull command").input_value().endswith(f"{REPO}:0.9")
        assert page.get_by_role("button", name="Copy").count() == 0  # JavaScript's only job
    finally:
        context.close()


def test_every_host_serves_the_pages_with_its_policy(hosts: dict[str, dict]):
    for h in hosts.values():
        context = ssl.create_default_context(cafile=h["ca_path"])
        context.check_hostname = False
        with urllib.request.urlopen(f"{_base(h)}/repositories/", context=context,
                                    timeout=20) as answer:
            body = answer.read().decode()
            assert answer.status == 200
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert 'href="/repositories/public/"' in body or "Nothing here" in body
        assert "platform" not in body  # anonymous


def test_the_admin_page_shows_the_audit_and_disk_use(page, sb1):
    _login(page, sb1, "alice")
    page.goto("/admin?kind=deletes")
    text = page.locator("main").inner_text()
    assert "Disk use per namespace" in text and "Next run" in text
    assert "user:bob" in text  # the deletes above, from the registry's notifications
    _shot(page, "admin")
