"""Host-side logic of regops, run by the registry hosts' own python3.

Installed verbatim under /usr/local/lib/regops/ (only constants are rendered, into
a JSON file the code reads), so it is tested here as it runs there. Standard
library only: hosts install nothing from PyPI.
"""
