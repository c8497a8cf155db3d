"""Sandbox hosts: systemd containers started, reached over SSH, reported and removed."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from regops.sandbox.build import ensure_base_images, ensure_registry_image
from regops.sandbox.docker import (
    container_ip,
    ensure_network,
    free_port,
    host_address,
    inspect_containers,
    labelled,
    lock,
    machine_resolv_conf,
    published_port,
    require_docker,
    reserved_ports,
    run,
)
from regops.sandbox.model import (
    ACCESS_DATA,
    DEFAULT_DISTRO,
    DEMO_USER,
    HA_BUCKET,
    LABEL,
    REGISTRY_PORT,
    SSH_USER,
    STATE_VERSION,
    TOPOLOGIES,
    HostSpec,
    Log,
    SandboxError,
    ensure_ssh_key,
    key_path,
    load_state,
    network_name,
    plan_hosts,
    sandbox_dir,
    save_state,
    secrets_dir,
    validate_name,
)
from regops.secrets import paths, store


def run_argv(spec: HostSpec, ssh_port: int, registry_port: int,
             ip: str | None = None, resolv_conf: Path | None = None) -> list[str]:
    """Not --privileged: it fails where CAP_SYS_RESOURCE is outside the bounding
    set. These options boot systemd on cgroup v1 and (per common practice) v2.
    With `ip`, the host sits at that fixed address on the sandbox's own network;
    `resolv_conf` is mounted as its /etc/resolv.conf."""
    network = ["--network", spec.network, "--ip", ip] if ip else []
    if resolv_conf is not None:
        network += ["-v", f"{resolv_conf}:/etc/resolv.conf:ro"]
    return [
        "docker", "run", "-d",
        "--name", spec.container,
        "--hostname", spec.hostname,
        "--label", f"{LABEL}={spec.sandbox}",
        "--label", f"{LABEL}.host={spec.name}",
        "--label", f"{LABEL}.distro={spec.distro}",
        "--cap-add", "ALL",
        "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined",
        # Writable /proc/sys, as on a real host: the hardened daemon.json turns
        # the userland proxy off, and dockerd then sets route_localnet.
        "--security-opt", "systempaths=unconfined",
        "--cgroupns=host",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run",
        "--tmpfs", "/run/lock",
        # How systemd wants to be asked to shut down cleanly.
        "--stop-signal", "SIGRTMIN+3",
        # A volume, so the nested dockerd gets overlay2 instead of slow vfs.
        "-v", f"{spec.volume}:/var/lib/docker",
        "-p", f"127.0.0.1:{ssh_port}:22",
        "-p", f"127.0.0.1:{registry_port}:{REGISTRY_PORT}",
        *network,
        spec.image,
    ]


def ssh_argv(key: Path | str, port: int, *command: str) -> list[str]:
    """Throwaway hosts get new host keys every time: never record or check them."""
    return [
        "ssh", "-i", str(key), "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        f"{SSH_USER}@127.0.0.1", *command,
    ]


def host_status(state: dict[str, Any], host: dict[str, Any],
                live: dict[str, Any] | None) -> dict[str, Any]:
    """One host as tools and tests consume it; live `docker inspect` wins over
    the recorded state (IPs move when containers restart)."""
    secrets = Path(state.get("secrets_dir") or secrets_dir())
    ssh_port = host["ssh_port"]
    reg_port = host["registry_published_port"]
    ip = host.get("ip")
    running = False
    if live is not None:
        ssh_port = published_port(live, 22) or ssh_port
        reg_port = published_port(live, REGISTRY_PORT) or reg_port
        running = bool((live.get("State") or {}).get("Running"))
        ip = container_ip(live) or ip
    registry_name = host["hostname"]
    return {
        "name": host["name"],
        "container": host["container"],
        "distro": host["distro"],
        "hostname": host["hostname"],
        "ip": ip,
        "ssh_host": "127.0.0.1",
        "ssh_port": ssh_port,
        "ssh_user": SSH_USER,
        "ssh_key": state["ssh_key"],
        "registry_name": registry_name,
        "registry_port": REGISTRY_PORT,
        "registry_published_port": reg_port,
        "registry_url": f"https://127.0.0.1:{reg_port}",
        "ca_path": str(paths.ca_cert_path(secrets, registry_name)),
        "demo_user": DEMO_USER,
        "demo_password_file": str(paths.password_path(secrets, registry_name, DEMO_USER)),
        "running": running,
    }


def status_document(state: dict[str, Any],
                    live: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The `status --json` shape; `live` maps container name to inspect data."""
    return {
        "name": state["name"],
        "ssh_key": state["ssh_key"],
        "registry_image": state["registry_image"],
        "registry_image_archive": state["registry_image_archive"],
        "topology": state.get("topology", "single"),
        "hosts": [host_status(state, h, live.get(h["container"])) for h in state["hosts"]],
    }


