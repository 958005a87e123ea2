'use strict';
/**
 * jwtdeny for Node.js: check and revoke JWTs with the jwtdeny Redis module, from node-redis
 * (createClient, createCluster) or ioredis (Redis, Cluster), plus Express and Fastify guards.
 * No runtime dependencies: the Redis client is the application's.
 *
 * A cluster client gets the keyed forms (JWTDENY.KCHECK <entry-key> <subject-key> <token>),
 * whose keys route the command to the node that holds them; a standalone client gets the plain
 * forms. The keys come from ./jwtdeny-keys.js, the same derivation the server uses.
 */

const keys = require('./jwtdeny-keys.js');

/** The first word of an error reply jwtdeny sends for a token it refuses. */
const TOKEN_ERROR_CODES = Object.freeze([
  'MALFORMED', 'BADALG', 'NOKEY', 'BADSIG', 'BADCLAIMS', 'EXPIRED', 'NOTYET', 'DPOP',
]);
const TOKEN_ERRORS = new Set(TOKEN_ERROR_CODES);

/**
 * A token jwtdeny refuses; `.code` is one of TOKEN_ERROR_CODES. For `DPOP`, `.dpopError` is the
 * OAuth error the server named (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`) and,
 * for `use_dpop_nonce`, `.nonce` the fresh nonce to send back in a `DPoP-Nonce` header.
 */
class JwtdenyError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'JwtdenyError';
    this.code = code;
    if (code === 'DPOP') {
      const [, error, nonce] = String(message).split(' ');
      this.dpopError = error || 'invalid_token';
      if (this.dpopError === 'use_dpop_nonce') this.nonce = nonce;
    }
  }
}

function tokenError(err) {
  const message = err && typeof err.message === 'string' ? err.message : '';
  const code = message.split(' ', 1)[0];
  // A connection or server failure never starts with one of these words, so the code alone
  // tells a refused token from trouble reaching Redis.
  return TOKEN_ERRORS.has(code) ? new JwtdenyError(code, message, { cause: err }) : null;
}

// The key helpers throw when the token cannot be one the server accepts; in cluster mode that
// happens before anything is sent, and the server would have refused it the same way.
function orRefuse(derive) {
  try {
    return derive();
  } catch (err) {
    const code = /\b(sub|sid|iat)\b/.test(err.message) ? 'BADCLAIMS' : 'MALFORMED';
    throw new JwtdenyError(code, `${code} ${err.message}`, { cause: err });
  }
}

function detect(client) {
  if (client === null || typeof client !== 'object' && typeof client !== 'function') {
    throw new TypeError('createJwtdeny needs a node-redis or ioredis client');
  }
  if (typeof client.call === 'function' && typeof client.sendCommand === 'function') {
    return client.isCluster === true ? 'ioredis-cluster' : 'ioredis';
  }
  if (typeof client.sendCommand === 'function') {
    // node-redis' RedisCluster has masters/replicas and a (firstKey, isReadonly, args) sendCommand.
    return 'masters' in client ? 'node-redis-cluster' : 'node-redis';
  }
  throw new TypeError('createJwtdeny needs a node-redis or ioredis client');
}

// ioredis routes a command by the keys its command table declares; a module command is not in
// that table, so without help every call lands on a random node and follows a MOVED. Its public
// Command class lets the first key be given (ioredis resolves from the application).
function ioredisCommand() {
  try {
    // eslint-disable-next-line global-require
    const { Command } = require('ioredis');
    return typeof Command === 'function' ? Command : null;
  } catch {
    return null;
  }
}

function makeSender(client, kind) {
  switch (kind) {
    case 'node-redis':
      return (_key, _readonly, args) => client.sendCommand(args);
    case 'node-redis-cluster':
      return (key, readonly, args) => client.sendCommand(key, readonly, args);
    case 'ioredis':
      return (_key, _readonly, [name, ...rest]) => client.call(name, ...rest);
    case 'ioredis-cluster': {
      const Command = ioredisCommand();
      return (key, _readonly, [name, ...rest]) => {
        if (Command) {
          const cmd = new Command(name, rest, { replyEncoding: 'utf8' });
          if (typeof cmd.getSlot === 'function' && cmd.promise) {
            cmd.keys = [key];
            return client.sendCommand(cmd);
          }
        }
        return client.call(name, ...rest);
      };
    }
    default:
      throw new TypeError(`unknown client kind ${kind}`);
  }
}

