"""Bearer-token verification against the realm's JWKS, cached in the process.

Tokens are checked locally (no call to Keycloak per request): signature with an allow-listed
asymmetric algorithm, `iss`, `aud`, `exp`, `nbf`, `typ` Bearer (rules out ID tokens), then the
tenant claim and roles. The key set is fetched once and again only when a token names an
unknown `kid` (key rotation), at most once per JWKS_REFRESH_MIN_SECONDS: a flood of forged kids
cannot hammer Keycloak, and while Keycloak is down already-known keys keep working.
The key set is one GET of the realm's certs endpoint (the one python-keycloak's
`KeycloakOpenID.certs` calls) with the standard library, and tokens are checked with jwcrypto
directly (what its `decode_token` wraps): python-keycloak imports httpx, rich, pygments and
requests-toolbelt, ~40 % of the gateway's import time, for those two calls, and a
scale-to-zero function pays that on every cold start.

Settings (environment, read by TokenSettings.from_environment):

| variable | default | what |
|---|---|---|
| KEYCLOAK_URL | http://127.0.0.1:18180 | Keycloak base URL the keys are fetched from |
| KEYCLOAK_REALM | ripple | realm whose tokens are accepted |
| TOKEN_ISSUER | <KEYCLOAK_URL>/realms/<realm> | expected `iss` (set when clients see another Keycloak URL) |
| TOKEN_AUDIENCE | ripple-gateway | expected `aud` |
| TOKEN_ALGORITHMS | RS256,RS384,RS512,ES256,ES384,ES512,PS256,PS384,PS512 | accepted JWS algorithms |
| TOKEN_LEEWAY_SECONDS | 30 | clock skew tolerated on exp/nbf |
| TENANT_CLAIM | tenant | token claim holding the tenant |
| JWKS_REFRESH_MIN_SECONDS | 30 | at most one JWKS fetch per this many seconds (unknown kid) |
| KEYCLOAK_TIMEOUT_SECONDS | 3 | timeout of a JWKS fetch |
| TOKEN_CACHE_SIZE | 4096 | verified tokens remembered until they expire (0: verify every request) |
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException, base64url_decode, json_decode
from prometheus_client import Counter

from ripple_settings import ConfigError, env_int

from .problems import Problem

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = "RS256,RS384,RS512,ES256,ES384,ES512,PS256,PS384,PS512"
# Symmetric and unsigned algorithms are never acceptable: a function only holds public keys.
FORBIDDEN_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}
# While no key is loaded at all (startup, Keycloak not up yet), readiness retries this often.
EMPTY_RETRY_S = 2.0

AUTH_FAILURES = Counter(
    "ripple_auth_failures_total", "Rejected tokens (401) and missing roles (403) by reason", ["reason"]
)
JWKS_REFRESHES = Counter(
    "ripple_auth_jwks_refreshes_total", "JWKS fetches from Keycloak by outcome", ["outcome"]
)


@dataclass(frozen=True)
class TokenSettings:
    keycloak_url: str
    realm: str
    issuer: str
    audience: str
    algorithms: list[str]
    leeway_s: int = 30
    tenant_claim: str = "tenant"
    jwks_refresh_min_s: int = 30
    keycloak_timeout_s: int = 3
    token_cache_size: int = 4096

    @classmethod
    def from_environment(cls) -> TokenSettings:
        keycloak_url = os.environ.get("KEYCLOAK_URL", "http://127.0.0.1:18180").rstrip("/")
        realm = os.environ.get("KEYCLOAK_REALM", "ripple")
        algorithms = [
            a.strip() for a in os.environ.get("TOKEN_ALGORITHMS", DEFAULT_ALGORITHMS).split(",") if a
        ]
        bad = FORBIDDEN_ALGORITHMS.intersection(algorithms)
        if bad or not algorithms:
            raise ConfigError(
                f"TOKEN_ALGORITHMS must list asymmetric JWS algorithms only (got {sorted(bad) or 'none'}): "
                f"use e.g. {DEFAULT_ALGORITHMS}."
            )
        return cls(
            keycloak_url=keycloak_url,
            realm=realm,
            issuer=os.environ.get("TOKEN_ISSUER") or f"{keycloak_url}/realms/{realm}",
            audience=os.environ.get("TOKEN_AUDIENCE", "ripple-gateway"),
            algorithms=algorithms,
            leeway_s=env_int("TOKEN_LEEWAY_SECONDS", 30),
            tenant_claim=os.environ.get("TENANT_CLAIM", "tenant"),
            jwks_refresh_min_s=env_int("JWKS_REFRESH_MIN_SECONDS", 30),
            keycloak_timeout_s=env_int("KEYCLOAK_TIMEOUT_SECONDS", 3, 1),
            token_cache_size=env_int("TOKEN_CACHE_SIZE", 4096),
        )


@dataclass(frozen=True)
class Principal:
    subject: str
    client: str
    tenant: str
    roles: frozenset[str]


def _unauthorized(reason: str, detail: str) -> Problem:
    AUTH_FAILURES.labels(reason=reason).inc()
    description = detail.replace('"', "'")
    return Problem(
        401,
        "invalid-token",
        detail,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
        reason=reason,
    )


def forbidden(reason: str, detail: str) -> Problem:
    AUTH_FAILURES.labels(reason=reason).inc()
    return Problem(
        403,
        "forbidden",
        detail,
        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        reason=reason,
    )


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _claims_reason(error: Exception) -> tuple[str, str]:
    message = str(error)
    for claim, reason in (("'iss'", "issuer"), ("'aud'", "audience"), ("'typ'", "token_type")):
        if claim in message:
            return reason, f"the token's {claim.strip(chr(39))} claim is not accepted here"
    return "claims", "the token lacks a required claim (iss, aud, exp, typ)"


class Authenticator:
    def __init__(
        self,
        settings: TokenSettings,
        fetch_jwks: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._fetch_jwks = fetch_jwks or self._fetch_certs
        self._clock = clock
        self._keys: dict[str, jwk.JWK] = {}
        self._lock = threading.Lock()
        self._generation = 0  # how many times the key set was replaced
        self._last_attempt = float("-inf")
        self._check_claims = {"iss": settings.issuer, "aud": settings.audience, "exp": None, "typ": "Bearer"}
        # token -> (principal, exp) of tokens that passed every check. A client reuses its token
        # for many requests; a hit skips the signature check (half of a request's CPU time).
        self._verified: dict[str, tuple[Principal, float]] = {}

    def _fetch_certs(self) -> Mapping[str, Any]:
        url = f"{self._settings.keycloak_url}/realms/{self._settings.realm}/protocol/openid-connect/certs"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self._settings.keycloak_timeout_s) as response:
            return json.load(response)

    @property
    def keys_loaded(self) -> bool:
        return bool(self._keys)

    def refresh(self) -> bool:
        """Fetch the key set unless one was fetched recently; True if the set was replaced."""
        interval = (
            self._settings.jwks_refresh_min_s
            if self._keys
            else min(EMPTY_RETRY_S, self._settings.jwks_refresh_min_s)
        )
        # A thread that finds a fetch under way waits for it (bounded by the fetch's own timeout)
        # and uses its result: answering from the cache meanwhile turned the first concurrent
        # requests of a cold-started instance, whose cache is still empty, into 401 unknown_kid.
        generation = self._generation
        if not self._lock.acquire(timeout=self._settings.keycloak_timeout_s + 1):
            return False
        try:
            if self._generation != generation:
                return True  # replaced while this thread waited
            now = self._clock()
            if now - self._last_attempt < interval:
                return False
            self._last_attempt = now
            try:
                document = self._fetch_jwks()
                keys = {
                    str(item["kid"]): jwk.JWK(**item)
                    for item in document.get("keys", [])
                    if item.get("use", "sig") == "sig" and "kid" in item
                }
            except Exception as error:  # any transport or parse failure: keep the old keys
                JWKS_REFRESHES.labels(outcome="error").inc()
                log.warning("JWKS fetch from %s failed: %s", self._settings.keycloak_url, error)
                return False
            JWKS_REFRESHES.labels(outcome="ok").inc()
            if keys:
                self._keys = keys  # replaced atomically; readers never see a half-built dict
                self._generation += 1
            return bool(keys)
        finally:
            self._lock.release()

    def _key_for(self, kid: str) -> jwk.JWK | None:
        key = self._keys.get(kid)
        if key is None and self.refresh():
            key = self._keys.get(kid)
        return key

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal of a token that passed every check before and has not expired, else None.

        Never blocks: an asynchronous caller answers from here and hands a miss, which may fetch
        the realm's keys, to `authenticate` on a worker thread.
        """
        token = _bearer_token(authorization)
        if token is None:
            return None
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() <= expires + self._settings.leeway_s:
                return principal
            self._verified.pop(token, None)
        return None

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            AUTH_FAILURES.labels(reason="missing").inc()
            return self._raise_missing()
        token = _bearer_token(authorization)
        if token is None:
            raise _unauthorized("malformed", "send the token as 'Authorization: Bearer <token>'")
        principal = self.cached(authorization)
        if principal is not None:
            return principal
        principal, expires = self._verify(token)
        if self._settings.token_cache_size:
            if len(self._verified) >= self._settings.token_cache_size:
                self._verified.clear()  # crude but bounded; refills with the tokens in use
            self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            # Only the protected header, to pick the key; everything is verified below.
            header = json_decode(base64url_decode(token.split(".", 1)[0]))
            if not isinstance(header, dict):
                raise ValueError("header is not an object")
        except (ValueError, TypeError, UnicodeDecodeError):
            raise _unauthorized("malformed", "the bearer token is not a signed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self._settings.algorithms:
            raise _unauthorized("algorithm", f"the token's algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _unauthorized("unknown_kid", "the token names no signing key (kid)")
        key = self._key_for(kid)
        if key is None:
            raise _unauthorized("unknown_kid", "the token was not signed by a key of this realm")
        try:
            # What python-keycloak's decode_token does with a key: jwcrypto parses, then validates
            # the signature and the claims with the leeway.
            verified = jwt.JWT(jwt=token, algs=self._settings.algorithms, check_claims=self._check_claims)
            verified.leeway = self._settings.leeway_s
            verified.validate(key)
            claims = json_decode(verified.claims)
        except jwt.JWTExpired:
            raise _unauthorized("expired", "the token has expired: fetch a new one") from None
        except jwt.JWTNotYetValid:
            raise _unauthorized("not_yet_valid", "the token is not valid yet (nbf)") from None
        except (jwt.JWTInvalidClaimValue, jwt.JWTMissingClaim, jwt.JWTInvalidClaimFormat) as error:
            raise _unauthorized(*_claims_reason(error)) from None
        except jws.InvalidJWSSignature:
            raise _unauthorized("signature", "the token's signature does not verify") from None
        except (JWException, ValueError, TypeError):
            raise _unauthorized("malformed", "the bearer token could not be verified") from None
        # jwcrypto checks nbf only when it is in check_claims, which would make it mandatory;
        # Keycloak omits it, so it is checked here when present.
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int) or nbf > time.time() + self._settings.leeway_s):
            raise _unauthorized("not_yet_valid", "the token is not valid yet (nbf)")
        tenant = claims.get(self._settings.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise forbidden("no_tenant", f"the token carries no {self._settings.tenant_claim!r} claim")
        roles = (claims.get("realm_access") or {}).get("roles") or []
        principal = Principal(
            subject=str(claims.get("sub", "")),
            client=str(claims.get("azp", "")),
            tenant=tenant,
            roles=frozenset(r for r in roles if isinstance(r, str)),
        )
        return principal, float(claims["exp"])

    def _raise_missing(self) -> Principal:
        # RFC 6750: no error code when the request carried no credentials at all.
        raise Problem(
            401,
            "invalid-token",
            "send a bearer token from Keycloak: 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": f'Bearer realm="{self._settings.realm}"'},
            reason="missing",
        )


def require_roles(principal: Principal, roles: Iterable[str]) -> None:
    missing = sorted(set(roles) - principal.roles)
    if missing:
        raise forbidden("role", f"the token lacks the role(s) {', '.join(missing)} needed here")
