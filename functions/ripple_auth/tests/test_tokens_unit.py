"""Token checks with a trusted test key (pure logic: the JWKS fetch is a function returning it)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from jwcrypto import jwk

from ripple_auth import Authenticator, Problem, TokenSettings, require_roles
from ripple_auth.samples import publisher_claims, signed_token, signing_key

ISSUER = "http://127.0.0.1:18180/realms/ripple"


class Realm:
    """A signing key, the JWKS that publishes it, and a count of fetches."""

    def __init__(self) -> None:
        self.keys = [signing_key()]
        self.fetches = 0
        self.down = False

    def jwks(self) -> dict:
        self.fetches += 1
        if self.down:
            raise ConnectionError("keycloak is down")
        return {"keys": [k.export_public(as_dict=True) for k in self.keys]}

    def token(self, key: jwk.JWK | None = None, alg: str = "RS256", **overrides) -> str:
        return signed_token(publisher_claims(ISSUER, **overrides), key or self.keys[0], alg)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def realm() -> Realm:
    return Realm()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(monkeypatch, realm, clock) -> Authenticator:
    monkeypatch.setenv("KEYCLOAK_URL", "http://127.0.0.1:18180")
    monkeypatch.setenv("JWKS_REFRESH_MIN_SECONDS", "30")
    return Authenticator(TokenSettings.from_environment(), fetch_jwks=realm.jwks, clock=clock)


def reason_of(auth: Authenticator, token: str) -> tuple[int, str]:
    with pytest.raises(Problem) as caught:
        auth.authenticate(f"Bearer {token}")
    return caught.value.status, caught.value.reason


def test_valid_token_gives_tenant_and_roles(auth, realm):
    principal = auth.authenticate(f"Bearer {realm.token()}")
    assert principal.tenant == "acme"
    assert principal.roles == {"orders.publish"}
    require_roles(principal, ["orders.publish"])
    with pytest.raises(Problem) as caught:
        require_roles(principal, ["payments.publish"])
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"iss": "http://127.0.0.1:18180/realms/intruder"}, "issuer"),
        ({"aud": "account"}, "audience"),
        ({"typ": "ID"}, "token_type"),
        ({"exp": None}, "claims"),
    ],
)
def test_signed_token_with_a_bad_claim_is_401(auth, realm, overrides, reason):
    assert reason_of(auth, realm.token(**overrides)) == (401, reason)


def test_expiry_within_leeway_is_accepted(auth, realm):
    principal = auth.authenticate(f"Bearer {realm.token(exp=int(time.time()) - 5)}")
    assert principal.tenant == "acme"  # expired 5 s ago, inside the leeway: still this client


def test_token_without_tenant_is_403(auth, realm):
    assert reason_of(auth, realm.token(tenant=None)) == (403, "no_tenant")


def test_algorithm_outside_the_allow_list_is_401(auth, realm):
    hmac = jwk.JWK.generate(kty="oct", size=256, kid="k1")
    assert reason_of(auth, realm.token(key=hmac, alg="HS256")) == (401, "algorithm")


def test_wrong_signature_is_401(auth, realm):
    other = jwk.JWK.generate(kty="RSA", size=2048, kid="k1")
    assert reason_of(auth, realm.token(key=other)) == (401, "signature")


def test_unknown_kid_refreshes_once_per_interval(auth, realm, clock):
    auth.authenticate(f"Bearer {realm.token()}")
    assert realm.fetches == 1
    stranger = jwk.JWK.generate(kty="RSA", size=2048, kid="stranger")
    for _ in range(5):
        assert reason_of(auth, realm.token(key=stranger)) == (401, "unknown_kid")
    assert realm.fetches == 1, "refreshes are rate-limited: the first fetch was just now"
    clock.now += 31
    assert reason_of(auth, realm.token(key=stranger)) == (401, "unknown_kid")
    assert realm.fetches == 2


def test_concurrent_first_requests_wait_for_the_first_fetch(monkeypatch, realm, clock):
    # A cold-started instance: its cache is empty and several requests arrive at once. Those that
    # find the fetch under way wait for it instead of answering 401 unknown_kid.
    monkeypatch.setenv("KEYCLOAK_URL", "http://127.0.0.1:18180")
    fetching, release = threading.Event(), threading.Event()

    def slow_jwks() -> dict:
        fetching.set()
        release.wait(10)
        return realm.jwks()

    auth = Authenticator(TokenSettings.from_environment(), fetch_jwks=slow_jwks, clock=clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(auth.authenticate, f"Bearer {realm.token()}")
        fetching.wait(10)
        others = [pool.submit(auth.authenticate, f"Bearer {realm.token(sub=f'u-{n}')}") for n in range(3)]
        release.set()
        principals = [first.result(10), *(other.result(10) for other in others)]
    assert [p.tenant for p in principals] == ["acme"] * 4
    assert realm.fetches == 1, "the waiting requests used the fetch they waited for"


def test_rotated_key_is_picked_up(auth, realm, clock):
    auth.authenticate(f"Bearer {realm.token()}")
    realm.keys.append(jwk.JWK.generate(kty="RSA", size=2048, kid="k2", use="sig"))
    clock.now += 31
    assert auth.authenticate(f"Bearer {realm.token(key=realm.keys[1])}").tenant == "acme"


def test_known_keys_survive_keycloak_outage(auth, realm, clock):
    auth.authenticate(f"Bearer {realm.token()}")
    realm.down = True
    clock.now += 31
    stranger = jwk.JWK.generate(kty="RSA", size=2048, kid="stranger")
    assert reason_of(auth, realm.token(key=stranger)) == (401, "unknown_kid")
    assert auth.authenticate(f"Bearer {realm.token()}").tenant == "acme"
    assert auth.keys_loaded


def test_encryption_keys_are_not_used_for_signatures(realm, clock):
    # Keycloak also publishes an RSA-OAEP key (use "enc"); a token naming it is not trusted.
    enc = jwk.JWK.generate(kty="RSA", size=2048, kid="enc")

    def jwks() -> dict:
        return {"keys": [*realm.jwks()["keys"], enc.export_public(as_dict=True) | {"use": "enc"}]}

    auth = Authenticator(TokenSettings.from_environment(), fetch_jwks=jwks, clock=clock)
    assert reason_of(auth, realm.token(key=enc)) == (401, "unknown_kid")


def test_verified_tokens_are_cached_until_they_expire(monkeypatch, realm, clock):
    monkeypatch.setenv("TOKEN_LEEWAY_SECONDS", "0")
    auth = Authenticator(TokenSettings.from_environment(), fetch_jwks=realm.jwks, clock=clock)
    token = realm.token(exp=int(time.time()) + 60)
    first = auth.authenticate(f"Bearer {token}")
    verify = auth._verify
    monkeypatch.setattr(auth, "_verify", lambda t: pytest.fail("a cached token was verified again"))
    assert auth.authenticate(f"Bearer {token}") is first
    monkeypatch.setattr(auth, "_verify", verify)
    later = time.time() + 120
    monkeypatch.setattr("ripple_auth.tokens.time.time", lambda: later)
    assert reason_of(auth, token) == (401, "expired")
