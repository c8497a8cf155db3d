"""The `regops` command line: sandbox hosts and day-2 operations."""

from __future__ import annotations

import importlib

import click

from regops import __version__

# Modules that contribute commands: each exports COMMANDS, a list of click commands.
COMMAND_MODULES = ("regops.sandbox", "regops.cli_images", "regops.cli_hosts", "regops.compliance")


@click.group()
@click.version_option(__version__, prog_name="regops")
def main() -> None:
    """Provision and operate private Docker registries."""


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        for command in getattr(module, "COMMANDS", [getattr(module, "sandbox", None)]):
            if command is not None:
                main.add_command(command)


_register()


if __name__ == "__main__":
    main()
