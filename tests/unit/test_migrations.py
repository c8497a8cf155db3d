"""The migrations from earlier releases (`regops.deploy.migrations`), without a host:
the renamed keys, that the deploy calls each release's function, and where."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from regops.config.settings import ConfigError, load
from regops.deploy import migrations
from tests.support.plan import planned_operations

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "regops" / "deploy"


def test_a_key_of_an_earlier_release_says_what_replaced_it(base_data):
    assert migrations.renamed(["registry_nope", "registry_tls_cipher_suites"]) == (
        "registry_tls_cipher_suites", migrations.RENAMED_KEYS["registry_tls_cipher_suites"])
    assert migrations.renamed(["registry_nope"]) is None
    with pytest.raises(ConfigError) as error:
        load("reg1", {**base_data, "registry_tls_cipher_suites": ["TLS_AES_128_GCM_SHA256"],
                      "registry_zzz": 1}, environ={})
    assert error.value.key == "registry_tls_cipher_suites"
    assert error.value.problem.startswith("no longer exists; use registry_tls_ciphers")
    with pytest.raises(ConfigError) as error:
        load("reg1", {**base_data, "registry_zzz": 1}, environ={})
    assert error.value.key == "registry_zzz" and "unknown key" in error.value.problem


def test_every_renamed_key_is_gone_from_the_keys():
    from regops.config.keys import KEY_NAMES

    assert not set(migrations.RENAMED_KEYS) & set(KEY_NAMES)


def _release_functions() -> list[str]:
    return [name for name in vars(migrations) if re.fullmatch(r"to_\d+_\d+_\d+", name)]


def test_one_function_per_release_each_called_by_the_deploy():
    assert {"to_0_1_0", "to_0_2_0"} <= set(_release_functions())
    called: set[str] = set()
    for path in DEPLOY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "migrations"):
                called.add(node.attr)
    assert set(_release_functions()) <= called


def test_a_replica_drops_what_came_before_the_front_door_after_it(tmp_path, secrets_dir):
    """The plan on pyinfra's @fake connector: the same operations as before, after the
    front door's (the old registry needed them until the new one served)."""
    ops = planned_operations(tmp_path, secrets_dir)
    serve = ops.index("Remove the serve.yml link of regops before the front door")
    tls = ops.index("Remove the registry's own TLS files of regops before the front door")
    last = {concern: max(i for i, op in enumerate(ops) if op.startswith(f"{concern} |"))
            for concern in ("Registry", "Front door")}
    assert max(last.values()) < serve and max(last.values()) < tls
    old_server = ops.index("Remove the token service's server.py of regops 0.1.0 (split into "
                           "config, authn, tokens, http and notify)")
    assert old_server > max(i for i, op in enumerate(ops) if op.startswith("Token service |"))
