"""ES256 JSON web tokens as the registry verifies them (distribution's token auth).

The header carries the signing certificate in `x5c`: the registry verifies the
chain up to its `rootcertbundle` (the token CA), so the signing key can be
replaced without touching the registry; this works the same on 2.8 and 3.x.
Only `cryptography` is needed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)


class TokenError(ValueError):
    """A token that is not ours, not intact or not valid now."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def sign(
    claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, chain: list[x509.Certificate]
) -> str:
    """A compact JWS over `claims`, ES256, with `x5c` naming the signing chain."""
    header = {
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain
        ],
    }
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def verify(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The claims of a token signed by `public_key`; TokenError otherwise (no time checks)."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(unb64url(header_b64))
        raw = unb64url(signature_b64)
    except (ValueError, TypeError):
        raise TokenError("not a token") from None
    if header.get("alg") != "ES256" or len(raw) != 64:
        raise TokenError("not an ES256 token")
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    try:
        public_key.verify(
            signature, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise TokenError("bad signature") from None
    claims = json.loads(unb64url(claims_b64))
    if not isinstance(claims, dict):
        raise TokenError("no claims")
    return claims