// Any Uint8Array is accepted as a token; the key helpers read Buffers.
const asToken = (t) => (t instanceof Uint8Array && !Buffer.isBuffer(t) ? Buffer.from(t) : t);
const text = (v) => (Buffer.isBuffer(v) ? v.toString('utf8') : v);
const int = (v) => (typeof v === 'number' ? v : Number(text(v)));

/**
 * createJwtdeny(client, { prefix, cluster, issuers })
 *   -> { check, revoke, revokeAll, inspect, logout, revokeSession, express, fastify }
 *   client   node-redis createClient()/createCluster() or ioredis Redis/Cluster, connected.
 *   prefix   the server's jwtdeny.prefix (default 'jwtdeny:'); used for the cluster keys.
 *   cluster  force the keyed forms (true) or the standalone ones (false); default: by client.
 *   issuers  the server's jwtdeny.issuers-file (its parsed JSON, or an Issuers): the keyed forms
 *            then derive the scoped keys of its issuers' subjects.
 */
function createJwtdeny(client, { prefix = keys.DEFAULT_PREFIX, cluster, issuers: registry } = {}) {
  const issuers = registry === undefined || registry === null || registry instanceof keys.Issuers
    ? registry || undefined : new keys.Issuers(registry);
  const kind = detect(client);
  const keyed = cluster === undefined ? kind.endsWith('-cluster') : Boolean(cluster);
  const send = makeSender(client, kind);

  async function run(key, readonly, args) {
    try {
      return await send(key, readonly, args);
    } catch (err) {
      throw tokenError(err) || err;
    }
  }

  // [firstKey, readonly, args] of a token command, standalone or keyed. CHECK and INSPECT get
  // KSCHECK / KSINSPECT, which declare every key they read: the token's session key, or its
  // subject's sid-less key for a token without sid (so ACL key patterns cover them all).
  function tokenCommand(name, token, readonly, extra = []) {
    token = asToken(token);
    if (!keyed) return [undefined, readonly, [`JWTDENY.${name}`, token, ...extra]];
    const { entry, subject } = orRefuse(() => keys.keysFor(token, { prefix, issuers }));
    if (name === 'REVOKE') return [entry, readonly, [`JWTDENY.K${name}`, entry, subject, token, ...extra]];
    const third = orRefuse(() => keys.thirdKeyFor(token, { prefix, issuers }));
    return [entry, readonly, [`JWTDENY.KS${name}`, entry, subject, third, token, ...extra]];
  }

  async function check(token, { withClaims = false, cert } = {}) {
    const extra = cert === undefined || cert === null ? [] : ['CERT', String(cert)];
    if (!withClaims) return { active: int(await run(...tokenCommand('CHECK', token, true, extra))) === 1 };
    const [active, claims] = await run(...tokenCommand('CHECK', token, true, ['WITHCLAIMS', ...extra]));
    if (int(active) !== 1) return { active: false };
    return { active: true, claims: JSON.parse(text(claims)) };
  }

  // JWTDENY.CHECKDPOP: a DPoP-bound token with its proof, for the request's method and URL. A
  // write (the proof is used up): in a cluster or behind replicas it goes to a primary.
  async function checkDpop(token, proof, method, url, { withClaims = false, cert } = {}) {
    token = asToken(token);
    proof = asToken(proof);
    const extra = [...(withClaims ? ['WITHCLAIMS'] : []),
      ...(cert === undefined || cert === null ? [] : ['CERT', String(cert)])];
    let cmd;
    if (!keyed) {
      cmd = [undefined, false, ['JWTDENY.CHECKDPOP', token, proof, method, url, ...extra]];
    } else {
      const k = orRefuse(() => keys.dpopKeysFor(token, proof, { prefix, issuers }));
      cmd = [k.entry, false, ['JWTDENY.KCHECKDPOP', k.entry, k.subject, k.third, k.replay,
        token, proof, method, url, ...extra]];
    }
    const reply = await run(...cmd);
    if (!withClaims) return { active: int(reply) === 1 };
    const [active, claims] = reply;
    if (int(active) !== 1) return { active: false };
    return { active: true, claims: JSON.parse(text(claims)) };
  }

  async function revoke(token) {
    return int(await run(...tokenCommand('REVOKE', token, false))) === 1;
  }

  // issuer: whose sub (an issuer's name, or an iss, of jwtdeny.issuers-file; default the
  // default issuer).
  async function revokeAll(sub, { at, issuer } = {}) {
    const extra = at === undefined ? [] : ['AT', String(Math.trunc(at))];
    if (issuer !== undefined && issuer !== null) extra.push('ISSUER', issuer);
    if (!keyed) return int(await run(undefined, false, ['JWTDENY.REVOKEALL', sub, ...extra]));
    const key = keys.subjectKey(sub, { prefix, scope: keys.scopeNamed(issuer, issuers) });
    return int(await run(key, false, ['JWTDENY.KREVOKEALL', key, sub, ...extra]));
  }

  async function inspect(token) {
    const flat = await run(...tokenCommand('INSPECT', token, true));
    const out = {};
    for (let i = 0; i + 1 < flat.length; i += 2) out[text(flat[i])] = text(flat[i + 1]);
    return out;
  }

  // An OpenID Connect back-channel logout token, as the identity provider POSTed it.
  async function logout(logoutToken) {
    logoutToken = asToken(logoutToken);
    if (!keyed) return int(await run(undefined, false, ['JWTDENY.LOGOUT', logoutToken])) === 1;
    const { subject, session } = orRefuse(() => keys.logoutKeysFor(logoutToken, { prefix, issuers }));
    const sidless = `${subject}:nosid`; // keys.sidlessKey of the same sub
    return int(await run(subject, false, ['JWTDENY.KLOGOUT', subject, session, sidless, logoutToken])) === 1;
  }

  async function revokeSession(sub, sid, { issuer } = {}) {
    if (!keyed) {
      const extra = issuer === undefined || issuer === null ? [] : ['ISSUER', issuer];
      return int(await run(undefined, false, ['JWTDENY.REVOKESESSION', sub, sid, ...extra])) === 1;
    }
    // The keyed form has no ISSUER: the server reads the issuer from the keys' scope.
    const scope = keys.scopeNamed(issuer, issuers);
    const subject = keys.subjectKey(sub, { prefix, scope });
    const session = keys.sessionKey(sub, sid, { prefix, scope });
    const sidless = keys.sidlessKey(sub, { prefix, scope });
    return int(await run(subject, false, ['JWTDENY.KREVOKESESSION', subject, session, sidless, sub, sid])) === 1;
  }

  const jwtdeny = {
    check, checkDpop, revoke, revokeAll, inspect, logout, revokeSession, cluster: keyed,
  };
  jwtdeny.express = (options) => expressGuard(jwtdeny, options);
  jwtdeny.fastify = (options) => fastifyGuard(jwtdeny, options);
  return jwtdeny;
}

// -- HTTP guards ---------------------------------------------------------------------------

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;
const DPOP_AUTH = /^DPoP +([A-Za-z0-9._~+/-]+=*) *$/i;
const DPOP_SCHEME = /^DPoP(\s|$)/i;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or null. */
function bearerToken(req) {
  const h = req && req.headers ? req.headers.authorization : undefined;
  const m = typeof h === 'string' ? BEARER.exec(h) : null;
  return m ? m[1] : null;
}

/** The algorithms a guard's DPoP challenge names by default (the server's default list). */
const DEFAULT_DPOP_ALGS = 'ES256 ES384 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA';

const first = (v) => String(Array.isArray(v) ? v[0] : v).split(',')[0].trim();

/**
 * The URL a request was addressed to, as the client saw it (RFC 9449 §4.3 compares the proof's
 * htu with it): the connection's scheme and the Host header, or with `trustProxy` the first
 * X-Forwarded-Proto and X-Forwarded-Host a proxy set. Query and fragment do not matter.
 */
function requestUrl(req, trustProxy) {
  const h = req.headers || {};
  const raw = req.raw || req; // Fastify keeps node's request as .raw
  const socket = raw.socket || raw.connection || {};
  let scheme = socket.encrypted ? 'https' : 'http';
  let host = h.host;
  if (trustProxy) {
    if (h['x-forwarded-proto']) scheme = first(h['x-forwarded-proto']).toLowerCase();
    if (h['x-forwarded-host']) host = first(h['x-forwarded-host']);
  }
  const path = String(raw.originalUrl || req.originalUrl || raw.url || req.url || '/').split(/[?#]/)[0];
  return `${scheme}://${host}${path}`;
}

/** How long a guard waits for its check by default, and the Retry-After of its 503. */
const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_RETRY_AFTER = 5;

/** A guard's check that did not complete within its `timeoutMs`. */
class CheckTimeoutError extends Error {
  constructor(ms) {
    super(`the jwtdeny check did not complete within ${ms} ms`);
    this.name = 'CheckTimeoutError';
  }
}

// The check, or a CheckTimeoutError once `ms` have passed: a client that queues commands while
// Redis is down, or a Redis that accepts connections and never answers, would otherwise keep the
// request waiting for ever. The abandoned check's own outcome is swallowed: it must not become
// an unhandled rejection.
function withDeadline(promise, ms) {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeoutError(ms)), ms);
  });
  promise.catch(() => {});
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** What a guard's error bodies say, by their stable `code`. */
const DESCRIPTIONS = Object.freeze({
  MISSING: 'no access token was presented',
  MALFORMED: 'the token is malformed',
  BADALG: "the token's algorithm is not accepted",
  NOKEY: 'no key of the server verifies the token',
  BADSIG: "the token's signature does not verify",
  BADCLAIMS: "the token's claims are not accepted",
  EXPIRED: 'the token has expired',
  NOTYET: 'the token is not valid yet',
  REVOKED: 'the token has been revoked',
  CERT: "the client certificate's thumbprint is not usable",
  DPOP: 'the token or its DPoP proof is refused',
  INSUFFICIENT_SCOPE: 'the token lacks a scope this resource requires',
  CLAIM_CHECK: "the token's claims do not allow this request",
  UNAVAILABLE: 'the token cannot be checked now; try again later',
});

// Said once per process, to the console: the two misconfigurations that otherwise show only as
// every request refused (503 for a server without the module, 401 NOKEY for one without keys).
const warned = new Set();
function warnOnce(what, message) {
  if (warned.has(what)) return;
  warned.add(what);
  console.warn(`jwtdeny: ${message}`);
}

function noticeTrouble(err) {
  const message = err && typeof err.message === 'string' ? err.message : '';
  if (err instanceof JwtdenyError && err.code === 'NOKEY') {
    warnOnce('nokey', 'a token was refused with NOKEY: the server has no key for it. Check '
      + 'JWTDENY.KEYS LIST, jwtdeny.keys-file, or INFO jwtdeny (jwks_last_fetch_result). Said once.');
  } else if (/unknown command/i.test(message) && /jwtdeny/i.test(message)) {
    warnOnce('module', 'the Redis server does not know the JWTDENY commands: the jwtdeny module is '
      + 'not loaded there (MODULE LIST, loadmodule). Requests are answered 503 until it is. Said once.');
  }
}

// One body shape for every refusal (RFC 6750's `error`, a sentence, and the stable `code`).
function body(error, code) {
  return { error, error_description: DESCRIPTIONS[code] || code, code };
}

// The options every guard shares, with their defaults.
function guardRules({
  getToken = bearerToken, timeoutMs = DEFAULT_TIMEOUT_MS, retryAfter = DEFAULT_RETRY_AFTER,
  trustProxy = false, dpopAlgs = DEFAULT_DPOP_ALGS, credentialsRequired = true,
  requiredScopes = [], claimCheck, exclude = [], guardPreflight = false, getCert,
} = {}) {
  const scopes = typeof requiredScopes === 'string'
    ? requiredScopes.split(' ').filter(Boolean) : [...requiredScopes];
  return {
    getToken, timeoutMs, retryAfter, credentialsRequired, scopes, claimCheck, exclude,
    guardPreflight, getCert, dpop: { trustProxy, algs: dpopAlgs },
  };
}

