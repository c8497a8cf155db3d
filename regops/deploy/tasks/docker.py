"""Docker engine: Debian's docker.io or Docker CE, with a hardened daemon.json.

Its keys: the `docker` concern of `regops.config.keys` (docs/reference/keys.md).
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Arch, LinuxDistribution
from pyinfra.operations import apt, files, systemd

from regops.config.settings import Settings
from regops.deploy.facts import serve_from_snapshot
from regops.deploy.operations import refresh_apt_for
from regops.deploy.render import daemon_json, template

TOOLS = ["ca-certificates", "curl"]
PACKAGES = {
    "debian": ["docker.io"],
    "docker-ce": ["docker-ce", "docker-ce-cli", "containerd.io"],
}


@deploy("Docker engine")
def apply(s: Settings) -> None:
    serve_from_snapshot()  # every fact of this host in a few round trips
    refresh_apt_for([*TOOLS, *PACKAGES[s["registry_docker_source"]]])
    apt.packages(
        name="Install the tools the deploy and the GC job use (curl, certificates)",
        packages=TOOLS,
    )
    if s["registry_docker_source"] == "docker-ce":
        _docker_ce_repository(s)

    files.directory(
        name="Keep /etc/docker root-owned and 0755",
        path="/etc/docker",
        user="root",
        group="root",
        mode="0755",
    )
    # Written before the package is installed, so Docker's first start uses it.
    daemon = files.put(
        name="Write the hardened /etc/docker/daemon.json",
        src=StringIO(daemon_json(s)),
        dest="/etc/docker/daemon.json",
        user="root",
        group="root",
        mode="0644",
    )
    apt.packages(
        name=f"Install Docker ({s['registry_docker_source']})",
        packages=PACKAGES[s["registry_docker_source"]],
    )
    systemd.service(
        name="Keep Docker enabled and running",
        service="docker",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Restart Docker because daemon.json changed (live-restore keeps containers up)",
        service="docker",
        restarted=True,
        _if=daemon.did_change,
    )


def _docker_ce_repository(s: Settings) -> None:
    distro = host.get_fact(LinuxDistribution)
    codename = distro["release_meta"].get("VERSION_CODENAME") or distro["release_meta"].get(
        "CODENAME"
    )
    if not codename:
        raise SystemExit(
            f"regops: error: {s.host}: registry_docker_source: docker-ce needs "
            "the host's release codename, and /etc/os-release has none"
        )
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(host.get_fact(Arch), "amd64")
    url = s["registry_docker_ce_repo_url"] or (
        f"https://download.docker.com/linux/{distro['release_meta'].get('ID', 'debian')}"
    )
    files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="0755")
    files.download(
        name="Download Docker's apt signing key",
        src=f"{url}/gpg",
        dest="/etc/apt/keyrings/docker.asc",
        mode="0644",
    )
    source = files.put(
        name="Add Docker's apt repository (deb822)",
        src=StringIO(
            template(
                "etc/apt/sources.list.d/docker.sources", s, codename=codename, arch=arch, url=url
            )
        ),
        dest="/etc/apt/sources.list.d/docker.sources",
        mode="0644",
    )
    apt.update(name="Refresh apt after adding Docker's repository", _if=source.did_change)
