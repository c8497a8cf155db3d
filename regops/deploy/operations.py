"""pyinfra operations pyinfra lacks or gets wrong here.

- `secret_file` uploads content that must never be printed: files.put and
  files.template print the whole file with `--diff`.
- `refresh_apt_for` refreshes apt's lists only when a package is missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from regops.deploy.facts import NumericStat, expect_at_prepare


class Secret:
    """Content that prints as `<secret>` wherever pyinfra shows arguments."""

    def __init__(self, content: str | bytes) -> None:
        self._content = content.encode() if isinstance(content, str) else content

    def reveal(self) -> bytes:
        return self._content

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def _escalates() -> bool:
    arguments: dict[str, Any] = dict(host.current_op_global_arguments or {})
    return any(arguments.get(k) for k in ("_sudo", "_su_user", "_doas", "_dzdo"))


def upload(content: bytes, path: str) -> Iterator[StringCommand | FileUploadCommand]:
    """Commands that upload `content` to `path` without it passing through a file others
    may read: with sudo, pyinfra uploads as the SSH user to a temporary file and copies
    it as root, so that file goes into a directory only the SSH user can read."""
    temp = host.get_temp_filename(path)
    if _escalates():
        private = f"/tmp/regops-upload-{host.data.get('ssh_user') or 'ssh'}"
        yield StringCommand(
            f"mkdir -p -m 0700 {private} && test -O {private} && chmod 0700 {private}",
            _sudo=False,
            _su_user=None,  # type: ignore[arg-type]  # None: no su, whatever the op says
            _doas=False,
            _dzdo=False,
        )
        temp = f"{private}/{temp.rsplit('/', 1)[-1]}"
    yield FileUploadCommand(BytesIO(content), path, remote_temp_filename=temp)


@operation()
def secret_file(src: Secret, path: str, uid: int = 0, gid: int = 0, mode: str = "0600"):
    """Upload a file whose content must not be printed; idempotent by sha1 and numeric owner."""
    content = src.reveal()
    remote = host.get_fact(NumericStat, path=path)
    if not remote or remote["sha1"] != hashlib.sha1(content).hexdigest():
        yield from upload(content, path)
        yield StringCommand("chown", f"{uid}:{gid}", path)
        yield StringCommand("chmod", mode, path)
        return
    if (remote["uid"], remote["gid"]) != (str(uid), str(gid)):
        yield StringCommand("chown", f"{uid}:{gid}", path)
    if int(remote["mode"], 8) != int(mode, 8):
        yield StringCommand("chmod", mode, path)


def _expect_packages() -> None:
    from pyinfra.facts.deb import DebPackages

    expect_at_prepare(DebPackages)


_expect_packages()
_refreshed: set[str] = set()  # hosts whose apt lists this run already refreshes


def refresh_apt_for(packages: list[str]) -> None:
    """Refresh apt's package lists once per run, and only when one of `packages` is
    missing: a refresh on every run would make no deploy a no-op."""
    from pyinfra.facts.deb import DebPackages
    from pyinfra.operations import apt

    installed = host.get_fact(DebPackages)
    if host.name in _refreshed or all(p in installed for p in packages):
        return
    _refreshed.add(host.name)
    apt.update(name="Refresh apt's package lists (packages are missing)")
