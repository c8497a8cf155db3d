"""Periodic compliance checks of deployed registry hosts (`regops check`).

The checks and their references are in `regops.compliance.checks.CHECKS`;
`regops check --list --markdown` prints them as the README's table.
"""
