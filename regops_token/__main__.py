"""python3 -m regops_token --config /etc/regops/token/config.json"""

import argparse

from regops_token.http import serve

parser = argparse.ArgumentParser(prog="regops-token", description=__doc__)
parser.add_argument("--config", required=True, help="the service's JSON config")
serve(parser.parse_args().config)
