"""The one error convention of regops.

Every failure a user can act on is a `RegopsError`: its message is one line
(further lines are indented detail) and it carries the exit status the CLI
ends with. The CLI turns it into `regops: error: ...` on stderr, never a
traceback (`REGOPS_DEBUG=1` shows one).

Exit status: 0 ok; 1 an operation failed or was refused; 2 bad usage or bad
data, and nothing was changed.
"""

from __future__ import annotations

FAILED = 1
USAGE = 2


class RegopsError(Exception):
    """A failure to report as one line; `code` is the exit status."""

    code = FAILED

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(RegopsError):
    """Bad usage or bad data, found before anything was changed."""

    code = USAGE