def inventory_hosts(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra host data for a status document: SSH on loopback plus the
    registry data a deploy needs to serve this host's name and IPs."""
    secrets = str(secrets_dir())
    roles = TOPOLOGIES[doc.get("topology", "single")]
    hosts = []
    for i, h in enumerate(doc["hosts"]):
        extra = ["localhost", "127.0.0.1"] + ([h["ip"]] if h.get("ip") else [])
        shape: dict[str, Any] = {}
        if roles:  # one name for all: the load balancer's (the first host's)
            first = doc["hosts"][0]
            extra = ["localhost", "127.0.0.1"] + ([first["ip"]] if first.get("ip") else [])
            shape = {
                "registry_name": first["registry_name"],
                "registry_role": roles[i] if i < len(roles) else "registry",
                "registry_private_address": h.get("ip") or h["name"],
                "registry_storage": "s3",
                "registry_s3_bucket": HA_BUCKET,
                "registry_gc_enabled": False,
                # The replicas share their blob descriptors in redis on the balancer.
                "registry_redis_host": first["name"],
            }
        hosts.append((h["name"], {
            "ssh_hostname": h["ssh_host"],
            "ssh_port": h["ssh_port"],
            "ssh_user": h["ssh_user"],
            "ssh_key": h["ssh_key"],
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
            # A sandbox's sshd shares this machine's two cores with the registries'
            # load tests: a connection refused or reset once is tried again.
            "ssh_connect_retries": 2,
            "sandbox_distro": h["distro"],
            "sandbox_container": h["container"],
            "registry_name": h["registry_name"],
            "registry_extra_names": extra,
            "registry_image": doc["registry_image"],
            "registry_image_archive": doc["registry_image_archive"],
            **ACCESS_DATA,
            # The operator's machine reaches the registry through the published port.
            "registry_api_url": h["registry_url"],
            "registry_secrets_dir": secrets,
            **shape,
        }))
    return hosts


def format_table(doc: dict[str, Any]) -> str:
    rows = [("HOST", "DISTRO", "STATE", "SSH", "REGISTRY", "IP")]
    for h in doc["hosts"]:
        rows.append((
            h["name"], h["distro"], "running" if h["running"] else "stopped",
            f"127.0.0.1:{h['ssh_port']}", h["registry_url"], h["ip"] or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"sandbox {doc['name']}  (image {doc['registry_image']})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if doc["hosts"]:
        lines.append(f"ssh: ssh -i {doc['ssh_key']} -p {doc['hosts'][0]['ssh_port']} "
                     "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1")
    return "\n".join(lines)


def _start_host(spec: HostSpec, live: dict[str, Any] | None, log: Log) -> None:
    """Create (or restart) one container; ports are pinned and retried on a race,
    the address is fixed on the sandbox's network."""
    if live is not None:
        if not (live.get("State") or {}).get("Running"):
            log(f"{spec.name}: starting stopped container {spec.container}")
            run(["docker", "start", spec.container])
        return
    run(["docker", "volume", "create", "--label", f"{LABEL}={spec.sandbox}", spec.volume])
    ip = host_address(ensure_network(spec.network, spec.sandbox), spec.index)
    resolv, resolv_conf = machine_resolv_conf(), None
    if resolv is not None:  # this machine's nameservers, as on Docker's default bridge
        resolv_conf = sandbox_dir(spec.sandbox) / "resolv.conf"
        resolv_conf.parent.mkdir(parents=True, exist_ok=True)
        resolv_conf.write_text(resolv)
    reserved = reserved_ports()
    for attempt in range(5):
        ssh_port = free_port(reserved)
        reg_port = free_port(reserved | {ssh_port})
        cp = run(run_argv(spec, ssh_port, reg_port, ip, resolv_conf), check=False)
        if cp.returncode == 0:
            log(f"{spec.name}: started {spec.container} ({spec.distro}, ssh 127.0.0.1:{ssh_port})")
            return
        run(["docker", "rm", "-f", spec.container], check=False)
        err = cp.stderr.strip()
        if "already allocated" not in err and "address already in use" not in err:
            raise SandboxError(f"docker run {spec.container} failed: {err}")
        reserved |= {ssh_port, reg_port}
        log(f"{spec.name}: port taken, retrying ({attempt + 1})")
    raise SandboxError(f"could not publish ports for {spec.container}")


def _install_key(container: str, public_key: str) -> None:
    run(["docker", "exec", "-i", container, "sh", "-c",
          "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
         input=public_key + "\n")


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(container: str, ssh_port: int, key: Path, timeout: float) -> str:
    """Ready means systemd finished booting and a key login over SSH works,
    the same path the deploy and tests take."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        cp = run(["docker", "exec", container, "systemctl", "is-system-running"],
                  check=False, timeout=30)
        state = cp.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            break
        if state in ("maintenance", "stopping"):
            raise SandboxError(f"{container}: systemd is {state}")
        time.sleep(1)
    else:
        raise SandboxError(f"{container}: systemd still {state} after {timeout:.0f}s")
    while time.monotonic() < deadline:
        if _ssh_banner(ssh_port):
            if shutil.which("ssh") is None:
                return state
            if run(ssh_argv(key, ssh_port, "true"), check=False, timeout=30).returncode == 0:
                return state
        time.sleep(1)
    raise SandboxError(f"{container}: sshd on 127.0.0.1:{ssh_port} does not accept the key")


def up(name: str, hosts: int | None, distros: Sequence[str], mirror: str | None = None,
       rebuild: bool = False, timeout: float = 180, log: Log = lambda _m: None,
       topology: str | None = None) -> dict[str, Any]:
    """Make the sandbox match the request, reusing whatever already runs."""
    validate_name(name)
    require_docker()
    with lock(f"up-{name}"):  # two `up`s of one sandbox would race for its hosts
        return _up(name, hosts, distros, mirror, rebuild, timeout, log, topology)


def _up(name: str, hosts: int | None, distros: Sequence[str], mirror: str | None,
        rebuild: bool, timeout: float, log: Log, topology: str | None = None
        ) -> dict[str, Any]:
    try:
        state = load_state(name)
    except SandboxError:
        state = {"version": STATE_VERSION, "name": name, "hosts": []}
    topology = check_topology(state.get("topology"), topology, hosts, name)
    if TOPOLOGIES[topology]:
        hosts = max(hosts or 0, len(TOPOLOGIES[topology]))
    known = set(labelled("container", name)) | {h["container"] for h in state["hosts"]}
    live_all = inspect_containers(sorted(known))
    existing = {int(h["name"][2:]): h["distro"] for h in state["hosts"]}
    for info in live_all.values():
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        host = labels.get(f"{LABEL}.host", "")
        if host.startswith("sb") and host[2:].isdigit():
            existing.setdefault(int(host[2:]), labels.get(f"{LABEL}.distro", DEFAULT_DISTRO))
    specs = plan_hosts(name, hosts, distros, existing)

    ensure_base_images({s.distro for s in specs}, mirror, rebuild, log)
    image, archive = ensure_registry_image(rebuild, log)
    key = key_path(name)
    public_key = ensure_ssh_key(key)
    state.update({
        "version": STATE_VERSION, "ssh_key": str(key), "registry_image": image,
        "topology": topology,
        "registry_image_archive": str(archive), "secrets_dir": str(secrets_dir()),
    })
    state.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    by_name = {h["name"]: h for h in state["hosts"]}

    for spec in specs:
        _start_host(spec, live_all.get(spec.container), log)
        info = inspect_containers([spec.container])[spec.container] or {}
        by_name[spec.name] = {
            "name": spec.name, "container": spec.container, "distro": spec.distro,
            "hostname": spec.hostname, "volume": spec.volume, "image": spec.image,
            "ssh_port": published_port(info, 22),
            "registry_published_port": published_port(info, REGISTRY_PORT),
            "ip": container_ip(info),
        }
        state["hosts"] = sorted(by_name.values(), key=lambda h: int(h["name"][2:]))
        save_state(state)  # record early so `down` finds a half-made sandbox
        _install_key(spec.container, public_key)

    def ready(h: dict[str, Any]) -> None:
        s = wait_ready(h["container"], h["ssh_port"], key, timeout)
        log(f"{h['name']}: systemd {s}, ssh ok")

    with ThreadPoolExecutor(max_workers=max(1, len(state["hosts"]))) as pool:
        for f in [pool.submit(ready, h) for h in state["hosts"]]:
            f.result()
    doc = status(name)
    for h in state["hosts"]:  # IPs are only final once containers run
        h["ip"] = next(x["ip"] for x in doc["hosts"] if x["name"] == h["name"])
    save_state(state)
    if TOPOLOGIES[topology]:
        ensure_s3_credentials(doc["hosts"][0]["registry_name"])
    return doc


def check_topology(recorded: str | None, asked: str | None, hosts: int | None,
                   name: str) -> str:
    """The sandbox's shape: as recorded, as asked on the first `up`, else `single`."""
    if asked is not None and asked not in TOPOLOGIES:
        raise SandboxError(f"unknown topology {asked!r}; choose from {', '.join(TOPOLOGIES)}")
    if recorded and asked and recorded != asked:
        raise SandboxError(f"sandbox {name!r} is a {recorded} sandbox; run `regops sandbox "
                           f"down --name {name}` first to make it {asked}")
    topology = recorded or asked or "single"
    needed = len(TOPOLOGIES[topology])
    if hosts is not None and needed and hosts < needed:
        raise SandboxError(f"--topology {topology} needs at least {needed} hosts, not {hosts}")
    return topology


def ensure_s3_credentials(registry_name: str) -> None:
    """The replicas' and the storage host's S3 key, generated once (mode 0600)."""
    root = secrets_dir()
    store.secret_file(paths.s3_credential_path(root, registry_name, "access"),
                      lambda: "regops-" + secrets.token_hex(8))
    store.secret_file(paths.s3_credential_path(root, registry_name, "secret"),
                      store.generate_password)


def status(name: str | None = None) -> dict[str, Any]:
    state = load_state(name)
    try:
        live = inspect_containers(h["container"] for h in state["hosts"])
    except SandboxError:  # no docker here: report what was recorded
        live = {}
    return status_document(state, live)


def down(name: str, log: Log = lambda _m: None) -> int:
    """Remove containers, volumes and state; keep base images and the registry
    archive because they are slow to build and shared between sandboxes."""
    validate_name(name)
    require_docker()
    containers = set(labelled("container", name))
    volumes = set(labelled("volume", name))
    with contextlib.suppress(SandboxError):
        for h in load_state(name)["hosts"]:
            containers.add(h["container"])
            volumes.add(h.get("volume") or f"{h['container']}-docker")
    present = {c for c, i in inspect_containers(sorted(containers)).items() if i}
    if present:
        run(["docker", "rm", "-f", "-v", *sorted(present)])
        log(f"removed containers: {', '.join(sorted(present))}")
    existing_vols = set(labelled("volume")) | set(
        run(["docker", "volume", "ls", "--format", "{{.Name}}"]).stdout.split())
    gone = sorted(volumes & existing_vols)
    if gone:
        run(["docker", "volume", "rm", "-f", *gone])
        log(f"removed volumes: {', '.join(gone)}")
    networks = sorted(set(labelled("network", name)) | {network_name(name)})
    if run(["docker", "network", "rm", *networks], check=False).returncode == 0:
        log(f"removed network: {', '.join(networks)}")
    d = sandbox_dir(name)
    if d.exists():
        shutil.rmtree(d)
        log(f"removed {d}")
    return len(present)


