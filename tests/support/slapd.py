"""A real OpenLDAP directory for the tests: Debian's `slapd` on loopback, run from a
temporary directory as an unprivileged process (`openldap` when the tests run as
root), with an mdb database of people and groups and TLS from a CA the test makes
(`ldaps://` and StartTLS). What the directory saw is in its log (`binds`)."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import ldap3
from cryptography.hazmat.primitives import serialization

from regops.secrets import pki
from tests.support.require import require_command

SUFFIX = "dc=example,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"  # the database's rootdn: the test's own changes
SERVICE_DN = f"cn=regops,ou=services,{SUFFIX}"  # the token service's account: read only
ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
SERVICE_PASSWORD = "service-" + secrets.token_hex(8)

# name -> password; each account that a test changes is changed by that test only.
PASSWORDS = {
    "alice": "alice-ldap-pw-1",
    "bob": "bob-ldap-pw-22",
    "carol": "carol-ldap-pw-3",  # deleted by a test
    "dave": "dave-ldap-pw-44",  # taken out of a group by a test
    "erin": "erin-ldap-pw-5",  # her password removed by a test (a disabled account)
    "eve": "eve-ldap-pw-66",  # a DN with a comma and parentheses, to be escaped
}
DNS = {name: f"uid={name},{PEOPLE}" for name in PASSWORDS}
DNS["eve"] = f"cn=Eve (ops)\\, Jr,{PEOPLE}"
# groupOfNames (member: DN) and one posixGroup (memberUid: name)
GROUP_MEMBERS = {
    "platform-team": ["alice", "carol", "dave", "eve"],
    "developers": ["alice", "bob", "dave", "erin"],
}
POSIX_MEMBERS = {"ops": ["bob"]}

START_SECONDS = 15.0  # at most, for slapd to answer on all its ports
STOP_SECONDS = 10.0  # at most, for slapd to end after SIGTERM (then SIGKILL)
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def ssha(password: str) -> str:
    """`{SSHA}` as slappasswd makes it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _entries() -> str:
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
        "dc: example\n",
    ]
    for ou in ("people", "groups", "services"):
        out.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
    out.append(f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\n"
               f"objectClass: simpleSecurityObject\ncn: regops\n"
               f"userPassword: {ssha(SERVICE_PASSWORD)}\n")
    for name, password in PASSWORDS.items():
        cn = "Eve (ops), Jr" if name == "eve" else name.title()
        out.append(f"dn: {DNS[name]}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {cn}\n"
                   f"sn: {name}\nuserPassword: {ssha(password)}\n")
    for group, members in GROUP_MEMBERS.items():
        lines = "".join(f"member: {DNS[m]}\n" for m in members)
        out.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    for number, (group, members) in enumerate(POSIX_MEMBERS.items(), start=5000):
        lines = "".join(f"memberUid: {m}\n" for m in members)
        out.append(f"dn: cn={group},{GROUPS}\nobjectClass: posixGroup\ncn: {group}\n"
                   f"gidNumber: {number}\n{lines}")
    return "\n".join(out)


def _config(home: Path) -> str:
    schemas = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in SCHEMAS)
    return f"""{schemas}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {home}/slapd.pid
argsfile {home}/slapd.args
TLSCACertificateFile {home}/ca.crt
TLSCertificateFile {home}/server.crt
TLSCertificateKeyFile {home}/server.key
# Like a directory that takes a DN with an empty password as an unauthenticated
# bind and answers "success" (RFC 4513 5.1.2): the client must not be fooled.
allow bind_anon_dn

database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ssha(ADMIN_PASSWORD)}
directory {home}/db
maxsize 16777216
index objectClass eq
index uid,cn,memberUid eq
index member eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.subtree="{SUFFIX}"
    by dn.exact="{SERVICE_DN}" read
    by self read
    by * none
"""


