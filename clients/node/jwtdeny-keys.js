'use strict';
/**
 * Client-side key derivation for jwtdeny's keyed commands (Redis Cluster). CommonJS, no deps.
 *
 * In Redis Cluster a command reaches the node that owns the slot of its *declared* keys. The
 * standalone `JWTDENY.CHECK <token>` has none (its key is derived from the token inside the
 * server), so in cluster mode jwtdeny answers it with an error and expects the keyed forms:
 *
 *   JWTDENY.KCHECK          <entry-key> <subject-key> <token> [WITHCLAIMS]
 *   JWTDENY.KSCHECK         <entry-key> <subject-key> <session-key> <token> [WITHCLAIMS]
 *   JWTDENY.KREVOKE         <entry-key> <subject-key> <token>
 *   JWTDENY.KINSPECT        <entry-key> <subject-key> <token>
 *   JWTDENY.KSINSPECT       <entry-key> <subject-key> <session-key> <token>
 *   JWTDENY.KREVOKEALL      <subject-key> <sub> [AT <unix-seconds>]
 *   JWTDENY.KLOGOUT         <subject-key> <session-key or subject-key> <sidless-key> <logout_token>
 *   JWTDENY.KREVOKESESSION  <subject-key> <session-key> <sidless-key> <sub> <sid>
 *   JWTDENY.KCHECKDPOP      <entry-key> <subject-key> <third-key> <replay-key> <token> <proof>
 *                           <method> <url> [WITHCLAIMS] [CERT <thumbprint>]
 *
 * This module derives those keys from a token exactly as the server does:
 *
 *   entry-key   = <prefix>{<enc(sub)>}:<iat>
 *   subject-key = <prefix>{<enc(sub)>}
 *   session-key = <prefix>{<enc(sub)>}:sid:<sid>
 *   sidless-key = <prefix>{<enc(sub)>}:nosid  (KSCHECK's third key for a token without sid)
 *   replay-key  = <prefix>{<enc(sub)>}:dpop:<base64url(SHA-256(<cnf.jkt> ":" <proof jti>))>
 *
 * enc() percent-encodes only `%`, `{` and `}` (as %25, %7B, %7D), so the hash tag is
 * unambiguous for any sub; iat is the floor of the NumericDate (1767225600, 1767225600.0 and
 * 1.7672256e9 are all 1767225600); sid follows the tag verbatim.
 *
 * A token with a `sid` claim (a non-empty string; any other value is no session) is also
 * revoked when its OIDC session is ended: kcheck/kinspect then send the KS forms, which declare
 * its session key too. A logout token without `sid` ends every session of its `sub`: KLOGOUT
 * then takes the subject key twice.
 *
 * Nothing here verifies the token: the server verifies it, recomputes the keys from the
 * verified claims and refuses a command whose declared keys differ, so a forged token gains
 * nothing from this module.
 *
 *   const { createCluster } = require('redis');
 *   const { keysFor, kcheck } = require('./jwtdeny-keys');
 *   const cluster = createCluster({ rootNodes: [{ url: 'redis://127.0.0.1:7000' }] });
 *   await cluster.connect();
 *   const { entry, subject } = keysFor(token);
 *   await cluster.sendCommand(entry, true, ['JWTDENY.KCHECK', entry, subject, token]); // 1 | 0
 *   await kcheck(cluster, token);                                                      // same
 */

const DEFAULT_PREFIX = 'jwtdeny:';
// jwtdeny refuses NumericDates outside this range (year 9999) as BADCLAIMS.
const MAX_NUMERIC_DATE = 253402300799;
const B64URL = /^[A-Za-z0-9_-]*$/;

