"""Roll out users and robot secrets without downtime: only the accounts and the
files of hashes (the token service's users and robots, or the registry's htpasswd).

    pyinfra -y inventories/prod.py regops/deploy/users.py

`regops users add|remove|passwd` and `regops robots rotate|revoke` run this after
changing the operator-side secret files. The token service (or the registry)
re-reads its files when they change, so nothing is restarted.
"""

from pyinfra import host

from regops.config.settings import load_or_exit
from regops.deploy.tasks import account, auth

settings = load_or_exit(host.name, host.data.dict())

account.apply(settings)
auth.apply(settings)
