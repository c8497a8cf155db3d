"""Every `registry_*` key ops may set: its default, its doc and its check, in one place.

Inventory or group data overrides the defaults per host. Unknown `registry_*`
keys are refused (`regops.config.settings`), so a typo never silently falls back
to a default. The keys reference (docs/reference/keys.md) is generated from this list and a test
keeps the two equal. Checks that involve several keys are rules in
`regops.config.settings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regops.config import ldap, oidc
from regops.config.validators import (
    DOCKER_MIN_MEMORY,
    Check,
    boolean,
    cron_problem,
    duration,
    endpoint_url,
    host_dir,
    host_name,
    host_names,
    https_url,
    image_problem,
    integer,
    ip_address,
    local_file,
    mapping,
    memory,
    one_of,
    openssl_ciphers,
    optional,
    port,
    s3_prefix,
    text,
)
from regops.registry.retention import PolicyError, parse_policies

ACCOUNT = r"^[a-z_][a-z0-9_.-]{0,63}$"  # user names, registry and system accounts alike


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    concern: str
    doc: str
    check: Check


# Mozilla "intermediate": ECDHE with AES-GCM or ChaCha20 only, as OpenSSL (and so
# nginx) names them.
INTERMEDIATE_CIPHERS = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]
# The curves Mozilla "intermediate" allows, in the front door's order of preference.
INTERMEDIATE_CURVES = "X25519:prime256v1:secp384r1"


def major_version(value: Any) -> str | None:
    if value in (2, 3) and not isinstance(value, bool):
        return None
    return f"must be 2 or 3, got {value!r}"


def user_list(value: Any) -> str | None:
    """User names, or `{name: ...}` maps; each valid and listed once."""
    if not isinstance(value, (list, tuple)) or not value:
        return "must be a non-empty list of user names"
    seen: list[str] = []
    for entry in value:
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if not isinstance(name, str) or not re.match(ACCOUNT, name):
            return f"{name!r} is not a valid user name (lower-case letters, digits, ._-)"
        if name in seen:
            return f"user {name!r} is listed twice"
        seen.append(name)
    return None


def name_list(value: Any) -> str | None:
    """User names; with a directory also `ldap:NAME` and `group:ldap:GROUP`, with single
    sign-on `oidc:NAME` and `group:oidc:GROUP` (the rules check that the key is set)."""
    external = ("ldap:", "group:ldap:", "oidc:", "group:oidc:")
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(n, str) and (re.match(ACCOUNT, n) or n.startswith(external))
        for n in value
    ):
        return ("must be a list of user names (or ldap:NAME, group:ldap:GROUP, oidc:NAME, "
                "group:oidc:GROUP)")
    return None


def access_list(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return "must be a list of rules ({repositories, who, actions})"
    return None


def retention_policies(value: Any) -> str | None:
    try:
        parse_policies(value)
    except PolicyError as error:
        return str(error)
    return None


KEYS: list[Key] = [
    # --- docker: the engine on each host
    Key(
        "registry_docker_source",
        "debian",
        "docker",
        "`debian` installs Debian's docker.io; `docker-ce` adds Docker's own apt repository (key "
        "in /etc/apt/keyrings, deb822 source) and installs Docker CE.",
        one_of("debian", "docker-ce"),
    ),
    Key(
        "registry_docker_ce_repo_url",
        None,
        "docker",
        "Docker CE apt repository (with `registry_docker_source: docker-ce`); default: Docker's "
        "repository for the host's distribution (debian or ubuntu).",
        optional(https_url),
    ),
    Key(
        "registry_docker_log_max_size",
        "10m",
        "docker",
        "json-file log rotation: size of one container log file.",
        memory(minimum=1024),
    ),
    Key(
        "registry_docker_log_max_file",
        3,
        "docker",
        "json-file log rotation: number of files kept per container.",
        integer(1, 100),
    ),
    Key(
        "registry_docker_daemon_options",
        {},
        "docker",
        "Extra keys merged over the hardened /etc/docker/daemon.json (live-restore, icc off, "
        "userland-proxy off, no-new-privileges, log rotation).",
        mapping,
    ),
    # --- registry: identity, image, container and config
    Key(
        "registry_name",
        None,
        "registry",
        "DNS name clients use (`name:port/...`); default: the inventory host name.",
        optional(host_name),
    ),
    # --- cache: a pull-through cache of another registry
    Key(
        "registry_proxy_remote_url",
        None,
        "cache",
        "Make this registry a pull-through cache of that registry (`https://registry-1.docker.io`, "
        "or another regops registry such as `https://registry.example.com:5000`): pulls fetch "
        "what is missing from it and keep it; pushes and deletes are refused.",
        optional(endpoint_url),
    ),
    Key(
        "registry_proxy_username",
        None,
        "cache",
        "User the cache logs in to the upstream as; its password comes from "
        "REGOPS_PROXY_PASSWORD, else `<secrets>/<registry_name>/proxy-password`. Unset: anonymous.",
        optional(text()),
    ),
    Key(
        "registry_proxy_ca_file",
        None,
        "cache",
        "CA (PEM, on the operator's machine) the cache trusts for the upstream, in addition to "
        "the public ones: a regops upstream's `.regops/secrets/<name>/pki/ca.crt`.",
        optional(local_file),
    ),
    # --- tls: certificates
    Key(
        "registry_extra_names",
        [],
        "tls",
        "More DNS names or IP addresses clients use; all go into the certificate SANs.",
        host_names,
    ),
    # --- registry: identity, image, container and config
    Key(
        "registry_api_url",
        None,
        "registry",
        "URL the operator's machine uses for day-2 commands and checks; default: "
        "https://<registry_name>:<registry_port>.",
        optional(https_url),
    ),
    Key(
        "registry_port",
        5000,
        "registry",
        "TCP port clients use: the front door (nginx, TLS) listens on it.",
        port,
    ),
    Key(
        "registry_bind_address",
        "0.0.0.0",
        "registry",
        "Host address the front door listens on; set a specific interface to narrow it.",
        ip_address,
    ),
    Key(
        "registry_backend_port",
        5010,
        "registry",
        "Loopback port of the registry behind the front door; the next port is its standby "
        "(serving while GC runs and while the registry is replaced). Never reachable from "
        "outside the host.",
        integer(1024, 65534),
    ),
    Key(
        "registry_drain_timeout",
        120,
        "registry",
        "Seconds a switch of the front door (GC, a replaced registry) waits for downloads in "
        "flight to finish before it stops the registry instance they come from.",
        integer(5, 3600),
    ),
    Key(
        "registry_image",
        "registry:2.8.3",
        "registry",
        "Pinned image, `repo:tag` or `repo@sha256:...`; `latest` and untagged are refused.",
        image_problem,
    ),
    Key(
        "registry_image_archive",
        None,
        "registry",
        "Path on the operator's machine to a `docker save` archive of the image, for air-gapped "
        "hosts: uploaded and loaded only when the image is missing.",
        optional(local_file),
    ),
    Key(
        "registry_major_version",
        None,
        "registry",
        "2 or 3; default: read from the image tag. Picks the config path "
        "(/etc/docker/registry/config.yml or /etc/distribution/config.yml).",
        optional(major_version),
    ),
    Key(
        "registry_container_name",
        "registry",
        "registry",
        "Name of the registry container.",
        text(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", "a valid container name"),
    ),
    # --- account: the unprivileged user the registry runs as
    Key(
        "registry_user",
        "regops-registry",
        "account",
        "System account created on the host for the container's uid/gid (no login, no home).",
        text(ACCOUNT, "a valid account name"),
    ),
    Key(
        "registry_uid",
        5000,
        "account",
        "Non-root uid the container runs as; owns the data. A dedicated id, so the host's first "
        "login user (often uid 1000) cannot read the TLS key.",
        integer(1, 2**31 - 1),
    ),
    Key(
        "registry_gid",
        5000,
        "account",
        "Gid the container runs as; may read config and key.",
        integer(1, 2**31 - 1),
    ),
    Key(
        "registry_token_uid",
        5001,
        "account",
        "Uid and gid of the token service's system account `regops-token` (token auth).",
        integer(1, 2**31 - 1),
    ),
    # --- registry: identity, image, container and config
    Key(
        "registry_memory_limit",
        "512m",
        "registry",
        "Container memory limit (docker syntax).",
        memory(minimum=DOCKER_MIN_MEMORY),
    ),
    Key(
        "registry_pids_limit",
        256,
        "registry",
        "Container pids limit.",
        integer(16, 1_000_000),
    ),
    Key(
        "registry_config_dir",
        "/etc/docker/registry",
        "registry",
        "Host directory with the registry's config, container spec and htpasswd, mounted "
        "read-only.",
        host_dir,
    ),
    Key(
        "registry_data_dir",
        "/var/lib/registry",
        "registry",
        "Host directory with the image data (filesystem storage).",
        host_dir,
    ),
    # --- topology: what each host is in a registry of several hosts
    Key(
        "registry_role",
        "registry",
        "topology",
        "What this host is for its `registry_name`: `registry` (a replica: registry, front door, "
        "token service), `load_balancer` (haproxy in front of the replicas of its name) or "
        "`storage` (SeaweedFS, an S3 store for the replicas of its name).",
        one_of("registry", "load_balancer", "storage"),
    ),
    Key(
        "registry_private_address",
        None,
        "topology",
        "Address the other hosts of this registry reach this host at (the load balancer its "
        "replicas, the replicas their storage, storage hosts each other); unset means its "
        "inventory name.",
        optional(host_name),
    ),
    Key(
        "registry_lb_check_interval",
        1,
        "loadbalancer",
        "Seconds between the load balancer's health checks of each replica (GET /v2/ through "
        "its front door, verified TLS). A replica is out after `registry_lb_check_fall` "
        "failures in a row, back after 2 successes.",
        integer(1, 60),
    ),
    Key(
        "registry_lb_check_fall",
        2,
        "loadbalancer",
        "Failed health checks in a row that take a replica out of rotation.",
        integer(1, 10),
    ),
    Key(
        "registry_seaweedfs_s3_port",
        8333,
        "seaweedfs",
        "Port of the S3 gateway on a storage host (on `registry_private_address`). Replicas "
        "of the same name use it when `registry_s3_endpoint` is unset: on the one storage "
        "host, or with three and more on the load balancer, which passes it to one of them.",
        port,
    ),
    Key(
        "registry_seaweedfs_uid",
        5002,
        "seaweedfs",
        "Uid and gid of the system account `seaweedfs` on a storage host.",
        integer(1, 2**31 - 1),
    ),
    Key(
        "registry_seaweedfs_data_dir",
        "/var/lib/seaweedfs",
        "seaweedfs",
        "Directory of a storage host's data (volumes, the master's state; the filer's "
        "metadata with one storage host, in etcd with three and more).",
        host_dir,
    ),
    # --- redis: the replicas' shared blob-descriptor cache (optional)
    Key(
        "registry_redis_host",
        None,
        "redis",
        "Inventory name of a host of this `registry_name` (e.g. the load balancer) that runs "
        "Debian's redis as the replicas' shared blob-descriptor cache, on its "
        "`registry_private_address` with a generated password (`<secrets>/<registry_name>/"
        "redis-password`); unset means each replica caches in its own memory. Replicas on "
        "S3 only. A dead redis costs speed, not pulls: the registry reads the storage then.",
        optional(host_name),
    ),
    Key(
        "registry_redis_port",
        6379,
        "redis",
        "Port of the shared redis on `registry_redis_host`.",
        port,
    ),
    Key(
        "registry_redis_maxmemory_mb",
        256,
        "redis",
        "Memory the shared redis may use; beyond it the least recently used entries go.",
        integer(16, 65536),
    ),
    Key(
        "registry_storage",
        "filesystem",
        "storage",
        "Where images live: `filesystem` (the data directory on this host) or `s3` (a bucket "
        "that every replica of the registry name shares; the `registry_s3_*` keys).",
        one_of("filesystem", "s3"),
    ),
    Key(
        "registry_s3_endpoint",
        None,
        "storage",
        "S3 endpoint as `https://host[:port]` (`http://` only for a store on a private "
        "network); unset means AWS S3 in `registry_s3_region`. Credentials come from "
        "REGOPS_S3_ACCESS_KEY and REGOPS_S3_SECRET_KEY, else the files `s3-access-key` and "
        "`s3-secret-key` in `<secrets>/<registry_name>/`.",
        optional(endpoint_url),
    ),
    Key(
        "registry_s3_region",
        "us-east-1",
        "storage",
        "Region the requests are signed for (any value your store accepts if not AWS).",
        text(r"^[a-z0-9-]{1,64}$", "a region name such as eu-west-1"),
    ),
    Key(
        "registry_s3_bucket",
        None,
        "storage",
        "Bucket of the images (`registry_storage: s3`); it must exist. The deploy lists it "
        "with the credentials before any host changes.",
        optional(text(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "an S3 bucket name")),
    ),
    Key(
        "registry_s3_rootdirectory",
        "/registry",
        "storage",
        "Prefix in the bucket below which the registry keeps everything (one bucket can hold "
        "several registries).",
        s3_prefix,
    ),
    Key(
        "registry_s3_path_style",
        True,
        "storage",
        "Address the bucket as `endpoint/bucket` (MinIO, SeaweedFS, Ceph) rather than "
        "`bucket.endpoint` (AWS).",
        boolean,
    ),
    Key(
        "registry_s3_verify_tls",
        True,
        "storage",
        "Verify the endpoint's certificate (against the system CAs). Off only for a test store.",
        boolean,
    ),
    Key(
        "registry_log_level",
        "info",
        "registry",
        "error, warn, info or debug.",
        one_of("error", "warn", "info", "debug"),
    ),
    Key(
        "registry_debug_enabled",
        False,
        "registry",
        "Debug and Prometheus metrics listener, bound to localhost inside the container only.",
        boolean,
    ),
    Key(
        "registry_debug_port",
        5001,
        "registry",
        "Port of the debug listener when enabled.",
        port,
    ),
    Key(
        "registry_delete_enabled",
        True,
        "registry",
        "Allow manifest deletes (needed by `regops delete`, prune and GC).",
        boolean,
    ),
    # --- tls: certificates
    Key(
        "registry_tls_cert_file",
        None,
        "tls",
        "Operator-side path to a provided certificate (PEM, chain allowed). Unset: a private CA "
        "and server certificate are generated and reused.",
        optional(local_file),
    ),
    Key(
        "registry_tls_key_file",
        None,
        "tls",
        "Operator-side path to the key of the provided certificate.",
        optional(local_file),
    ),
    Key(
        "registry_tls_ca_file",
        None,
        "tls",
        "Operator-side CA certificate clients should trust for a provided certificate.",
        optional(local_file),
    ),
    Key(
        "registry_tls_days",
        365,
        "tls",
        "Lifetime of generated server certificates (<= 366).",
        integer(1, 366),
    ),
    Key(
        "registry_tls_renew_days",
        30,
        "tls",
        "A generated certificate with fewer days left is renewed on the next deploy.",
        integer(1, 365),
    ),
    Key(
        "registry_tls_ciphers",
        INTERMEDIATE_CIPHERS,
        "tls",
        "TLS 1.2 cipher suites the front door offers (OpenSSL names); TLS 1.3 suites are "
        "always the three standard ones.",
        openssl_ciphers,
    ),
    # --- auth: users and passwords
    Key(
        "registry_users",
        ["admin"],
        "auth",
        "User names (or `{name: ...}` maps). Passwords: env `REGOPS_PASSWORD_<NAME>`, else "
        "`<secrets>/<registry_name>/users/<name>.password`, else generated there.",
        user_list,
    ),
    Key(
        "registry_htpasswd_bcrypt_cost",
        10,
        "auth",
        "bcrypt cost of the htpasswd file (10..14). The registry runs bcrypt on every request.",
        integer(10, 16),
    ),
    Key(
        "registry_auth_realm",
        "regops",
        "auth",
        "Basic auth realm.",
        text(),
    ),
    Key(
        "registry_password_min_length",
        12,
        "auth",
        "Shortest password accepted.",
        integer(8, 1024),
    ),
    Key(
        "registry_auth",
        "token",
        "auth",
        "`token`: the token service on each host checks passwords (once per token) and "
        "grants what `registry_access` allows; `htpasswd`: the registry checks every "
        "request against the users, who may all do everything.",
        one_of("token", "htpasswd"),
    ),
    Key(
        "registry_groups",
        {},
        "auth",
        "Groups for the access rules: `{name: [users]}` (users of `registry_users`).",
        mapping,
    ),
    Key(
        "registry_admins",
        [],
        "auth",
        "Users who may do everything, the catalog included; day-2 commands log in as the "
        "first one. Needed with `registry_access`. With `registry_ldap`, also "
        "`ldap:NAME` and `group:ldap:GROUP`.",
        name_list,
    ),
    Key(
        "registry_access",
        None,
        "auth",
        "Access rules (token auth): a list of `{repositories, who, actions}`; `*` matches "
        "within a path segment, `**` across, `${user}` is the caller; `who`: `user:NAME` (or "
        "NAME), `group:NAME`, `robot:NAME`, `anonymous` (pull only), `authenticated`; actions "
        "`pull`, `push`, `delete`. Rights are the union of matching rules. Unset: every user "
        "may do everything, as with htpasswd.",
        optional(access_list),
    ),
    Key(
        "registry_robots",
        {},
        "auth",
        "Robot accounts (token auth): `{name: {repositories, actions, expires: "
        "YYYY-MM-DD}}`. Secrets: env `REGOPS_ROBOT_SECRET_<NAME>`, else "
        "`<secrets>/<registry_name>/robots/<name>.secret`, else generated there.",
        mapping,
    ),
    Key(
        "registry_token_ttl",
        300,
        "auth",
        "Seconds a token is valid (token auth); clients fetch a new one when it runs out.",
        integer(60, 3600),
    ),
    Key(
        "registry_token_port",
        5020,
        "auth",
        "Loopback port of the token service behind the front door (token auth); the next "
        "port, on Docker's bridge, takes the registry's notifications for the audit log.",
        integer(1024, 65534),
    ),
    Key(
        "registry_ldap",
        None,
        "auth",
        "A directory (LDAP or Active Directory) the token service logs people in from "
        "(token auth): `{urls, ca_file, starttls, allow_plain, bind_dn, user_base, "
        "user_filter, group_base, group_filter, group_attribute, timeout}`; rules name its "
        "people `ldap:NAME` and its groups `group:ldap:GROUP`. Bind password: env "
        "`REGOPS_LDAP_BIND_PASSWORD`, else `<secrets>/<registry_name>/ldap-bind-password`. "
        "See docs/access.md.",
        ldap.problem,
    ),
    Key(
        "registry_oidc",
        None,
        "auth",
        "An OpenID Connect provider the web pages sign people in with (token auth, "
        "registry_ui): `{issuer, client_id, ca_file, scopes, username_claim, groups_claim, "
        "cli_secret_days, label, leeway, timeout}`; rules name its people `oidc:NAME` and "
        "its groups `group:oidc:GROUP`; docker logs in with a CLI secret from the web pages. "
        "Client secret: env `REGOPS_OIDC_CLIENT_SECRET`, else "
        "`<secrets>/<registry_name>/oidc-client-secret`. Redirect URI: "
        "`https://<registry_address>/oidc/callback`. See docs/access.md.",
        oidc.problem,
    ),
    Key(
        "registry_auth_rate",
        20,
        "auth",
        "Requests per second each client address may make to the token endpoint "
        "(`/auth/token`) through the front door (token auth); past the burst, nginx answers "
        "429 with Retry-After. Raise it for many CI runners behind one NAT address.",
        integer(1, 10000),
    ),
    Key(
        "registry_auth_burst",
        200,
        "auth",
        "Token requests one client address may make at once above `registry_auth_rate` "
        "before nginx refuses them (a CI job pulling many images asks for one token each).",
        integer(0, 100000),
    ),
    Key(
        "registry_auth_connections",
        32,
        "auth",
        "Connections one client address may hold open to the token endpoint and the web "
        "pages at once (token auth); more get 503 with Retry-After.",
        integer(1, 10000),
    ),
    Key(
        "registry_login_rate",
        30,
        "auth",
        "Web page logins (POST /login) per minute each client address may try; past a "
        "burst of 10, 429 with Retry-After.",
        integer(1, 6000),
    ),
    Key(
        "registry_ui",
        True,
        "auth",
        "Serve the web pages (browse, image details, delete, access, audit) at "
        "https://NAME:PORT/ from the token service (token auth only).",
        boolean,
    ),
    # --- gc: garbage collection
    Key(
        "registry_gc_enabled",
        True,
        "gc",
        "Install the garbage-collection job (regops-gc.service, started by regops-gc.timer).",
        boolean,
    ),
    Key(
        "registry_gc_schedule",
        "17 3 * * 0",
        "gc",
        "When GC runs: a cron schedule (5 fields), turned into the timer's OnCalendar=.",
        cron_problem,
    ),
    Key(
        "registry_gc_delete_untagged",
        False,
        "gc",
        "Also delete untagged manifests. Off: on 2.8 it deletes the children of multi-arch images.",
        boolean,
    ),
    Key(
        "registry_gc_upload_max_age",
        "1h",
        "gc",
        "GC also deletes unfinished uploads that have not changed for this long (`30m`, `1h`, "
        "`2d`): a push that failed, on a full disk say, gives its space back at the next GC. "
        "No upload is in progress while GC runs.",
        duration(minimum=60),
    ),
    Key(
        "registry_gc_health_timeout",
        60,
        "gc",
        "Seconds the deploy and the GC job wait for a registry instance, or the front door, to "
        "serve after it starts or changes.",
        integer(5, 3600),
    ),
    # --- retention: what `regops prune` deletes
    Key(
        "registry_retention",
        [],
        "retention",
        "Retention policies of `regops prune`: a list of maps with `repositories` (glob: `*` one "
        "level, `**` any; or `re:REGEX`), `keep_last` and/or `older_than` (`30d`, `12h`, `2w`), "
        '`include` (default `["*"]`) and `exclude` tag patterns, `protect` (default `["latest", '
        '"semver"]`; `semver` = `v?MAJOR.MINOR.PATCH`).',
        retention_policies,
    ),
    # --- secrets: operator-side state
    Key(
        "registry_secrets_dir",
        ".regops/secrets",
        "secrets",
        "Operator-side directory (gitignored, mode 0700/0600) for generated passwords, "
        "`http.secret` and the private CA, one subdirectory per registry name.",
        text(),
    ),
]

DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS}
KEY_NAMES: frozenset[str] = frozenset(DEFAULTS)
BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}


def for_concern(concern: str) -> list[Key]:
    """The keys of one concern (one `tasks/` module), in the order above."""
    return [k for k in KEYS if k.concern == concern]
