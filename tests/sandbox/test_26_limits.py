"""The front door's limits on a real host (issue 24): a bounded burst of token requests
from the host itself gets 429 with Retry-After past the burst nginx allows, a normal
`docker login` and push work again a moment later, and a bounded flood of long
requests leaves the audit log's earlier lines where they were."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import pytest

from tests.support.sandbox import password

pytestmark = pytest.mark.sandbox

AUDIT = "/var/log/regops-token/audit.log"

# Run on the host with its python3: N requests, C at once, each answer's status and
# Retry-After as JSON. The front door's CA is the one docker trusts there.
BURST = r"""
import json, ssl, sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, n, at_once, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
context = ssl.create_default_context(cafile=ca)
def one(i):
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as answer:
            answer.read()
            return [answer.status, answer.headers.get("Retry-After")]
    except urllib.error.HTTPError as error:
        error.read()
        return [error.code, error.headers.get("Retry-After")]
with ThreadPoolExecutor(at_once) as pool:
    print(json.dumps(list(pool.map(one, range(n)))))
"""


def burst(th: Any, h: dict, query: str, n: int, at_once: int) -> list[list[Any]]:
    address = f"{h['registry_name']}:5000"
    url = f"https://{address}/auth/token?service={h['registry_name']}&{query}"
    ca = f"/etc/docker/certs.d/{address}/ca.crt"
    out = th.check_output(f"python3 -c {shlex.quote(BURST)} {shlex.quote(url)} {n} {at_once} "
                          f"{shlex.quote(ca)}")
    return list(json.loads(out))


def test_a_burst_past_the_limit_gets_429_and_docker_still_works(th, host_info):
    h = host_info
    time.sleep(10)  # what earlier tests took from this address's bucket comes back
    answers = burst(th, h, "scope=repository:public/base:pull", 600, 48)
    statuses = [status for status, _ in answers]
    assert statuses.count(200) >= 150  # about the burst nginx allows, and what the rate adds
    refused = [(status, retry) for status, retry in answers if status != 200]
    assert refused, "600 requests at once were all let through"
    assert all(status in (429, 503) and retry for status, retry in refused), refused[:5]
    time.sleep(2)  # the Retry-After nginx gave (1 s), and then some
    address = f"{h['registry_name']}:5000"
    tag = f"{address}/platform/limits:1"
    login = th.run(f"printf %s {shlex.quote(password(h, 'bob'))} | "
                   f"docker login -u bob --password-stdin {address}")
    try:
        assert login.rc == 0, login.stderr
        th.check_output(f"tar -C /etc -c hostname | docker import - {tag}")
        pushed = th.run(f"docker push {tag}")
        assert pushed.rc == 0, pushed.stderr
    finally:
        th.run(f"docker logout {address}; docker rmi {tag}")


def test_a_flood_of_long_requests_leaves_the_audit_log_in_place(th, host_info):
    h = host_info
    first = th.check_output(f"head -n 1 {AUDIT}")
    before = int(th.check_output(f"stat -c %s {AUDIT}"))
    longest = "&".join(f"scope=repository:flood/{'x' * 100}{i:02d}:pull" for i in range(32))
    time.sleep(10)  # the bucket the test before emptied fills again (20 a second, 200 at most)
    answered = 0
    for _ in range(5):  # 300 requests, paced below the rate: each one reaches the service
        answers = burst(th, h, longest, 60, 4)
        answered += sum(status == 200 for status, _ in answers)
        time.sleep(3)
    too_long = burst(th, h, f"scope=repository:{'a' * 8000}:pull", 20, 4)
    assert {status for status, _ in too_long} <= {400, 429}
    after = int(th.check_output(f"stat -c %s {AUDIT}"))
    assert th.check_output(f"head -n 1 {AUDIT}") == first  # not rotated away
    assert answered >= 250
    assert (after - before) / (answered + len(too_long)) < 3 * 1024  # bytes per request


def test_a_spray_of_web_logins_gets_a_page_saying_wait(th, host_info):
    h = host_info
    address = f"{h['registry_name']}:5000"
    out = th.check_output(
        f"for i in $(seq 25); do curl -s -o /dev/null -w '%{{http_code}} %{{content_type}}\\n' "
        f"--cacert /etc/docker/certs.d/{address}/ca.crt -X POST -d 'username=x&password=y' "
        f"https://{address}/login; done")
    answers = out.splitlines()
    assert len(answers) == 25
    limited = [a for a in answers if a.startswith("429")]
    assert limited and all("text/html" in a for a in limited), answers
    assert all(a.split()[0] in ("403", "429") for a in answers)  # no form token: 403 first
