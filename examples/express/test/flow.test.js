'use strict';

// End-to-end test of the example: starts its own redis-server with jwtdeny loaded, serves the
// app on a free port and drives it over HTTP with fetch.
//   JWTDENY_MODULE  path of libjwtdeny.so (default ../../target/release/libjwtdeny.so from examples/express)
//   REDIS_SERVER    redis-server binary (default: redis-server on PATH)

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { createClient } = require('redis');
const { createApp, loadSigningKey, mintToken } = require('../app');

const EXAMPLE_DIR = path.resolve(__dirname, '..');
const MODULE = path.resolve(EXAMPLE_DIR,
  process.env.JWTDENY_MODULE || path.join('..', '..', 'target', 'release', 'libjwtdeny.so'));
const SHARED_JWKS = path.resolve(EXAMPLE_DIR, '..', 'jwks.json');
const KID = 'demo-hs256';
// The OIDC client id the provider names in its logout tokens' aud (jwtdeny.logout-audience).
const CLIENT_ID = 'jwtdeny-example';
const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const nowSeconds = () => Math.floor(Date.now() / 1000);
// Waits until the wall clock is past the given NumericDate (whole seconds).
const waitUntilAfter = async (seconds) => {
  while (nowSeconds() <= seconds) await sleep(1000 - (Date.now() % 1000) + 10);
};
// What the jwtdeny middleware answers for a refused or revoked token (RFC 6750's error, a
// sentence, the stable code).
const { ERROR_DESCRIPTIONS } = require('jwtdeny');
const refused = (code) => ({
  status: 401, body: { error: 'invalid_token', error_description: ERROR_DESCRIPTIONS[code], code },
});
const claimsOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());

let tmpDir;
let redis; // the redis-server child process
let client;
let server;
let base;
let key;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function startRedis(port, jwksFile) {
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', tmpDir,
    '--save', '', '--appendonly', 'no',
    // Module arguments are name/value pairs after the .so path.
    '--loadmodule', MODULE, 'keys-file', jwksFile,
    // A session's revocation needs a bound on token lifetimes to expire by; without one
    // jwtdeny ends every session of the user instead.
    'logout-audience', CLIENT_ID, 'max-lifetime', '3600',
  ];
  const child = spawn(process.env.REDIS_SERVER || 'redis-server', args,
    { stdio: ['ignore', 'pipe', 'pipe'] });
  // If the test process dies early, do not leave the server behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));

  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start within 10 s:\n${log}`));
    }, 10000);
    const onData = (chunk) => {
      log += chunk;
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run redis-server: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${signal || code}) before it was ready:\n${log}`));
    });
  });
}

async function call(method, urlPath, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + urlPath, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// A logout token as a provider signs it, minted by jsonwebtoken (not by the app's own minter).
// `claims` is merged over a valid claim set; a null value removes that claim.
function logoutToken(claims = {}, { typ = 'logout+jwt', secret = key.secret } = {}) {
  const now = nowSeconds();
  const body = {
    iss: 'https://idp.example', aud: CLIENT_ID, iat: now, exp: now + 120,
    jti: crypto.randomUUID(), events: { [LOGOUT_EVENT]: {} },
  };
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) delete body[name];
    else body[name] = value;
  }
  const header = { alg: 'HS256', kid: KID };
  if (typ !== null) header.typ = typ;
  return jwt.sign(body, secret, { algorithm: 'HS256', header, noTimestamp: !('iat' in body) });
}

// POSTs a form as the provider does; returns status, Cache-Control and the JSON body.
async function backchannel(form) {
  const res = await fetch(`${base}/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, cacheControl: res.headers.get('cache-control'), body: await res.json() };
}

async function login(username, password = { alice: 'wonderland', bob: 'builder' }[username]) {
  const res = await call('POST', '/login', { body: { username, password } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.token;
}

before(async () => {
  if (!fs.existsSync(MODULE)) {
    throw new Error(`jwtdeny module not found at ${MODULE}: run \`cargo build --release\` ` +
      'in the repository root or set JWTDENY_MODULE');
  }
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-express-'));
  let jwksFile = SHARED_JWKS;
  if (!fs.existsSync(jwksFile)) {
    jwksFile = path.join(tmpDir, 'jwks.json');
    const k = crypto.randomBytes(32).toString('base64url');
    fs.writeFileSync(jwksFile, JSON.stringify({ keys: [{ kty: 'oct', kid: KID, alg: 'HS256', k }] }));
  }
  key = loadSigningKey(jwksFile, KID);

  const port = await freePort();
  redis = await startRedis(port, jwksFile);

  client = createClient({ socket: { host: '127.0.0.1', port }, disableOfflineQueue: true });
  client.on('error', () => {}); // reconnect noise after the 503 test stops redis
  await client.connect();

  const app = createApp(client, { key });
  await new Promise((resolve) => {
    server = app.listen(0, '127.0.0.1', resolve);
  });
  base = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  if (client) client.destroy();
  if (redis && redis.exitCode === null && redis.signalCode === null) {
    const exited = new Promise((resolve) => redis.once('exit', resolve));
    redis.kill('SIGTERM');
    await exited;
  }
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

