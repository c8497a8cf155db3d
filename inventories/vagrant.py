"""The Vagrant machine from the Vagrantfile (`vagrant up` first).

Clients reach the registry at 192.168.56.10:5000 whichever provider booted the
machine; the certificate also covers its host name. How to log in depends on
the provider: the docker provider boots the sandbox's Debian image with root
and a key made for this checkout, the VirtualBox and libvirt boxes have the
`vagrant` user with sudo.

Where no registry image can be pulled (CI, air-gapped machines), the machine
gets the sandbox's registry image, if `regops sandbox build` made one.
"""

from pathlib import Path as _Path

_root = _Path(__file__).resolve().parents[1]
_machine = _root / ".vagrant" / "machines" / "default"

if (_machine / "docker" / "id").is_file():
    _login = {"ssh_user": "root", "ssh_key": str(_root / ".vagrant" / "regops" / "ssh_key")}
else:
    _provider = "libvirt" if (_machine / "libvirt" / "id").is_file() else "virtualbox"
    _login = {
        "ssh_user": "vagrant",
        "ssh_key": str(_machine / _provider / "private_key"),
        "_sudo": True,
    }

_image = {}
_archives = sorted((_root / ".regops" / "sandbox" / "images").glob("regops-registry-*.tar"))
if _archives:
    _version = _archives[-1].stem.removeprefix("regops-registry-")
    _image = {
        "registry_image": f"regops/registry:{_version}",
        "registry_image_archive": str(_archives[-1]),
    }

vagrant = [
    (
        "192.168.56.10",
        {
            **_login,
            **_image,
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
            "registry_extra_names": ["registry.vagrant.test"],
            "registry_users": ["admin", "ci"],
        },
    ),
]
