"""The package as pip installs it: a wheel built from this checkout, installed into a
fresh virtualenv and run from outside the checkout, has every command and every file
those commands read (templates, deploy files)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from regops.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh virtualenv with only the built wheel (and its
    dependencies) installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp / "dist", ROOT,
                cwd=tmp)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp / "dist").glob("regops-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    pip = run(bin_dir / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return bin_dir


def test_every_command_is_installed(installed, tmp_path):
    listed = run(installed / "regops", "--help", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in main.commands:
        assert f"  {name} " in listed.stdout or f"  {name}\n" in listed.stdout, name
    checks = run(installed / "regops", "check", "--list", cwd=tmp_path)
    assert checks.returncode == 0 and "tls.mozilla-intermediate" in checks.stdout, checks.stderr


def test_the_installed_deploy_plans_every_concern_from_its_own_files(installed, tmp_path):
    """`regops deploy` runs the packaged deploy file, which renders the packaged
    templates: on pyinfra's @fake connector, outside any checkout."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "hosts = [('@fake/reg1', {'registry_name': 'reg1.example.com',"
        " 'registry_secrets_dir': 'secrets',"
        " 'fake_responses': {'uname -s': 'Linux', 'useradd': '/usr/sbin/useradd'}})]\n"
    )
    result = run(installed / "regops", "deploy", "-i", inventory, "-y", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for concern in ("Docker engine |", "TLS certificates |", "Registry |", "Garbage collection |"):
        assert concern in output
    site = run(installed / "python", "-c", "import regops; print(regops.__file__)", cwd=tmp_path)
    assert str(ROOT) not in site.stdout and "site-packages" in site.stdout
