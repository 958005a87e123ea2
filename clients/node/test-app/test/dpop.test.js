'use strict';
// DPoP (RFC 9449) through the installed package: checkDpop and the Express and Fastify guards,
// with proofs and key thumbprints made by `jose` (an independent implementation), ES256, RS256
// and EdDSA keys; standalone (a server of its own) or on the cluster (JWTDENY_CLUSTER_NODES).
const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createJwtdeny, JwtdenyError } = require('jwtdeny');
const nodeRedis = require('redis');
const { Redis: IORedis, Cluster: IOCluster } = require('ioredis');
const express = require('express');
const Fastify = require('fastify');

const {
  CLUSTER, MODE, now, mint, freePort, spawnRedis,
} = require('./support.js');

let jose;
let serial = 0;
const sub = () => {
  serial += 1;
  return `dpop-${MODE}-${process.pid}-${serial}`;
};

/** A client's DPoP key pair (jose), its public JWK and RFC 7638 thumbprint. */
async function holder(alg) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await jose.calculateJwkThumbprint(jwk, 'sha256') };
}

/** A proof for `method url` with `token`, by `h` (jose's SignJWT); `claims` override. */
async function proof(h, token, method, url, claims = {}, header = {}) {
  const ath = crypto.createHash('sha256').update(token).digest('base64url');
  const jwt = new jose.SignJWT({ htm: method, htu: url, ath, ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: h.alg, jwk: h.jwk, ...header })
    .setJti(crypto.randomUUID());
  return (claims.iat === undefined ? jwt.setIssuedAt() : jwt).sign(h.privateKey);
}

const bound = (h, extra = {}) => mint({
  sub: sub(), iat: now() - 30, exp: now() + 3600, cnf: { jkt: h.jkt }, ...extra,
});

let redisProc;
let tmpDir;
let client;
let nonceClient; // standalone only: a second server requiring nonces
let nonceProc;
before(async () => {
  jose = await import('jose');
  if (CLUSTER) {
    client = new IOCluster(CLUSTER);
  } else {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-dpop-'));
    const port = await freePort();
    redisProc = await spawnRedis(port, tmpDir, []);
    client = new IORedis({ host: '127.0.0.1', port });
    const nport = await freePort();
    nonceProc = await spawnRedis(nport, fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-dpop-n-')),
      ['dpop-nonce', 'yes']);
    nonceClient = nodeRedis.createClient({ socket: { host: '127.0.0.1', port: nport } });
    await nonceClient.connect();
  }
});

