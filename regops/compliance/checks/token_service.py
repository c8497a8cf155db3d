"""The token service and its web pages, one unit (`token.*`, `web.*`)."""

from __future__ import annotations

from regops import hostpaths
from regops.compliance.checks._base import Context, check
from regops.compliance.checks._helpers import NO_TOKEN_SERVICE
from regops.compliance.model import Verdict, fail, ok

# systemd property -> the value the hardened unit has (an empty capability set shows as "").
TOKEN_HARDENING = {
    "ActiveState": "active", "User": hostpaths.TOKEN_USER, "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "RestrictSUIDSGID": "yes",
}


@check(
    id="token.hardened",
    title="The token service runs as its own user, sandboxed by systemd",
    rationale="It reads password hashes and holds the signing key: no capabilities, no new "
              "privileges, a read-only system and a memory cap limit what a bug could do.",
    reference="regops (systemd.exec hardening)",
)
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


@check(
    id="token.ttl",
    title="Tokens are ES256 with x5c, for this registry, and short-lived",
    rationale="A leaked token is good only until it expires; the registry verifies aud and the "
              "chain under the token CA.",
    reference="regops (registry_token_ttl)",
    side="operator",
)
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


@check(
    id="token.anonymous-read-only",
    title="No rule lets anonymous push, delete or list",
    rationale="Anonymous access is for pulling public images, never for changing them.",
    reference="regops",
    side="operator",
)
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


@check(
    id="web.protected",
    title="The web pages send their protections (CSP, no framing, no cache)",
    rationale="The pages show repository names, labels and the audit log and act for logged-in "
              "users: scripts only from the service, never in a frame, never cached.",
    reference="regops; OWASP Secure Headers",
    side="operator",
)
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


@check(
    id="token.directory",
    title="The directory answers over TLS and the service account can search it",
    rationale="People of the directory log in only while the token service reaches it; plain "
              "LDAP would carry their passwords in clear.",
    reference="regops (registry_ldap)",
)
def token_directory(c: Context) -> Verdict:
    value = c.s["registry_ldap"]
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE)
    answer = c.facts.text("directory", "the token service's config cannot be read").strip()
    if value is None:
        if answer.startswith("none"):
            return ok("no directory: registry_ldap is not set, and the token service has none")
        return fail("the token service asks a directory that registry_ldap does not name",
                    "redeploy")
    if not answer.startswith("ok"):
        return fail(f"from this host: {answer.removeprefix('down ')}",
                    "check the URLs, the CA (ca_file), the bind DN and its password, and "
                    "that this host may reach the directory")
    url = answer.removeprefix("ok").strip()
    plain = url.lower().startswith("ldap://") and not value.get("starttls")
    if plain:
        return fail(f"{url} answers, in plain LDAP: passwords cross the network in clear "
                    "(allow_plain is set)", "use ldaps:// or starttls: true")
    return ok(f"{url} answers over TLS; the service account binds and searches")
