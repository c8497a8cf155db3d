"""The front door: Debian's nginx terminates TLS on the registry's port and streams
/v2/ to the registry on loopback.

Mozilla "intermediate" TLS with the certificate of `regops.deploy.tasks.tls` (its key
root-only), no request buffering or size limit, upload URLs that keep the name
the client used. A managed unit (`regops.deploy.units`): the site, the mode
files and the certificate are staged, tested with `nginx -t` and taken in with
a reload (never a restart), and rolled back if the front door then does not
answer. The mode link says where /v2/ goes: the registry, its standby while it
is replaced, or the read-only standby while GC runs.

Its keys: the `tls` concern of `regops.config.keys`, and `registry_port`,
`registry_bind_address`, `registry_backend_port`, `registry_drain_timeout`.
"""

from pyinfra.api import deploy
from pyinfra.operations import apt, files, systemd

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy import units as unit
from regops.deploy.facts import expect_at_prepare
from regops.deploy.operations import refresh_apt_for
from regops.deploy.tasks.tls import material

expect_at_prepare(unit.UnitState, control=hostpaths.FRONTDOOR_CONTROL)  # names the apply


def frontdoor_unit(s: Settings) -> unit.Unit:
    cert, key, _ = material(s)
    modes = tuple(
        unit.Input(path, render.template(path, s).encode())
        for path in map(hostpaths.frontdoor_mode, hostpaths.FRONTDOOR_MODES)
    )
    return unit.Unit(
        name="frontdoor",
        what="the front door",
        control=hostpaths.FRONTDOOR_CONTROL,
        inputs=(
            unit.Input(hostpaths.NGINX_SITE, render.template(hostpaths.NGINX_SITE, s).encode()),
            *modes,
            unit.Input(hostpaths.FRONTDOOR_CERT, cert),
            unit.Input(hostpaths.FRONTDOOR_KEY, key, mode="0400", secret=True),
        ),
    )


@deploy("Front door")
def apply(s: Settings) -> None:
    refresh_apt_for(["nginx"])
    apt.packages(name="Install nginx", packages=["nginx"])
    files.link(
        name="Disable nginx's default site (port 80): the registry's port is the only one",
        path=hostpaths.NGINX_DEFAULT_SITE,
        present=False,
    )
    for directory, mode in (
        (hostpaths.FRONTDOOR_DIR, "0755"),
        (hostpaths.FRONTDOOR_TLS_DIR, "0700"),
    ):
        files.directory(
            name=f"Create {directory}", path=directory, user="root", group="root", mode=mode
        )
    the_unit = frontdoor_unit(s)
    staged = [i.path for i in the_unit.inputs]
    unit.install_control(s, hostpaths.FRONTDOOR_CONTROL, staged=staged)
    systemd.service(name="Start nginx at boot", service="nginx", enabled=True)
    unit.ensure(the_unit)