class Slapd:
    """slapd on 127.0.0.1: `ldap_url` (plain, and StartTLS) and `ldaps_url`, with a
    server certificate for 127.0.0.1 and localhost from the CA in `ca_file`; and
    `misnamed_url`, ldaps:// on 127.0.0.2, which that certificate does not name.

    Its files live in a directory of its own (owned by `openldap` when run as
    root), removed at `stop`; the CA, the wrong CA and the service account's
    password file are written under `tmp`, where the test reads them."""

    def __init__(self, tmp: Path, serve_on: str | None = None) -> None:
        """`serve_on`: one more address to serve ldaps:// on (`remote_url`), named by the
        certificate too: the bridge address sandbox hosts reach this machine on."""
        self.slapd = require_command("slapd", "slapd")
        self.slapadd = require_command("slapadd", "slapd")
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="regops-slapd-"))
        self.port, self.tls_port = free_port(), free_port()
        self.ldap_url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}"
        # the same server on an address its certificate does not name
        self.misnamed_port = free_port("127.0.0.2")
        self.misnamed_url = f"ldaps://127.0.0.2:{self.misnamed_port}"
        self.serve_on = serve_on
        self.remote_port = free_port(serve_on) if serve_on else 0
        self.remote_url = f"ldaps://{serve_on}:{self.remote_port}" if serve_on else ""
        self.ca_file = str(tmp / "ldap-ca.crt")
        self.wrong_ca_file = str(tmp / "other-ca.crt")
        self.password_file = str(tmp / "ldap-service-password")
        self.log = self.home / "slapd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._admin: ldap3.Connection | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Slapd:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cert = pki.ensure_server_cert(self.tmp / "ldap-pki", [
            "127.0.0.1", "localhost", *([self.serve_on] if self.serve_on else [])])
        Path(self.ca_file).write_bytes(cert.ca_pem)
        other, _ = pki.ensure_ca(self.tmp / "other-pki", common_name="some other CA")
        Path(self.wrong_ca_file).write_bytes(other.public_bytes(serialization.Encoding.PEM))
        Path(self.password_file).write_text(SERVICE_PASSWORD + "\n")
        (self.home / "ca.crt").write_bytes(cert.ca_pem)
        (self.home / "server.crt").write_bytes(cert.cert_pem)
        (self.home / "server.key").write_bytes(cert.key_pem)
        (self.home / "db").mkdir()
        conf = self.home / "slapd.conf"
        conf.write_text(_config(self.home))
        (self.home / "data.ldif").write_text(_entries())
        added = subprocess.run([self.slapadd, "-q", "-f", str(conf), "-l",
                                str(self.home / "data.ldif")],
                               capture_output=True, text=True, timeout=60)
        if added.returncode != 0:
            raise RuntimeError(f"slapadd failed: {added.stderr.strip()[-2000:]}")
        urls = f"{self.ldap_url}/ {self.ldaps_url}/ {self.misnamed_url}/"
        if self.remote_url:
            urls += f" {self.remote_url}/"
        command = [self.slapd, "-f", str(conf), "-h", urls, "-d", "stats"]
        if os.geteuid() == 0:  # never the directory as root: its own user, as Debian runs it
            user = pwd.getpwnam("openldap")
            for path in [self.home, *self.home.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
            command += ["-u", "openldap", "-g", "openldap"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        waiting = {("127.0.0.1", self.port), ("127.0.0.1", self.tls_port),
                   ("127.0.0.2", self.misnamed_port)}
        if self.serve_on:
            waiting.add((self.serve_on, self.remote_port))
        while waiting:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            for address in list(waiting):
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(address) == 0:
                        waiting.discard(address)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not answer on {sorted(waiting)} within "
                                   f"{START_SECONDS:.0f} s")
            if waiting:
                time.sleep(0.05)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.unbind()
            self._admin = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
        self.process = None
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # --- what it saw, and the test's own changes --------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def binds(self, dn: str | None = None) -> int:
        """Bind operations slapd logged (each is logged as it arrives, before its
        answer is sent), of `dn` only when given."""
        needle = (' bind dn="' + ("" if dn is None else f'{dn.lower()}"'))
        return sum(needle in line.lower() and line.endswith(" method=128")
                   for line in self.log_text().splitlines())

    def bind_ssf(self, dn: str) -> list[int]:
        """The security strength (0: no TLS) of each successful bind of `dn`."""
        needle = f'bind dn="{dn.lower()}" mech=simple'
        return [int(line.rsplit(" ssf=", 1)[1]) for line in self.log_text().splitlines()
                if needle in line.lower() and " ssf=" in line]

    def admin(self) -> ldap3.Connection:
        """A connection bound as the rootdn (over loopback, plain): the test's changes."""
        if self._admin is None:
            server = ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE)
            self._admin = ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD,
                                           auto_bind=ldap3.AUTO_BIND_NO_TLS,
                                           receive_timeout=10)
        return self._admin

    def _change(self, done: bool, what: str) -> None:
        if not done:
            raise RuntimeError(f"{what}: {self.admin().result}")

    def remove_member(self, group: str, name: str) -> None:
        conn = self.admin()
        self._change(conn.modify(f"cn={group},{GROUPS}",
                                 {"member": [(ldap3.MODIFY_DELETE, [DNS[name]])]}),
                     f"removing {name} from {group}")

    def add_member(self, group: str, name: str) -> None:
        conn = self.admin()
        self._change(conn.modify(f"cn={group},{GROUPS}",
                                 {"member": [(ldap3.MODIFY_ADD, [DNS[name]])]}),
                     f"adding {name} to {group}")

    def remove_password(self, name: str) -> None:
        conn = self.admin()
        self._change(conn.modify(DNS[name], {"userPassword": [(ldap3.MODIFY_DELETE, [])]}),
                     f"removing {name}'s password")

    def delete(self, name: str) -> None:
        """The account goes; the groups still name it (no refint overlay here, as in
        many directories): the client must not take a group's word for it."""
        self._change(self.admin().delete(DNS[name]), f"deleting {name}")
