"""regops-token: the token service of a regops registry host, and its web pages.

Its own small package, deployed to registry hosts as plain files and run by
Debian's python3 with python3-cryptography, python3-bcrypt and python3-jinja2:
nothing from the operator toolkit, nothing from the internet. `rules` decides
who may do what, `jws` signs tokens, `server` answers the registry's token
protocol; `web` serves the pages from what `catalog` reads of the registry
(`backend`) and `manifests` parses.
"""

__version__ = "0.1.0"
