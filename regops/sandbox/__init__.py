"""Throwaway Debian hosts for trying deploys: systemd containers on the local
Docker engine, reachable over SSH on 127.0.0.1.

Containers, not VMs, because CI machines have no nested KVM and no box or
cloud image can be downloaded; only the Debian mirror is reachable, so base
images are built with debootstrap and the registry image from Debian's
`docker-registry` binary. Everything that can be a pure function (parsing,
naming, argv building, status shape) is one, so it is unit-tested without
Docker.
"""

