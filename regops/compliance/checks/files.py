"""Owners and modes of the files that hold trust, keys and passwords (`files.*`)."""

from __future__ import annotations

from regops import hostpaths
from regops.compliance.checks._base import CIS, Context, check
from regops.compliance.checks._helpers import NO_TOKEN_SERVICE, file_check, mode_problem
from regops.compliance.facts import certs_d
from regops.compliance.model import Status, Verdict, fail, ok
from regops.hostpaths import FRONTDOOR_KEY


@check(
    id="files.etc-docker",
    title="/etc/docker is root:root, 0755 or stricter",
    rationale="Whoever can write there controls Docker's configuration and trust.",
    reference=f"{CIS} §3.5, 3.6",
)
def files_etc_docker(c: Context) -> Verdict:
    return file_check(c, "/etc/docker", "root", {"root"}, 0o755)


@check(
    id="files.daemon-json",
    title="daemon.json is root:root, 0644 or stricter",
    rationale="It switches the daemon's protections on and off.",
    reference=f"{CIS} §3.17, 3.18",
)
def files_daemon_json(c: Context) -> Verdict:
    return file_check(c, "/etc/docker/daemon.json", "root", {"root"}, 0o644)


@check(
    id="files.docker-sock",
    title="docker.sock is root:docker, 0660 or stricter",
    rationale="Access to the socket is root on the host.",
    reference=f"{CIS} §3.15, 3.16",
)
def files_docker_sock(c: Context) -> Verdict:
    return file_check(c, "/var/run/docker.sock", "root", {"docker", "root"}, 0o660)


@check(
    id="files.certs-d",
    title="certs.d trust files are root:root and not writable by others",
    rationale="A CA planted there makes the host's Docker trust a fake registry. CIS asks 0444; "
              "regops accepts 0644 (only root can write, as with 0444 for root).",
    reference=f"{CIS} §3.7, 3.8",
)
def files_certs_d(c: Context) -> Verdict:
    if c.s.provided_tls and not c.s["registry_tls_ca_file"]:
        return ok("no CA to install: the provided certificate chains to a public root")
    directory = certs_d(c.s)
    problems = [p for p in (
        mode_problem(c.facts.stat("/etc/docker/certs.d"), "/etc/docker/certs.d", "root",
                     {"root"}, 0o755),
        mode_problem(c.facts.stat(directory), directory, "root", {"root"}, 0o755),
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


@check(
    id="files.registry-key",
    title="The registry's TLS key is root:root, 0400",
    rationale="Only root may read it: the front door's master process reads it as root, its "
              "workers and the registry never.",
    reference=f"{CIS} §3.13, 3.14",
)
def files_registry_key(c: Context) -> Verdict:
    return file_check(c, FRONTDOOR_KEY, "root", {"root"}, 0o400)


def _files_check(c: Context, paths: list[str], user: str, groups: set[str],
                 max_mode: int) -> Verdict:
    verdicts = [file_check(c, path, user, groups, max_mode) for path in paths]
    failed = [v for v in verdicts if v.status != Status.PASS]
    if failed:
        return fail("; ".join(v.detail for v in failed), failed[0].remedy)
    return ok("; ".join(v.detail for v in verdicts))


def _token_group(c: Context) -> set[str]:
    return {hostpaths.TOKEN_USER, str(c.s["registry_token_uid"])}


@check(
    id="files.htpasswd",
    title="The password hashes are root:<their reader's group>, 0640 or stricter (the token "
          "service's users and robots, or the registry's htpasswd)",
    rationale="Password hashes are for the one service that checks them; bcrypt slows cracking, it "
              "does not stop it.",
    reference=f"regops (as {CIS} §3.14 for key material)",
)
def files_htpasswd(c: Context) -> Verdict:
    if c.s.token_auth:  # the token service checks passwords; the registry has none
        return _files_check(c, [hostpaths.TOKEN_USERS, hostpaths.TOKEN_ROBOTS], "root",
                            _token_group(c), 0o640)
    path = f"{c.s['registry_config_dir']}/htpasswd"
    return file_check(c, path, "root", {c.s["registry_user"], str(c.s["registry_gid"])}, 0o640)


@check(
    id="files.token-keys",
    title="The token signing key, notification secret and config are root:regops-token, 0640 or "
          "stricter",
    rationale="Whoever reads the signing key can mint tokens with any rights.",
    reference=f"regops (as {CIS} §3.14 for key material)",
)
def files_token_keys(c: Context) -> Verdict:
    if not c.s.token_auth:
        return ok(NO_TOKEN_SERVICE)
    return _files_check(
        c, [hostpaths.TOKEN_KEY, hostpaths.TOKEN_NOTIFY_SECRET, hostpaths.TOKEN_CONFIG], "root",
        _token_group(c), 0o640,
    )
