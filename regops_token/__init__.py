"""regops-token: the token service of a regops registry host.

Its own small package, deployed to registry hosts as plain files and run by
Debian's python3 with python3-cryptography and python3-bcrypt: nothing from
the operator toolkit, nothing from the internet. `rules` decides who may do
what, `jws` signs tokens, `server` answers the registry's token protocol.
"""

__version__ = "0.1.0"
