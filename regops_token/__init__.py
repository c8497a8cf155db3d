"""regops-token: the token service of a regops registry host, and its web pages.

Its own small package, deployed to registry hosts as plain files and run by
Debian's python3 with python3-cryptography, python3-bcrypt and python3-jinja2:
nothing from the operator toolkit, nothing from the internet. `config` reads
its config; `authn` says who you are, `rules` what you may do, `tokens` signs
the answer (with `jws`); `http` answers the registry's token protocol and
`notify` its notifications, into the `audit` log, with what a client may send
bounded by `guard`; `web` serves the pages from
what `catalog` reads of the registry (`backend`) and `manifests` parses.
"""

__version__ = "0.3.0"
