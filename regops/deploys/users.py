"""Roll out registry users without downtime: only the account and the htpasswd file.

    pyinfra -y inventories/prod.py regops/deploys/users.py

`regops users add|remove|passwd` runs this after changing the operator-side
password files. The registry re-reads its htpasswd file when it changes, so
nothing is restarted.
"""

from pyinfra import host

from regops.config.settings import load_or_exit
from regops.tasks import account, auth

settings = load_or_exit(host.name, host.data.dict())

account.apply(settings)
auth.apply(settings)
