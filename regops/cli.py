"""The `regops` command line: sandbox hosts and day-2 operations."""

from __future__ import annotations

import click

from regops import __version__


@click.group()
@click.version_option(__version__, prog_name="regops")
def main() -> None:
    """Provision and operate private Docker registries."""


def _register() -> None:
    from regops.sandbox import sandbox

    main.add_command(sandbox)


_register()


if __name__ == "__main__":
    main()
