"""What the deploy writes, rendered without a host."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from regops import hostpaths
from regops.config.keys import INTERMEDIATE_CIPHERS
from regops.config.settings import load
from regops.deploy import render
from regops.deploy.tasks import gc as gc_task
from regops.deploy.tasks.frontdoor import frontdoor_unit
from regops.deploy.tasks.registry import registry_unit
from regops_host.gc import Config
from tests.support.require import require_command


def _settings(base_data, **extra):
    return load("reg1", {**base_data, **extra}, environ={})


def test_registry_config_is_complete_and_hardened(base_data):
    s = _settings(base_data, registry_auth="htpasswd")
    config = yaml.safe_load(render.registry_config(s, "the-http-secret"))
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert config["storage"]["maintenance"]["readonly"]["enabled"] is False
    assert config["storage"]["maintenance"]["uploadpurging"]["enabled"] is True
    assert config["http"]["secret"] == "the-http-secret"
    # Plain HTTP on loopback: the front door speaks TLS to clients.
    assert "tls" not in config["http"] and config["http"]["addr"] == ":5000"
    assert config["auth"]["htpasswd"]["path"] == "/etc/docker/registry/htpasswd"
    assert config["http"]["headers"]["X-Content-Type-Options"] == ["nosniff"]
    assert config["health"]["storagedriver"]["enabled"] is True
    assert config["log"]["formatter"] == "json"
    assert "debug" not in config["http"]


def test_token_mode_registry_trusts_the_token_ca_and_reports_to_the_audit(base_data):
    s = _settings(base_data, registry_token_port=6020)
    config = yaml.safe_load(render.registry_config(s, "the-http-secret", notify_secret="n0t1fy"))
    assert "htpasswd" not in config["auth"]
    token = config["auth"]["token"]
    assert token["realm"] == "https://reg.example.com/auth/token"
    assert token["autoredirect"] is True  # the realm follows the name the client used
    assert token["service"] == "reg.example.com" and token["issuer"] == "regops-token"
    assert token["rootcertbundle"] == "/etc/docker/registry/token-ca.crt"
    (endpoint,) = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://regops-token:6021/notify"
    assert endpoint["headers"]["Authorization"] == ["Bearer n0t1fy"]
    assert endpoint["ignore"]["actions"] == ["pull"]
    spec = render.template("etc/docker/registry/registry.spec", s)
    assert "--add-host regops-token:host-gateway" in spec
    site = render.template("etc/nginx/conf.d/regops.conf", s)
    token_location = site.split("location = /auth/token {", 1)[1].split("}", 1)[0]
    assert "proxy_pass http://127.0.0.1:6020;" in token_location
    assert "proxy_set_header X-Real-IP $remote_addr;" in token_location
    plain = _settings(base_data, registry_auth="htpasswd")
    assert "/auth/token" not in render.template("etc/nginx/conf.d/regops.conf", plain)
    assert "add-host" not in render.template("etc/docker/registry/registry.spec", plain)


def test_token_service_unit_is_hardened(base_data, tmp_path):
    unit = render.template(hostpaths.TOKEN_UNIT, _settings(base_data))
    lines = set(unit.splitlines())
    for directive in ("User=regops-token", "NoNewPrivileges=yes", "ProtectSystem=strict",
                      "CapabilityBoundingSet=", "PrivateTmp=yes", "MemoryMax=256M",
                      "ExecStart=/usr/bin/python3 -m regops_token --config "
                      "/etc/regops/token/config.json"):
        assert directive in lines
    path = tmp_path / "regops-token.service"
    path.write_text(unit)
    if shutil.which("systemd-analyze"):
        result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                                text=True)
        assert "regops-token.service:" not in result.stderr, result.stderr


def test_readonly_variant_differs_only_in_maintenance_mode(base_data):
    s = _settings(base_data)
    normal = yaml.safe_load(render.registry_config(s, "x"))
    readonly = yaml.safe_load(render.registry_config(s, "x", readonly=True))
    maintenance = readonly["storage"]["maintenance"]
    assert maintenance["readonly"]["enabled"] is True
    assert maintenance["uploadpurging"]["enabled"] is False  # the writable one purges
    maintenance["readonly"]["enabled"] = False
    maintenance["uploadpurging"]["enabled"] = True
    assert readonly == normal


def test_debug_listener_only_on_localhost_when_enabled(base_data):
    s = _settings(base_data, registry_debug_enabled=True)
    debug = yaml.safe_load(render.registry_config(s, "x"))["http"]["debug"]
    assert debug["addr"] == "127.0.0.1:5001" and debug["prometheus"]["enabled"] is True


def _spec(s) -> dict:
    """The container spec as bash reads it."""
    text = render.template("etc/docker/registry/registry.spec", s)
    out = subprocess.run(
        ["bash", "-c", 'source /dev/stdin; printf "%s\\n" "$IMAGE" "$CONFIG_IN_CONTAINER" '
         '"${RUN_ARGS[@]}"'],
        input=text, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return {"image": out[0], "config": out[1], "args": out[2:]}


def test_registry_3_uses_its_own_config_path(base_data):
    s = _settings(base_data, registry_image="registry:3.0.0")
    spec = _spec(s)
    assert spec["config"] == "/etc/distribution"
    assert "/etc/docker/registry:/etc/distribution:ro" in spec["args"]


def test_container_spec_is_hardened(base_data):
    spec = _spec(_settings(base_data, registry_memory_limit="256m"))
    joined = " ".join(spec["args"])
    for flag in (
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges:true",
        "--user 5000:5000",
        "--memory 256m",
        "--memory-swap 256m",
        "--pids-limit 256",
        "--volume /var/lib/registry:/var/lib/registry",
    ):
        assert flag in joined
    assert "--privileged" not in joined and "--network" not in joined
    # Name, loopback port, restart policy and role are the control script's, per instance.
    assert "--publish" not in joined and "--name" not in joined
    assert spec["image"] == "registry:2.8.3"


def _digest(base_data, **extra) -> str:
    return registry_unit(_settings(base_data, **extra)).digest


def test_the_registry_is_replaced_when_its_spec_or_config_changes_and_only_then(base_data):
    base = _digest(base_data)
    assert _digest(base_data) == base
    assert _digest(base_data, registry_image="registry:2.8.2") != base  # spec
    assert _digest(base_data, registry_memory_limit="1g") != base  # spec
    assert _digest(base_data, registry_log_level="debug") != base  # config
    # Users come and go without a restart (the registry re-reads htpasswd); the front
    # door's port, names and certificate are not the registry's business.
    assert _digest(base_data, registry_users=["admin", "ci"]) == base
    assert _digest(base_data, registry_port=5443) == base
    assert _digest(base_data, registry_extra_names=["10.0.0.5"]) == base


def test_front_door_site_is_mozilla_intermediate_and_streams(base_data):
    s = _settings(base_data, registry_bind_address="10.0.0.5", registry_backend_port=6000)
    site = render.template("etc/nginx/conf.d/regops.conf", s)
    assert "listen 10.0.0.5:5000 ssl;" in site
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in site
    ciphers = next(line for line in site.splitlines() if "ssl_ciphers" in line)
    assert ciphers.strip() == "ssl_ciphers " + ":".join(INTERMEDIATE_CIPHERS) + ";"
    assert "ssl_certificate_key /etc/nginx/regops/tls/server.key;" in site
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;",
                      "proxy_buffering off;", "proxy_buffer_size 64k;",
                      "proxy_http_version 1.1;",
                      "proxy_set_header Host $http_host;",
                      "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert directive in site
    assert "server 127.0.0.1:6000 max_fails=0;" in site
    # No standby as backup of the registry: a pull that failed on a kept-alive connection
    # is retried on the next server, and the standby mostly is not running (a 502).
    registry = site[site.index("upstream regops_registry {"):]
    servers = [line.strip() for line in registry[:registry.index("}")].splitlines()
               if line.strip().startswith("server ")]
    assert servers == ["server 127.0.0.1:6000 max_fails=0;"]
    assert "server 127.0.0.1:6001;" in site  # the standby's own upstream
    assert site.count("keepalive 16;") == 2  # both upstreams reuse connections
    assert "include /etc/nginx/regops/registry-mode.conf;" in site
    ipv6 = render.template("etc/nginx/conf.d/regops.conf", _settings(base_data,
                           registry_bind_address="::"))
    assert "listen [::]:5000 ssl;" in ipv6


def _root_location(site: str) -> str:
    start = site.index("    location / {")
    return site[start:site.index("\n    }", start)]


def test_the_web_pages_are_served_at_the_root_only_with_token_auth(base_data):
    pages = _root_location(render.template("etc/nginx/conf.d/regops.conf",
                                           _settings(base_data, registry_token_port=5030)))
    assert "proxy_pass http://127.0.0.1:5030;" in pages and "return 404" not in pages
    off = _root_location(render.template("etc/nginx/conf.d/regops.conf",
                                         _settings(base_data, registry_ui=False)))
    htpasswd = _root_location(render.template("etc/nginx/conf.d/regops.conf",
                                              _settings(base_data, registry_auth="htpasswd")))
    assert "return 404;" in off and "proxy_pass" not in off
    assert "return 404;" in htpasswd and "proxy_pass" not in htpasswd
    site = render.template("etc/nginx/conf.d/regops.conf", _settings(base_data))
    assert "location = /notify {\n        return 404;" in site  # the bridge only


def test_the_token_service_ships_its_pages_and_knows_the_registry(base_data):
    import json

    from regops.deploy.tasks.token import token_config, token_unit

    s = _settings(base_data, registry_backend_port=6000, registry_gc_schedule="5 4 * * *")
    shipped = {i.path for i in token_unit(s).inputs}
    for name in ("regops_token/web.py", "regops_token/pages/base.html",
                 "regops_token/static/app.css", "regops_token/static/app.js"):
        assert f"{hostpaths.TOKEN_CODE}/{name}" in shipped
    web = json.loads(token_config(s))["web"]
    assert web["registry_ports"] == [6000, 6001] and web["gc_schedule"] == "5 4 * * *"
    assert web["address"] == s.registry_address
    assert json.loads(token_config(_settings(base_data, registry_gc_enabled=False)))["web"][
        "gc_schedule"] is None
    assert json.loads(token_config(_settings(base_data, registry_ui=False)))["web"] is None


def _location(site: str, head: str) -> str:
    start = site.index(f"    location {head} {{")
    return site[start:site.index("\n    }", start)]


def test_a_cache_refuses_pushes_and_deletes_in_the_front_door(base_data):
    """Before the registry, which answers a push to a cache with a 500: the OCI DENIED."""
    upstream = "https://central.example.com:5000"
    site = render.template("etc/nginx/conf.d/regops.conf",
                           _settings(base_data, registry_proxy_remote_url=upstream))
    v2 = _location(site, "/v2/")
    refuse = "if ($request_method ~ ^(POST|PUT|PATCH|DELETE)$) {\n            return 403;"
    assert refuse in v2 and "error_page 403 = @regops_cache_denied;" in v2
    assert v2.index(refuse) < v2.index("include /etc/nginx/regops/registry-mode.conf;")
    denied = _location(site, "@regops_cache_denied")
    assert "default_type application/json;" in denied
    assert "add_header Docker-Distribution-Api-Version registry/2.0 always;" in denied
    body = denied.split("return 403 '", 1)[1].rsplit("\\n';", 1)[0]
    assert json.loads(body) == {"errors": [{
        "code": "DENIED",
        "message": f"this registry is a pull-through cache of {upstream}: "
                   "it refuses pushes and deletes",
        "detail": {"upstream": upstream}}]}
    plain = render.template("etc/nginx/conf.d/regops.conf", _settings(base_data))
    assert "@regops_cache_denied" not in plain and "return 403" not in plain


def test_front_door_modes(base_data):
    s = _settings(base_data)
    normal = render.template("etc/nginx/regops/registry-normal.conf", s)
    standby = render.template("etc/nginx/regops/registry-standby.conf", s)
    gc = render.template("etc/nginx/regops/registry-gc.conf", s)
    assert "proxy_pass http://regops_registry;" in normal
    assert "proxy_pass http://regops_registry_standby;" in standby
    assert "proxy_pass http://regops_registry_standby;" in gc
    assert "$request_method !~ ^(GET|HEAD)$" in gc and "return 503;" in gc


def test_host_scripts_pass_shellcheck(base_data, tmp_path):
    require_command("shellcheck", "shellcheck")
    s = _settings(base_data)
    staged = [i.path for i in frontdoor_unit(s).inputs]
    for path in (hostpaths.REGISTRY_CONTROL, hostpaths.FRONTDOOR_CONTROL, hostpaths.GC_SCRIPT,
                 hostpaths.SCRIPT_LIB, hostpaths.TOKEN_CONTROL):
        script = tmp_path / path.rsplit("/", 1)[-1]
        script.write_text(render.template(path, s, staged=staged))
        result = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", str(script)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_daemon_json_hardening_and_overrides(base_data):
    daemon = json.loads(render.daemon_json(_settings(base_data)))
    assert daemon["live-restore"] is True and daemon["icc"] is False
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    custom = _settings(base_data, registry_docker_daemon_options={"icc": True, "debug": False})
    daemon = json.loads(render.daemon_json(custom))
    assert daemon["icc"] is True and daemon["debug"] is False


def test_gc_job_settings_follow_the_data(base_data):
    """The GC job is regops_host.gc, installed verbatim: only its constants are rendered."""
    config = json.loads(gc_task.job_config(_settings(base_data)))
    assert config["delete_untagged"] is False and config["upload_max_age_minutes"] == 60
    assert config["primary"] == "registry" and config["shared"] is False
    assert config["storage"] == "/var/lib/registry/docker/registry/v2"
    assert config["config_in_container"].endswith("/config.yml")
    assert config["lock"] == hostpaths.LOCK and config["state_file"] == hostpaths.GC_STATE
    untagged = json.loads(gc_task.job_config(_settings(base_data,
                                                       registry_gc_delete_untagged=True)))
    assert untagged["delete_untagged"] is True
    days = json.loads(gc_task.job_config(_settings(base_data, registry_gc_upload_max_age="2d")))
    assert days["upload_max_age_minutes"] == 2880
    assert set(config) == set(Config.__dataclass_fields__)  # the job reads every one
    wrapper = render.template("usr/local/sbin/regops-gc", _settings(base_data))
    assert f"-m regops_host.gc --config {hostpaths.GC_CONFIG}" in wrapper
    assert [remote for _, remote in gc_task.code_files()] == [
        f"{hostpaths.HOST_CODE}/regops_host/{name}.py" for name in ("__init__", "control", "gc")]


def test_gc_timer_uses_the_schedule_and_runs_the_service(base_data):
    timer = gc_task.timer(_settings(base_data, registry_gc_schedule="5 4 * * *"))
    assert "OnCalendar=*-*-* 04:05:00\n" in timer and "WantedBy=timers.target" in timer
    service = render.template(hostpaths.GC_SERVICE, _settings(base_data))
    assert f"ExecStart={hostpaths.GC_SCRIPT}\n" in service and "Type=oneshot" in service
    assert f"StandardOutput=append:{hostpaths.GC_LOG}" in service


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


def _block(site: str, head: str) -> str:
    start = site.index(head)
    return site[start:site.index("\n    }", start)]


def test_the_token_endpoint_and_web_logins_are_limited_per_address(base_data):
    from unittest import mock

    from regops.config.settings import Settings

    s = _settings(base_data, registry_auth_rate=7, registry_auth_burst=70,
                  registry_auth_connections=9, registry_login_rate=12)
    site = render.template("etc/nginx/conf.d/regops.conf", s)
    assert "zone=regops_auth:10m rate=7r/s;" in site
    assert "zone=regops_login:10m rate=12r/m;" in site
    token = _block(site, "    location = /auth/token {")
    assert "limit_req zone=regops_auth burst=70 nodelay;" in token
    assert "limit_conn regops_conn 9;" in token and "error_page 429 = @regops_too_many;" in token
    login = _block(site, "    location = /login {")
    assert "limit_req zone=regops_login burst=10 nodelay;" in login
    assert "error_page 429 = @regops_too_many_logins;" in login  # a page, for a person
    assert "text/html" in _block(site, "    location @regops_too_many_logins {")
    assert "limit_conn regops_conn 9;" in _root_location(site)
    too_many = _block(site, "    location @regops_too_many {")
    assert "add_header Retry-After 1 always;" in too_many and "return 429" in too_many
    # The registry and the token service hear only the address nginx saw.
    assert "$proxy_add_x_forwarded_for" not in site
    assert site.count("proxy_set_header X-Forwarded-For $remote_addr;") == 4
    with mock.patch.object(Settings, "behind_balancer", new=property(lambda self: True)):
        behind = render.template("etc/nginx/conf.d/regops.conf", _settings(base_data))
    assert "limit_req" not in behind and "limit_conn" not in behind  # one address: all
    htpasswd = render.template("etc/nginx/conf.d/regops.conf",
                               _settings(base_data, registry_auth="htpasswd"))
    assert "limit_req_zone" not in htpasswd
