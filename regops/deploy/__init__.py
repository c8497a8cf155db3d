"""The deploy, as pyinfra runs it.

- Deploy files: `site.py` is the whole deploy (the repository's `deploy.py` links
  to it); `users.py` and `trust.py` are the day-2 rollouts that `regops users` and
  `regops trust` run. Shipped in the package, so an installed regops has them too.
- `tasks/`: one `@deploy` module per concern on a host.
- The pieces the tasks are made of: `facts.py` and `operations.py` (what pyinfra
  lacks), `units.py` (managed units), `render.py` (templates and specs).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_DEPLOY = HERE / "site.py"
USERS_DEPLOY = HERE / "users.py"
TRUST_DEPLOY = HERE / "trust.py"