test('login, GET /me, logout, then the token is refused as revoked', async () => {
  const token = await login('alice');

  const me = await call('GET', '/me', { token });
  assert.equal(me.status, 200);
  assert.equal(me.body.sub, 'alice');
  assert.equal(typeof me.body.iat, 'number');
  assert.equal(me.body.exp - me.body.iat, 900);

  const out = await call('POST', '/logout', { token });
  assert.deepEqual(out, { status: 200, body: { revoked: true } });

  assert.deepEqual(await call('GET', '/me', { token }), refused('REVOKED'));
  assert.deepEqual(await call('POST', '/logout', { token }), refused('REVOKED'));
  // Straight from Redis too: CHECK answers 0 for a revoked token.
  assert.equal(await client.sendCommand(['JWTDENY.CHECK', token]), 0);
});

test('logout-all refuses every earlier token of the subject, and only that subject', async () => {
  // Start on a fresh second: the previous test revoked alice's token of its second, and with
  // it every alice token with that iat.
  await waitUntilAfter(nowSeconds());
  const first = await login('alice');
  // jwtdeny keys a token by sub and iat: the second session needs a later iat.
  await waitUntilAfter(claimsOf(first).iat);
  const second = await login('alice');
  assert.ok(claimsOf(second).iat > claimsOf(first).iat);
  const other = await login('bob');

  for (const token of [first, second, other]) {
    assert.equal((await call('GET', '/me', { token })).status, 200);
  }

  const out = await call('POST', '/logout-all', { token: second });
  assert.equal(out.status, 200, JSON.stringify(out.body));
  assert.ok(out.body.cutoff >= claimsOf(second).iat, `cutoff ${out.body.cutoff}`);

  for (const token of [first, second]) {
    assert.deepEqual(await call('GET', '/me', { token }), refused('REVOKED'));
  }
  assert.equal((await call('GET', '/me', { token: other })).status, 200, 'bob is not logged out');

  // A login after the cutoff second gives a token that works again.
  await waitUntilAfter(out.body.cutoff);
  const fresh = await login('alice');
  const me = await call('GET', '/me', { token: fresh });
  assert.equal(me.status, 200);
  assert.equal(me.body.sub, 'alice');
});

test('refused tokens answer 401 with the jwtdeny error code', async () => {
  const now = nowSeconds();
  const expired = mintToken(key, { sub: 'alice', iat: now - 120, exp: now - 60 });
  const wrongKey = { kid: KID, secret: crypto.randomBytes(32) };
  const badSig = mintToken(wrongKey, { sub: 'alice', iat: now, exp: now + 60 });
  const notYet = mintToken(key, { sub: 'alice', iat: now, nbf: now + 600, exp: now + 900 });

  const cases = [
    [expired, 'EXPIRED'],
    [badSig, 'BADSIG'],
    [notYet, 'NOTYET'],
    ['not-a-jwt', 'MALFORMED'],
  ];
  for (const [token, code] of cases) {
    const res = await call('GET', '/me', { token });
    assert.deepEqual(res, refused(code), code);
  }
  // The routes behind the middleware refuse them the same way.
  assert.deepEqual(await call('POST', '/logout', { token: expired }),
    refused('EXPIRED'));
  assert.deepEqual(await call('POST', '/logout-all', { token: badSig }),
    refused('BADSIG'));

  assert.deepEqual(await call('GET', '/me'), {
    status: 401, body: { error: 'missing_token', error_description: 'no access token was presented', code: 'MISSING' },
  });
  const badLogin = await call('POST', '/login', { body: { username: 'alice', password: 'nope' } });
  assert.deepEqual(badLogin, { status: 401, body: { error: 'bad credentials' } });
});

test('back-channel logout of one session leaves the other sessions of the user active', async () => {
  const first = await login('alice');
  const second = await login('alice');
  const { sid } = claimsOf(first);
  assert.notEqual(sid, claimsOf(second).sid, 'each login is its own session');

  const token = logoutToken({ sub: 'alice', sid });
  assert.deepEqual(await backchannel({ logout_token: token }),
    { status: 200, cacheControl: 'no-store', body: { ended: true } });
  assert.deepEqual(await call('GET', '/me', { token: first }), refused('REVOKED'));
  const me = await call('GET', '/me', { token: second });
  assert.equal(me.status, 200, 'the other session stays active');
  // Providers retry: the same logout token again is harmless.
  assert.deepEqual(await backchannel({ logout_token: token }),
    { status: 200, cacheControl: 'no-store', body: { ended: false } });
  // INSPECT says why.
  const fields = await client.sendCommand(['JWTDENY.INSPECT', first]);
  const inspected = Object.fromEntries(
    fields.reduce((pairs, v, i) => (i % 2 ? pairs[pairs.length - 1].push(v) : pairs.push([v]), pairs), []));
  assert.equal(inspected.revoked_by, 'session');
});

