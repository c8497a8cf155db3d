"""The host side of bench/bench_auth.py, run by Debian's python3 on the registry host.

bench_auth.py sends this file over SSH to `python3 -` with one call appended,
`main(mode, params)`, so it needs nothing beyond what the deploy installed there
(python3, python3-bcrypt, python3-cryptography, the token service's code) plus
curl. It prints one JSON document on stdout and progress on stderr.

Measuring here keeps the operator's network path out of the numbers: what is
timed is nginx, the registry and the token service on this host. Request load
runs in forked processes, one keep-alive connection each, so the client is not
held back by one GIL; every phase is bounded by time or count.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

Params = dict[str, Any]
Phases = dict[str, tuple[str, dict[str, str], int]]  # name -> (path, headers, expected status)


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- connections


class FrontDoor(http.client.HTTPSConnection):
    """TLS to the front door on this host, verified for the registry's name, with the
    Host header and SNI a client sends; connects to the address the host listens on."""

    def __init__(self, p: Params, timeout: float = 60) -> None:
        self._ctx = ssl.create_default_context(cafile=p["ca"])
        self._address = p["connect"]
        super().__init__(p["name"], p["port"], timeout=timeout, context=self._ctx)

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def basic(p: Params) -> dict[str, str]:
    raw = f"{p['user']}:{p['password']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token_path(p: Params, scope: str | None) -> str:
    query = [("service", p["name"])] + ([("scope", scope)] if scope else [])
    return "/auth/token?" + urllib.parse.urlencode(query)


def fetch_token(p: Params, scope: str | None) -> str:
    """A token for the first admin, from the token service through the front door."""
    conn = FrontDoor(p)
    try:
        conn.request("GET", token_path(p, scope), headers=basic(p))
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise SystemExit(f"token for {scope!r}: HTTP {answer.status}")
    return str(json.loads(body)["token"])


# --------------------------------------------------------------------------- request load


def _worker(job: Params) -> Params:
    """One keep-alive connection sending GETs from `start` for `duration` seconds; only
    answers complete before the deadline count. A connection the server closes (nginx's
    keepalive_requests) is reopened, as a client would."""
    conn = FrontDoor(job["p"])
    conn.connect()  # the handshake happens before the clock starts
    statuses: Counter[int] = Counter()
    reconnects = errors = 0
    while time.time() < job["start"]:
        time.sleep(0.0005)
    deadline = job["start"] + job["duration"]
    while True:
        try:
            conn.request("GET", job["path"], headers=job["headers"])
            answer = conn.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            errors += 1
            if time.time() >= deadline:
                break
            continue
        if time.time() > deadline:
            break
        statuses[answer.status] += 1
        if answer.will_close:
            conn.close()
            reconnects += 1
    conn.close()
    return {"statuses": dict(statuses), "reconnects": reconnects, "errors": errors}


def load(
    pool: Any, p: Params, path: str, headers: dict[str, str], expect: int, duration: float
) -> Params:
    """Requests per second of `connections` processes on one path; `ok` counts `expect`."""
    start = time.time() + 0.3
    job = {"p": p, "path": path, "headers": headers, "start": start, "duration": duration}
    results = pool.map(_worker, [job] * p["connections"])
    statuses: Counter[int] = Counter()
    for r in results:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
    ok = statuses.get(expect, 0)
    return {
        "seconds": duration,
        "requests": sum(statuses.values()),
        "ok": ok,
        "per_second": round(ok / duration, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "reconnects": sum(r["reconnects"] for r in results),
        "errors": sum(r["errors"] for r in results),
    }


def alternate(p: Params, phases: Phases, refresh: Callable[[Phases], Phases] | None = None
              ) -> dict[str, list[Params]]:
    """`rounds` rounds of every phase, the order flipped each round so that drift in
    the machine's load hits both sides alike."""
    found: dict[str, list[Params]] = {name: [] for name in phases}
    context = multiprocessing.get_context("fork")
    with context.Pool(p["connections"]) as pool:
        for n in range(p["rounds"]):
            if refresh:
                phases = refresh(phases)
            order = list(phases) if n % 2 == 0 else list(reversed(phases))
            for name in order:
                path, headers, expect = phases[name]
                result = load(pool, p, path, headers, expect, p["duration"])
                say(f"{name}: {result['per_second']}/s {result['statuses']}")
                found[name].append(result)
    return found


