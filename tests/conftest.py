"""Settings for every test run, whatever the layer."""

from __future__ import annotations

import os

# pyinfra's @fake connector sleeps 0.5-0.9 s per command to look like a real host;
# the plan tests (tests/unit) run hundreds of commands on it and want none of that.
os.environ.setdefault("PYINFRA_FAKE_DELAY", "0")
os.environ.setdefault("PYINFRA_FAKE_DELAY_JITTER", "0")
