"""The Vagrantfile is valid, and the Vagrant inventory agrees with it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from regops.config.keys import KEY_NAMES
from regops.config.settings import check_data
from regops.inventory import load_inventory
from tests.support.require import require_command

ROOT = Path(__file__).resolve().parents[2]


def test_vagrantfile_is_valid_for_every_provider():
    """Syntax and settings of every provider block; booting it is tests/sandbox/test_90."""
    require_command("vagrant", "vagrant")
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vagrant_inventory_targets_the_vm_address():
    ip = re.search(r'private_network", ip: "([0-9.]+)"', (ROOT / "Vagrantfile").read_text())[1]
    [host] = load_inventory(str(ROOT / "inventories" / "vagrant.py"))
    assert host.name == ip
    data = check_data(host.name, host.data)
    assert data["registry_name"] == ip


def test_example_production_inventory_is_valid_data():
    """The README's production example is data the deploy accepts, and says what it shows."""
    [host] = load_inventory(str(ROOT / "inventories" / "prod.py"))
    data = check_data(host.name, host.data)  # raises ConfigError on bad data
    assert data["registry_name"] == host.name == "registry.example.com"
    assert data["registry_users"] == ["admin", "ci", "deploy-bot"]
    assert data["registry_extra_names"] == ["10.0.0.5"]
    assert host.data["ssh_user"] == "deploy" and host.data["_sudo"] is True
    assert {k for k in host.data if k.startswith("registry_")} <= KEY_NAMES