def mode_v2(p: Params) -> Params:
    """GET /v2/ without credentials (401) and with an admin's bearer token (200); for
    scale, a path nginx answers itself (404, the registry not involved)."""

    def refresh(phases: Phases) -> Phases:  # a fresh token each round
        bearer = {"Authorization": f"Bearer {fetch_token(p, 'registry:catalog:*')}"}
        return {**phases, "bearer": ("/v2/", bearer, 200)}

    phases: Phases = {
        "anonymous": ("/v2/", {}, 401),
        "bearer": ("/v2/", {}, 200),
        # The ceiling of this client, TLS and nginx: a 404 nginx answers itself.
        "frontdoor": ("/regops-bench-nothing", {}, 404),
    }
    return {"runs": alternate(p, phases, refresh)}


def mode_tokens(p: Params) -> Params:
    """GET /auth/token through the front door: the same login again and again (after one
    that costs a bcrypt, each is remembered), and anonymous tokens (no bcrypt)."""
    scope = f"repository:{p['repo']}:pull"
    fetch_token(p, scope)  # the one cold login; the rest are warm
    phases: Phases = {
        "warm": (token_path(p, scope), basic(p), 200),
        "anonymous": (token_path(p, scope), {}, 200),
    }
    return {"runs": alternate(p, phases), "scope": scope}


# --------------------------------------------------------------------------- cold logins


def _signer(directory: str) -> tuple[str, str]:
    """A throwaway EC P-256 key and self-signed certificate, as the deployed signer is."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regops bench signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = f"{directory}/signer.key", f"{directory}/signer.crt"
    with open(key_path, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(cert_path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def mode_cold(p: Params) -> Params:
    """TokenService.authenticate + issue of the deployed code, in this process, for N
    users seen for the first time: each login is a bcrypt at the deployed cost. Runs
    in a temporary directory (users, key, config, audit log); the service is untouched."""
    # The deployed code: bench_auth.py runs this with PYTHONPATH=<token_code>.
    import bcrypt

    from regops_token import tokens  # the deployed code, from token_code
    from regops_token.config import Config

    cost = deployed_cost(p["users_file"])
    directory = tempfile.mkdtemp(prefix="regops-bench-auth-")
    try:
        names = [f"bench-{i:04d}" for i in range(p["cold_logins"])]
        password = secrets.token_urlsafe(18)
        say(f"hashing {len(names)} bench passwords at bcrypt cost {cost}")
        hashes = run_threads(
            os.cpu_count() or 1,
            names,
            lambda _: bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode(),
        )
        users = f"{directory}/users.htpasswd"
        with open(users, "w") as out:
            out.writelines(f"{n}:{h}\n" for n, h in zip(names, hashes, strict=True))
        open(f"{directory}/robots.htpasswd", "w").close()
        key, chain = _signer(directory)
        with open(p["config_file"]) as source:
            config = json.load(source)
        policy = config["policy"]
        policy["users"] = sorted({*policy["users"], *names})
        policy["admins"] = sorted({*policy["admins"], *names})  # a full grant in each token
        config.update(key=key, chain=chain, users=users, robots=f"{directory}/robots.htpasswd",
                      audit=f"{directory}/audit.log")
        with open(f"{directory}/config.json", "w") as out:
            json.dump(config, out)
        loaded = Config.load(f"{directory}/config.json")
        scopes = tokens.scopes_of([f"repository:{p['repo']}:pull,push"])
        runs = []
        for threads in p["cold_threads"]:
            service = tokens.TokenService(loaded)  # nothing remembered

            def login(name: str, service: Any = service) -> bool:
                subject, _ = service.authenticate(name, password, "127.0.0.1")
                if subject is None:
                    return False
                service.issue(subject, scopes, "127.0.0.1", "bench")
                return True

            started = time.perf_counter()
            done = run_threads(threads, names, login)
            seconds = time.perf_counter() - started
            runs.append({"threads": threads, "logins": len(names), "ok": sum(done),
                         "seconds": round(seconds, 3),
                         "per_second": round(sum(done) / seconds, 2)})
            say(f"cold logins, {threads} thread(s): {runs[-1]['per_second']}/s")
        # For reference: the same calls when the password is remembered (no bcrypt).
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < min(1.0, p["duration"]):
            login(names[0])
            count += 1
        warm = {"threads": 1, "logins": count, "seconds": round(time.perf_counter() - started, 3)}
        warm["per_second"] = round(count / warm["seconds"], 1)
        return {"cost": cost, "code": tokens.__file__, "runs": runs, "warm_in_process": warm}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_threads(threads: int, items: list[Any], fn: Any) -> list[Any]:
    """fn over items in `threads` threads (bcrypt releases the GIL), results in order."""
    results: list[Any] = [None] * len(items)
    chunks = [list(range(len(items)))[t::threads] for t in range(threads)]

    def run(indexes: list[int]) -> None:
        for i in indexes:
            results[i] = fn(items[i])

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def deployed_cost(users_file: str) -> int:
    """The bcrypt cost of the deployed users' hashes ($2y$10$... -> 10)."""
    with open(users_file) as source:
        for line in source:
            digest = line.strip().partition(":")[2]
            if digest.startswith("$2"):
                return int(digest.split("$")[2])
    raise SystemExit(f"{users_file}: no bcrypt hash")


