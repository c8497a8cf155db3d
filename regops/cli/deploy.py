"""`regops deploy`: the whole deploy, from wherever regops is installed.

The same as `pyinfra INVENTORY deploy.py` in a checkout, for an operator who
installed regops with pip or pipx and has no checkout: it runs the deploy file
the package ships. Everything after the inventory goes to pyinfra as it is.
"""

from __future__ import annotations

import os
import sys

import click

from regops.cli.common import inventory_option
from regops.deploy import SITE_DEPLOY
from regops.errors import UsageError


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@inventory_option
@click.argument("pyinfra_args", nargs=-1, type=click.UNPROCESSED)
def deploy(inventory: str, pyinfra_args: tuple[str, ...]) -> None:
    """Deploy registries to the inventory's hosts (pyinfra with the packaged deploy file).

    Extra arguments go to pyinfra, e.g. `regops deploy -i prod.py -y --limit reg1`.
    """
    if not os.path.isfile(inventory):
        raise UsageError(f"{inventory}: inventory: no such file")
    argv = [sys.executable, "-m", "pyinfra", inventory, str(SITE_DEPLOY), *pyinfra_args]
    os.execv(sys.executable, argv)


COMMANDS = [deploy]
