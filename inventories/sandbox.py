"""pyinfra inventory for the hosts `regops sandbox up` made.

Usage: `REGOPS_SANDBOX=NAME pyinfra inventories/sandbox.py ...` (default name
"regops"). Hosts, ports and keys are read from the sandbox state (and live
`docker inspect`), so nothing here goes stale when the sandbox is remade.
"""

from pyinfra.api.exceptions import InventoryError as _InventoryError

from regops.sandbox.hosts import inventory_hosts as _inventory_hosts
from regops.sandbox.hosts import status as _status
from regops.sandbox.model import SandboxError as _SandboxError
from regops.sandbox.model import default_name as _default_name

try:
    _doc = _status(_default_name())
except _SandboxError as _e:
    raise _InventoryError(str(_e)) from None

sandbox = _inventory_hosts(_doc)
bookworm = [h["name"] for h in _doc["hosts"] if h["distro"] == "bookworm"]
trixie = [h["name"] for h in _doc["hosts"] if h["distro"] == "trixie"]
