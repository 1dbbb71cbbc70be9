"""Tokens shaped like those Keycloak issues to ripple's publisher client, signed with a local key.

For the unit tests of the token checks and for the gateway benchmark that runs without Keycloak
(loadtest/gateway/inprocess.py): the claims the gateway checks are written here once.
"""

from __future__ import annotations

import time
from typing import Any

from jwcrypto import jwk, jwt


def signing_key(kid: str = "k1") -> jwk.JWK:
    """A fresh RSA key as a realm publishes it in its JWKS."""
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, use="sig")


def publisher_claims(
    issuer: str, audience: str = "ripple-gateway", lifetime_s: int = 300, **overrides: Any
) -> dict[str, Any]:
    """The claims of a publisher's access token (tenant acme, role orders.publish), issued now;
    `overrides` replace or add claims, and an override of None leaves that claim out."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "exp": now + lifetime_s,
        "iat": now,
        "typ": "Bearer",
        "sub": "u-1",
        "azp": "ripple-publisher",
        "tenant": "acme",
        "realm_access": {"roles": ["orders.publish"]},
    } | overrides
    return {name: value for name, value in claims.items() if value is not None}


def signed_token(claims: dict[str, Any], key: jwk.JWK, alg: str = "RS256") -> str:
    """The compact JWS of `claims`, signed with `key` (its kid in the header)."""
    token = jwt.JWT(header={"alg": alg, "kid": key.get("kid")}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()