/** sub with only `%`, `{` and `}` percent-encoded (identity for ordinary subjects). */
function encodeSubject(sub) {
  return sub.replace(/[%{}]/g, (c) => (c === '%' ? '%25' : c === '{' ? '%7B' : '%7D'));
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
function isWellFormed(s) {
  // String.prototype.isWellFormed is Node >= 20; the regex is the same test for older ones.
  return typeof s.isWellFormed === 'function' ? s.isWellFormed() : !LONE_SURROGATE.test(s);
}

function checkText(value, name) {
  if (typeof value !== 'string' || value.length === 0) {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  if (!isWellFormed(value)) {
    // A lone surrogate ("\ud800"): the server refuses such a payload (MALFORMED).
    throw new TypeError(`${name} is not valid Unicode`);
  }
}

const checkSub = (sub) => checkText(sub, 'sub');

/**
 * The key of a subject's REVOKEALL cutoff: `<prefix>{<enc(sub)>}`; also the first argument of
 * `JWTDENY.KREVOKEALL <subject-key> <sub> [AT <secs>]`.
 */
function subjectKey(sub, { prefix = DEFAULT_PREFIX, scope = '' } = {}) {
  checkSub(sub);
  return `${prefix}{${scope}${encodeSubject(sub)}}`;
}

/** The key of an OIDC session's cutoff: `<prefix>{<enc(sub)>}:sid:<sid>`. */
function sessionKey(sub, sid, { prefix = DEFAULT_PREFIX, scope = '' } = {}) {
  checkText(sid, 'sid');
  return `${subjectKey(sub, { prefix, scope })}:sid:${sid}`;
}

/**
 * The key of a subject's sid-less cutoff: `<prefix>{<enc(sub)>}:nosid`. Any session's end
 * (LOGOUT with a sid, REVOKESESSION) moves it, revoking the subject's tokens that carry no sid.
 */
function sidlessKey(sub, { prefix = DEFAULT_PREFIX, scope = '' } = {}) {
  return `${subjectKey(sub, { prefix, scope })}:nosid`;
}

/** The key of one token's denylist entry: `<prefix>{<enc(sub)>}:<iat>` (iat whole seconds). */
function entryKey(sub, iat, { prefix = DEFAULT_PREFIX, scope = '' } = {}) {
  return `${subjectKey(sub, { prefix, scope })}:${numericDate(iat)}`;
}

/**
 * The server's issuer registry (`jwtdeny.issuers-file`, its parsed JSON `{ issuers: {...} }`):
 * places a token by its `iss` exactly as the server does, for the scoped keys of a registry
 * issuer's subjects. An exact issuer's scope is `%<name>:`, a template's (`{tenant}` in
 * `issuer`) `%<name>.<tenant>:` for each listed tenant; any other `iss` is the default
 * issuer's, unscoped (`''`).
 */
class Issuers {
  constructor(registry) {
    const entries = registry && typeof registry === 'object' ? registry.issuers : undefined;
    if (!entries || typeof entries !== 'object' || Array.isArray(entries)) {
      throw new TypeError('the registry has no "issuers" object');
    }
    this.byIss = new Map();
    this.byName = new Map();
    for (const [name, entry] of Object.entries(entries)) {
      const iss = entry && entry.issuer;
      if (typeof iss !== 'string' || iss.length === 0) throw new TypeError(`issuer ${name} has no issuer`);
      if (iss.includes('{tenant}')) {
        this.byName.set(name, null); // a template: its tenants' iss name them
        for (const tenant of entry.tenants || []) this.byIss.set(iss.replace('{tenant}', tenant), `%${name}.${tenant}:`);
      } else {
        this.byName.set(name, `%${name}:`);
        this.byIss.set(iss, `%${name}:`);
      }
    }
  }

  /** The scope of the subjects of `iss` (`''`: the default issuer's). */
  scopeOf(iss) {
    return typeof iss === 'string' ? this.byIss.get(iss) || '' : '';
  }

  /** The scope of a token's subject, by its (unverified) `iss`. */
  scopeFor(token) {
    return this.scopeOf(payloadOf(token).iss);
  }

  /**
   * The scope `ISSUER <issuer>` names: 'default', an exact issuer's name, or an iss the
   * registry accepts (a template's tenant needs its iss).
   */
  scopeNamed(issuer) {
    if (issuer === 'default') return '';
    if (this.byIss.has(issuer)) return this.byIss.get(issuer);
    if (this.byName.has(issuer)) {
      const scope = this.byName.get(issuer);
      if (scope === null) throw new TypeError(`issuer ${issuer} has a tenant per iss: name the iss`);
      return scope;
    }
    throw new TypeError(`${issuer} is neither default, an issuer of the registry nor an iss it accepts`);
  }
}

const scopeFor = (token, issuers) => (issuers ? issuers.scopeFor(token) : '');

/** The scope of `ISSUER <issuer>`; a registry is needed for any but the default issuer. */
function scopeNamed(issuer, issuers) {
  if (issuer === undefined || issuer === null || issuer === 'default') return '';
  if (!issuers) throw new TypeError(`issuer ${issuer} needs the registry (the issuers option)`);
  return issuers.scopeNamed(issuer);
}

function numericDate(value) {
  if (typeof value !== 'number') throw new TypeError('iat is not a number');
  if (!Number.isFinite(value)) throw new RangeError('iat is out of range');
  const secs = Math.floor(value);
  if (secs < -MAX_NUMERIC_DATE || secs > MAX_NUMERIC_DATE) {
    throw new RangeError('iat is out of range');
  }
  // String(-0) is "0", as the server writes it.
  return secs;
}

/** The token's payload as a JSON object, unverified. */
function payloadOf(token) {
  if (Buffer.isBuffer(token)) token = token.toString('latin1');
  if (typeof token !== 'string') throw new TypeError('token must be a string or a Buffer');
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new TypeError(`token has ${parts.length} segments, expected 3`);
  }
  const seg = parts[1];
  if (!B64URL.test(seg) || seg.length % 4 === 1) {
    throw new TypeError('token payload is not base64url without padding');
  }
  let claims;
  try {
    // fatal: invalid UTF-8 is refused (the server refuses it too), not replaced by U+FFFD.
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(
      Buffer.from(seg, 'base64url'),
    );
    claims = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`token payload is not JSON: ${e.message}`);
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new TypeError('token payload is not a JSON object');
  }
  return claims;
}

