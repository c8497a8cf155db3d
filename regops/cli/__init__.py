"""The `regops` command line: one module per group of commands.

Every command fails the same way: a `RegopsError` (or a local OS problem such
as a missing file) becomes one `regops: error:` line and the documented exit
status, never a traceback; `REGOPS_DEBUG=1` shows the traceback of anything
unexpected.
"""

from __future__ import annotations

import os
from typing import Any

import click

from regops import __version__
from regops.cli.common import fail
from regops.errors import RegopsError


class RegopsGroup(click.Group):
    """The error convention, applied once for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RegopsError as error:
            fail(str(error), error.code)
        except OSError as error:  # a local file, tool or socket problem, not a bug
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}", 1)
        except Exception as error:
            if os.environ.get("REGOPS_DEBUG"):
                raise
            fail(
                f"unexpected {type(error).__name__}: {error} (REGOPS_DEBUG=1 shows where)", 1
            )


@click.group(cls=RegopsGroup)
@click.version_option(__version__, prog_name="regops")
def main() -> None:
    """Provision and operate private Docker registries."""


def _register() -> None:
    from regops.cli import access, check, deploy, hosts, images, sandbox

    for module in (deploy, sandbox, images, hosts, access, check):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
