"""What the deploy writes, rendered without a host."""

from __future__ import annotations

import json
import subprocess

import yaml

from regops.config.settings import load
from regops.deploy import render


def _settings(base_data, **extra):
    return load("reg1", {**base_data, **extra}, environ={})


def test_registry_config_is_complete_and_hardened(base_data):
    s = _settings(base_data)
    config = yaml.safe_load(render.registry_config(s, "the-http-secret"))
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert config["storage"]["maintenance"]["readonly"]["enabled"] is False
    assert config["http"]["secret"] == "the-http-secret"
    tls = config["http"]["tls"]
    assert tls["minimumtls"] == "tls1.2"
    assert tls["ciphersuites"] and all(
        "CBC" not in c and "RSA_WITH" not in c.replace("ECDHE_RSA_WITH", "")
        for c in tls["ciphersuites"]
    )
    assert tls["key"] == "/etc/docker/registry/tls/server.key"
    assert config["auth"]["htpasswd"]["path"] == "/etc/docker/registry/htpasswd"
    assert config["http"]["headers"]["X-Content-Type-Options"] == ["nosniff"]
    assert config["health"]["storagedriver"]["enabled"] is True
    assert config["log"]["formatter"] == "json"
    assert "debug" not in config["http"]


def test_readonly_variant_differs_only_in_maintenance_mode(base_data):
    s = _settings(base_data)
    normal = yaml.safe_load(render.registry_config(s, "x"))
    readonly = yaml.safe_load(render.registry_config(s, "x", readonly=True))
    assert readonly["storage"]["maintenance"]["readonly"]["enabled"] is True
    readonly["storage"]["maintenance"]["readonly"]["enabled"] = False
    assert readonly == normal


def test_debug_listener_only_on_localhost_when_enabled(base_data):
    s = _settings(base_data, registry_debug_enabled=True)
    debug = yaml.safe_load(render.registry_config(s, "x"))["http"]["debug"]
    assert debug["addr"] == "127.0.0.1:5001" and debug["prometheus"]["enabled"] is True


def test_registry_3_uses_its_own_config_path(base_data):
    s = _settings(base_data, registry_image="registry:3.0.0")
    config = yaml.safe_load(render.registry_config(s, "x"))
    assert config["http"]["tls"]["certificate"] == "/etc/distribution/tls/server.crt"
    argv = render.docker_run_argv(s)
    assert "/etc/docker/registry:/etc/distribution:ro" in argv
    assert argv[-2:] == ["serve", "/etc/distribution/serve.yml"]


def test_container_is_hardened(base_data):
    argv = render.docker_run_argv(_settings(base_data, registry_bind_address="10.0.0.5"))
    joined = " ".join(argv)
    for flag in (
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges:true",
        "--user 5000:5000",
        "--memory 512m",
        "--pids-limit 256",
        "--restart unless-stopped",
        "--publish 10.0.0.5:5000:5000",
    ):
        assert flag in joined
    assert "--privileged" not in joined and "--network host" not in joined
    assert f"{render.SPEC_LABEL}=" in joined


def test_spec_hash_tracks_the_container_spec_only(base_data):
    base = render.spec_hash(_settings(base_data))
    assert render.spec_hash(_settings(base_data)) == base
    assert render.spec_hash(_settings(base_data, registry_port=5443)) != base
    assert render.spec_hash(_settings(base_data, registry_image="registry:2.8.2")) != base
    # Config-only changes restart the container; they do not recreate it.
    assert render.spec_hash(_settings(base_data, registry_log_level="debug")) == base


def test_daemon_json_hardening_and_overrides(base_data):
    daemon = json.loads(render.daemon_json(_settings(base_data)))
    assert daemon["live-restore"] is True and daemon["icc"] is False
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    custom = _settings(base_data, registry_docker_daemon_options={"icc": True, "debug": False})
    daemon = json.loads(render.daemon_json(custom))
    assert daemon["icc"] is True and daemon["debug"] is False


def test_gc_script_is_valid_bash_and_follows_the_data(base_data, tmp_path):
    script = render.template("usr/local/sbin/regops-gc", _settings(base_data))
    path = tmp_path / "regops-gc"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "--delete-untagged" in script and 'DELETE_UNTAGGED="0"' not in script
    assert "DELETE_UNTAGGED=0" in script
    untagged = render.template(
        "usr/local/sbin/regops-gc", _settings(base_data, registry_gc_delete_untagged=True)
    )
    assert "DELETE_UNTAGGED=1" in untagged
    assert "config-readonly.yml" in script and "flock -n 9" in script
    assert "{{.State.Running}}" in script


def test_cron_file_uses_the_schedule(base_data):
    cron = render.template(
        "etc/cron.d/regops-gc", _settings(base_data, registry_gc_schedule="5 4 * * *")
    )
    assert "5 4 * * * root /usr/local/sbin/regops-gc" in cron


def test_docker_ce_source_is_deb822_with_the_keyring(base_data):
    s = _settings(base_data, registry_docker_source="docker-ce")
    text = render.template(
        "etc/apt/sources.list.d/docker.sources",
        s,
        codename="trixie",
        arch="arm64",
        url="https://download.docker.com/linux/debian",
    )
    fields = dict(
        line.split(": ", 1)
        for line in text.splitlines()
        if ": " in line and not line.startswith("#")
    )
    assert fields == {
        "Types": "deb",
        "URIs": "https://download.docker.com/linux/debian",
        "Suites": "trixie",
        "Components": "stable",
        "Architectures": "arm64",
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }
