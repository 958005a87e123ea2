'use strict';

// The classic "JWT + Redis denylist" Express pattern, rebuilt on the jwtdeny module and its
// package (clients/node): the app does not verify tokens itself nor build `userId + iat` keys.
// `jwtdeny.express()` sends the bearer token to Redis (JWTDENY.CHECK <token> WITHCLAIMS), where
// jwtdeny verifies the signature and claims and consults the denylist in one round trip; the
// routes then revoke with jwtdeny.revoke / revokeAll / logout.
//
// POST /backchannel-logout is the OpenID Connect Back-Channel Logout endpoint: the identity
// provider posts a signed logout token there when a user signs out at the provider (or an
// admin ends the session), and jwtdeny validates it and ends that session (`sid`) or every
// session of the user (`sub` only).

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const express = require('express');
const { createJwtdeny, JwtdenyError } = require('jwtdeny');

const DEFAULT_JWKS_FILE = path.resolve(__dirname, '..', 'jwks.json');
const DEFAULT_KID = 'demo-hs256';

// Demo users for /login. A real app checks a password hash from its user store.
const DEMO_USERS = { alice: 'wonderland', bob: 'builder' };

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// Reads the HS256 (`oct`) key with the given kid from a JWKS file: the same file
// redis-server loads with `jwtdeny.keys-file`, so the tokens minted here verify there.
function loadSigningKey(jwksFile = DEFAULT_JWKS_FILE, kid = DEFAULT_KID) {
  const jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
  const jwk = (jwks.keys || []).find((k) => k.kid === kid);
  if (!jwk) throw new Error(`no key with kid ${JSON.stringify(kid)} in ${jwksFile}`);
  if (jwk.kty !== 'oct' || typeof jwk.k !== 'string' || (jwk.alg && jwk.alg !== 'HS256')) {
    throw new Error(`key ${JSON.stringify(kid)} in ${jwksFile} is not an HS256 oct key`);
  }
  return { kid, secret: Buffer.from(jwk.k, 'base64url') };
}