/**
 * `{ sub, iat }` read from the token's payload, unverified. Throws when the token could not be
 * one the server accepts (the server would answer MALFORMED or BADCLAIMS).
 */
function claimsOf(token) {
  const claims = payloadOf(token);
  const { sub } = claims;
  if (typeof sub !== 'string' || sub.length === 0) {
    throw new TypeError('sub is missing or not a non-empty string');
  }
  checkSub(sub);
  if (!('iat' in claims)) throw new TypeError('iat is missing');
  return { sub, iat: numericDate(claims.iat) };
}

/**
 * `{ entry, subject }`: the keys of a token, as the server derives them from its claims.
 * `prefix` must be the server's `jwtdeny.prefix` (default `jwtdeny:`).
 */
function keysFor(token, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { sub, iat } = claimsOf(token);
  const scope = scopeFor(token, issuers);
  return { entry: entryKey(sub, iat, { prefix, scope }), subject: subjectKey(sub, { prefix, scope }) };
}

/**
 * The access token's OIDC session id as the server reads it: its `sid` claim when that is a
 * non-empty string, else null (a token of no session).
 */
function sidOf(token) {
  const { sid } = payloadOf(token);
  if (typeof sid !== 'string' || sid.length === 0) return null;
  checkText(sid, 'sid');
  return sid;
}

/** The session key an access token is also checked against, or null when it has no sid. */
function sessionKeyFor(token, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { sub } = claimsOf(token);
  const sid = sidOf(token);
  return sid === null ? null : sessionKey(sub, sid, { prefix, scope: scopeFor(token, issuers) });
}

/**
 * The third key KSCHECK / KSINSPECT declare for an access token: its session key, or for a
 * token without sid its subject's sid-less key.
 */
function thirdKeyFor(token, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const session = sessionKeyFor(token, { prefix, issuers });
  if (session !== null) return session;
  return sidlessKey(claimsOf(token).sub, { prefix, scope: scopeFor(token, issuers) });
}

/**
 * `{ subject, session }`: the keys JWTDENY.KLOGOUT declares, read from a logout token's payload
 * (unverified); without sid, session is the subject key again. Throws for a token the server
 * refuses to place: no sub (even with a sid), or a sub/sid that is not a non-empty string.
 */
function logoutKeysFor(logoutToken, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const claims = payloadOf(logoutToken);
  for (const name of ['sub', 'sid']) {
    if (name in claims) checkText(claims[name], name);
  }
  if (!('sub' in claims)) {
    throw new TypeError('the logout token has no sub (the server refuses a sid without sub)');
  }
  const scope = issuers ? issuers.scopeOf(claims.iss) : '';
  const subject = subjectKey(claims.sub, { prefix, scope });
  if (!('sid' in claims)) return { subject, session: subject };
  return { subject, session: sessionKey(claims.sub, claims.sid, { prefix, scope }) };
}

// Thin wrappers: the exact calls for node-redis' createCluster (v4, v5 and v6 share this
// signature: cluster.sendCommand(firstKey, isReadonly, args, options)). The first key routes
// the command to the slot's node; node-redis follows MOVED and ASK.

/**
 * `JWTDENY.KSCHECK`, every key it reads declared: 1 active, 0 revoked; token errors reject with
 * the server's error.
 */
function kcheck(cluster, token, { prefix = DEFAULT_PREFIX, withClaims = false, issuers } = {}) {
  const { entry, subject } = keysFor(token, { prefix, issuers });
  const args = ['JWTDENY.KSCHECK', entry, subject, thirdKeyFor(token, { prefix, issuers }), token];
  if (withClaims) args.push('WITHCLAIMS');
  return cluster.sendCommand(entry, true, args);
}

