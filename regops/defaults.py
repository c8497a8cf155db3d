"""Every `registry_*` key ops may set, with its default, in one place.

Inventory or group data overrides these per host. Unknown `registry_*` keys
are rejected (see `regops.settings`), so a typo never silently falls back to
a default. The README's data table is checked against this list by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    concern: str
    doc: str


# Go crypto/tls names. ECDHE with AES-GCM or ChaCha20 only (Mozilla
# "intermediate"); TLS 1.3 suites are not configurable in Go and always safe.
INTERMEDIATE_CIPHER_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]

KEYS: list[Key] = [
    # --- docker: the engine on each host -----------------------------------
    Key(
        "registry_docker_source",
        "debian",
        "docker",
        "`debian` installs Debian's docker.io; `docker-ce` adds Docker's own apt "
        "repository (key in /etc/apt/keyrings, deb822 source) and installs Docker CE.",
    ),
    Key(
        "registry_docker_ce_repo_url",
        None,
        "docker",
        "Docker CE apt repository (with `registry_docker_source: docker-ce`); default: "
        "Docker's repository for the host's distribution (debian or ubuntu).",
    ),
    Key(
        "registry_docker_log_max_size",
        "10m",
        "docker",
        "json-file log rotation: size of one container log file.",
    ),
    Key(
        "registry_docker_log_max_file",
        3,
        "docker",
        "json-file log rotation: number of files kept per container.",
    ),
    Key(
        "registry_docker_daemon_options",
        {},
        "docker",
        "Extra keys merged over the hardened /etc/docker/daemon.json "
        "(live-restore, icc off, userland-proxy off, no-new-privileges, log rotation).",
    ),
    # --- identity and network ------------------------------------------------
    Key(
        "registry_name",
        None,
        "registry",
        "DNS name clients use (`name:port/...`); default: the inventory host name.",
    ),
    Key(
        "registry_extra_names",
        [],
        "tls",
        "More DNS names or IP addresses clients use; all go into the certificate SANs.",
    ),
    Key(
        "registry_api_url",
        None,
        "registry",
        "URL the operator's machine uses for day-2 commands and checks; default: "
        "https://<registry_name>:<registry_port>.",
    ),
    Key("registry_port", 5000, "registry", "TCP port the registry is published on."),
    Key(
        "registry_bind_address",
        "0.0.0.0",
        "registry",
        "Host address the port is published on; set a specific interface to narrow it.",
    ),
    # --- image and container ---------------------------------------------------
    Key(
        "registry_image",
        "registry:2.8.3",
        "registry",
        "Pinned image, `repo:tag` or `repo@sha256:...`; `latest` and untagged are refused.",
    ),
    Key(
        "registry_image_archive",
        None,
        "registry",
        "Path on the operator's machine to a `docker save` archive of the image, for "
        "air-gapped hosts: uploaded and loaded only when the image is missing.",
    ),
    Key(
        "registry_major_version",
        None,
        "registry",
        "2 or 3; default: read from the image tag. Picks the config path "
        "(/etc/docker/registry/config.yml or /etc/distribution/config.yml).",
    ),
    Key("registry_container_name", "registry", "registry", "Name of the registry container."),
    Key(
        "registry_user",
        "regops-registry",
        "account",
        "System account created on the host for the container's uid/gid (no login, no home).",
    ),
    Key(
        "registry_uid",
        5000,
        "account",
        "Non-root uid the container runs as; owns the data. A dedicated id, so the host's "
        "first login user (often uid 1000) cannot read the TLS key.",
    ),
    Key("registry_gid", 5000, "account", "Gid the container runs as; may read config and key."),
    Key("registry_memory_limit", "512m", "registry", "Container memory limit (docker syntax)."),
    Key("registry_pids_limit", 256, "registry", "Container pids limit."),
    Key(
        "registry_config_dir",
        "/etc/docker/registry",
        "registry",
        "Host directory with config, htpasswd and certificates, mounted read-only.",
    ),
    Key(
        "registry_data_dir",
        "/var/lib/registry",
        "registry",
        "Host directory with the image data (filesystem storage).",
    ),
    # --- registry config --------------------------------------------------------
    Key("registry_log_level", "info", "registry", "error, warn, info or debug."),
    Key(
        "registry_debug_enabled",
        False,
        "registry",
        "Debug and Prometheus metrics listener, bound to localhost inside the container only.",
    ),
    Key("registry_debug_port", 5001, "registry", "Port of the debug listener when enabled."),
    Key(
        "registry_delete_enabled",
        True,
        "registry",
        "Allow manifest deletes (needed by `regops delete`, prune and GC).",
    ),
    # --- tls ----------------------------------------------------------------------
    Key(
        "registry_tls_cert_file",
        None,
        "tls",
        "Operator-side path to a provided certificate (PEM, chain allowed). "
        "Unset: a private CA and server certificate are generated and reused.",
    ),
    Key(
        "registry_tls_key_file",
        None,
        "tls",
        "Operator-side path to the key of the provided certificate.",
    ),
    Key(
        "registry_tls_ca_file",
        None,
        "tls",
        "Operator-side CA certificate clients should trust for a provided certificate.",
    ),
    Key("registry_tls_days", 365, "tls", "Lifetime of generated server certificates (<= 366)."),
    Key(
        "registry_tls_renew_days",
        30,
        "tls",
        "A generated certificate with fewer days left is renewed on the next deploy.",
    ),
    Key(
        "registry_tls_cipher_suites",
        INTERMEDIATE_CIPHER_SUITES,
        "tls",
        "TLS 1.2 cipher suites offered (Go names).",
    ),
    # --- auth -----------------------------------------------------------------------
    Key(
        "registry_users",
        ["admin"],
        "auth",
        "User names (or `{name: ...}` maps). Passwords: env `REGOPS_PASSWORD_<NAME>`, "
        "else `<secrets>/<registry_name>/users/<name>.password`, else generated there.",
    ),
    Key(
        "registry_htpasswd_bcrypt_cost",
        10,
        "auth",
        "bcrypt cost of the htpasswd file (10..14). The registry runs bcrypt on every request.",
    ),
    Key("registry_auth_realm", "regops", "auth", "Basic auth realm."),
    Key("registry_password_min_length", 12, "auth", "Shortest password accepted."),
    # --- gc -------------------------------------------------------------------------
    Key("registry_gc_enabled", True, "gc", "Install the garbage-collection cron job."),
    Key("registry_gc_schedule", "17 3 * * 0", "gc", "Cron schedule of the GC job (5 fields)."),
    Key(
        "registry_gc_delete_untagged",
        False,
        "gc",
        "Also delete untagged manifests. Off: on 2.8 it deletes the children of multi-arch images.",
    ),
    Key(
        "registry_gc_health_timeout",
        60,
        "gc",
        "Seconds the GC job waits for the registry to be healthy after each restart.",
    ),
    # --- retention -------------------------------------------------------------
    Key(
        "registry_retention",
        [],
        "retention",
        "Retention policies of `regops prune`: a list of maps with `repositories` (glob: `*` one "
        "level, `**` any; or `re:REGEX`), `keep_last` and/or `older_than` (`30d`, `12h`, `2w`), "
        '`include` (default `["*"]`) and `exclude` tag patterns, `protect` (default '
        '`["latest", "semver"]`; `semver` = `v?MAJOR.MINOR.PATCH`).',
    ),
    # --- operator side ------------------------------------------------------------
    Key(
        "registry_secrets_dir",
        ".regops/secrets",
        "secrets",
        "Operator-side directory (gitignored, mode 0700/0600) for generated passwords, "
        "`http.secret` and the private CA, one subdirectory per registry name.",
    ),
]

DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS}
KEY_NAMES: frozenset[str] = frozenset(DEFAULTS)


def for_concern(concern: str) -> dict[str, Any]:
    """The defaults of one task module, for `@deploy(data_defaults=...)`."""
    return {k.name: k.default for k in KEYS if k.concern == concern}
