"""The registry: its whole config, its container spec, its image and its containers.

The registry is a managed unit (`regops.deploy.units`): its container carries the
digest of the spec and config it was started with, and whenever that differs from
what is declared, or the registry is not running, the control script on the host
replaces it without an outage (a candidate first, clients moved by the front door,
the previous one restored if the new one fails). Data lives on the host and
survives every replacement.

Its keys: the `registry` concern of `regops.config.keys` (docs/reference/keys.md).
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy import units as unit
from regops.deploy.facts import DockerImagePresent, expect_at_prepare
from regops.deploy.operations import Secret, secret_file
from regops.secrets import paths, pki, store

expect_at_prepare(unit.UnitState, control=hostpaths.REGISTRY_CONTROL)  # names the apply


def registry_unit(s: Settings) -> unit.Unit:
    """The spec every registry container shares and the config the registry serves."""
    config_dir = s["registry_config_dir"]
    http_secret = store.http_secret(s.secrets_root, s.registry_name)
    notify = store.notify_secret(s.secrets_root, s.registry_name) if s.token_auth else ""
    inputs = [
        unit.Input(
            f"{config_dir}/registry.spec",
            render.template("etc/docker/registry/registry.spec", s).encode(),
            mode="0644",
        ),
        unit.Input(
            f"{config_dir}/config.yml",
            render.registry_config(s, http_secret, notify_secret=notify).encode(),
            mode="0640",
            gid=s["registry_gid"],
            secret=True,
        ),
    ]
    if s.token_auth:  # the CA the registry verifies tokens against
        ca = pki.ensure_token_signer(paths.pki_dir(s.secrets_root, s.registry_name)).ca_pem
        inputs.append(unit.Input(f"{config_dir}/token-ca.crt", ca, mode="0644", staged=False))
    if s["registry_proxy_ca_file"]:  # the cache's upstream
        inputs.append(unit.Input(f"{config_dir}/upstream-ca/ca.crt",
                                 Path(s["registry_proxy_ca_file"]).read_bytes(), mode="0644",
                                 staged=False))
    return unit.Unit(name="registry", what="the registry", control=hostpaths.REGISTRY_CONTROL,
                     inputs=tuple(inputs))


@deploy("Registry")
def apply(s: Settings) -> None:
    d = s.data
    files.directory(
        name=f"Create the data directory {d['registry_data_dir']}, owned by the container user",
        path=d["registry_data_dir"],
        user=d["registry_user"],
        group=d["registry_user"],
        mode="0750",
    )
    files.directory(
        name="Create the directory of the cache's upstream CA",
        path=f"{d['registry_config_dir']}/upstream-ca",
        user="root",
        group=d["registry_user"],
        mode="0755",
        present=bool(d["registry_proxy_ca_file"]),
    )
    http_secret = store.http_secret(s.secrets_root, s.registry_name)
    secret_file(
        name="Write the read-only config the standby serves while GC runs",
        src=Secret(render.registry_config(
            s, http_secret, readonly=True,
            notify_secret=store.notify_secret(s.secrets_root, s.registry_name)
            if s.token_auth else "",
        )),
        path=f"{d['registry_config_dir']}/config-readonly.yml",
        uid=0,
        gid=d["registry_gid"],
        mode="0640",
    )
    _image(s)
    unit.install_control(s, hostpaths.REGISTRY_CONTROL)
    boot_unit = files.put(
        name="Install regops-registry.service, which restores the registry after a boot",
        src=StringIO(render.template(hostpaths.REGISTRY_BOOT_UNIT, s)),
        dest=hostpaths.REGISTRY_BOOT_UNIT,
        user="root",
        group="root",
        mode="0644",
    )
    systemd.daemon_reload(
        name="Make systemd read regops-registry.service again", _if=boot_unit.did_change
    )
    systemd.service(
        name="Run regops-registry.service at every boot",
        service="regops-registry.service",
        running=None,
        enabled=True,
    )
    unit.ensure(registry_unit(s))
    if s.token_auth:
        files.file(
            name="Remove the registry's htpasswd file (the token service checks passwords now)",
            path=f"{d['registry_config_dir']}/htpasswd",
            present=False,
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
