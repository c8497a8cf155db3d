"""The registry: its whole config, its image and its hardened container.

The container is recreated only when its spec (image, port, mounts, limits)
changes, restarted only when its config or certificates change, and left
alone otherwise. Data lives on the host and survives both.

Its keys: the `registry` concern of `regops.config.keys` (README: Data keys).
"""

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy.ops import ContainerSpecLabel, DockerImagePresent, Secret, secret_file
from regops.secrets import store


def wait_healthy_command(s: Settings, timeout: int = 60) -> str:
    """Shell loop until /v2/ answers 200 or 401 through TLS; fails after `timeout` s."""
    url = f"https://{s.registry_name}:{s.port}/v2/"
    resolve = f"{s.registry_name}:{s.port}:{s.probe_address}"
    ca = f"{s['registry_config_dir']}/tls/ca.crt"
    return (
        f"ca=''; [ -f {ca} ] && ca='--cacert {ca}'; "
        f"for i in $(seq {timeout}); do "
        f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 $ca "
        f"--resolve {resolve} {url}); "
        f'case "$code" in 200|401) exit 0;; esac; sleep 1; done; '
        f'echo "registry not healthy after {timeout}s (last HTTP status $code)" >&2; exit 1'
    )


@deploy("Registry")
def apply(s: Settings, restart_triggers: list[OperationMeta]) -> None:
    d = s.data
    name = d["registry_container_name"]
    config_dir = d["registry_config_dir"]
    files.directory(
        name=f"Create the data directory {d['registry_data_dir']}, owned by the container user",
        path=d["registry_data_dir"],
        user=d["registry_user"],
        group=d["registry_user"],
        mode="0750",
    )
    http_secret = store.http_secret(s.secrets_root, s.registry_name)
    config = secret_file(
        name="Write the registry config (the whole of it)",
        src=Secret(render.registry_config(s, http_secret)),
        path=f"{config_dir}/config.yml",
        uid=0,
        gid=d["registry_gid"],
        mode="0640",
    )
    secret_file(
        name="Write the read-only variant of the config that GC switches to",
        src=Secret(render.registry_config(s, http_secret, readonly=True)),
        path=f"{config_dir}/config-readonly.yml",
        uid=0,
        gid=d["registry_gid"],
        mode="0640",
    )
    files.link(
        name="Point the registry at its normal config",
        path=f"{config_dir}/serve.yml",
        target="config.yml",
    )

    _image(s)

    current = host.get_fact(ContainerSpecLabel, container=name, label=render.SPEC_LABEL)
    created = None
    if current != render.spec_hash(s):
        created = server.shell(
            name=f"Create the registry container {name}"
            if current is None
            else f"Recreate the registry container {name} because its spec changed",
            commands=[
                f"docker rm -f {name} >/dev/null 2>&1 || true",
                shlex.join(render.docker_run_argv(s)),
            ],
        )
    triggers = [config, *restart_triggers]
    restarted = server.shell(
        name=f"Restart {name} because its config or certificates changed",
        commands=[f"docker restart {name}"],
        _if=lambda: (
            any(op.did_change() for op in triggers)
            and not (created is not None and created.did_change())
        ),
    )
    server.shell(
        name="Wait until the registry answers through TLS",
        commands=[wait_healthy_command(s)],
        _if=lambda: restarted.did_change() or (created is not None and created.did_change()),
    )


def _image(s: Settings) -> None:
    image = s["registry_image"]
    if host.get_fact(DockerImagePresent, image=image):
        return
    archive = s["registry_image_archive"]
    if archive:
        remote = f"{hostpaths.IMAGES_DIR}/{Path(archive).name}"
        files.directory(
            name=f"Create {hostpaths.IMAGES_DIR}", path=hostpaths.IMAGES_DIR, mode="0700"
        )
        files.put(
            name=f"Upload the image archive {Path(archive).name}",
            src=archive,
            dest=remote,
            mode="0600",
        )
        server.shell(
            name=f"Load {image} from the archive (it is missing on the host)",
            commands=[f"docker image inspect {image} >/dev/null 2>&1 || docker load -i {remote}"],
        )
    else:
        server.shell(
            name=f"Pull {image} (it is missing on the host)", commands=[f"docker pull {image}"]
        )
