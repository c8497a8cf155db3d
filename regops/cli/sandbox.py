"""`regops sandbox`: throwaway Debian hosts (systemd containers) over SSH on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from regops.sandbox.build import ensure_base_images, ensure_registry_image
from regops.sandbox.docker import require_docker
from regops.sandbox.hosts import down, format_table, status, up
from regops.sandbox.model import (
    DEFAULT_DISTRO,
    DISTROS,
    TOPOLOGIES,
    Log,
    SandboxError,
    base_image,
    default_name,
)


def _logger() -> Log:
    started = time.monotonic()

    def log(msg: str) -> None:
        click.echo(f"[sandbox {time.monotonic() - started:5.1f}s] {msg}", err=True)

    return log


_name_option = click.option(
    "--name", default=default_name, show_default="$REGOPS_SANDBOX or regops",
    help="Sandbox name; several sandboxes can run side by side.",
)


@click.group()
def sandbox() -> None:
    """Throwaway Debian hosts (systemd containers) reachable over SSH on 127.0.0.1."""


@sandbox.command("up")
@click.option("--hosts", type=click.IntRange(min=1), default=None,
              help="Number of hosts [default: 1, or one per --distro].")
@click.option("--distro", "distros", multiple=True, type=click.Choice(DISTROS),
              help="Debian release; repeat to give hosts different ones [default: bookworm].")
@_name_option
@click.option("--mirror", envvar="REGOPS_MIRROR", default=None,
              help="Debian mirror URL [default: the first one in this machine's apt sources].")
@click.option("--rebuild", is_flag=True, help="Rebuild base images and the registry image.")
@click.option("--timeout", type=float, default=180, show_default=True,
              help="Seconds to wait for each host to boot and answer SSH.")
@click.option("--topology", type=click.Choice(sorted(TOPOLOGIES)), default=None,
              help="single: each host its own registry; ha: a load balancer, two replicas on "
                   "S3 and three storage hosts, one registry name [default: single, or as "
                   "made].")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def up_cmd(hosts: int | None, distros: tuple[str, ...], name: str, mirror: str | None,
           rebuild: bool, timeout: float, topology: str | None, as_json: bool) -> None:
    """Create or complete a sandbox (idempotent: running hosts are reused)."""
    log = _logger()
    doc = up(name, hosts, distros, mirror=mirror, rebuild=rebuild, timeout=timeout, log=log,
             topology=topology)
    log("ready")
    click.echo(json.dumps(doc, indent=2) if as_json else format_table(doc))


@sandbox.command("build")
@click.option("--distro", "distros", multiple=True, type=click.Choice(DISTROS),
              help="Debian release of a base image to build; repeatable [default: bookworm].")
@click.option("--mirror", envvar="REGOPS_MIRROR", default=None,
              help="Debian mirror URL [default: the first one in this machine's apt sources].")
@click.option("--rebuild", is_flag=True, help="Rebuild even when the cached images are current.")
def build_cmd(distros: tuple[str, ...], mirror: str | None, rebuild: bool) -> None:
    """Build the cached images without starting hosts: the Debian base images (which the
    Vagrantfile's docker provider boots too) and the registry image archive."""
    log = _logger()
    require_docker()
    ensure_base_images(distros or (DEFAULT_DISTRO,), mirror, rebuild, log)
    image, archive = ensure_registry_image(rebuild, log)
    for distro in distros or (DEFAULT_DISTRO,):
        click.echo(f"{base_image(distro)}")
    click.echo(f"{image} ({archive})")


@sandbox.command("status")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(name: str, as_json: bool) -> None:
    """Show the hosts of a sandbox and how to reach them."""
    doc = status(name)
    click.echo(json.dumps(doc, indent=2) if as_json else format_table(doc))


@sandbox.command("down")
@_name_option
def down_cmd(name: str) -> None:
    """Remove a sandbox's containers, volumes and state (cached images stay)."""
    n = down(name, log=_logger())
    click.echo(f"sandbox {name}: removed {n} container(s)")


@sandbox.command("verify")
@_name_option
def verify_cmd(name: str) -> None:
    """Prove each deployed sandbox registry works: TLS, login, push, pull, 401."""
    from regops.sandbox.verify import push_pull

    doc = status(name)
    for h in doc["hosts"]:
        password_file = Path(h["demo_password_file"])
        if not Path(h["ca_path"]).is_file() or not password_file.is_file():
            raise SandboxError(
                f"{h['name']}: not deployed yet (run: pyinfra -y inventories/sandbox.py deploy.py)"
            )
        try:
            lines = push_pull(f"127.0.0.1:{h['registry_published_port']}", h["ca_path"],
                              h["demo_user"], password_file.read_text().strip())
        except (RuntimeError, OSError) as e:
            raise SandboxError(f"{h['name']}: {e}") from None
        for line in lines:
            click.echo(f"{h['name']}: {line}")
    click.echo(f"sandbox {name}: the registry works")


COMMANDS = [sandbox]
