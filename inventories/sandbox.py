"""pyinfra inventory for the hosts `regops sandbox up` made.

Usage: `REGOPS_SANDBOX=NAME pyinfra inventories/sandbox.py ...` (default name
"regops"). Hosts, ports and keys are read from the sandbox state (and live
`docker inspect`), so nothing here goes stale when the sandbox is remade.
"""

import sys as _sys
from pathlib import Path as _Path

from pyinfra.api.exceptions import InventoryError as _InventoryError

# Work from a checkout even when regops is not pip-installed.
_repo = str(_Path(__file__).resolve().parents[1])
if _repo not in _sys.path:
    _sys.path.insert(0, _repo)

from regops import sandbox as _sandbox  # noqa: E402

try:
    _doc = _sandbox.status(_sandbox.default_name())
except _sandbox.SandboxError as _e:
    raise _InventoryError(str(_e)) from None

sandbox = _sandbox.inventory_hosts(_doc)
bookworm = [h["name"] for h in _doc["hosts"] if h["distro"] == "bookworm"]
trixie = [h["name"] for h in _doc["hosts"] if h["distro"] == "trixie"]
