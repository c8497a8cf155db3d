"""Make Docker client hosts trust a registry's CA and log in to it.

    REGOPS_TRUST_INVENTORY=inventories/prod.py REGOPS_TRUST_REGISTRY=registry.example.com \
    REGOPS_TRUST_USER=ci pyinfra -y inventories/clients.py regops/deploy/trust.py --limit clients

`regops trust` sets those variables and checks Docker on each client first.
The password is uploaded as a secret (never printed) into a root-only
directory, fed to `docker login --password-stdin` and removed at once. A cache
of Docker Hub (or any registry with `--mirror`) joins the daemon's
`registry-mirrors`, every other setting of daemon.json kept, taken in with a
reload (no container restarts).
"""

import sys
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from regops.deploy.operations import Secret, secret_file
from regops.errors import UsageError
from regops.hostops.trust import merge_mirror, trust_login_command, trust_target_from_env
from regops.hostpaths import DAEMON_JSON, TRUST_DIR, certs_d

try:
    target = trust_target_from_env()
except UsageError as _error:
    print(f"regops: error: {_error}", file=sys.stderr)
    raise SystemExit(2) from None

if target.ca_pem is not None:
    trust_dir = certs_d(target.address)
    files.directory(name=f"Create Docker's trust directory for {target.address}",
                    path=trust_dir, user="root", group="root", mode="0755")
    files.put(name=f"Trust the CA of {target.address}", src=StringIO(target.ca_pem.decode()),
              dest=f"{trust_dir}/ca.crt", user="root", group="root", mode="0444")  # CIS 3.x

files.directory(name=f"Create {TRUST_DIR} (root only) for the login password",
                path=TRUST_DIR, user="root", group="root", mode="0700")
password_file = f"{TRUST_DIR}/{target.address.replace(':', '_')}.password"
secret_file(name=f"Upload the password of {target.user} for a moment",
            src=Secret(target.password + "\n"), path=password_file, mode="0600")
server.shell(name=f"Log in to {target.address} as {target.user} (docker login --password-stdin)",
             commands=[trust_login_command(target.address, target.user, password_file)])

if target.mirror is not None:
    lines = host.get_fact(FileContents, path=DAEMON_JSON)
    try:
        merged = merge_mirror(host.name, None if lines is None else "\n".join(lines),
                              target.mirror)
    except UsageError as _error:
        print(f"regops: error: {_error}", file=sys.stderr)
        raise SystemExit(2) from None
    if merged is not None:
        files.put(name=f"Add {target.mirror} to Docker's registry-mirrors (other settings kept)",
                  src=StringIO(merged), dest=DAEMON_JSON, user="root", group="root",
                  mode="0644")
        server.shell(name="Make Docker read its registry-mirrors again (a reload: no restart)",
                     commands=["systemctl reload docker"])
