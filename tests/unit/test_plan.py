"""The deploy's plan on pyinfra's @fake connector: no host needed."""

from __future__ import annotations

import pytest

from regops.secrets import htpasswd, paths
from regops.secrets import store as secrets
from tests.support.plan import fake_host as _host
from tests.support.plan import inventory as _inventory
from tests.support.plan import pyinfra as _pyinfra


def test_plan_runs_every_concern(tmp_path, secrets_dir):
    result = _pyinfra(_inventory(tmp_path, [_host("reg1", secrets_dir)]))
    assert result.returncode == 0, result.stderr
    for concern in (
        "Docker engine |",
        "TLS certificates |",
        "Registry users |",
        "Token service |",
        "Registry |",
        "Front door |",
        "Garbage collection |",
    ):
        assert concern in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"registry_prot": 5000}, "registry_prot"),
        ({"registry_port": 99999}, "registry_port"),
        ({"registry_gc_schedule": "every night"}, "registry_gc_schedule"),
        ({"registry_users": ["ci", "ci"]}, "registry_users"),
    ],
)
def test_bad_data_on_one_host_stops_every_host_before_any_change(tmp_path, secrets_dir, data, key):
    hosts = [_host("good", secrets_dir), _host("bad", secrets_dir, **data)]
    result = _pyinfra(_inventory(tmp_path, hosts))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("regops: error:")]
    assert errors == [errors[0]] and f"@fake/bad: {key}:" in errors[0]
    assert "Starting operation" not in result.stdout + result.stderr


def test_no_secret_in_output_even_verbose_with_diff(tmp_path, secrets_dir):
    env = {"REGOPS_PASSWORD_CI": "env-password-0123456789"}
    host = _host("reg1", secrets_dir, registry_users=["admin", "ci"], registry_admins=["admin"],
                 registry_access=[{"repositories": "**", "who": ["ci"], "actions": ["pull"]}],
                 registry_robots={"builder": {"repositories": ["apps/**"], "actions": ["push"],
                                              "expires": "2099-01-01"}})
    result = _pyinfra(_inventory(tmp_path, [host]), "-vvv", "--diff", env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    root = secrets_dir
    name = "reg1.example.com"
    admin = paths.password_path(root, name, "admin").read_text().strip()
    secret_values = [
        admin,
        env["REGOPS_PASSWORD_CI"],
        secrets.http_secret(root, name),
        (paths.pki_dir(root, name) / "server.key").read_text().splitlines()[1],
        (paths.pki_dir(root, name) / "ca.key").read_text().splitlines()[1],
        htpasswd.hash_password("admin", admin, 10, secrets.htpasswd_pepper(root, name))[7:],
        secrets.notify_secret(root, name),
        paths.robot_secret_path(root, name, "builder").read_text().strip(),
        (paths.pki_dir(root, name) / "token" / "signer.key").read_text().splitlines()[1],
    ]
    for value in secret_values:
        assert value and value not in output
    # The operations that carry secrets did run: their content just was not printed.
    assert "Stage /etc/docker/registry/config.yml for the registry (a secret)" in output
    assert "Stage /etc/nginx/regops/tls/server.key for the front door (a secret)" in output
    assert "Stage /etc/regops/token/signer.key for the token service (a secret)" in output


def test_docker_ce_plan_adds_the_repository_and_its_key(tmp_path, secrets_dir):
    host = _host("reg1", secrets_dir, registry_docker_source="docker-ce")
    host[1]["fake_responses"]["release"] = [
        "/etc/os-release",
        "ID=debian",
        "VERSION_CODENAME=bookworm",
        "---",
    ]
    result = _pyinfra(_inventory(tmp_path, [host]))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for step in (
        "Download Docker's apt signing key",
        "Add Docker's apt repository (deb822)",
        "Install Docker (docker-ce)",
    ):
        assert step in output
