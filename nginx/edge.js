// Per-client rate-limit key for nginx (njs 0.7+, Debian's libnginx-mod-http-js).
//
// The key is derived from the bearer token's payload WITHOUT verifying its signature: nginx
// cannot check a Keycloak signature synchronously, and it does not need to. The key only chooses
// which bucket a request is counted in; the gateway verifies every token (signature, iss, aud,
// exp) and refuses forged ones. A forged or missing token cannot buy extra capacity, because the
// per-address zone is applied to every request as well: sending many different tokens from one
// address only spreads the requests over many per-client buckets, and they all still drain the
// same per-address bucket. The worst a forger can do is spend another subject's per-client
// budget, and only at the rate their own address is allowed.

import crypto from 'crypto';

// Keycloak access tokens are 1-2 KiB; anything far larger is not worth parsing.
const MAX_AUTHORIZATION_LENGTH = 16384;
const BEARER = /^Bearer\s+[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/i;

function claimsOf(r) {
    const authorization = r.headersIn.Authorization;
    if (!authorization || authorization.length > MAX_AUTHORIZATION_LENGTH) {
        return null;
    }
    const match = BEARER.exec(authorization);
    if (!match) {
        return null;
    }
    try {
        const claims = JSON.parse(Buffer.from(match[1], 'base64url').toString());
        return typeof claims === 'object' && claims !== null ? claims : null;
    } catch (e) {
        return null;
    }
}

function text(value) {
    return typeof value === 'string' ? value : '';
}

// The subject (a user, or a client's service account) identifies the caller; azp (the client id)
// is the fallback for tokens without one. Hashing gives a fixed-size key, so a token with a huge
// claim cannot fill the zone faster. Empty key = request not counted in the per-client zone.
function clientKey(r) {
    const claims = claimsOf(r);
    if (claims === null) {
        return '';
    }
    const subject = text(claims.sub) || text(claims.azp);
    if (!subject) {
        return '';
    }
    return crypto.createHash('sha256').update(text(claims.iss) + '\n' + subject).digest('base64url');
}

export default { clientKey };
