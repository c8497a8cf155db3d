"""`python3 -m regops_token.probe --config FILE`: what `regops check` asks a host about
its directory (token.directory). Bind as the service account and read the user base,
as the token service would, with its own code and config. Prints `ok URL`,
`down REASON` (never the password) or `none` when the config names no directory;
exit 0 for each, 1 when the config cannot be read. Without a directory it imports
no LDAP client, so hosts without python3-ldap3 answer too."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m regops_token.probe")
    parser.add_argument("--config", default="/etc/regops/token/config.json")
    args = parser.parse_args(argv)
    try:
        doc = json.loads(Path(args.config).read_text()).get("ldap")
    except (OSError, ValueError) as error:
        print(f"cannot read {args.config}: {error}")
        return 1
    if not doc:
        print(f"none: no directory (registry_ldap) in {args.config}")
        return 0
    from regops_token.directory import Directory, DirectoryConfig, DirectoryDown

    try:
        directory = Directory(DirectoryConfig.from_json(doc))
        print(f"ok {directory.probe()}")
        directory.close()
    except (DirectoryDown, ValueError) as error:
        print(f"down {error}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
