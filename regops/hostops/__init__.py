"""Day-2 operations on deployed registry hosts, one module per feature: gc, certs,
status, users, trust; `remote` is how they reach hosts.

Changes to hosts go through pyinfra deploy files (`regops.deploy`), so the day-2
path and the deploy can never disagree; reads go over SSH (testinfra, honouring
sudo) and to the registry API from this machine. Parsing and aggregation are pure
functions, unit-tested without hosts. Passwords never reach output or the argv of
a subprocess.
"""