test('every rule of a logout token is checked: 400 with the reason, never cached', async () => {
  const now = nowSeconds();
  const cases = [
    ['missing events', logoutToken({ sub: 'alice', sid: 's', events: null }), 'BADCLAIMS'],
    ['wrong event member', logoutToken({ sub: 'alice', sid: 's', events: { 'urn:other': {} } }), 'BADCLAIMS'],
    ['event not an object', logoutToken({ sub: 'alice', events: { [LOGOUT_EVENT]: true } }), 'BADCLAIMS'],
    ['nonce present', logoutToken({ sub: 'alice', sid: 's', nonce: 'n-1' }), 'BADCLAIMS'],
    ['typ at+jwt', logoutToken({ sub: 'alice', sid: 's' }, { typ: 'at+jwt' }), 'BADCLAIMS'],
    ['wrong aud', logoutToken({ sub: 'alice', sid: 's', aud: 'someone-else' }), 'BADCLAIMS'],
    ['no aud', logoutToken({ sub: 'alice', sid: 's', aud: null }), 'BADCLAIMS'],
    ['expired', logoutToken({ sub: 'alice', sid: 's', iat: now - 600, exp: now - 300 }), 'EXPIRED'],
    ['no exp', logoutToken({ sub: 'alice', sid: 's', exp: null }), 'BADCLAIMS'],
    ['no iat', logoutToken({ sub: 'alice', sid: 's', iat: null }), 'BADCLAIMS'],
    ['neither sub nor sid', logoutToken({}), 'BADCLAIMS'],
    ['sid without sub', logoutToken({ sid: 's' }), 'BADCLAIMS'],
    ['sid not a string', logoutToken({ sub: 'alice', sid: 7 }), 'BADCLAIMS'],
    ['wrong key', logoutToken({ sub: 'alice' }, { secret: crypto.randomBytes(32) }), 'BADSIG'],
    ['not a JWT', 'not-a-jwt', 'MALFORMED'],
  ];
  for (const [name, token, code] of cases) {
    const res = await backchannel({ logout_token: token });
    assert.equal(res.status, 400, name);
    assert.equal(res.cacheControl, 'no-store', name);
    assert.equal(res.body.error, 'invalid_request', name);
    assert.ok(res.body.error_description.startsWith(`${code} `), `${name}: ${res.body.error_description}`);
  }
  const sidWithoutSub = await backchannel({ logout_token: logoutToken({ sid: 's' }) });
  assert.match(sidWithoutSub.body.error_description, /sid without sub/);
  assert.deepEqual(await backchannel({}), {
    status: 400, cacheControl: 'no-store',
    body: { error: 'invalid_request', error_description: 'logout_token is missing' },
  });
  // A logout token posted as JSON is not the form the spec defines.
  const asJson = await fetch(`${base}/backchannel-logout`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ logout_token: logoutToken({ sub: 'alice' }) }),
  });
  assert.equal(asJson.status, 400);
  // None of them revoked anything.
  assert.equal((await call('GET', '/me', { token: await login('alice') })).status, 200);
});

test('a back-channel logout without sid ends every session of the user', async () => {
  const first = await login('bob');
  const second = await login('bob');
  const alice = await login('alice');
  const token = logoutToken({ sub: 'bob', iat: claimsOf(second).iat });
  assert.deepEqual(await backchannel({ logout_token: token }),
    { status: 200, cacheControl: 'no-store', body: { ended: true } });
  for (const t of [first, second]) {
    assert.deepEqual(await call('GET', '/me', { token: t }), refused('REVOKED'));
  }
  assert.equal((await call('GET', '/me', { token: alice })).status, 200, 'alice is not logged out');
  assert.equal((await backchannel({ logout_token: token })).body.ended, false, 'replayed');
});

// Last: it stops redis-server.
test('503 when Redis is unreachable', async () => {
  const token = await login('alice');
  const exited = new Promise((resolve) => redis.once('exit', resolve));
  redis.kill('SIGTERM');
  await exited;

  const res = await call('GET', '/me', { token });
  assert.deepEqual(res, {
    status: 503,
    body: { error: 'unavailable', error_description: 'the token cannot be checked now; try again later', code: 'UNAVAILABLE' },
  });
  // A logout that cannot be recorded is a failed logout for the provider: 400, not 200.
  const logout = await backchannel({ logout_token: logoutToken({ sub: 'alice' }) });
  assert.equal(logout.status, 400);
  assert.equal(logout.cacheControl, 'no-store');
  assert.equal(logout.body.error, 'temporarily_unavailable');
});
