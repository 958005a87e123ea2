'use strict';
// The guards' options users know from express-jwt and express-oauth2-jwt-bearer: optional
// authentication, excluded paths, CORS preflights, required scopes, a claims check, errors to
// the app's error handler, and one error body shape; Express and Fastify, against a real server
// (standalone, or the cluster with JWTDENY_CLUSTER_NODES).
const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createJwtdeny, JwtdenyAuthError } = require('jwtdeny');
const { Redis: IORedis, Cluster: IOCluster } = require('ioredis');
const express = require('express');
const Fastify = require('fastify');

const {
  CLUSTER, MODE, now, mint, freePort, spawnRedis,
} = require('./support.js');

let serial = 0;
const token = (claims = {}) => {
  serial += 1;
  return mint({ sub: `opt-${MODE}-${process.pid}-${serial}`, iat: now() - 30, exp: now() + 3600, ...claims });
};

let redisProc;
let tmpDir;
let client;
before(async () => {
  if (CLUSTER) {
    client = new IOCluster(CLUSTER);
  } else {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-opt-'));
    const port = await freePort();
    redisProc = await spawnRedis(port, tmpDir, []);
    client = new IORedis({ host: '127.0.0.1', port });
  }
});

after(async () => {
  if (client) client.disconnect();
  if (redisProc) redisProc.kill('SIGTERM');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

async function call(base, urlPath, { bearer, method = 'GET' } = {}) {
  const res = await fetch(base + urlPath, { method, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
  const text = await res.text();
  return {
    status: res.status, auth: res.headers.get('www-authenticate'),
    body: text ? JSON.parse(text) : null,
  };
}

// The same answers from Express and Fastify for the same options.
async function cases(base) {
  // Optional authentication (credentialsRequired false): no token goes on without auth...
  const anon = await call(base, '/optional');
  assert.equal(anon.status, 200);
  assert.deepEqual(anon.body, { auth: null });
  // ...and a refused token is still refused.
  const bad = await call(base, '/optional', { bearer: 'not-a-token' });
  assert.equal(bad.status, 401);
  assert.deepEqual(bad.body, { error: 'invalid_token', error_description: 'the token is malformed', code: 'MALFORMED' });

  // Excluded paths and CORS preflights pass unchecked.
  assert.equal((await call(base, '/health')).status, 200);
  assert.equal((await call(base, '/scoped', { method: 'OPTIONS' })).status, 204);

  // Required scopes: from `scope` (a string) or `scp` (an array); 403 insufficient_scope.
  assert.equal((await call(base, '/scoped', { bearer: token({ scope: 'read write' }) })).status, 200);
  assert.equal((await call(base, '/scoped', { bearer: token({ scp: ['write', 'read'] }) })).status, 200);
  const lacking = await call(base, '/scoped', { bearer: token({ scope: 'read' }) });
  assert.equal(lacking.status, 403);
  assert.equal(lacking.auth, 'Bearer error="insufficient_scope", scope="read write"');
  assert.deepEqual(lacking.body, {
    error: 'insufficient_scope', error_description: 'the token lacks a scope this resource requires',
    code: 'INSUFFICIENT_SCOPE',
  });

  // A claims check.
  assert.equal((await call(base, '/admin', { bearer: token({ role: 'admin' }) })).status, 200);
  const notAdmin = await call(base, '/admin', { bearer: token({ role: 'user' }) });
  assert.equal(notAdmin.status, 403);
  assert.equal(notAdmin.body.code, 'CLAIM_CHECK');

  // Without credentials on a required route: 401, no error code in the challenge.
  const missing = await call(base, '/scoped');
  assert.equal(missing.status, 401);
  assert.equal(missing.auth, 'Bearer');
  assert.deepEqual(missing.body, { error: 'missing_token', error_description: 'no access token was presented', code: 'MISSING' });
}

const SCOPED = { requiredScopes: 'read write', exclude: ['/health'] };
const ADMIN = { claimCheck: (claims) => claims.role === 'admin' };

describe(`${MODE}: guard options`, () => {
  test('express', async () => {
    const jd = createJwtdeny(client);
    const app = express();
    app.get('/health', jd.express(SCOPED), (req, res) => res.json({ ok: true }));
    app.options('/scoped', jd.express(SCOPED), (req, res) => res.sendStatus(204));
    app.get('/scoped', jd.express(SCOPED), (req, res) => res.json(req.auth));
    app.get('/optional', jd.express({ credentialsRequired: false }), (req, res) => res.json({ auth: req.auth || null }));
    app.get('/admin', jd.express(ADMIN), (req, res) => res.json(req.auth));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      await cases(`http://127.0.0.1:${server.address().port}`);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('fastify', async () => {
    const jd = createJwtdeny(client);
    const app = Fastify();
    app.decorateRequest('auth', null);
    app.decorateRequest('token', null);
    app.get('/health', { onRequest: jd.fastify(SCOPED) }, async () => ({ ok: true }));
    app.options('/scoped', { onRequest: jd.fastify(SCOPED) }, async (request, reply) => reply.code(204).send());
    app.get('/scoped', { onRequest: jd.fastify(SCOPED) }, async (request) => request.auth);
    app.get('/optional', { onRequest: jd.fastify({ credentialsRequired: false }) }, async (request) => ({ auth: request.auth }));
    app.get('/admin', { onRequest: jd.fastify(ADMIN) }, async (request) => request.auth);
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      await cases(`http://127.0.0.1:${app.server.address().port}`);
    } finally {
      await app.close();
    }
  });

  test('express: passErrors hands refusals to the error handler', async () => {
    const jd = createJwtdeny(client);
    const app = express();
    app.use(jd.express({ passErrors: true }));
    app.get('/me', (req, res) => res.json(req.auth));
    // eslint-disable-next-line no-unused-vars
    app.use((err, req, res, next) => {
      assert.ok(err instanceof JwtdenyAuthError);
      res.status(err.status).set(err.headers).json({ handled: true, ...err.body });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const base = `http://127.0.0.1:${server.address().port}`;
      const r = await call(base, '/me', { bearer: mint({ sub: 'x', iat: now() - 60, exp: now() - 1 }) });
      assert.equal(r.status, 401);
      assert.equal(r.auth, 'Bearer error="invalid_token", error_description="EXPIRED"');
      assert.deepEqual(r.body, { handled: true, error: 'invalid_token', error_description: 'the token has expired', code: 'EXPIRED' });
      assert.equal((await call(base, '/me', { bearer: token() })).status, 200);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe(`${MODE}: mTLS-bound tokens through the guards`, () => {
  test('getCert gives CHECK the certificate thumbprint; without it a bound token is refused', async () => {
    const jd = createJwtdeny(client);
    const thumb = Buffer.alloc(32, 0x5a).toString('base64url');
    const hex = Buffer.alloc(32, 0x5a).toString('hex');
    const bound = token({ cnf: { 'x5t#S256': thumb } });
    const app = express();
    app.use(jd.express({ getCert: (req) => req.headers['x-client-cert-sha256'] }));
    app.get('/me', (req, res) => res.json(req.auth));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const base = `http://127.0.0.1:${server.address().port}`;
    const get = async (cert) => {
      const headers = { authorization: `Bearer ${bound}` };
      if (cert) headers['x-client-cert-sha256'] = cert;
      const res = await fetch(`${base}/me`, { headers });
      return { status: res.status, auth: res.headers.get('www-authenticate'), body: await res.json() };
    };
    try {
      assert.equal((await get(thumb)).status, 200);
      assert.equal((await get(hex)).status, 200);
      const none = await get(null);
      assert.equal(none.status, 401);
      assert.equal(none.auth, 'Bearer error="invalid_token", error_description="DPOP"');
      const wrong = await get(Buffer.alloc(32, 1).toString('base64url'));
      assert.equal(wrong.status, 401);
      const bad = await get('not-a-thumbprint');
      assert.equal(bad.status, 401);
      assert.equal(bad.body.code, 'CERT');
      // A token bound to nothing passes whatever certificate the client has.
      const plain = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${token()}`, 'x-client-cert-sha256': thumb } });
      assert.equal(plain.status, 200);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

if (!CLUSTER) {
  describe('standalone: misconfiguration is said once', () => {
    test('a server without the module: 503 and one console line; NOKEY: one line', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-nomod-'));
      const port = await freePort();
      const { spawn } = require('node:child_process');
      const plain = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
        { stdio: 'ignore' });
      const said = [];
      const warn = console.warn;
      console.warn = (...args) => said.push(args.join(' '));
      const bare = new IORedis({ host: '127.0.0.1', port, lazyConnect: false });
      try {
        await new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('redis-server did not start')), 10000);
          const poll = () => bare.ping().then(() => { clearTimeout(t); resolve(); }, () => setTimeout(poll, 50));
          poll();
        });
        const app = express();
        app.use(createJwtdeny(bare).express());
        app.get('/me', (req, res) => res.json(req.auth));
        const server = app.listen(0, '127.0.0.1');
        await new Promise((r) => server.once('listening', r));
        const base = `http://127.0.0.1:${server.address().port}`;
        try {
          for (let i = 0; i < 3; i += 1) assert.equal((await call(base, '/me', { bearer: token() })).status, 503);
        } finally {
          server.closeAllConnections();
          server.close();
        }
        assert.equal(said.filter((l) => l.includes('module is not loaded')).length, 1, said.join('\n'));
        // A token no key of the server verifies.
        const jd = createJwtdeny(client);
        const other = mint({ sub: 'k', iat: now() - 1, exp: now() + 60 }, Buffer.alloc(32, 1), 'JWT');
        const unknownKid = other.replace(/^[^.]+/, Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'nope' })).toString('base64url'));
        const app2 = express();
        app2.use(jd.express());
        app2.get('/me', (req, res) => res.json(req.auth));
        const server2 = app2.listen(0, '127.0.0.1');
        await new Promise((r) => server2.once('listening', r));
        try {
          for (let i = 0; i < 2; i += 1) {
            const r = await call(`http://127.0.0.1:${server2.address().port}`, '/me', { bearer: unknownKid });
            assert.equal(r.body.code, 'NOKEY');
          }
        } finally {
          server2.closeAllConnections();
          server2.close();
        }
        assert.equal(said.filter((l) => l.includes('NOKEY')).length, 1, said.join('\n'));
      } finally {
        console.warn = warn;
        bare.disconnect();
        plain.kill('SIGTERM');
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
