"""The Vagrant VM from the Vagrantfile (`vagrant up` first).

Clients reach the registry at 192.168.56.10:5000; the certificate also covers
the VM's host name.
"""

vagrant = [
    (
        "192.168.56.10",
        {
            "ssh_user": "vagrant",
            "ssh_key": ".vagrant/machines/default/virtualbox/private_key",
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
            "_sudo": True,
            "registry_extra_names": ["registry.vagrant.test"],
            "registry_users": ["admin", "ci"],
        },
    ),
]
