"""Periodic compliance checks of deployed registry hosts (`regops check`).

The checks are in `regops.compliance.checks`, one module per concern, each
registered by `@check` with its metadata beside its function; `CHECKS` holds
them in order, and `regops check --list --markdown` prints them as the table
of docs/reference/checks.md.
"""
