"""What the operator's machine sees of a registry: probes to `registry_api_url` only.

Every probe connects to the host and port of the inventory's API URL and
nowhere else, sends no credentials and has a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from functools import cached_property

from regops.compliance.model import Unavailable
from regops.config.settings import Settings
from regops.registry import endpoint

TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    server_name: str  # what clients put in SNI and check the certificate against

    @classmethod
    def of(cls, s: Settings) -> Target:
        url = urllib.parse.urlsplit(s.api_url)
        if not url.hostname:
            raise ValueError(f"{s.host}: registry_api_url: no host in {s.api_url!r}")
        return cls(url.hostname, url.port or 443, s.registry_name)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _unverified() -> ssl.SSLContext:
    """For probes that send nothing secret: trust problems must not hide what is measured."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Probes:
    """Cached probes of one registry, so several checks share one connection each."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.target = Target.of(s)

    @cached_property
    def _served(self) -> bytes | str:
        try:
            with socket.create_connection((self.target.host, self.target.port),
                                          timeout=TIMEOUT) as raw, _unverified().wrap_socket(
                    raw, server_hostname=self.target.server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as error:
            return f"no TLS answer from {self.target}: {error}"
        if not der:
            return f"{self.target} sent no certificate"
        return ssl.DER_cert_to_PEM_cert(der).encode()

    def served_certificate(self) -> bytes:
        """The leaf certificate the registry serves, PEM."""
        served = self._served
        if isinstance(served, str):
            raise Unavailable(served)
        return served

    def trust_problem(self) -> str | None:
        """None if the served chain verifies against the CA clients use, for the registry name."""
        ca = endpoint.ca_file(self.s)
        try:
            context = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as error:
            raise Unavailable(f"cannot load the CA clients use ({ca}): {error}") from None
        try:
            with socket.create_connection((self.target.host, self.target.port),
                                          timeout=TIMEOUT) as raw, context.wrap_socket(
                    raw, server_hostname=self.target.server_name):
                return None
        except ssl.SSLCertVerificationError as error:
            return f"not trusted for {self.target.server_name}: {error.verify_message}"
        except (OSError, ssl.SSLError) as error:
            raise Unavailable(f"no TLS answer from {self.target}: {error}") from None

    def anonymous_status(self, path: str) -> int:
        """HTTP status of an unauthenticated GET."""
        connection = http.client.HTTPSConnection(self.target.host, self.target.port,
                                                 timeout=TIMEOUT, context=_unverified())
        try:
            connection.request("GET", path, headers={"Host": self._host_header()})
            return connection.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            raise Unavailable(f"no HTTP answer from {self.target}: {error}") from None
        finally:
            connection.close()

    def anonymous_page(self, path: str) -> tuple[int, dict[str, str]]:
        """(status, lower-cased headers) of an unauthenticated GET of a web page."""
        connection = http.client.HTTPSConnection(self.target.host, self.target.port,
                                                 timeout=TIMEOUT, context=_unverified())
        try:
            connection.request("GET", path, headers={"Host": self._host_header()})
            response = connection.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        except (OSError, http.client.HTTPException) as error:
            raise Unavailable(f"no HTTP answer from {self.target}: {error}") from None
        finally:
            connection.close()

    def anonymous_token(self, scopes: list[str]) -> tuple[dict, dict]:
        """(header, claims) of the token the token service gives anonymous for `scopes`,
        asked through the front door as a client without a login would."""
        query = urllib.parse.urlencode(
            [("service", self.s.registry_name)] + [("scope", scope) for scope in scopes]
        )
        connection = http.client.HTTPSConnection(self.target.host, self.target.port,
                                                 timeout=TIMEOUT, context=_unverified())
        try:
            connection.request("GET", f"/auth/token?{query}",
                               headers={"Host": self._host_header()})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise Unavailable(f"no HTTP answer from {self.target}: {error}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise Unavailable(f"/auth/token answered {response.status} to an anonymous request")
        try:
            token = json.loads(body)["token"]
            header, claims = (json.loads(_unb64(part)) for part in token.split(".")[:2])
        except (ValueError, KeyError, TypeError):
            raise Unavailable("/auth/token did not answer with a token") from None
        return header, claims

    def _host_header(self) -> str:
        return f"{self.target.server_name}:{self.s.port}"

    def tcp_open(self, port: int) -> bool:
        """Whether `port` on the API host accepts connections."""
        try:
            with socket.create_connection((self.target.host, port), timeout=3):
                return True
        except OSError:
            return False
