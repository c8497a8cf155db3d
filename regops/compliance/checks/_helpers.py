"""What checks of more than one module share: file owners and modes, the container's
`docker inspect`, and the line a token check gives on an htpasswd host."""

from __future__ import annotations

from regops.compliance.checks._base import Context
from regops.compliance.facts import Stat
from regops.compliance.model import Verdict, fail, ok

NO_TOKEN_SERVICE = "registry_auth is htpasswd: no token service on this host"


def mode_problem(st: Stat | None, path: str, user: str, groups: set[str], max_mode: int) -> str:
    """'' when `st` exists with owner `user`, group in `groups`, no mode bit beyond `max_mode`."""
    if st is None:
        return f"{path} is missing"
    problems = []
    if st.user != user:
        problems.append(f"owner {st.user} (want {user})")
    if st.group not in groups and str(st.gid) not in groups:
        problems.append(f"group {st.group} (want {' or '.join(sorted(groups))})")
    if st.mode & ~max_mode & 0o7777:
        problems.append(f"mode {st.mode:04o} (want {max_mode:04o} or stricter)")
    return f"{path}: {', '.join(problems)}" if problems else ""


def file_check(c: Context, path: str, user: str, groups: set[str], max_mode: int) -> Verdict:
    st = c.facts.stat(path)
    problem = mode_problem(st, path, user, groups, max_mode)
    if problem:
        return fail(problem, f"redeploy, or chown {user}:{sorted(groups)[0]} and "
                             f"chmod {max_mode:04o} {path}")
    assert st is not None
    return ok(f"{path} {st.user}:{st.group} {st.mode:04o}")


def container_info(c: Context) -> dict:
    return c.facts.container()


def host_config(c: Context) -> dict:
    return container_info(c)["HostConfig"]