# --------------------------------------------------------------------------- blob pulls


def curl(args: list[str]) -> tuple[int, int, float]:
    """(HTTP status, bytes received, seconds) of one curl transfer."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
         *args],
        capture_output=True, text=True, timeout=900, check=False,
    )
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) != 3:
        raise SystemExit(f"curl failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return int(fields[0]), int(float(fields[1])), float(fields[2])


def static_tls(directory: str, path: str) -> tuple[int, subprocess.Popen[bytes]]:
    """nginx serving `path` at /blob over TLS on a free loopback port, with the front
    door's certificate, protocols and curves; for as long as the bench runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = f"{directory}/nginx.conf"
    with open(config, "w") as out:
        out.write(f"""pid {directory}/nginx.pid;
error_log {directory}/nginx.error.log;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate /etc/nginx/regops/tls/server.crt;
        ssl_certificate_key /etc/nginx/regops/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        location = /blob {{ alias {path}; default_type application/octet-stream; }}
    }}
}}
""")
    server = subprocess.Popen(["nginx", "-c", config, "-g", "daemon off;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return port, server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the throwaway nginx for the TLS ceiling did not start") from None
            time.sleep(0.1)


def mode_blob(p: Params) -> Params:
    """Push one random blob once, then time GETs of it with curl, through the front door
    (TLS) and straight from the registry's loopback port, alternating; delete it after."""
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed on the host")
    size, repo = p["blob_bytes"], p["repo"]
    directory = tempfile.mkdtemp(prefix="regops-bench-blob-", dir="/var/tmp")
    front = f"https://{p['name']}:{p['port']}"
    tls = ["--cacert", p["ca"],
           "--connect-to", f"{p['name']}:{p['port']}:{p['connect']}:{p['port']}"]
    headers = f"{directory}/headers"
    static: subprocess.Popen[bytes] | None = None

    def authorize() -> None:  # the header file curl reads (no token on a command line)
        token = fetch_token(p, f"repository:{repo}:pull,push,delete")
        with open(os.open(headers, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(f"Authorization: Bearer {token}\n")

    try:
        path, sha = f"{directory}/blob", hashlib.sha256()
        with open(path, "wb") as out:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                sha.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        digest = f"sha256:{sha.hexdigest()}"
        authorize()
        with open(headers) as source:
            auth = dict([source.read().strip().split(": ", 1)])
        conn = FrontDoor(p)
        conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={**auth, "Content-Length": "0"})
        answer = conn.getresponse()
        answer.read()
        conn.close()
        location = answer.getheader("Location") or ""
        if answer.status != 202 or not location:
            raise SystemExit(f"start upload: HTTP {answer.status}")
        if location.startswith("/"):
            location = front + location
        url = location + ("&" if "?" in location else "?") + urllib.parse.urlencode(
            {"digest": digest})
        say(f"pushing {size / 1e6:.0f} MB to {repo}")
        status, _, push_seconds = curl(
            ["-X", "PUT", "-T", path, "-H", f"@{headers}", "-H", "Expect:",
             "-H", "Content-Type: application/octet-stream", *tls, url])
        if status != 201:
            raise SystemExit(f"push of the blob: HTTP {status}")
        # For scale, what TLS itself allows on this host: a throwaway nginx on loopback
        # serving the same bytes from disk with the front door's certificate.
        os.chmod(directory, 0o755)
        os.chmod(path, 0o644)
        static_port, static = static_tls(directory, path)
        static_tls_args = ["--cacert", p["ca"], "--connect-to",
                           f"{p['name']}:{static_port}:127.0.0.1:{static_port}"]
        urls = {
            "frontdoor": [*tls, f"{front}/v2/{repo}/blobs/{digest}"],
            "direct": [f"http://127.0.0.1:{p['backend']}/v2/{repo}/blobs/{digest}"],
            "tls_static": [*static_tls_args, f"https://{p['name']}:{static_port}/blob"],
        }
        authorize()  # a fresh token for the pulls
        for args in urls.values():  # warm-up (page cache), not counted
            curl(["-L", "-H", f"@{headers}", *args])
        pulls: dict[str, list[Params]] = {name: [] for name in urls}
        for n in range(p["pulls"]):
            order = list(urls) if n % 2 == 0 else list(reversed(urls))
            for name in order:
                status, received, seconds = curl(["-L", "-H", f"@{headers}", *urls[name]])
                pulls[name].append({"status": status, "bytes": received, "seconds": seconds,
                                    "mb_per_s": round(received / 1e6 / seconds, 1)})
                say(f"pull {name}: {pulls[name][-1]['mb_per_s']} MB/s (HTTP {status})")
        return {"bytes": size, "digest": digest, "push_seconds": push_seconds, "pulls": pulls,
                "deleted": delete_blob(p, repo, digest, headers)}
    finally:
        if static is not None:
            static.terminate()
            static.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def delete_blob(p: Params, repo: str, digest: str, headers: str) -> bool:
    """Unlink the blob from the bench repository (its bytes go at the next GC)."""
    with open(headers) as source:
        auth = dict([source.read().strip().split(": ", 1)])
    conn = FrontDoor(p)
    conn.request("DELETE", f"/v2/{repo}/blobs/{digest}", headers=auth)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer.status == 202


# --------------------------------------------------------------------------- entry


def mode_info(p: Params) -> Params:
    """The host as the numbers were taken: cores, load, the deployed bcrypt cost."""
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "nginx": nginx.stderr.strip().rpartition("/")[2],
        "bcrypt_cost": deployed_cost(p["users_file"]),
    }


MODES = {"info": mode_info, "v2": mode_v2, "tokens": mode_tokens, "cold": mode_cold,
         "blob": mode_blob}


def main(mode: str, p: Params) -> None:
    result = MODES[mode](p)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
