"""The compliance checks: small functions, and one table (`CHECKS`) with their metadata.

References: "CIS Docker 1.6.0 §n" is item n of the CIS Docker Benchmark v1.6.0;
"Mozilla" is Mozilla's Server Side TLS guidelines 5.7 as shipped with sslyze;
"regops" is a rule of this project. Where a check deliberately differs from
its CIS item, its rationale says how and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from regops import hostpaths
from regops.compliance import cron, tls
from regops.compliance.facts import HostFacts, Stat, certs_d, listening
from regops.compliance.model import Check, Status, Unavailable, Verdict, fail, ok
from regops.compliance.probes import Probes
from regops.config.settings import CONTAINER_PORT, Settings
from regops.config.validators import image_problem
from regops.hostpaths import FRONTDOOR_KEY, GC_CRON, GC_SCRIPT
from regops.registry import endpoint
from regops.secrets import pki
from regops.storage import seaweedfs


@dataclass(frozen=True)
class Options:
    cert_days: int = 30
    disk_free_percent: float = 10.0
    gc_max_age_days: float | None = None  # None: from the GC job's cron schedule


@dataclass
class Context:
    """Everything a check may look at for one host."""

    s: Settings
    facts: HostFacts
    probes: Probes
    options: Options


# --- helpers ------------------------------------------------------------------------


def _mode_problem(st: Stat | None, path: str, user: str, groups: set[str], max_mode: int) -> str:
    """'' when `st` exists with owner `user`, group in `groups`, no mode bit beyond `max_mode`."""
    if st is None:
        return f"{path} is missing"
    problems = []
    if st.user != user:
        problems.append(f"owner {st.user} (want {user})")
    if st.group not in groups and str(st.gid) not in groups:
        problems.append(f"group {st.group} (want {' or '.join(sorted(groups))})")
    if st.mode & ~max_mode & 0o7777:
        problems.append(f"mode {st.mode:04o} (want {max_mode:04o} or stricter)")
    return f"{path}: {', '.join(problems)}" if problems else ""


def _file_check(c: Context, path: str, user: str, groups: set[str], max_mode: int) -> Verdict:
    st = c.facts.stat(path)
    problem = _mode_problem(st, path, user, groups, max_mode)
    if problem:
        return fail(problem, f"redeploy, or chown {user}:{sorted(groups)[0]} and "
                             f"chmod {max_mode:04o} {path}")
    assert st is not None
    return ok(f"{path} {st.user}:{st.group} {st.mode:04o}")


def _container(c: Context) -> dict:
    return c.facts.container()


def _host_config(c: Context) -> dict:
    return _container(c)["HostConfig"]


def _daemon_json(c: Context) -> dict:
    return c.facts.json("daemon_json", "cannot read /etc/docker/daemon.json")


# --- daemon ------------------------------------------------------------------------


def daemon_live_restore(c: Context) -> Verdict:
    if c.facts.docker_info().get("LiveRestoreEnabled") is True:
        return ok("live-restore is on")
    return fail("live-restore is off: restarting Docker stops the registry",
                "set \"live-restore\": true in daemon.json (redeploy)")


def daemon_icc(c: Context) -> Verdict:
    options = c.facts.json("bridge", "cannot inspect Docker's default bridge")
    value = (options or {}).get("com.docker.network.bridge.enable_icc", "true")
    if value == "false":
        return ok("inter-container traffic on the default bridge is off")
    return fail("containers on the default bridge can talk to each other (icc on)",
                "set \"icc\": false in daemon.json (redeploy)")


def daemon_log_rotation(c: Context) -> Verdict:
    daemon = _daemon_json(c)
    driver = daemon.get("log-driver", "json-file")
    opts = daemon.get("log-opts") or {}
    if driver == "json-file" and not (opts.get("max-size") and opts.get("max-file")):
        return fail("json-file logs grow without bound (no max-size/max-file in daemon.json)",
                    "set log-opts max-size and max-file (registry_docker_log_max_*)")
    if driver not in ("json-file", "local", "journald", "syslog", "fluentd", "gelf"):
        return fail(f"log driver {driver!r} is not one regops knows to rotate or ship logs")
    live = c.facts.docker_info().get("LoggingDriver")
    if live != driver:
        return fail(f"daemon.json says log-driver {driver} but Docker runs {live}: restart Docker")
    if driver == "json-file":
        return ok(f"json-file, max-size {opts['max-size']}, max-file {opts['max-file']}")
    return ok(f"log driver {driver} (rotation by the driver's destination)")


def daemon_userland_proxy(c: Context) -> Verdict:
    if _daemon_json(c).get("userland-proxy") is False:
        return ok("userland-proxy is off (published ports use iptables, no docker-proxy)")
    return fail("userland-proxy is on", "set \"userland-proxy\": false in daemon.json (redeploy)")


# --- files -------------------------------------------------------------------------


def files_etc_docker(c: Context) -> Verdict:
    return _file_check(c, "/etc/docker", "root", {"root"}, 0o755)


def files_daemon_json(c: Context) -> Verdict:
    return _file_check(c, "/etc/docker/daemon.json", "root", {"root"}, 0o644)


def files_docker_sock(c: Context) -> Verdict:
    return _file_check(c, "/var/run/docker.sock", "root", {"docker", "root"}, 0o660)


def files_certs_d(c: Context) -> Verdict:
    if c.s.provided_tls and not c.s["registry_tls_ca_file"]:
        return ok("no CA to install: the provided certificate chains to a public root")
    directory = certs_d(c.s)
    problems = [p for p in (
        _mode_problem(c.facts.stat("/etc/docker/certs.d"), "/etc/docker/certs.d", "root",
                      {"root"}, 0o755),
        _mode_problem(c.facts.stat(directory), directory, "root", {"root"}, 0o755),
    ) if p]
    listing = c.facts.optional_text("certs_d_files") or ""
    entries = [line.split("\t") for line in listing.splitlines() if line.count("\t") == 6]
    if not problems and not entries:
        problems.append(f"{directory} holds no CA certificate")
    for path, kind, user, group, _uid, _gid, mode in entries:
        if kind != "f":
            problems.append(f"{path} is not a regular file")
        elif user != "root" or group != "root" or int(mode, 8) & 0o133:
            problems.append(f"{path}: {user}:{group} {int(mode, 8):04o} (want root:root, 0644 "
                            "or stricter)")
    if problems:
        return fail("; ".join(problems), "redeploy (tasks/tls.py sets root:root 0644)")
    return ok(f"{directory}: {len(entries)} file(s), root:root, not writable by others")


def files_registry_key(c: Context) -> Verdict:
    return _file_check(c, FRONTDOOR_KEY, "root", {"root"}, 0o400)


def _files_check(c: Context, paths: list[str], user: str, groups: set[str],
                 max_mode: int) -> Verdict:
    verdicts = [_file_check(c, path, user, groups, max_mode) for path in paths]
    failed = [v for v in verdicts if v.status != Status.PASS]
    if failed:
        return fail("; ".join(v.detail for v in failed), failed[0].remedy)
    return ok("; ".join(v.detail for v in verdicts))


def _token_group(c: Context) -> set[str]:
    return {hostpaths.TOKEN_USER, str(c.s["registry_token_uid"])}


NO_TOKEN_SERVICE = "registry_auth is htpasswd: no token service on this host"


def files_htpasswd(c: Context) -> Verdict:
    if c.s.token_auth:  # the token service checks passwords; the registry has none
        return _files_check(c, [hostpaths.TOKEN_USERS, hostpaths.TOKEN_ROBOTS], "root",
                            _token_group(c), 0o640)
    path = f"{c.s['registry_config_dir']}/htpasswd"
    return _file_check(c, path, "root", {c.s["registry_user"], str(c.s["registry_gid"])}, 0o640)


def files_token_keys(c: Context) -> Verdict:
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE)
    return _files_check(
        c, [hostpaths.TOKEN_KEY, hostpaths.TOKEN_NOTIFY_SECRET, hostpaths.TOKEN_CONFIG], "root",
        _token_group(c), 0o640,
    )


# --- the token service ----------------------------------------------------------------


# systemd property -> the value the hardened unit has (an empty capability set shows as "").
TOKEN_HARDENING = {
    "ActiveState": "active", "User": hostpaths.TOKEN_USER, "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "RestrictSUIDSGID": "yes",
}


def token_hardened(c: Context) -> Verdict:
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE)
    shown = dict(
        line.partition("=")[::2]
        for line in c.facts.text("token_unit", "systemd does not answer").splitlines()
        if "=" in line
    )
    problems = [f"{key}={shown.get(key, '?') or '(empty)'} (want {want or 'empty'})"
                for key, want in TOKEN_HARDENING.items() if shown.get(key) != want]
    if shown.get("MemoryMax", "infinity") == "infinity":
        problems.append("MemoryMax=infinity (want a limit)")
    if problems:
        return fail("regops-token.service: " + "; ".join(problems),
                    "redeploy (tasks/token.py installs the hardened unit)")
    return ok(f"active as {hostpaths.TOKEN_USER}, no capabilities, no new privileges, "
              "read-only system, private /tmp and /dev, memory capped")


def token_ttl(c: Context) -> Verdict:
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE)
    header, claims = c.probes.anonymous_token([])
    problems = []
    if header.get("alg") != "ES256" or not header.get("x5c"):
        problems.append(f"header alg={header.get('alg')}, x5c "
                        f"{'present' if header.get('x5c') else 'missing'} (want ES256 with x5c)")
    if claims.get("aud") != c.s.registry_name:
        problems.append(f"aud {claims.get('aud')!r} (want {c.s.registry_name!r})")
    try:
        ttl = int(claims["exp"]) - int(claims["iat"])
    except (KeyError, TypeError, ValueError):
        return fail("the token has no exp/iat", "redeploy")
    want = c.s["registry_token_ttl"]
    if ttl > want:
        problems.append(f"tokens live {ttl} s (the inventory says {want} s)")
    if problems:
        return fail("; ".join(problems), "redeploy (the token service's config)")
    return ok(f"ES256 with x5c, aud {c.s.registry_name}, valid {ttl} s")


def _probe_repositories(c: Context) -> list[str]:
    """A repository name no one uses, and one inside each pattern anonymous may pull."""
    names = {"regops-compliance-probe"}
    for rule in c.s.policy.rules:
        if "anonymous" in rule.who:
            for pattern in rule.repositories:
                name = "/".join("regops-probe" if "*" in part or "$" in part else part
                                for part in pattern.split("/"))
                names.add(name)
    return sorted(names)


def token_anonymous_read_only(c: Context) -> Verdict:
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE + "; the registry refuses every request without a login")
    static = [rule for action in ("push", "delete") for rule in c.s.policy.any_grant(
        "anonymous", action)]
    if static:
        return fail(f"rules give anonymous push or delete: {'; '.join(static)}",
                    "remove anonymous from those rules")
    repositories = _probe_repositories(c)
    scopes = [f"repository:{r}:pull,push,delete,*" for r in repositories]
    _, claims = c.probes.anonymous_token([*scopes, "registry:catalog:*"])
    granted = [f"{a.get('type')}:{a.get('name')}:{','.join(a.get('actions') or [])}"
               for a in claims.get("access") or []
               if set(a.get("actions") or []) - {"pull"}
               or (a.get("type") == "registry" and a.get("actions"))]
    if granted:
        return fail(f"an anonymous token grants {'; '.join(granted)}",
                    "redeploy (the token service runs other rules than the inventory's)")
    return ok(f"an anonymous token for push/delete/catalog on {', '.join(repositories)} "
              "grants at most pull")


def web_pages_protected(c: Context) -> Verdict:
    serving = c.s.token_auth and c.s["registry_ui"]
    status, headers = c.probes.anonymous_page("/repositories/")
    if not serving:
        if status != 404:
            return fail(f"GET /repositories/ -> {status}, but registry_ui is off (or "
                        "htpasswd auth): the front door should answer 404", "redeploy")
        return ok("no web pages (registry_ui off or htpasswd auth): / answers 404")
    if status != 200:
        return fail(f"GET /repositories/ -> {status}", "redeploy (regops-token apply)")
    policy = headers.get("content-security-policy", "")
    problems = [f"Content-Security-Policy lacks {want}" for want in (
        "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'")
        if want not in policy]
    if "unsafe-inline" in policy:
        problems.append("Content-Security-Policy allows inline script or style")
    for header, want in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                         ("cache-control", "no-store")):
        if headers.get(header) != want:
            problems.append(f"{header}: {headers.get(header) or 'missing'} (want {want})")
    if problems:
        return fail("; ".join(problems), "redeploy (the token service's pages)")
    return ok("the pages answer with a script-only-from-here CSP, no framing, nosniff and "
              "no-store")


# --- container ----------------------------------------------------------------------


def container_running(c: Context) -> Verdict:
    state = _container(c)["State"]
    if state.get("Running") and not state.get("Restarting"):
        return ok(f"running since {str(state.get('StartedAt', '?'))[:19]}")
    return fail(f"container is {state.get('Status', 'not running')} "
                f"(exit code {state.get('ExitCode')})", "look at `docker logs`, then redeploy")


def container_non_root(c: Context) -> Verdict:
    user = _container(c)["Config"].get("User") or ""
    want = f"{c.s['registry_uid']}:{c.s['registry_gid']}"
    name = user.split(":")[0]
    if name in ("", "0", "root"):
        return fail(f"runs as root (User={user or 'unset'})", f"redeploy: it runs as {want}")
    if user != want:
        return fail(f"runs as {user}, the inventory says {want}", "redeploy")
    return ok(f"runs as {user}")


def container_read_only(c: Context) -> Verdict:
    if _host_config(c).get("ReadonlyRootfs") is True:
        return ok("root filesystem is read-only")
    return fail("root filesystem is writable", "redeploy (--read-only)")


def container_capabilities(c: Context) -> Verdict:
    hc = _host_config(c)
    dropped = [x.upper().removeprefix("CAP_") for x in hc.get("CapDrop") or []]
    added = hc.get("CapAdd") or []
    if "ALL" in dropped and not added:
        return ok("all capabilities dropped, none added")
    return fail(f"CapDrop={dropped or 'none'} CapAdd={added or 'none'}",
                "redeploy (--cap-drop ALL)")


def container_not_privileged(c: Context) -> Verdict:
    if _host_config(c).get("Privileged") is False:
        return ok("not privileged")
    return fail("runs privileged", "redeploy")


def container_namespaces(c: Context) -> Verdict:
    hc = _host_config(c)
    shared = [kind for kind, key in (("network", "NetworkMode"), ("pid", "PidMode"),
                                     ("ipc", "IpcMode"), ("uts", "UTSMode"))
              if (hc.get(key) or "") == "host"]
    if shared:
        return fail(f"shares the host's {', '.join(shared)} namespace", "redeploy")
    return ok(f"own namespaces (network {hc.get('NetworkMode') or 'default'})")


def container_limits(c: Context) -> Verdict:
    hc = _host_config(c)
    memory, pids = hc.get("Memory") or 0, hc.get("PidsLimit") or 0
    missing = [what for what, value in (("memory", memory), ("pids", pids)) if value <= 0]
    if missing:
        return fail(f"no {' and no '.join(missing)} limit", "redeploy (registry_memory_limit, "
                                                            "registry_pids_limit)")
    return ok(f"memory {memory // (1024 * 1024)} MiB, pids {pids}")


def container_no_new_privileges(c: Context) -> Verdict:
    options = _host_config(c).get("SecurityOpt") or []
    if any(o.replace("=", ":") in ("no-new-privileges", "no-new-privileges:true")
           for o in options):
        return ok("no-new-privileges is set")
    return fail("processes may gain privileges (no no-new-privileges)", "redeploy")


def container_restart_policy(c: Context) -> Verdict:
    policy = _host_config(c).get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "no", policy.get("MaximumRetryCount") or 0
    if name == "unless-stopped":
        return ok("unless-stopped (comes back after a reboot; stays down when stopped by hand)")
    if name == "on-failure" and 0 < retries <= 5:
        return ok(f"on-failure, at most {retries} retries")
    return fail(f"restart policy {name}" + (f" with {retries or 'unlimited'} retries"
                                            if name == "on-failure" else ""),
                "redeploy (unless-stopped)")


def container_bound_address(c: Context) -> Verdict:
    bindings = (_host_config(c).get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp") or []
    want = {"HostIp": "127.0.0.1", "HostPort": str(c.s["registry_backend_port"])}
    got = [{"HostIp": b.get("HostIp") or "0.0.0.0", "HostPort": b.get("HostPort")}
           for b in bindings]
    if got != [want]:
        shown = ", ".join(f"{b['HostIp']}:{b['HostPort']}" for b in got) or "nothing"
        return fail(f"the registry is published on {shown}, not only on "
                    f"127.0.0.1:{want['HostPort']} behind the front door", "redeploy")
    return ok(f"published on 127.0.0.1:{want['HostPort']} only; clients come through the "
              "front door")


def frontdoor_serving(c: Context) -> Verdict:
    problems = []
    if (c.facts.optional_text("nginx_active") or "").strip() != "active":
        problems.append("nginx is not running")
    mode = (c.facts.optional_text("frontdoor_mode") or "").strip()
    if mode != "registry-normal.conf":
        problems.append(f"/v2/ goes to {mode or 'nowhere'}, not to the registry (an "
                        "interrupted GC or replacement?)")
    address, port = c.s["registry_bind_address"], c.s.port
    listeners = listening(c.facts.text("listen", "cannot read /proc/net/tcp"))
    if (address, port) not in listeners and not (
        address in ("0.0.0.0", "::") and any(p == port for _, p in listeners)
    ):
        problems.append(f"nothing listens on {address}:{port}")
    if problems:
        return fail("; ".join(problems), "redeploy (regops-frontdoor apply)")
    return ok(f"nginx listens on {address}:{port} and sends /v2/ to the registry")


def image_pinned(c: Context) -> Verdict:
    container = _container(c)
    running = container["Config"].get("Image", "")
    want = c.s["registry_image"]
    problem = image_problem(running)
    if problem:
        return fail(problem, "pin registry_image to a version tag or digest, then redeploy")
    if running != want:
        return fail(f"runs {running}, the inventory says {want}", "redeploy")
    image_id = c.facts.optional_text("image")
    if image_id is not None and image_id.strip() != container.get("Image"):
        return fail(f"{want} now points to another image than the container runs "
                    "(the tag moved)", "pin by digest, then redeploy")
    return ok(f"{running}")


# --- the registry as clients see it ----------------------------------------------------


def registry_anonymous_refused(c: Context) -> Verdict:
    statuses = {path: c.probes.anonymous_status(path) for path in ("/v2/", "/v2/_catalog")}
    open_paths = [f"{p} -> {code}" for p, code in statuses.items() if code != 401]
    if open_paths:
        return fail(f"anonymous requests are not refused: {', '.join(open_paths)}",
                    "redeploy (auth in the registry config)")
    return ok("GET /v2/ and /v2/_catalog without credentials -> 401")


def registry_debug_port_closed(c: Context) -> Verdict:
    debug = int(c.s["registry_debug_port"])
    problems = []
    bindings = _host_config(c).get("PortBindings") or {}
    for port, targets in sorted(bindings.items()):
        if port != f"{CONTAINER_PORT}/tcp":
            where = ", ".join(f"{t.get('HostIp') or '0.0.0.0'}:{t.get('HostPort')}"
                              for t in targets or [])
            problems.append(f"container port {port} is published on {where}")
    listeners = listening(c.facts.text("listen", "cannot read /proc/net/tcp"))
    exposed = sorted({addr for addr, port in listeners
                      if port == debug and not addr.startswith(("127.", "::1"))})
    if exposed:
        problems.append(f"port {debug} listens on {', '.join(exposed)} on the host")
    if c.probes.target.port == c.s.port and c.probes.tcp_open(debug):
        problems.append(f"{c.probes.target.host}:{debug} accepts connections from here")
    if problems:
        return fail("; ".join(problems), "redeploy: only the registry port is published and "
                                         "the debug listener stays on 127.0.0.1 in the container")
    return ok(f"only {CONTAINER_PORT}/tcp is published; nothing serves port {debug} outside")


def tls_certificate_trusted(c: Context) -> Verdict:
    problem = c.probes.trust_problem()
    if problem:
        return fail(problem, "redeploy (the certificate is reissued when names change)")
    info = pki.cert_info(c.probes.served_certificate())
    missing = [n for n in c.s.tls_names if not _covers(c.probes.served_certificate(), n)]
    if missing:
        return fail(f"the served certificate does not cover {', '.join(missing)}", "redeploy")
    return ok(f"chains to the CA clients use, covers {len(c.s.tls_names)} name(s), "
              f"issuer {info['issuer_cn']}")


def _covers(pem: bytes, name: str) -> bool:
    from cryptography import x509

    return pki.covers(x509.load_pem_x509_certificate(pem), name)


def tls_cert_days_left(c: Context) -> Verdict:
    info = pki.cert_info(c.probes.served_certificate())
    days, threshold = info["days_left"], c.options.cert_days
    if days <= threshold:
        return fail(f"served certificate expires in {days} days ({info['not_after'][:10]}), "
                    f"threshold {threshold}", "redeploy (renews generated certificates) or "
                                              "replace the provided one")
    return ok(f"{days} days left (until {info['not_after'][:10]}), threshold {threshold}")


def tls_mozilla_intermediate(c: Context) -> Verdict:
    return tls.check_mozilla_intermediate(c.probes.target, endpoint.ca_file(c.s))


# --- garbage collection and disk --------------------------------------------------------


def gc_job_installed(c: Context) -> Verdict:
    if not c.s["registry_gc_enabled"]:
        return ok("not expected: registry_gc_enabled is false")
    problems = [p for p in (
        _mode_problem(c.facts.stat(GC_CRON), GC_CRON, "root", {"root"}, 0o644),
        _mode_problem(c.facts.stat(GC_SCRIPT), GC_SCRIPT, "root", {"root"}, 0o755),
    ) if p]
    cron_text = c.facts.optional_text("gc_cron")
    if cron_text is not None and not any(
        line.split()[5:7] == ["root", GC_SCRIPT]
        for line in cron_text.splitlines() if len(line.split()) > 6
        and not line.lstrip().startswith("#")
    ):
        problems.append(f"{GC_CRON} has no line running {GC_SCRIPT} as root")
    if (c.facts.optional_text("cron_active") or "").strip() != "active":
        problems.append("the cron service is not running")
    if problems:
        return fail("; ".join(problems), "redeploy")
    return ok(f"{GC_CRON} runs {GC_SCRIPT} ({c.s['registry_gc_schedule']})")


def gc_max_age(c: Context) -> timedelta:
    if c.options.gc_max_age_days is not None:
        return timedelta(days=c.options.gc_max_age_days)
    return cron.max_age(c.s["registry_gc_schedule"])


def gc_last_run(c: Context) -> Verdict:
    """A host never GC'd passes only while its GC script is younger than the allowed age."""
    if not c.s["registry_gc_enabled"]:
        return ok("not expected: registry_gc_enabled is false")
    limit = gc_max_age(c)
    now = c.facts.now()
    raw = c.facts.optional_text("gc_state")
    if raw is None:
        script = c.facts.stat(GC_SCRIPT)
        if script is None:
            return fail(f"GC never ran and {GC_SCRIPT} is missing", "redeploy")
        installed = timedelta(seconds=max(0, now - script.ctime))
        if installed <= limit:
            return ok(f"no run yet; GC installed {_ago(installed)} ago, may go "
                      f"{_ago(limit)} without a run")
        return fail(f"GC never ran although installed {_ago(installed)} ago (limit "
                    f"{_ago(limit)})", "look at /var/log/regops-gc.log and the cron service")
    try:
        state = json.loads(raw)
        when = datetime.strptime(state["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, KeyError, TypeError):
        return fail("/var/lib/regops/gc-last.json is not a GC record", "run regops-gc by hand")
    age = timedelta(seconds=max(0, now - int(when.timestamp())))
    if state.get("result") != "ok" or state.get("exit_code") != 0:
        return fail(f"last GC {_ago(age)} ago failed (exit {state.get('exit_code')}): "
                    f"{state.get('message', '')}".rstrip(": "),
                    "look at /var/log/regops-gc.log")
    if age > limit:
        return fail(f"last successful GC was {_ago(age)} ago (limit {_ago(limit)})",
                    "look at the cron service and /var/log/regops-gc.log")
    return ok(f"last GC {_ago(age)} ago: ok, {state.get('bytes_freed', 0)} bytes freed, "
              f"read-only {state.get('readonly_seconds', 0)} s")


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 60} min"


def disk_free(c: Context) -> Verdict:
    key = "registry_seaweedfs_data_dir" if c.s.role == "storage" else "registry_data_dir"
    data_dir = c.s[key]
    fields = c.facts.text("data_fs", f"{data_dir} is missing").split()
    try:
        total, available, _block = (int(x) for x in fields[:3])
    except ValueError:
        raise Unavailable(f"cannot read free space of {data_dir}") from None
    percent = 100.0 * available / total if total else 0.0
    threshold = c.options.disk_free_percent
    if percent < threshold:
        return fail(f"{percent:.1f}% free on the file system of {data_dir} (threshold "
                    f"{threshold:g}%)", "delete images and run GC, or grow the disk")
    return ok(f"{percent:.1f}% free on the file system of {data_dir} (threshold {threshold:g}%)")


# --- load balancers and storage hosts --------------------------------------------------

def _storage_ports(s: Settings) -> dict[int, str]:
    """Ports of a storage host that only the cluster, the balancer and replicas use."""
    parts = {seaweedfs.MASTER_PORT: "master", seaweedfs.VOLUME_PORT: "volume",
             seaweedfs.FILER_PORT: "filer"}
    return {**parts, **{p + seaweedfs.GRPC_OFFSET: f"{n} gRPC" for p, n in parts.items()},
            s["registry_seaweedfs_s3_port"]: "S3 gateway",
            seaweedfs.ETCD_CLIENT_PORT: "etcd", seaweedfs.ETCD_PEER_PORT: "etcd peers"}


def role_services(c: Context) -> Verdict:
    units = c.facts.units()
    down = [f"{name} is {active}" if active != "active" else f"{name} is {enabled} at boot"
            for name, active, enabled in units if active != "active" or enabled != "enabled"]
    if down:
        return fail("; ".join(down), "redeploy, or systemctl enable --now the service")
    return ok(", ".join(name for name, _, _ in units) + ": running, enabled")


def lb_config(c: Context) -> Verdict:
    for path in (hostpaths.HAPROXY_CONFIG, hostpaths.HAPROXY_CA):
        problem = _mode_problem(c.facts.stat(path), path, "root", {"root"}, 0o644)
        if problem:
            return fail(problem, f"redeploy, or chown root:root and chmod 0644 {path}")
    return ok(f"{hostpaths.HAPROXY_CONFIG} and {hostpaths.HAPROXY_CA} root:root, 0644")


def storage_identity(c: Context) -> Verdict:
    return _file_check(c, hostpaths.SEAWEEDFS_S3_CONFIG, "root", {hostpaths.SEAWEEDFS_USER},
                       0o640)


def storage_unprivileged(c: Context) -> Verdict:
    users = set(c.facts.text("weed_users", "cannot list processes").split())
    if not users:
        return fail("no weed process runs", "redeploy, or start regops-seaweedfs@<part>")
    if users != {hostpaths.SEAWEEDFS_USER}:
        return fail(f"weed runs as {', '.join(sorted(users))} (want only "
                    f"{hostpaths.SEAWEEDFS_USER})", "redeploy: the units set User=")
    return ok(f"every weed process runs as {hostpaths.SEAWEEDFS_USER}")


def storage_private(c: Context) -> Verdict:
    ports = _storage_ports(c.s)
    open_ = listening(c.facts.text("listen", "cannot read /proc/net/tcp"))
    wildcard = sorted({f"{ports[p]} on {a}:{p}" for a, p in open_
                       if p in ports and a in ("0.0.0.0", "::")})
    extra = sorted({f"{a}:{p}" for a, p in open_ if p in seaweedfs.CATALOG_PORTS})
    if wildcard or extra:
        return fail("; ".join([*wildcard, *(f"{e} (Iceberg/Lance catalog)" for e in extra)]),
                    "redeploy: every part binds registry_private_address, catalogs off")
    return ok(f"no storage port on a wildcard address (private address "
              f"{c.s.private_address}); no catalog server")


# --- the table --------------------------------------------------------------------------

CIS = "CIS Docker 1.6.0"
CHECKS: list[Check] = [
    Check("daemon.live-restore", "Docker keeps containers running while it restarts",
          "A Docker upgrade or restart must not take the registry down.",
          f"{CIS} §2.15", daemon_live_restore),
    Check("daemon.icc", "No traffic between containers on the default bridge",
          "A compromised container must not reach the others' ports.",
          f"{CIS} §2.2", daemon_icc),
    Check("daemon.log-rotation", "Container logs are rotated",
          "The registry logs every request; unrotated logs fill the disk it stores images on.",
          f"{CIS} §2.13 (logging); regops: json-file with max-size and max-file",
          daemon_log_rotation),
    Check("daemon.userland-proxy", "Published ports go through iptables, not docker-proxy",
          "Fewer processes and real client addresses in the registry's access log.",
          f"{CIS} §2.16", daemon_userland_proxy),
    Check("files.etc-docker", "/etc/docker is root:root, 0755 or stricter",
          "Whoever can write there controls Docker's configuration and trust.",
          f"{CIS} §3.5, 3.6", files_etc_docker),
    Check("files.daemon-json", "daemon.json is root:root, 0644 or stricter",
          "It switches the daemon's protections on and off.",
          f"{CIS} §3.17, 3.18", files_daemon_json),
    Check("files.docker-sock", "docker.sock is root:docker, 0660 or stricter",
          "Access to the socket is root on the host.",
          f"{CIS} §3.15, 3.16", files_docker_sock),
    Check("files.certs-d", "certs.d trust files are root:root and not writable by others",
          "A CA planted there makes the host's Docker trust a fake registry. CIS asks 0444; "
          "regops accepts 0644 (only root can write, as with 0444 for root).",
          f"{CIS} §3.7, 3.8", files_certs_d),
    Check("files.registry-key", "The registry's TLS key is root:root, 0400",
          "Only root may read it: the front door's master process reads it as root, "
          "its workers and the registry never.",
          f"{CIS} §3.13, 3.14", files_registry_key),
    Check("files.htpasswd", "The password hashes are root:<their reader's group>, 0640 or "
          "stricter (the token service's users and robots, or the registry's htpasswd)",
          "Password hashes are for the one service that checks them; bcrypt slows cracking, "
          "it does not stop it.",
          f"regops (as {CIS} §3.14 for key material)", files_htpasswd),
    Check("files.token-keys", "The token signing key, notification secret and config are "
          "root:regops-token, 0640 or stricter",
          "Whoever reads the signing key can mint tokens with any rights.",
          f"regops (as {CIS} §3.14 for key material)", files_token_keys),
    Check("token.hardened", "The token service runs as its own user, sandboxed by systemd",
          "It reads password hashes and holds the signing key: no capabilities, no new "
          "privileges, a read-only system and a memory cap limit what a bug could do.",
          "regops (systemd.exec hardening)", token_hardened),
    Check("token.ttl", "Tokens are ES256 with x5c, for this registry, and short-lived",
          "A leaked token is good only until it expires; the registry verifies aud and the "
          "chain under the token CA.",
          "regops (registry_token_ttl)", token_ttl, side="operator"),
    Check("token.anonymous-read-only", "No rule lets anonymous push, delete or list",
          "Anonymous access is for pulling public images, never for changing them.",
          "regops", token_anonymous_read_only, side="operator"),
    Check("web.protected", "The web pages send their protections (CSP, no framing, no cache)",
          "The pages show repository names, labels and the audit log and act for logged-in "
          "users: scripts only from the service, never in a frame, never cached.",
          "regops; OWASP Secure Headers", web_pages_protected, side="operator"),
    Check("container.running", "The registry container is running",
          "Every other container check describes this container.",
          "regops", container_running),
    Check("container.non-root", "The registry runs as its unprivileged uid:gid",
          "A registry bug must not run code as root, even inside the container.",
          f"{CIS} §4.1", container_non_root),
    Check("container.read-only-rootfs", "The container's root filesystem is read-only",
          "An attacker cannot change the registry binary or drop tools into the container.",
          f"{CIS} §5.12", container_read_only),
    Check("container.capabilities", "All capabilities are dropped",
          "The registry needs no capability; each one is kernel attack surface.",
          f"{CIS} §5.3", container_capabilities),
    Check("container.not-privileged", "The container is not privileged",
          "Privileged containers are root on the host.",
          f"{CIS} §5.4", container_not_privileged),
    Check("container.host-namespaces", "No host network, pid, ipc or uts namespace",
          "Sharing them exposes the host's processes, sockets and services to the container.",
          f"{CIS} §5.9, 5.15, 5.16, 5.20", container_namespaces),
    Check("container.limits", "Memory and pids limits are set",
          "A runaway registry must not take the host's memory or processes.",
          f"{CIS} §5.10, 5.28", container_limits),
    Check("container.no-new-privileges", "no-new-privileges is set",
          "setuid binaries in the image cannot raise privileges.",
          f"{CIS} §5.25", container_no_new_privileges),
    Check("container.restart-policy", "Restart policy is bounded or unless-stopped",
          "CIS asks on-failure:5 against restart storms; regops uses unless-stopped so the "
          "registry returns after a reboot, and fails `always`, `no` and unbounded retries.",
          f"{CIS} §5.14 (deviation documented)", container_restart_policy),
    Check("container.bound-address", "The registry container is published on loopback only",
          "Clients must come through the front door (TLS, streaming, the GC switch); the "
          "registry's own port is not reachable from outside the host.",
          f"{CIS} §5.13", container_bound_address),
    Check("frontdoor.serving", "The front door listens where the inventory says and sends "
          "/v2/ to the registry",
          "nginx terminates TLS on registry_bind_address:registry_port; a front door left "
          "in the GC or standby mode keeps pushes out or serves a standby.",
          "regops", frontdoor_serving),
    Check("image.pinned", "The container runs the pinned image of the inventory",
          "A moving tag (latest) changes the registry without a deploy.",
          "regops (pinning is in neither CIS tool)", image_pinned),
    Check("registry.anonymous-refused", "Anonymous API requests are refused (401)",
          "Without credentials nobody may list, pull or push.",
          "regops", registry_anonymous_refused, side="operator"),
    Check("registry.debug-port-closed", "The debug/metrics port is not reachable from outside",
          "The debug listener has no authentication and shows internals.",
          f"regops; {CIS} §5.8 (only needed ports)", registry_debug_port_closed),
    Check("tls.certificate", "The served certificate is trusted and covers every name",
          "Clients verify the chain and the name; a mismatch breaks every docker pull.",
          "regops", tls_certificate_trusted, side="operator"),
    Check("tls.cert-days-left", "The served certificate has more days left than the threshold",
          "Expiry breaks every client at once; the check warns while there is time to redeploy.",
          "regops (--cert-days, default 30)", tls_cert_days_left, side="operator"),
    Check("tls.mozilla-intermediate", "TLS meets Mozilla's intermediate profile (sslyze)",
          "TLS 1.2/1.3, AEAD suites and X25519/P-256/P-384 only, as the front door offers "
          "them (the registry's own Go TLS cannot: it always offers P-521).",
          "Mozilla Server Side TLS 5.7, intermediate", tls_mozilla_intermediate,
          side="operator"),
    Check("gc.job-installed", "The GC cron job is installed and cron runs",
          "Without GC deleted images never free their space.",
          "regops", gc_job_installed),
    Check("gc.last-run", "The last GC run succeeded and is recent",
          "A job that fails or never runs is as bad as none. Never run yet passes only while "
          "the job is younger than the allowed age (--gc-max-age-days, default: the schedule's "
          "period plus up to a day).",
          "regops", gc_last_run),
    Check("host.disk-free", "The data directory's file system has free space above the "
          "threshold",
          "A full disk fails every push, and GC itself needs room.",
          "regops (--disk-free-percent, default 10)", disk_free,
          roles=("registry", "storage")),
    Check("role.services", "A load balancer's or storage host's services run and start at "
          "boot (haproxy; each SeaweedFS part, and etcd on a master host of three)",
          "A stopped part is a replica, gateway or copy the cluster counts on and lacks.",
          "regops", role_services, roles=("load_balancer", "storage")),
    Check("lb.config", "The haproxy config and the CA it verifies replicas with are "
          "root:root, 0644 or stricter",
          "Whoever writes them picks where the registry's clients are sent.",
          "regops", lb_config, roles=("load_balancer",)),
    Check("storage.s3-identity", "The S3 gateway's identity is root:seaweedfs, 0640 or "
          "stricter",
          "It holds the replicas' S3 secret key: every image.",
          "regops (as CIS Docker 1.6.0 §3.14 for key material)", storage_identity,
          roles=("storage",)),
    Check("storage.unprivileged", "SeaweedFS runs as its own user, not root",
          "A flaw in a network service running as root is the host.",
          "regops", storage_unprivileged, roles=("storage",)),
    Check("storage.private-only", "No SeaweedFS or etcd port on a wildcard address, no "
          "catalog server",
          "None of them asks for credentials but the S3 gateway: the private address is "
          "their boundary.",
          "regops", storage_private, roles=("storage",)),
]
CHECK_IDS = [c.id for c in CHECKS]