// Mints a compact HS256 JWS with node's crypto. `claims` is used as given (sub, iat, exp, ...).
function mintToken(key, claims) {
  const header = { alg: 'HS256', typ: 'JWT', kid: key.kid };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = crypto.createHmac('sha256', key.secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

// Back-Channel Logout 1.0 section 2.8: neither answer may be cached.
function logoutResponse(res, status, body) {
  res.set('Cache-Control', 'no-store');
  return res.status(status).json(body);
}

function passwordMatches(expected, given) {
  // Compare digests so that timingSafeEqual gets equal lengths.
  const a = crypto.createHash('sha256').update(String(expected)).digest();
  const b = crypto.createHash('sha256').update(String(given)).digest();
  return crypto.timingSafeEqual(a, b);
}

// createApp(client, options) -> Express app.
//   client: a connected node-redis (v4/v5) client or cluster, or ioredis. Create node-redis
//           clients with `disableOfflineQueue: true` so requests fail fast (503) while Redis
//           is unreachable instead of waiting in the offline queue.
//   options.jwksFile / options.kid: the signing key for /login (default ../jwks.json, demo-hs256).
//   options.key: a { kid, secret } signing key, instead of reading jwksFile.
//   options.users: { username: password } for /login (default: the demo users).
//   options.ttlSeconds: lifetime of minted tokens (default 900).
//   options.prefix: the server's jwtdeny.prefix (for the keyed commands on a cluster).
// jwtdeny.logout-audience must be set on the server (the OIDC client id the provider puts in
// the logout token's aud) for /backchannel-logout to accept anything, and jwtdeny.max-lifetime
// for it to end one session rather than all of the user's.
function createApp(client, options = {}) {
  const key = options.key || loadSigningKey(options.jwksFile, options.kid);
  const users = options.users || DEMO_USERS;
  const ttlSeconds = options.ttlSeconds || 900;
  const jwtdeny = createJwtdeny(client, { prefix: options.prefix });
  // 401 (RFC 6750 WWW-Authenticate) for a missing, refused or revoked token, 503 when Redis
  // cannot answer; otherwise req.auth is the verified claims and req.token the token.
  const authenticate = jwtdeny.express();

  // A route's own call failed after the middleware passed it: Redis went away in between.
  const unavailable = (res, err) => {
    console.error(`jwtdeny example: redis call failed: ${err.message}`);
    return res.status(503).json({
      error: 'unavailable', error_description: 'the request cannot be served now; try again later', code: 'UNAVAILABLE',
    });
  };

  const app = express();
  app.use(express.json());

  app.post('/login', (req, res) => {
    const { username, password } = req.body || {};
    if (typeof username !== 'string' || !Object.hasOwn(users, username) ||
        !passwordMatches(users[username], password)) {
      return res.status(401).json({ error: 'bad credentials' });
    }
    const iat = Math.floor(Date.now() / 1000);
    // Like an identity provider, each login is a session with its own id: a back-channel
    // logout naming it ends this login's tokens and no other.
    const sid = crypto.randomUUID();
    const token = mintToken(key, { sub: username, sid, iat, exp: iat + ttlSeconds });
    return res.json({ token, token_type: 'Bearer', expires_in: ttlSeconds });
  });

  app.get('/me', authenticate, (req, res) => res.json(req.auth));

  // Revokes this token only (jwtdeny keys the entry by sub and iat, and expires it with the token).
  app.post('/logout', authenticate, async (req, res) => {
    try {
      return res.json({ revoked: await jwtdeny.revoke(req.token) });
    } catch (err) {
      return unavailable(res, err);
    }
  });

  // Revokes every token of this subject issued up to now (its iat <= the cutoff).
  app.post('/logout-all', authenticate, async (req, res) => {
    if (typeof req.auth.sub !== 'string' || req.auth.sub === '') {
      return res.status(400).json({ error: 'token has no sub' });
    }
    try {
      return res.json({ cutoff: await jwtdeny.revokeAll(req.auth.sub) });
    } catch (err) {
      return unavailable(res, err);
    }
  });

  // OpenID Connect Back-Channel Logout: the provider posts `logout_token` as a form field.
  // 200 once jwtdeny has ended what it names (or had already: a replayed token is harmless);
  // 400 with an OAuth-style error body otherwise, which tells the provider the logout failed.
  app.post('/backchannel-logout', express.urlencoded({ extended: false, limit: '64kb' }),
    async (req, res) => {
      // Only the form the spec defines: the app-wide JSON parser must not let a JSON body in.
      const form = req.is('application/x-www-form-urlencoded');
      const token = form && req.body ? req.body.logout_token : undefined;
      if (typeof token !== 'string' || token === '') {
        return logoutResponse(res, 400, {
          error: 'invalid_request', error_description: 'logout_token is missing',
        });
      }
      try {
        return logoutResponse(res, 200, { ended: await jwtdeny.logout(token) });
      } catch (err) {
        if (err instanceof JwtdenyError) {
          return logoutResponse(res, 400, { error: 'invalid_request', error_description: err.message });
        }
        // Not the provider's fault (Redis down, logout-audience not configured, ...): still a
        // failed logout, which section 2.8 answers 400; the details go to the log only.
        console.error(`jwtdeny example: back-channel logout failed: ${err.message}`);
        return logoutResponse(res, 400, {
          error: 'temporarily_unavailable', error_description: 'the logout could not be recorded',
        });
      }
    });
  // A body the form parser refuses (too large, bad encoding) is a failed logout too.
  app.use('/backchannel-logout', (err, req, res, next) => {
    if (res.headersSent) return next(err);
    return logoutResponse(res, 400, { error: 'invalid_request', error_description: err.message });
  });

  return app;
}

module.exports = createApp;
Object.assign(module.exports, { createApp, loadSigningKey, mintToken });