/** `JWTDENY.KREVOKE`: 1 revoked now, 0 already revoked. */
function krevoke(cluster, token, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { entry, subject } = keysFor(token, { prefix, issuers });
  return cluster.sendCommand(entry, false, ['JWTDENY.KREVOKE', entry, subject, token]);
}

/** `JWTDENY.KSINSPECT`, every key it reads declared: INSPECT's field/value array. */
function kinspect(cluster, token, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { entry, subject } = keysFor(token, { prefix, issuers });
  const args = ['JWTDENY.KSINSPECT', entry, subject, thirdKeyFor(token, { prefix, issuers }), token];
  return cluster.sendCommand(entry, true, args);
}

/** `JWTDENY.KREVOKEALL`: revokes every token of sub issued at or before `at` (default now). */
function krevokeall(cluster, sub, { at, prefix = DEFAULT_PREFIX, issuer, issuers } = {}) {
  const key = subjectKey(sub, { prefix, scope: scopeNamed(issuer, issuers) });
  const args = ['JWTDENY.KREVOKEALL', key, sub];
  if (at !== undefined) args.push('AT', String(Math.trunc(at)));
  if (issuer !== undefined && issuer !== null) args.push('ISSUER', issuer);
  return cluster.sendCommand(key, false, args);
}

/**
 * `JWTDENY.KLOGOUT`: ends what an OIDC back-channel logout token names (its sid, or every
 * session of its sub). 1 ended now, 0 already ended.
 */
function klogout(cluster, logoutToken, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { subject, session } = logoutKeysFor(logoutToken, { prefix, issuers });
  return cluster.sendCommand(subject, false, ['JWTDENY.KLOGOUT', subject, session, `${subject}:nosid`, logoutToken]);
}

/** `JWTDENY.KREVOKESESSION`: ends one OIDC session of sub. 1 ended now, 0 already. */
function krevokesession(cluster, sub, sid, { prefix = DEFAULT_PREFIX, issuer, issuers } = {}) {
  // No ISSUER argument here: the server reads the issuer from the keys' scope.
  const scope = scopeNamed(issuer, issuers);
  const subject = subjectKey(sub, { prefix, scope });
  const session = sessionKey(sub, sid, { prefix, scope });
  const sidless = sidlessKey(sub, { prefix, scope });
  return cluster.sendCommand(subject, false, ['JWTDENY.KREVOKESESSION', subject, session, sidless, sub, sid]);
}

/**
 * The key of a DPoP proof's one-time record: the token's `cnf.jkt` and the proof's `jti`,
 * hashed to a fixed size, in the subject's slot.
 */
function dpopReplayKey(sub, jkt, jti, { prefix = DEFAULT_PREFIX, scope = '' } = {}) {
  // eslint-disable-next-line global-require
  const digest = require('node:crypto').createHash('sha256').update(`${jkt}:${jti}`, 'utf8').digest('base64url');
  return `${subjectKey(sub, { prefix, scope })}:dpop:${digest}`;
}

/**
 * `{ entry, subject, third, replay }`: the four keys JWTDENY.KCHECKDPOP declares for a
 * DPoP-bound token and its proof (both read unverified). Throws for a token without `cnf.jkt`
 * or a proof without `jti`: the server would refuse them (DPOP).
 */
function dpopKeysFor(token, proof, { prefix = DEFAULT_PREFIX, issuers } = {}) {
  const { entry, subject } = keysFor(token, { prefix, issuers });
  const { cnf } = payloadOf(token);
  const jkt = cnf !== null && typeof cnf === 'object' ? cnf.jkt : undefined;
  const { jti } = payloadOf(proof);
  if (typeof jkt !== 'string' || typeof jti !== 'string') {
    throw new TypeError('the token has no cnf.jkt or the proof no jti: not a DPoP request');
  }
  const replay = dpopReplayKey(claimsOf(token).sub, jkt, jti, { prefix, scope: scopeFor(token, issuers) });
  return { entry, subject, third: thirdKeyFor(token, { prefix, issuers }), replay };
}

module.exports = {
  DEFAULT_PREFIX,
  Issuers,
  scopeNamed,
  dpopReplayKey,
  dpopKeysFor,
  encodeSubject,
  subjectKey,
  entryKey,
  sessionKey,
  sidlessKey,
  thirdKeyFor,
  claimsOf,
  sidOf,
  keysFor,
  sessionKeyFor,
  logoutKeysFor,
  kcheck,
  krevoke,
  kinspect,
  krevokeall,
  klogout,
  krevokesession,
};