// Requests a guard lets through unchecked: CORS preflights (browsers send no credentials with
// them) unless `guardPreflight`, and the `exclude`d paths (strings match the path exactly,
// RegExps test it).
function skipped(req, rules) {
  if (req.method === 'OPTIONS' && !rules.guardPreflight) return true;
  if (!rules.exclude.length) return false;
  const raw = req.raw || req;
  const path = String(raw.originalUrl || req.originalUrl || raw.url || req.url || '/').split(/[?#]/)[0];
  return rules.exclude.some((e) => (e instanceof RegExp ? e.test(path) : e === path));
}

// The scopes a token grants: `scope` (RFC 9068, space-separated) or `scp` (an array: Okta, Entra).
function scopesOf(claims) {
  if (typeof claims.scope === 'string') return claims.scope.split(' ').filter(Boolean);
  if (Array.isArray(claims.scp)) return claims.scp.filter((x) => typeof x === 'string');
  if (typeof claims.scp === 'string') return claims.scp.split(' ').filter(Boolean);
  return [];
}

// 403 (RFC 6750 §3.1) for an authentic token that may not do this.
async function authorize(d, rules) {
  const granted = new Set(scopesOf(d.claims));
  const lacking = rules.scopes.filter((x) => !granted.has(x));
  const code = lacking.length ? 'INSUFFICIENT_SCOPE'
    : (rules.claimCheck && !(await rules.claimCheck(d.claims)) ? 'CLAIM_CHECK' : null);
  if (!code) return d;
  const scope = rules.scopes.length ? `, scope="${rules.scopes.join(' ')}"` : '';
  return {
    status: 403,
    headers: { 'www-authenticate': `Bearer error="insufficient_scope"${scope}` },
    body: body('insufficient_scope', code),
  };
}

// What a guard decides for a request: { pass } (let through unchecked), { claims, token[, dpop] }
// or { status, headers, body }.
async function decide(jwtdeny, req, rules) {
  if (skipped(req, rules)) return { pass: true };
  // The client certificate's thumbprint (an mTLS-bound token's, RFC 8705), from `getCert`.
  const cert = rules.getCert ? await rules.getCert(req) : undefined;
  if (cert !== undefined && cert !== null && !THUMBPRINT.test(String(cert))) return refused('CERT');
  const auth = req && req.headers ? req.headers.authorization : undefined;
  const d = typeof auth === 'string' && DPOP_SCHEME.test(auth)
    ? await decideDpop(jwtdeny, req, rules.timeoutMs, rules.dpop, cert ?? undefined)
    : await decideBearer(jwtdeny, req, rules, cert ?? undefined);
  return d.claims ? authorize(d, rules) : d;
}

// A SHA-256 thumbprint as CERT takes it: base64url (43 characters) or hex (64).
const THUMBPRINT = /^(?:[A-Za-z0-9_-]{43}|[0-9A-Fa-f]{64})$/;
// The server's refusal of a token bound to a client certificate: a bearer token's challenge.
const CERT_BOUND = /cnf\.x5t#S256|client certificate/;

async function decideBearer(jwtdeny, req, rules, cert) {
  const token = await rules.getToken(req);
  if (!token) {
    if (!rules.credentialsRequired) return { pass: true };
    // RFC 6750 §3.1: a request without credentials gets no error code.
    return { status: 401, headers: { 'www-authenticate': 'Bearer' }, body: body('missing_token', 'MISSING') };
  }
  let result;
  try {
    result = await withDeadline(jwtdeny.check(token, { withClaims: true, cert }), rules.timeoutMs);
  } catch (err) {
    noticeTrouble(err);
    if (err instanceof JwtdenyError && err.code === 'DPOP' && CERT_BOUND.test(err.message)) return refused('DPOP');
    // A DPoP-bound token sent as a bearer token: the DPoP challenge tells the client how.
    if (err instanceof JwtdenyError && err.code === 'DPOP') return dpopRefused(err, rules.dpop);
    if (err instanceof JwtdenyError) return refused(err.code);
    return { unavailable: err };
  }
  if (!result.active) return refused('REVOKED');
  return { claims: result.claims, token };
}

// `Authorization: DPoP <token>` with one `DPoP: <proof>` header (RFC 9449 §7.1).
async function decideDpop(jwtdeny, req, timeoutMs, dpop, cert) {
  const m = DPOP_AUTH.exec(req.headers.authorization);
  const proof = req.headers.dpop;
  // node joins repeated headers with ", ": a compact JWS has neither, so two proofs show.
  if (!m) return dpopRefused({ dpopError: 'invalid_token', code: 'MALFORMED' }, dpop);
  if (typeof proof !== 'string' || !COMPACT_JWS.test(proof)) {
    return dpopRefused({ dpopError: 'invalid_dpop_proof', code: 'DPOP' }, dpop);
  }
  const token = m[1];
  let result;
  try {
    result = await withDeadline(jwtdeny.checkDpop(token, proof, req.method,
      requestUrl(req, dpop.trustProxy), { withClaims: true, cert }), timeoutMs);
  } catch (err) {
    noticeTrouble(err);
    if (err instanceof JwtdenyError) return dpopRefused(err, dpop);
    return { unavailable: err };
  }
  if (!result.active) return dpopRefused({ dpopError: 'invalid_token', code: 'REVOKED' }, dpop);
  const jkt = result.claims && result.claims.cnf ? result.claims.cnf.jkt : undefined;
  return { claims: result.claims, token, dpop: { jkt } };
}

// A 401 with the DPoP challenge (RFC 9449 §7.1): the error, the algorithms proofs may use, and
// a fresh nonce when the server asks for one.
function dpopRefused(err, dpop) {
  const error = err.code === 'DPOP' ? err.dpopError : 'invalid_token';
  const description = err.code === 'DPOP' ? error : err.code;
  const headers = {
    'www-authenticate': `DPoP error="${error}", error_description="${description}", algs="${dpop.algs}"`,
  };
  if (error === 'use_dpop_nonce' && err.nonce) headers['dpop-nonce'] = err.nonce;
  return { status: 401, headers, body: body(error, err.code === 'DPOP' ? 'DPOP' : err.code) };
}

function refused(code) {
  return {
    status: 401,
    headers: { 'www-authenticate': `Bearer error="invalid_token", error_description="${code}"` },
    body: body('invalid_token', code),
  };
}

// Fail closed: Redis could not answer in time, so no token is taken for active.
function unavailable(retryAfter) {
  return { status: 503, headers: { 'retry-after': String(retryAfter) }, body: body('unavailable', 'UNAVAILABLE') };
}

/**
 * Express (and Connect / node:http) middleware. Sets req.auth to the verified claims (and
 * req.token); 401 for a missing, refused or revoked token; 503 with Retry-After when Redis
 * cannot answer, or does not within `timeoutMs`.
 *   getToken(req)                       default: the Authorization: Bearer token
 *   timeoutMs                           how long the check may take (default 2000; 0: no limit)
 *   retryAfter                          the 503's Retry-After, in seconds (default 5)
 *   onUnavailable(err, req, res, next)  replaces the 503. Calling next() from it lets requests in
 *                                       unchecked while Redis is down: revoked tokens pass too.
 *   credentialsRequired                 false: a request without a token goes on, without req.auth
 *   requiredScopes                      scopes the token must grant (`scope` or `scp`): else 403
 *   claimCheck(claims)                  false (or a promise of it): 403 insufficient_scope
 *   exclude                             paths (strings, RegExps) let through unchecked
 *   guardPreflight                      true: guard OPTIONS requests too (CORS preflights pass by default)
 *   getCert(req)                        the SHA-256 thumbprint (base64url or hex) of the client
 *                                       certificate the TLS terminator saw, for mTLS-bound tokens
 *   passErrors                          true: refusals go to next(err) (a JwtdenyAuthError with
 *                                       .status, .headers, .body), as express-jwt does
 */
function expressGuard(jwtdeny, { onUnavailable, passErrors = false, ...options } = {}) {
  const rules = guardRules(options);
  const send = (res, { status, headers, body: payload }) => {
    res.statusCode = status;
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(payload));
  };
  return async function jwtdenyExpress(req, res, next) {
    let d;
    try {
      d = await decide(jwtdeny, req, rules);
    } catch (err) {
      return next(err);
    }
    if (d.pass) return next();
    if (d.claims) {
      req.auth = d.claims;
      req.token = d.token;
      if (d.dpop) req.dpop = d.dpop;
      return next();
    }
    if (d.unavailable) {
      if (onUnavailable) return onUnavailable(d.unavailable, req, res, next);
      d = unavailable(rules.retryAfter);
    }
    if (passErrors) return next(new JwtdenyAuthError(d));
    return send(res, d);
  };
}

/** A refusal handed to Express's error handler (`passErrors`): what the guard would answer. */
class JwtdenyAuthError extends Error {
  constructor({ status, headers, body: payload }) {
    super(payload.error_description);
    this.name = 'JwtdenyAuthError';
    this.status = status;
    this.headers = headers;
    this.body = payload;
    this.code = payload.code;
  }
}

/**
 * A Fastify onRequest/preHandler hook: app.addHook('onRequest', jwtdeny.fastify()). Sets
 * request.auth (declare it with app.decorateRequest('auth', null)) and request.token.
 * The options of expressGuard, but passErrors.
 *   onUnavailable(err, request, reply)  replaces the 503; returning without sending lets the
 *                                       request in unchecked (dangerous, see expressGuard).
 */
function fastifyGuard(jwtdeny, { onUnavailable, ...options } = {}) {
  const rules = guardRules(options);
  return async function jwtdenyFastify(request, reply) {
    const d = await decide(jwtdeny, request, rules);
    if (d.pass) return undefined;
    if (d.claims) {
      request.auth = d.claims;
      request.token = d.token;
      if (d.dpop) request.dpop = d.dpop;
      return undefined;
    }
    if (d.unavailable) {
      if (onUnavailable) return onUnavailable(d.unavailable, request, reply);
      Object.assign(d, unavailable(rules.retryAfter));
    }
    reply.code(d.status).headers(d.headers).send(d.body);
    return reply;
  };
}

module.exports = {
  createJwtdeny,
  JwtdenyError,
  JwtdenyAuthError,
  CheckTimeoutError,
  TOKEN_ERROR_CODES,
  ERROR_DESCRIPTIONS: DESCRIPTIONS,
  bearerToken,
  requestUrl,
  DEFAULT_DPOP_ALGS,
  dpopReplayKey: keys.dpopReplayKey,
  dpopKeysFor: (token, proof, options) => keys.dpopKeysFor(asToken(token), asToken(proof), options),
  keysFor: (token, options) => keys.keysFor(asToken(token), options),
  subjectKey: keys.subjectKey,
  entryKey: keys.entryKey,
  sessionKey: keys.sessionKey,
  sessionKeyFor: (token, options) => keys.sessionKeyFor(asToken(token), options),
  sidlessKey: (sub, options) => keys.sidlessKey(sub, options),
  thirdKeyFor: (token, options) => keys.thirdKeyFor(asToken(token), options),
  logoutKeysFor: (token, options) => keys.logoutKeysFor(asToken(token), options),
  claimsOf: (token) => keys.claimsOf(asToken(token)),
  sidOf: (token) => keys.sidOf(asToken(token)),
  encodeSubject: keys.encodeSubject,
  DEFAULT_PREFIX: keys.DEFAULT_PREFIX,
  Issuers: keys.Issuers,
};
// `import jwtdeny from 'jwtdeny'` from TypeScript compiled to CommonJS reads .default.
module.exports.default = module.exports;
