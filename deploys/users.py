"""Roll out registry users without downtime: only the account and the htpasswd file.

    pyinfra -y inventories/prod.py deploys/users.py

`regops users add|remove|passwd` runs this after changing the operator-side
password files. The registry re-reads its htpasswd file when it changes, so
nothing is restarted.
"""

import sys as _sys
from pathlib import Path as _Path

# pyinfra puts the current directory on sys.path, not the repo: make `tasks` importable
# when this runs from elsewhere (regops runs it from the operator's directory).
_repo = str(_Path(__file__).resolve().parents[1])
if _repo not in _sys.path:
    _sys.path.insert(0, _repo)

from pyinfra import host  # noqa: E402

from regops.settings import load_or_exit  # noqa: E402
from tasks import account, auth  # noqa: E402

settings = load_or_exit(host.name, host.data.dict())

account.apply(settings)
auth.apply(settings)
