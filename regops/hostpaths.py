"""Where regops keeps things on the registry hosts: defined once, used by the deploy,
its templates (as `paths`), the day-2 commands and the compliance checks."""

from __future__ import annotations

STATE_DIR = "/var/lib/regops"  # job records and uploaded image archives
IMAGES_DIR = f"{STATE_DIR}/images"
# The GC job: regops_host.gc, run by regops-gc.service when regops-gc.timer says.
HOST_CODE = "/usr/local/lib/regops"  # on PYTHONPATH; the package regops_host is below it
GC_SCRIPT = "/usr/local/sbin/regops-gc"  # runs the job with the host's python3
GC_CONFIG = "/etc/regops/gc.json"  # the job's constants
GC_SERVICE = "/etc/systemd/system/regops-gc.service"
GC_TIMER = "/etc/systemd/system/regops-gc.timer"
GC_CRON = "/etc/cron.d/regops-gc"  # how 0.1.0 ran it; removed on upgrade
GC_STATE = f"{STATE_DIR}/gc-last.json"
GC_LOG = "/var/log/regops-gc.log"  # the service appends the job's output here
LOCK = "/run/lock/regops.lock"  # held by GC and by every change to a unit
TRUST_DIR = "/var/lib/regops-trust"  # root-only; holds a login password for a moment
DOCKER_SOCK = "/var/run/docker.sock"
DAEMON_JSON = "/etc/docker/daemon.json"


def certs_d(address: str) -> str:
    """Docker's per-registry trust directory for `name:port`."""
    return f"/etc/docker/certs.d/{address}"

# Host scripts: the control scripts of the managed units and what they share.
SCRIPT_LIB = "/usr/local/lib/regops/common.sh"
REGISTRY_CONTROL = "/usr/local/sbin/regops-registry"
FRONTDOOR_CONTROL = "/usr/local/sbin/regops-frontdoor"
REGISTRY_BOOT_UNIT = "/etc/systemd/system/regops-registry.service"
APPLIED_DIR = f"{STATE_DIR}/applied"  # digests of what the systemd-run units loaded

# The front door: Debian's nginx, with one site of ours.
NGINX_SITE = "/etc/nginx/conf.d/regops.conf"
NGINX_DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
FRONTDOOR_DIR = "/etc/nginx/regops"
FRONTDOOR_TLS_DIR = f"{FRONTDOOR_DIR}/tls"
FRONTDOOR_CERT = f"{FRONTDOOR_TLS_DIR}/server.crt"
FRONTDOOR_KEY = f"{FRONTDOOR_TLS_DIR}/server.key"
# Where /v2/ goes: the live mode is a link to one of these (GC and replacements switch it).
FRONTDOOR_MODES = ("normal", "standby", "gc")
FRONTDOOR_MODE_LINK = f"{FRONTDOOR_DIR}/registry-mode.conf"


def frontdoor_mode(mode: str) -> str:
    return f"{FRONTDOOR_DIR}/registry-{mode}.conf"

# The token service (registry_auth: token): our code, run by Debian's python3.
TOKEN_USER = "regops-token"
TOKEN_DIR = "/etc/regops/token"
TOKEN_CODE = "/usr/local/lib/regops-token"  # on PYTHONPATH; the package is below it
TOKEN_CONFIG = f"{TOKEN_DIR}/config.json"
TOKEN_KEY = f"{TOKEN_DIR}/signer.key"
TOKEN_CERT = f"{TOKEN_DIR}/signer.crt"
TOKEN_USERS = f"{TOKEN_DIR}/users.htpasswd"
TOKEN_ROBOTS = f"{TOKEN_DIR}/robots.htpasswd"
TOKEN_NOTIFY_SECRET = f"{TOKEN_DIR}/notify.secret"
TOKEN_LDAP_CA = f"{TOKEN_DIR}/ldap-ca.crt"  # registry_ldap: the directory's CA
TOKEN_LDAP_PASSWORD = f"{TOKEN_DIR}/ldap-bind-password"  # and its service account's password
TOKEN_OIDC_CA = f"{TOKEN_DIR}/oidc-ca.crt"  # registry_oidc: the provider's CA
TOKEN_OIDC_SECRET = f"{TOKEN_DIR}/oidc-client-secret"  # and the client's secret
TOKEN_STATE = "/var/lib/regops-token"  # what the service writes (StateDirectory=)
TOKEN_CLI_SECRETS = f"{TOKEN_STATE}/cli-secrets.json"  # registry_oidc: CLI secrets' hashes
TOKEN_S3_CREDENTIALS = f"{TOKEN_DIR}/s3-credentials.json"  # or in the bucket, with these
TOKEN_UNIT = "/etc/systemd/system/regops-token.service"
TOKEN_CONTROL = "/usr/local/sbin/regops-token"
AUDIT_LOG = "/var/log/regops-token/audit.log"

# A load balancer host (registry_role: load_balancer): Debian's haproxy, one config of ours.
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
HAPROXY_CA = "/etc/haproxy/regops-ca.crt"  # verifies the replicas' front doors in checks

# A storage host (registry_role: storage): SeaweedFS's `weed`, one systemd instance of
# one template unit per part (regops-seaweedfs@master, @volume, @filer), each reading
# its command line from /etc/seaweedfs/regops-<part>.env.
WEED_BINARY = "/usr/local/bin/weed"
SEAWEEDFS_USER = "seaweedfs"
SEAWEEDFS_DIR = "/etc/seaweedfs"
SEAWEEDFS_S3_CONFIG = f"{SEAWEEDFS_DIR}/s3.json"
SEAWEEDFS_UNIT = "/etc/systemd/system/regops-seaweedfs@.service"
# The one-process unit of regops before storage clusters; the deploy replaces it.
SEAWEEDFS_OLD_UNIT = "/etc/systemd/system/regops-seaweedfs.service"


# Three and more storage hosts: Debian's etcd on the master hosts, the filers' store.
ETCD_DEFAULTS = "/etc/default/etcd"
ETCD_DATA_DIR = "/var/lib/etcd/regops"


def seaweedfs_args(part: str) -> str:
    # Not <part>.env: weed reads /etc/seaweedfs/<part>.<any config format> as its config.
    return f"{SEAWEEDFS_DIR}/regops-{part}.env"

# The replicas' shared blob-descriptor cache (registry_redis_host): Debian's redis.
REDIS_CONFIG = "/etc/redis/redis.conf"
REDIS_FLUSH = "/usr/local/sbin/regops-redis-flush"
