"""What serves on a replica: the registry container (`container.*`), the front door before
it (`frontdoor.*`) and the image it runs (`image.*`)."""

from __future__ import annotations

from regops.compliance.checks._base import CIS, Context, check
from regops.compliance.checks._helpers import container_info, host_config
from regops.compliance.facts import listening
from regops.compliance.model import Verdict, fail, ok
from regops.config.settings import CONTAINER_PORT
from regops.config.validators import image_problem


@check(
    id="container.running",
    title="The registry container is running",
    rationale="Every other container check describes this container.",
    reference="regops",
)
def container_running(c: Context) -> Verdict:
    state = container_info(c)["State"]
    if state.get("Running") and not state.get("Restarting"):
        return ok(f"running since {str(state.get('StartedAt', '?'))[:19]}")
    return fail(f"container is {state.get('Status', 'not running')} "
                f"(exit code {state.get('ExitCode')})", "look at `docker logs`, then redeploy")


@check(
    id="container.non-root",
    title="The registry runs as its unprivileged uid:gid",
    rationale="A registry bug must not run code as root, even inside the container.",
    reference=f"{CIS} §4.1",
)
def container_non_root(c: Context) -> Verdict:
    user = container_info(c)["Config"].get("User") or ""
    want = f"{c.s['registry_uid']}:{c.s['registry_gid']}"
    name = user.split(":")[0]
    if name in ("", "0", "root"):
        return fail(f"runs as root (User={user or 'unset'})", f"redeploy: it runs as {want}")
    if user != want:
        return fail(f"runs as {user}, the inventory says {want}", "redeploy")
    return ok(f"runs as {user}")


@check(
    id="container.read-only-rootfs",
    title="The container's root filesystem is read-only",
    rationale="An attacker cannot change the registry binary or drop tools into the container.",
    reference=f"{CIS} §5.12",
)
def container_read_only(c: Context) -> Verdict:
    if host_config(c).get("ReadonlyRootfs") is True:
        return ok("root filesystem is read-only")
    return fail("root filesystem is writable", "redeploy (--read-only)")


@check(
    id="container.capabilities",
    title="All capabilities are dropped",
    rationale="The registry needs no capability; each one is kernel attack surface.",
    reference=f"{CIS} §5.3",
)
def container_capabilities(c: Context) -> Verdict:
    hc = host_config(c)
    dropped = [x.upper().removeprefix("CAP_") for x in hc.get("CapDrop") or []]
    added = hc.get("CapAdd") or []
    if "ALL" in dropped and not added:
        return ok("all capabilities dropped, none added")
    return fail(f"CapDrop={dropped or 'none'} CapAdd={added or 'none'}",
                "redeploy (--cap-drop ALL)")


@check(
    id="container.not-privileged",
    title="The container is not privileged",
    rationale="Privileged containers are root on the host.",
    reference=f"{CIS} §5.4",
)
def container_not_privileged(c: Context) -> Verdict:
    if host_config(c).get("Privileged") is False:
        return ok("not privileged")
    return fail("runs privileged", "redeploy")


@check(
    id="container.host-namespaces",
    title="No host network, pid, ipc or uts namespace",
    rationale="Sharing them exposes the host's processes, sockets and services to the container.",
    reference=f"{CIS} §5.9, 5.15, 5.16, 5.20",
)
def container_namespaces(c: Context) -> Verdict:
    hc = host_config(c)
    shared = [kind for kind, key in (("network", "NetworkMode"), ("pid", "PidMode"),
                                     ("ipc", "IpcMode"), ("uts", "UTSMode"))
              if (hc.get(key) or "") == "host"]
    if shared:
        return fail(f"shares the host's {', '.join(shared)} namespace", "redeploy")
    return ok(f"own namespaces (network {hc.get('NetworkMode') or 'default'})")


@check(
    id="container.limits",
    title="Memory and pids limits are set",
    rationale="A runaway registry must not take the host's memory or processes.",
    reference=f"{CIS} §5.10, 5.28",
)
def container_limits(c: Context) -> Verdict:
    hc = host_config(c)
    memory, pids = hc.get("Memory") or 0, hc.get("PidsLimit") or 0
    missing = [what for what, value in (("memory", memory), ("pids", pids)) if value <= 0]
    if missing:
        return fail(f"no {' and no '.join(missing)} limit", "redeploy (registry_memory_limit, "
                                                            "registry_pids_limit)")
    return ok(f"memory {memory // (1024 * 1024)} MiB, pids {pids}")


@check(
    id="container.no-new-privileges",
    title="no-new-privileges is set",
    rationale="setuid binaries in the image cannot raise privileges.",
    reference=f"{CIS} §5.25",
)
def container_no_new_privileges(c: Context) -> Verdict:
    options = host_config(c).get("SecurityOpt") or []
    if any(o.replace("=", ":") in ("no-new-privileges", "no-new-privileges:true")
           for o in options):
        return ok("no-new-privileges is set")
    return fail("processes may gain privileges (no no-new-privileges)", "redeploy")


@check(
    id="container.restart-policy",
    title="Restart policy is bounded or unless-stopped",
    rationale="CIS asks on-failure:5 against restart storms; regops uses unless-stopped so the "
              "registry returns after a reboot, and fails `always`, `no` and unbounded retries.",
    reference=f"{CIS} §5.14 (deviation documented)",
)
def container_restart_policy(c: Context) -> Verdict:
    policy = host_config(c).get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "no", policy.get("MaximumRetryCount") or 0
    if name == "unless-stopped":
        return ok("unless-stopped (comes back after a reboot; stays down when stopped by hand)")
    if name == "on-failure" and 0 < retries <= 5:
        return ok(f"on-failure, at most {retries} retries")
    return fail(f"restart policy {name}" + (f" with {retries or 'unlimited'} retries"
                                            if name == "on-failure" else ""),
                "redeploy (unless-stopped)")


@check(
    id="container.bound-address",
    title="The registry container is published on loopback only",
    rationale="Clients must come through the front door (TLS, streaming, the GC switch); the "
              "registry's own port is not reachable from outside the host.",
    reference=f"{CIS} §5.13",
)
def container_bound_address(c: Context) -> Verdict:
    bindings = (host_config(c).get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp") or []
    want = {"HostIp": "127.0.0.1", "HostPort": str(c.s["registry_backend_port"])}
    got = [{"HostIp": b.get("HostIp") or "0.0.0.0", "HostPort": b.get("HostPort")}
           for b in bindings]
    if got != [want]:
        shown = ", ".join(f"{b['HostIp']}:{b['HostPort']}" for b in got) or "nothing"
        return fail(f"the registry is published on {shown}, not only on "
                    f"127.0.0.1:{want['HostPort']} behind the front door", "redeploy")
    return ok(f"published on 127.0.0.1:{want['HostPort']} only; clients come through the "
              "front door")


@check(
    id="frontdoor.serving",
    title="The front door listens where the inventory says and sends /v2/ to the registry",
    rationale="nginx terminates TLS on registry_bind_address:registry_port; a front door left in "
              "the GC or standby mode keeps pushes out or serves a standby.",
    reference="regops",
)
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


@check(
    id="image.pinned",
    title="The container runs the pinned image of the inventory",
    rationale="A moving tag (latest) changes the registry without a deploy.",
    reference="regops (pinning is in neither CIS tool)",
)
def image_pinned(c: Context) -> Verdict:
    container = container_info(c)
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