after(async () => {
  if (client) client.disconnect();
  if (nonceClient) await nonceClient.close();
  for (const p of [redisProc, nonceProc]) if (p) p.kill('SIGTERM');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

describe(`${MODE}: checkDpop`, () => {
  for (const alg of ['ES256', 'RS256', 'EdDSA']) {
    test(`a ${alg} proof is accepted once`, async () => {
      const jd = createJwtdeny(client);
      const h = await holder(alg);
      const token = bound(h);
      const url = 'https://api.example.com/orders?page=2';
      const p = await proof(h, token, 'POST', 'https://api.example.com/orders');
      const r = await jd.checkDpop(token, p, 'POST', url, { withClaims: true });
      assert.equal(r.active, true);
      assert.equal(r.claims.cnf.jkt, h.jkt);
      await assert.rejects(jd.checkDpop(token, p, 'POST', url), (e) => e instanceof JwtdenyError
        && e.code === 'DPOP' && e.dpopError === 'invalid_dpop_proof' && /used already/.test(e.message));
    });
  }

  test('each broken rule is refused, a bound token is no bearer token', async () => {
    const jd = createJwtdeny(client);
    const h = await holder('ES256');
    const other = await holder('ES256');
    const token = bound(h);
    const url = 'https://api.example.com/x';
    const cases = [
      ['wrong htm', await proof(h, token, 'GET', url), 'POST', url],
      ['another path', await proof(h, token, 'GET', 'https://api.example.com/y'), 'GET', url],
      ['another key', await proof(other, token, 'GET', url), 'GET', url],
      ['too old', await proof(h, token, 'GET', url, { iat: now() - 600 }), 'GET', url],
      ['wrong ath', await proof(h, token, 'GET', url, { ath: 'x'.repeat(43) }), 'GET', url],
      ['typ JWT', await proof(h, token, 'GET', url, {}, { typ: 'JWT' }), 'GET', url],
    ];
    for (const [name, p, method, u] of cases) {
      await assert.rejects(jd.checkDpop(token, p, method, u), (e) => e.code === 'DPOP'
        && e.dpopError === 'invalid_dpop_proof', name);
    }
    await assert.rejects(jd.check(token), (e) => e.code === 'DPOP' && e.dpopError === 'invalid_token');
  });
});

// -- guards ----------------------------------------------------------------------------------

async function call(base, pathname, { token, proofs = [], scheme = 'DPoP', method = 'GET', headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `${scheme} ${token}`;
  // fetch joins repeated headers: two proofs are sent as node receives two DPoP headers.
  if (proofs.length) h.dpop = proofs.join(', ');
  const res = await fetch(`${base}${pathname}`, { method, headers: h });
  return {
    status: res.status,
    auth: res.headers.get('www-authenticate'),
    nonce: res.headers.get('dpop-nonce'),
    body: await res.json(),
  };
}

async function guardCases(base, { trustProxy }) {
  const h = await holder('ES256');
  const token = bound(h);
  const here = `${base}/me`;
  // The URL as the client addressed it: 127.0.0.1:<port>, query ignored.
  const p = await proof(h, token, 'GET', here);
  const ok = await call(base, '/me?x=1', { token, proofs: [p] });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.jkt, h.jkt);
  assert.equal(ok.body.claims.cnf.jkt, h.jkt);

  const replay = await call(base, '/me', { token, proofs: [p] });
  assert.equal(replay.status, 401);
  assert.match(replay.auth, /^DPoP error="invalid_dpop_proof", .*algs="ES256 /);

  const missing = await call(base, '/me', { token });
  assert.equal(missing.status, 401);
  assert.match(missing.auth, /^DPoP error="invalid_dpop_proof"/);
  const two = await call(base, '/me', {
    token, proofs: [await proof(h, token, 'GET', here), await proof(h, token, 'GET', here)],
  });
  assert.equal(two.status, 401);
  assert.match(two.auth, /^DPoP error="invalid_dpop_proof"/);

  const wrongMethod = await call(base, '/me', { token, proofs: [await proof(h, token, 'POST', here)] });
  assert.equal(wrongMethod.status, 401);

  // A bound token with the Bearer scheme: the DPoP challenge.
  const bearer = await call(base, '/me', { token, scheme: 'Bearer' });
  assert.equal(bearer.status, 401);
  assert.match(bearer.auth, /^DPoP error="invalid_token"/);

  // Behind a proxy: the URL the client addressed is the forwarded one only with trustProxy.
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
  const viaProxy = await call(base, '/me', {
    token, headers: forwarded, proofs: [await proof(h, token, 'GET', 'https://api.example.com/me')],
  });
  assert.equal(viaProxy.status, trustProxy ? 200 : 401, JSON.stringify(viaProxy.body));

  // Bearer tokens keep working exactly as before.
  const plain = mint({ sub: sub(), iat: now() - 30, exp: now() + 3600 });
  const b = await call(base, '/me', { token: plain, scheme: 'Bearer' });
  assert.equal(b.status, 200);
  assert.equal(b.body.jkt, null);
}

function expressApp(jd, options) {
  const app = express();
  app.use(jd.express(options));
  app.get('/me', (req, res) => res.json({ claims: req.auth, jkt: req.dpop ? req.dpop.jkt : null }));
  return app;
}

async function fastifyApp(jd, options) {
  const app = Fastify();
  app.decorateRequest('auth', null);
  app.decorateRequest('token', null);
  app.decorateRequest('dpop', null);
  app.addHook('onRequest', jd.fastify(options));
  app.get('/me', async (request) => ({ claims: request.auth, jkt: request.dpop ? request.dpop.jkt : null }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return app;
}

async function withExpress(jd, options, fn) {
  const server = expressApp(jd, options).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  try {
    await fn(`http://127.0.0.1:${server.address().port}`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

describe(`${MODE}: DPoP guards`, () => {
  for (const trustProxy of [false, true]) {
    test(`express, trustProxy ${trustProxy}`, async () => {
      await withExpress(createJwtdeny(client), { trustProxy }, (base) => guardCases(base, { trustProxy }));
    });

    test(`fastify, trustProxy ${trustProxy}`, async () => {
      const app = await fastifyApp(createJwtdeny(client), { trustProxy });
      try {
        await guardCases(`http://127.0.0.1:${app.server.address().port}`, { trustProxy });
      } finally {
        await app.close();
      }
    });
  }

  if (!CLUSTER) {
    test('a server nonce: 401 use_dpop_nonce with DPoP-Nonce, then 200', async () => {
      await withExpress(createJwtdeny(nonceClient), {}, async (base) => {
        const h = await holder('EdDSA');
        const token = bound(h);
        const here = `${base}/me`;
        const first = await call(base, '/me', { token, proofs: [await proof(h, token, 'GET', here)] });
        assert.equal(first.status, 401);
        assert.match(first.auth, /^DPoP error="use_dpop_nonce"/);
        assert.ok(first.nonce, 'a DPoP-Nonce header');
        const again = await call(base, '/me', {
          token, proofs: [await proof(h, token, 'GET', here, { nonce: first.nonce })],
        });
        assert.equal(again.status, 200, JSON.stringify(again.body));
      });
    });
  }
});
