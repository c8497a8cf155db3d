"""The load balancer (`registry_role: load_balancer`): Debian's haproxy gives clients
one name for every replica of the registry name.

TCP with TLS passed through to the replicas' front doors, health checks on the
registry API (verified TLS, so a replica answering with another certificate is
out too), and a failed replica out of rotation within seconds. The config is
tested with `haproxy -c` before it replaces the running one, and taken in with a
reload, which keeps the connections in flight.

Its keys: the `loadbalancer` concern of `regops.config.keys`, and `registry_port`,
`registry_bind_address`, `registry_private_address` of the replicas.
"""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from regops import hostpaths
from regops.config.settings import Settings
from regops.deploy import render
from regops.deploy.facts import serve_from_snapshot
from regops.deploy.operations import refresh_apt_for
from regops.deploy.tasks.tls import material


@deploy("Load balancer")
def apply(s: Settings) -> None:
    serve_from_snapshot()  # every fact of this host in a few round trips
    refresh_apt_for(["haproxy"])
    apt.packages(name="Install haproxy", packages=["haproxy"])
    _, _, ca = material(s)
    ca_file = files.put(
        name="Install the registry's CA, which the health checks verify replicas against",
        src=StringIO((ca or b"").decode()),
        dest=hostpaths.HAPROXY_CA,
        user="root",
        group="root",
        mode="0644",
    )
    staged = f"{hostpaths.HAPROXY_CONFIG}.regops-new"
    config = files.put(
        name=f"Stage the haproxy config: {len(s.replicas)} replicas of {s.registry_name}",
        src=StringIO(render.template(hostpaths.HAPROXY_CONFIG, s)),
        dest=staged,
        user="root",
        group="root",
        mode="0644",
    )
    changed = any_changed(config, ca_file)
    server.shell(
        name="Check the staged haproxy config, then put it in place",
        commands=[f"haproxy -c -q -f {staged}", f"cp {staged} {hostpaths.HAPROXY_CONFIG}"],
        _if=changed,
    )
    systemd.service(
        name="Run haproxy now and at boot", service="haproxy", running=True, enabled=True
    )
    server.shell(
        name="Reload haproxy (connections in flight continue), and fail if it kept the old config",
        # systemd reports a reload as done even when haproxy refused the new config.
        commands=['since="$(date "+%F %T")"; sleep 1; systemctl reload haproxy; sleep 2; '
                  '! journalctl -u haproxy --since "$since" | grep -q "Loading failure"'],
        _if=changed,
    )
