"""Pure logic of `regops sandbox`: runs without Docker, network or root."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from regops.sandbox import build, docker, hosts, mirror, model
from regops.sandbox.mirror import SourceEntry
from regops.sandbox.model import HostSpec, SandboxError
from regops.secrets import paths

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

SECURITY_FIRST = """\
Types: deb deb-src
URIs: https://sec.example/debian-security/
Suites: trixie-security
Components: main

Types: deb
URIs: https://mirror.example/debian/
Suites: trixie
Components: main
"""

ONE_LINE = """\
# a comment
deb-src http://src.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example/debian bookworm main
"""


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "STATE_DIR", tmp_path / "state")
    return tmp_path / "state"


# ------------------------------------------------------------------ mirror


def test_deb822_picks_first_non_security_uri() -> None:
    entries = mirror.parse_deb822_sources(DEB822)
    assert entries[0] == SourceEntry(
        "http://mirror.example/debian", ("bookworm", "bookworm-updates")
    )
    assert mirror.pick_mirror(entries) == "http://mirror.example/debian"


def test_deb822_skips_security_even_when_first() -> None:
    entries = mirror.parse_deb822_sources(SECURITY_FIRST)
    assert mirror.pick_mirror(entries) == "https://mirror.example/debian"


def test_deb822_skips_disabled_and_source_only() -> None:
    text = (
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://on.example/debian\nSuites: bookworm\n"
    )
    assert mirror.pick_mirror(mirror.parse_deb822_sources(text)) == "http://on.example/debian"


def test_third_party_repos_are_not_debian_mirrors() -> None:
    text = "Types: deb\nURIs: https://deb.thirdparty.example/node\nSuites: nodistro\n"
    assert mirror.pick_mirror(mirror.parse_deb822_sources(text)) is None


def test_one_line_sources_with_options() -> None:
    entries = mirror.parse_one_line_sources(ONE_LINE)
    assert [e.uri for e in entries] == [
        "http://security.example/debian-security",
        "http://mirror.example/debian",
    ]
    assert mirror.pick_mirror(entries) == "http://mirror.example/debian"


def test_detect_mirror_reads_files_in_apt_order(tmp_path: Path) -> None:
    d = tmp_path / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("# empty\n")
    (d / "b.sources").write_text(DEB822)
    (d / "a.list").write_text("deb http://first.example/debian bookworm main\n")
    (d / "c.sources.disabled").write_text(DEB822.replace("mirror.example", "nope.example"))
    assert mirror.detect_mirror(tmp_path) == "http://first.example/debian"


def test_detect_mirror_without_sources_says_use_option(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="--mirror"):
        mirror.detect_mirror(tmp_path)


# ------------------------------------------------------------------ versions, ldd


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("docker-registry github.com/docker/distribution 2.8.2+ds1", "2.8.2"),
        ("/usr/bin/registry github.com/docker/distribution 2.8.3+ds1\n", "2.8.3"),
        ("registry github.com/distribution/distribution/v3 v3.0.0", "3.0.0"),
    ],
)
def test_parse_registry_version(output: str, version: str) -> None:
    assert build.parse_registry_version(output) == version


def test_parse_registry_version_rejects_garbage() -> None:
    with pytest.raises(SandboxError):
        build.parse_registry_version("no version here")


def test_parse_ldd() -> None:
    out = (
        "\tlinux-vdso.so.1 (0x00007ff271d1c000)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff271b29000)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007ff271d1e000)\n"
    )
    assert build.parse_ldd(out) == [
        Path("/lib/x86_64-linux-gnu/libc.so.6"),
        Path("/lib64/ld-linux-x86-64.so.2"),
    ]


def test_registry_dockerfile_runs_the_binary_directly() -> None:
    df = build.registry_dockerfile("2.8.2")
    assert 'ENTRYPOINT ["/usr/bin/registry"]' in df
    assert 'CMD ["serve", "/etc/docker/registry/config.yml"]' in df
    assert "USER 1000:1000" in df
    assert df.startswith("FROM scratch")


# ------------------------------------------------------------------ planning and names


def test_host_names() -> None:
    spec = HostSpec("regops", 2, "trixie")
    assert spec.name == "sb2"
    assert spec.container == "regops-sb2"
    assert spec.hostname == "sb2.regops.test"
    assert spec.volume == "regops-sb2-docker"
    assert spec.image == "regops-sandbox-base:trixie"


def test_plan_defaults_to_one_bookworm_host() -> None:
    assert model.plan_hosts("x", None, ()) == [HostSpec("x", 1, "bookworm")]


def test_plan_one_distro_applies_to_all() -> None:
    assert [s.distro for s in model.plan_hosts("x", 3, ["trixie"])] == ["trixie"] * 3


def test_plan_several_distros_one_host_each() -> None:
    specs = model.plan_hosts("x", None, ["bookworm", "trixie"])
    assert [(s.name, s.distro) for s in specs] == [("sb1", "bookworm"), ("sb2", "trixie")]
    assert [s.distro for s in model.plan_hosts("x", 3, ["bookworm", "trixie"])] == [
        "bookworm", "trixie", "bookworm",
    ]


def test_plan_rejects_fewer_hosts_than_distros() -> None:
    with pytest.raises(SandboxError, match="fewer"):
        model.plan_hosts("x", 1, ["bookworm", "trixie"])


def test_plan_keeps_existing_distros_without_distro_option() -> None:
    specs = model.plan_hosts("x", 3, (), existing={1: "trixie"})
    assert [s.distro for s in specs] == ["trixie", "bookworm", "bookworm"]


def test_plan_keeps_hosts_beyond_the_count() -> None:
    specs = model.plan_hosts("x", None, ["bookworm"], existing={1: "bookworm", 2: "trixie"})
    assert [(s.name, s.distro) for s in specs] == [("sb1", "bookworm"), ("sb2", "trixie")]


def test_plan_refuses_to_change_a_running_hosts_distro() -> None:
    with pytest.raises(SandboxError, match="sandbox down"):
        model.plan_hosts("x", 1, ["trixie"], existing={1: "bookworm"})


@pytest.mark.parametrize("name", ["regops", "ci-1234", "a"])
def test_valid_names(name: str) -> None:
    assert model.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Upper", "has_underscore", "-x", "x-", "a.b", "x" * 41])
def test_invalid_names(name: str) -> None:
    with pytest.raises(SandboxError):
        model.validate_name(name)


def test_default_name_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGOPS_SANDBOX", raising=False)
    assert model.default_name() == "regops"
    monkeypatch.setenv("REGOPS_SANDBOX", "other")
    assert model.default_name() == "other"


# ------------------------------------------------------------------ argv builders


def test_run_argv() -> None:
    argv = hosts.run_argv(HostSpec("demo", 1, "bookworm"), 40022, 45000)
    assert argv[:3] == ["docker", "run", "-d"]
    joined = " ".join(argv)
    assert "--name demo-sb1" in joined
    assert "--hostname sb1.demo.test" in joined
    assert "--label regops.sandbox=demo" in joined
    assert "--privileged" not in argv
    assert "--cap-add ALL --cap-drop SYS_RESOURCE" in joined
    assert "--cgroupns=host" in argv
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in argv
    assert "demo-sb1-docker:/var/lib/docker" in argv
    assert "127.0.0.1:40022:22" in argv
    assert "127.0.0.1:45000:5000" in argv
    assert argv[-1] == "regops-sandbox-base:bookworm"
    # every published port is on loopback only
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert published and all(p.startswith("127.0.0.1:") for p in published)


def test_debootstrap_and_import_argv() -> None:
    argv = build.debootstrap_argv("trixie", Path("/tmp/r"), "http://m.example/debian")
    assert argv[0] == "debootstrap" and "--variant=minbase" in argv
    assert argv[-3:] == ["trixie", "/tmp/r", "http://m.example/debian"]
    include = next(a for a in argv if a.startswith("--include="))
    for pkg in ("systemd-sysv", "openssh-server", "python3"):
        assert pkg in include.split("=", 1)[1].split(",")
    imp = build.import_argv("trixie", "http://m.example/debian")
    assert imp[:2] == ["docker", "import"] and imp[-2:] == ["-", "regops-sandbox-base:trixie"]
    assert 'CMD ["/sbin/init"]' in imp


def test_ssh_argv_never_records_host_keys() -> None:
    argv = hosts.ssh_argv("/k", 2222, "systemctl", "is-system-running")
    assert argv[:5] == ["ssh", "-i", "/k", "-p", "2222"]
    assert "UserKnownHostsFile=/dev/null" in argv
    assert argv[-3:] == ["root@127.0.0.1", "systemctl", "is-system-running"]


# ------------------------------------------------------------------ ports


def test_free_port_is_bindable_and_avoids_excluded() -> None:
    first = docker.free_port()
    second = docker.free_port(exclude={first})
    assert second != first
    for port in (first, second):
        assert 1024 < port < 65536
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_published_port_and_ip_from_inspect() -> None:
    info = {
        "HostConfig": {"PortBindings": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "4022"}]}},
        "NetworkSettings": {"IPAddress": "", "Networks": {"bridge": {"IPAddress": "172.17.0.9"}}},
    }
    assert docker.published_port(info, 22) == 4022
    assert docker.published_port(info, 5000) is None
    assert docker.container_ip(info) == "172.17.0.9"


# ------------------------------------------------------------------ state and status


def _state(root: Path) -> dict:
    return {
        "version": 1,
        "name": "demo",
        "ssh_key": str(root / "sandbox/demo/id_ed25519"),
        "registry_image": "regops/registry:2.8.2",
        "registry_image_archive": str(root / "sandbox/images/regops-registry-2.8.2.tar"),
        "secrets_dir": str(root / "secrets"),
        "hosts": [{
            "name": "sb1", "container": "demo-sb1", "distro": "bookworm",
            "hostname": "sb1.demo.test", "volume": "demo-sb1-docker",
            "ssh_port": 40022, "registry_published_port": 45000, "ip": "172.17.0.2",
        }],
    }


HOST_KEYS = {
    "name", "container", "distro", "hostname", "ip", "ssh_host", "ssh_port", "ssh_user",
    "ssh_key", "registry_name", "registry_port", "registry_published_port", "registry_url",
    "ca_path", "demo_user", "demo_password_file", "running",
}


def test_status_document_shape(state_root: Path) -> None:
    root = state_root.resolve()
    doc = hosts.status_document(_state(root), {"demo-sb1": None})
    assert set(doc) == {"name", "ssh_key", "registry_image", "registry_image_archive", "hosts",
                         "topology"}
    assert doc["topology"] == "single"
    (host,) = doc["hosts"]
    assert set(host) == HOST_KEYS
    secrets = root / "secrets"
    assert host["ca_path"] == str(paths.ca_cert_path(secrets, "sb1.demo.test"))
    assert host["demo_password_file"] == str(paths.password_path(secrets, "sb1.demo.test", "demo"))
    assert host["registry_url"] == "https://127.0.0.1:45000"
    assert host["registry_port"] == 5000
    assert host["ssh_user"] == "root" and host["ssh_host"] == "127.0.0.1"
    assert host["running"] is False
    assert Path(host["ssh_key"]).is_absolute()
    json.dumps(doc)


def test_status_prefers_live_inspect(state_root: Path) -> None:
    live = {
        "State": {"Running": True},
        "HostConfig": {"PortBindings": {"22/tcp": [{"HostPort": "41000"}],
                                        "5000/tcp": [{"HostPort": "41001"}]}},
        "NetworkSettings": {"IPAddress": "172.17.0.7"},
    }
    (host,) = hosts.status_document(_state(state_root.resolve()), {"demo-sb1": live})["hosts"]
    assert (host["running"], host["ssh_port"], host["registry_published_port"], host["ip"]) == (
        True, 41000, 41001, "172.17.0.7",
    )
    assert host["registry_url"] == "https://127.0.0.1:41001"


def test_inventory_hosts(state_root: Path) -> None:
    doc = hosts.status_document(_state(state_root.resolve()), {})
    ((name, data),) = hosts.inventory_hosts(doc)
    assert name == "sb1"
    assert data["ssh_hostname"] == "127.0.0.1" and data["ssh_port"] == 40022
    assert data["ssh_known_hosts_file"] == "/dev/null"
    assert data["ssh_strict_host_key_checking"] == "no"
    assert data["registry_name"] == "sb1.demo.test"
    assert data["registry_extra_names"] == ["localhost", "127.0.0.1", "172.17.0.2"]
    assert data["registry_users"][0] == "demo" and "demo" in data["registry_admins"]
    # The sandbox data is a valid inventory: the access rules load and name what exists.
    from regops.config.settings import load

    s = load(name, {**data, "registry_image_archive": None}, environ={})
    assert s.token_auth and "ci-retired" in s.policy.robots
    assert data["registry_secrets_dir"] == str(state_root.resolve() / "secrets")
    assert data["registry_image_archive"].endswith("regops-registry-2.8.2.tar")


def test_state_round_trip_and_missing_error(state_root: Path) -> None:
    with pytest.raises(SandboxError, match="regops sandbox up"):
        model.load_state("demo")
    model.save_state(_state(state_root.resolve()))
    assert model.state_path("demo") == state_root.resolve() / "sandbox/demo/state.json"
    assert model.load_state("demo")["hosts"][0]["ssh_port"] == 40022


def test_ssh_key_is_private_and_reused(state_root: Path) -> None:
    key = model.key_path("demo")
    pub = model.ensure_ssh_key(key)
    assert pub.startswith("ssh-ed25519 ")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert model.ensure_ssh_key(key) == pub


def test_format_table_mentions_every_host(state_root: Path) -> None:
    doc = hosts.status_document(_state(state_root.resolve()), {})
    table = hosts.format_table(doc)
    assert "sb1" in table and "127.0.0.1:40022" in table and "stopped" in table


def test_customize_rootfs(tmp_path: Path) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/apt").mkdir()
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("shared")
    (tmp_path / "etc/modules-load.d").mkdir()
    (tmp_path / "etc/modules-load.d/modules.conf").symlink_to("../modules")
    (tmp_path / "var/cache/apt/archives").mkdir(parents=True)
    (tmp_path / "var/cache/apt/archives/x.deb").write_text("")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    build.customize_rootfs(tmp_path, "trixie", "http://m.example/debian")
    sources = (tmp_path / "etc/apt/sources.list").read_text()
    assert sources == "deb http://m.example/debian trixie main\n"
    assert not list((tmp_path / "etc/ssh").glob("ssh_host_*"))
    masked = tmp_path / "etc/systemd/system/systemd-modules-load.service"
    assert masked.is_symlink() and str(masked.readlink()) == "/dev/null"
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/regops-ssh-host-keys.service"
            ).is_symlink()
    assert not list((tmp_path / "var/cache/apt/archives").glob("*.deb"))


def test_status_cli_without_sandbox_is_one_line_error(state_root: Path) -> None:
    from regops.cli import main

    result = CliRunner().invoke(main, ["sandbox", "status", "--name", "nothere", "--json"])
    assert result.exit_code == 1
    assert "regops sandbox up" in result.output
    assert "Traceback" not in result.output


def test_ha_topology_gives_one_name_and_a_role_to_each_host() -> None:
    from regops.sandbox.hosts import check_topology, inventory_hosts

    hosts = [{"name": f"sb{i}", "container": f"x-sb{i}", "distro": "bookworm",
              "ip": f"172.17.0.{i + 1}", "ssh_host": "127.0.0.1", "ssh_port": 2200 + i,
              "ssh_user": "root", "ssh_key": "k", "registry_name": f"sb{i}.x.test",
              "registry_url": f"https://127.0.0.1:{5000 + i}"} for i in range(1, 8)]
    doc = {"hosts": hosts, "registry_image": "i:1", "registry_image_archive": "a",
           "topology": "ha"}
    data = dict(inventory_hosts(doc))
    assert [data[f"sb{i}"]["registry_role"] for i in range(1, 8)] == [
        "load_balancer", "registry", "registry", "storage", "storage", "storage", "registry"]
    assert {d["registry_redis_host"] for d in data.values()} == {"sb1"}  # on the balancer
    assert {d["registry_name"] for d in data.values()} == {"sb1.x.test"}
    assert {tuple(d["registry_extra_names"]) for d in data.values()} == {
        ("localhost", "127.0.0.1", "172.17.0.2")}
    assert data["sb3"]["registry_private_address"] == "172.17.0.4"
    assert data["sb3"]["registry_storage"] == "s3"
    assert "registry_role" not in dict(inventory_hosts({**doc, "topology": "single"}))["sb1"]
    assert check_topology(None, None, None, "x") == "single"
    assert check_topology("ha", None, 7, "x") == "ha"
    with pytest.raises(SandboxError, match="is a ha sandbox"):
        check_topology("ha", "single", None, "x")
    with pytest.raises(SandboxError, match="needs at least 6 hosts"):
        check_topology(None, "ha", 2, "x")
