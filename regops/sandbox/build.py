"""Sandbox images: Debian base images (debootstrap + `docker import`) and the registry
image around Debian's `docker-registry` binary, both built here and cached."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from regops.sandbox.docker import image_labels, lock, run, workdir
from regops.sandbox.mirror import detect_mirror
from regops.sandbox.model import (
    LABEL,
    REGISTRY_BINARY,
    REGISTRY_IMAGE_REPO,
    Log,
    SandboxError,
    base_image,
    images_dir,
    registry_archive_path,
)

# Verified to boot systemd with sshd; dbus and procps make the host behave like
# a real minimal Debian server (hostnamectl, ps) without hiding missing deps.
BOOTSTRAP_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "ca-certificates",
    "iproute2",
    "procps",
)

# Units the sandbox image adds: the image ships without SSH host keys so that
# every container gets its own, generated before sshd starts.
_HOSTKEY_UNIT = """\
[Unit]
Description=Generate this sandbox host's own SSH host keys
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""
_HOSTKEY_UNIT_NAME = "regops-ssh-host-keys.service"
_MASKED_UNITS = ("systemd-modules-load.service",)
# Bump when customize_rootfs or BOOTSTRAP_PACKAGES change: cached base images
# with another recipe are rebuilt by the next `up`.
BASE_RECIPE = "2"




def parse_registry_version(output: str) -> str:
    """`docker-registry --version` says e.g. '... 2.8.2+ds1'; the tag wants '2.8.2'."""
    m = re.search(r"\bv?(\d+\.\d+\.\d+)", output)
    if not m:
        raise SandboxError(f"cannot read a registry version from {output.strip()!r}")
    return m.group(1)


def parse_ldd(output: str) -> list[Path]:
    """Shared objects a binary loads, so the scratch image carries exactly those."""
    libs = []
    for line in output.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" ", 1)[0]
        else:
            target = line.split(" ", 1)[0]
        if target.startswith("/"):
            libs.append(Path(target))
    return libs


def registry_dockerfile(version: str) -> str:
    """ENTRYPOINT is the binary itself: the deploy runs `serve CONFIG` and execs
    `registry garbage-collect` inside, which both need /usr/bin/registry."""
    return f"""\
FROM scratch
COPY rootfs/ /
COPY --chown=1000:1000 data/ /var/lib/registry/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL {LABEL}.registry="{version}" \\
      org.opencontainers.image.title="registry" \\
      org.opencontainers.image.version="{version}" \\
      org.opencontainers.image.description="distribution registry from Debian's docker-registry"
USER 1000:1000
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/usr/bin/registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
"""


def debootstrap_argv(distro: str, target: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BOOTSTRAP_PACKAGES),
        distro,
        str(target),
        mirror,
    ]


def import_argv(distro: str, mirror: str) -> list[str]:
    """container=docker tells systemd it is in a container (skips hardware units).
    (Docker 20.10 refuses STOPSIGNAL here, so `docker run` sets it.)"""
    changes = [
        'CMD ["/sbin/init"]',
        "ENV container=docker",
        f'LABEL {LABEL}.base="{distro}" {LABEL}.recipe="{BASE_RECIPE}" {LABEL}.mirror="{mirror}"',
    ]
    argv = ["docker", "import"]
    for c in changes:
        argv += ["--change", c]
    return [*argv, "-", base_image(distro)]


