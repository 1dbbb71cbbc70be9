"""Token attacks against the live gateway: each gets 401 with WWW-Authenticate, a missing role 403.

Keycloak's private key is out of reach, so attacks that need a validly signed token with a bad
claim (expired, not yet valid, wrong issuer) are signed with an attacker's key under the realm's
kid here (401 either way) and checked claim by claim with a trusted test key in
test_gateway_auth_unit.py.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from gateway_testkit import PAGE_TYPE, binary_headers, order, post
from jwcrypto import jwk, jwt

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


def signed(claims: dict, key: jwk.JWK, alg: str = "RS256", kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


@pytest.fixture(scope="module")
def real(publisher_token) -> tuple[dict, dict]:
    header, claims, _ = parts(publisher_token)
    return header, claims


@pytest.fixture(scope="module")
def realm_public_key(stack, real) -> jwk.JWK:
    keys = requests.get(f"{stack.issuer}/protocol/openid-connect/certs", timeout=10).json()["keys"]
    return jwk.JWK(**next(k for k in keys if k["kid"] == real[0]["kid"]))


@pytest.fixture(scope="module")
def attacker_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048)


def attacks(stack, real, realm_public_key, attacker_key, publisher_token) -> dict[str, str]:
    header, claims = real
    kid = header["kid"]
    now = int(time.time())
    h, p, s = publisher_token.split(".")
    # HS256 keyed with the realm's public key: the classic algorithm-confusion attack.
    public_pem = realm_public_key.export_to_pem()
    confused = jwk.JWK(kty="oct", k=b64(public_pem))
    return {
        "alg none": f"{b64(json.dumps(header | {'alg': 'none'}).encode())}.{p}.",
        "HS256 with the public key": signed(claims, confused, alg="HS256", kid=kid),
        "expired": signed(claims | {"exp": now - 3600, "iat": now - 4500}, attacker_key, kid=kid),
        "not yet valid": signed(claims | {"nbf": now + 3600}, attacker_key, kid=kid),
        "wrong issuer": signed(
            claims | {"iss": f"{stack.keycloak_url}/realms/intruder"}, attacker_key, kid=kid
        ),
        "tampered payload": f"{h}.{b64(json.dumps(claims | {'tenant': 'globex'}).encode())}.{s}",
        "unknown kid": signed(claims, attacker_key, kid="attacker-key"),
        "no kid": signed(claims, attacker_key),
        "wrong audience": stack.client_token("ripple-noaudience"),
        "token of the intruder realm": stack.client_token("intruder", realm="intruder"),
        "garbage": "not-a-jwt",
    }


ATTACKS = [
    "alg none",
    "HS256 with the public key",
    "expired",
    "not yet valid",
    "wrong issuer",
    "tampered payload",
    "unknown kid",
    "no kid",
    "wrong audience",
    "token of the intruder realm",
    "garbage",
]


@pytest.fixture(scope="module")
def attack_tokens(stack, real, realm_public_key, attacker_key, publisher_token) -> dict[str, str]:
    return attacks(stack, real, realm_public_key, attacker_key, publisher_token)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_rejected_with_401(gateway, attack_tokens, attack):
    response = post(gateway, json.dumps(order()), binary_headers(attack_tokens[attack]))
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["type"] == "https://ripple.dev/problems/invalid-token"


def test_attack_reasons(gateway, attack_tokens):
    """The checks that can be told apart on the live realm fail for the right reason."""
    expected = {
        "alg none": "algorithm",
        "HS256 with the public key": "algorithm",
        "tampered payload": "signature",
        "unknown kid": "key",
        "token of the intruder realm": "key",
        "wrong audience": "aud",
    }
    for attack, word in expected.items():
        detail = post(gateway, json.dumps(order()), binary_headers(attack_tokens[attack])).json()["detail"]
        assert word in detail, f"{attack}: {detail}"


@pytest.mark.parametrize("scheme", ["", "Basic dXNlcjpwYXNz", "Bearer"])
def test_missing_or_non_bearer_credentials_get_401(gateway, scheme):
    headers = binary_headers(None) | ({"Authorization": scheme} if scheme else {})
    response = post(gateway, json.dumps(order()), headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_without_the_role_gets_403(stack, gateway):
    response = post(gateway, json.dumps(order()), binary_headers(stack.client_token("ripple-norole")))
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "https://ripple.dev/problems/forbidden"
    # bob may publish page views but not orders.
    bob = stack.user_token("bob")
    assert post(gateway, json.dumps(order()), binary_headers(bob)).status_code == 403
    page = post(gateway, b'{"sessionId":"s","path":"/"}', binary_headers(bob, PAGE_TYPE))
    assert page.status_code == 202, page.text


def test_known_keys_keep_working_while_keycloak_is_down(stack, gateway, publisher_token, attack_tokens):
    # The gateway has the realm's keys from earlier requests. The token used during the outage is
    # issued just before it and never sent before, so it is verified (not found in the token cache).
    assert post(gateway, json.dumps(order()), binary_headers(publisher_token)).status_code == 202
    fresh = stack.client_token()
    with stack.stopped("keycloak"):
        response = post(gateway, json.dumps(order()), binary_headers(fresh))
        assert response.status_code == 202, response.text
        # An unknown kid cannot be looked up now: still a prompt 401, never a hang or a 5xx.
        forged = post(gateway, json.dumps(order()), binary_headers(attack_tokens["unknown kid"]), timeout=15)
        assert forged.status_code == 401
    assert post(gateway, json.dumps(order()), binary_headers(publisher_token)).status_code == 202