def customize_rootfs(rootfs: Path, distro: str, mirror: str) -> None:
    """Make a debootstrapped tree into a sandbox image: apt pointed at the
    mirror, no shared SSH host keys, no package cache."""
    (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {distro} main\n")
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    units = rootfs / "etc/systemd/system"
    (units / _HOSTKEY_UNIT_NAME).write_text(_HOSTKEY_UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / _HOSTKEY_UNIT_NAME
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{_HOSTKEY_UNIT_NAME}")
    # A container cannot load kernel modules (the host's are not there), yet
    # trixie's systemd runs modules-load for its own modules.conf link and
    # fails without libkmod. Mask it so hosts report "running", as a VM
    # would, rather than "degraded".
    for unit in _MASKED_UNITS:
        masked = units / unit
        if not masked.is_symlink():
            masked.symlink_to("/dev/null")
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def build_base_image(distro: str, mirror: str, log: Log) -> None:
    """debootstrap + `docker import`: the only way to a Debian image here,
    since no registry can be pulled from."""
    if os.geteuid() != 0:
        raise SandboxError("building a sandbox base image needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed; run scripts/setup")
    images_dir().mkdir(parents=True, exist_ok=True)
    logfile = images_dir() / f"debootstrap-{distro}.log"
    started = time.monotonic()
    with workdir(f"regops-{distro}-") as work:
        rootfs = work / "rootfs"
        log(f"{distro}: debootstrap from {mirror} (log: {logfile})")
        with open(logfile, "w") as out:
            rc = subprocess.run(debootstrap_argv(distro, rootfs, mirror), stdout=out,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise SandboxError(f"debootstrap {distro} failed (exit {rc}): {' | '.join(tail)}")
        customize_rootfs(rootfs, distro, mirror)
        log(f"{distro}: docker import {base_image(distro)}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(import_argv(distro, mirror), stdin=tar.stdout,
                             capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise SandboxError(f"docker import of {distro} failed: {imp.stderr.strip()}")
    log(f"{distro}: base image built in {time.monotonic() - started:.0f}s")


def _base_is_current(distro: str) -> bool:
    labels = image_labels(base_image(distro))
    return labels is not None and labels.get(f"{LABEL}.recipe") == BASE_RECIPE


def ensure_base_images(distros: Iterable[str], mirror: str | None, rebuild: bool,
                       log: Log) -> None:
    """Build missing base images, several distros at once (debootstrap is mostly
    waiting on the network and dpkg, so two overlap well)."""
    with lock("build-base"):
        todo = sorted({d for d in distros if rebuild or not _base_is_current(d)})
        if not todo:
            return
        mirror = mirror or detect_mirror()
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            futures = [pool.submit(build_base_image, d, mirror, log) for d in todo]
            errors = [f.exception() for f in futures]
        for e in errors:
            if e:
                raise e


def registry_binary_version(binary: str = REGISTRY_BINARY) -> str:
    if not Path(binary).exists():
        raise SandboxError(f"{binary} is missing; run scripts/setup (package docker-registry)")
    return parse_registry_version(run([binary, "--version"]).stdout)


def build_registry_image(image: str, version: str, binary: str, log: Log) -> None:
    """A FROM scratch image around Debian's registry binary and the libs it
    links, since the official image cannot be pulled."""
    with workdir("regops-registry-") as ctx:
        rootfs = ctx / "rootfs"
        for d in ("etc/docker/registry", "tmp", "usr/bin"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        # /var/lib/registry comes only from data/, so COPY --chown makes it the
        # registry user's (an anonymous volume then inherits that owner).
        (ctx / "data").mkdir()
        (rootfs / "tmp").chmod(0o1777)
        shutil.copy2(binary, rootfs / "usr/bin/registry")
        ldd = run(["ldd", binary], check=False)
        libs = parse_ldd(ldd.stdout) if ldd.returncode == 0 else []
        cafile = Path("/etc/ssl/certs/ca-certificates.crt")
        for lib in [*libs, *([cafile] if cafile.exists() else [])]:
            dest = rootfs / str(lib).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), dest)
        (ctx / "Dockerfile").write_text(registry_dockerfile(version))
        log(f"registry: docker build {image} ({len(libs)} shared libraries)")
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        cp = subprocess.run(["docker", "build", "-q", "-t", image, str(ctx)],
                            capture_output=True, text=True, env=env)
        if cp.returncode != 0:
            raise SandboxError(f"docker build {image} failed: {cp.stderr.strip()[-400:]}")


def ensure_registry_image(rebuild: bool, log: Log) -> tuple[str, Path]:
    """The archive the deploy uploads to air-gapped hosts; built once, cached."""
    version = registry_binary_version()
    image = f"{REGISTRY_IMAGE_REPO}:{version}"
    archive = registry_archive_path(version)
    with lock("build-registry"):
        if archive.exists() and not rebuild:
            return image, archive
        labels = image_labels(image)
        if rebuild or labels is None or f"{LABEL}.registry" not in labels:
            build_registry_image(image, version, REGISTRY_BINARY, log)
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_suffix(".tar.tmp")
        run(["docker", "save", "-o", str(tmp), image])
        tmp.replace(archive)
        log(f"registry: saved {image} to {archive}")
    return image, archive


