'use strict';
// Tests of the installed jwtdeny package (run by ../run-tests.sh from a fresh project that
// installed the packed tarball, so `require('jwtdeny')` is what a user gets).
//   standalone: starts its own redis-server with $JWTDENY_MODULE loaded
//   cluster:    JWTDENY_CLUSTER_NODES=host:port[,...] (tests/cluster/test_packages.py sets it)
// Clients: node-redis (createClient / createCluster) and ioredis (Redis / Cluster).
//   JWTDENY_TEST_KEYS_FILE, JWTDENY_TEST_HS256_FILE, JWTDENY_TEST_KID: the server's keys file,
//   the HS256 secret of one of its keys and that key's kid (run-tests.sh sets them).
const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const jwtdeny = require('jwtdeny');
const { createJwtdeny, JwtdenyError } = jwtdeny;
const nodeRedis = require('redis');
const { Redis: IORedis, Cluster: IOCluster } = require('ioredis');
const express = require('express');
const Fastify = require('fastify');

const {
  SECRET, CLUSTER, MODE, now, mint, freePort, spawnRedis,
} = require('./support.js');

// The server's jwtdeny.logout-audience (this file's standalone server and test_packages.py set
// it). Only the standalone server has a jwtdeny.max-lifetime, which a session's logout needs to
// revoke that session alone; without one (the cluster) it revokes by subject.
const LOGOUT_AUDIENCE = 'jwtdeny-package-tests';
const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const logoutToken = (claims) => mint({
  aud: LOGOUT_AUDIENCE, iat: now(), exp: now() + 120, jti: crypto.randomUUID(),
  events: { [LOGOUT_EVENT]: {} }, ...claims,
}, SECRET, 'logout+jwt');
let serial = 0;
// A fresh subject per token, so the tests never see each other's revocations.
const fresh = (extra = {}) => {
  serial += 1;
  const sub = `pkg-${MODE}-${process.pid}-${serial}@example.com`;
  return { sub, token: mint({ sub, iat: now() - 60, exp: now() + 3600, ...extra }) };
};

let redisProc;
let tmpDir;
async function startRedis() {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-pkg-'));
  const port = await freePort();
  redisProc = await spawnRedis(port, tmpDir, [
    'logout-audience', LOGOUT_AUDIENCE, 'max-lifetime', '86400',
  ]);
  return port;
}

// name -> connected client, for each client library in this mode.
const clients = {};
before(async () => {
  if (CLUSTER) {
    clients['node-redis createCluster'] = nodeRedis.createCluster({
      rootNodes: CLUSTER.map(({ host, port }) => ({ url: `redis://${host}:${port}` })),
    });
    clients['ioredis Cluster'] = new IOCluster(CLUSTER);
  } else {
    const port = await startRedis();
    clients['node-redis createClient'] = nodeRedis.createClient({
      socket: { host: '127.0.0.1', port }, disableOfflineQueue: true,
    });
    clients['ioredis Redis'] = new IORedis({ host: '127.0.0.1', port });
  }
  for (const [name, c] of Object.entries(clients)) {
    c.on('error', (e) => console.error(name, e.message));
    if (typeof c.connect === 'function' && name.startsWith('node-redis')) await c.connect();
  }
});

after(async () => {
  for (const [name, c] of Object.entries(clients)) {
    if (name.startsWith('node-redis')) await c.close();
    else c.disconnect();
  }
  if (redisProc) redisProc.kill('SIGTERM');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

test('the package exposes its API', () => {
  assert.equal(typeof createJwtdeny, 'function');
  assert.deepEqual([...jwtdeny.TOKEN_ERROR_CODES].sort(),
    ['BADALG', 'BADCLAIMS', 'BADSIG', 'DPOP', 'EXPIRED', 'MALFORMED', 'NOKEY', 'NOTYET']);
  assert.deepEqual(jwtdeny.keysFor(mint({ sub: 'a{b}', iat: 1767225600.5, exp: 4102444800 })),
    { entry: 'jwtdeny:{a%7Bb%7D}:1767225600', subject: 'jwtdeny:{a%7Bb%7D}' });
  assert.equal(require('jwtdeny/keys').subjectKey('alice'), 'jwtdeny:{alice}');
  assert.equal(jwtdeny.default, jwtdeny);
});

const names = () => Object.keys(clients);
for (const name of CLUSTER
  ? ['node-redis createCluster', 'ioredis Cluster']
  : ['node-redis createClient', 'ioredis Redis']) {
  describe(`${MODE}: ${name}`, () => {
    let jd;
    before(() => {
      jd = createJwtdeny(clients[name]);
    });

    test('picks the keyed forms exactly for a cluster client', () => {
      assert.equal(jd.cluster, Boolean(CLUSTER));
      assert.ok(names().includes(name));
    });

    test('check, revoke, check again', async () => {
      const { sub, token } = fresh({ role: 'admin' });
      assert.deepEqual(await jd.check(token), { active: true });
      const { active, claims } = await jd.check(token, { withClaims: true });
      assert.equal(active, true);
      assert.equal(claims.sub, sub);
      assert.equal(claims.role, 'admin');
      assert.equal(await jd.revoke(token), true);
      assert.equal(await jd.revoke(Buffer.from(token)), false, 'already revoked');
      assert.deepEqual(await jd.check(token), { active: false });
      assert.deepEqual(await jd.check(token, { withClaims: true }), { active: false });
    });

    test('revokeAll with and without at', async () => {
      const sub = fresh().sub;
      const t = now();
      const older = mint({ sub, iat: t - 100, exp: t + 3600 });
      const newer = mint({ sub, iat: t - 10, exp: t + 3600 });
      assert.equal(await jd.revokeAll(sub, { at: t - 50 }), t - 50);
      assert.equal((await jd.check(older)).active, false);
      assert.equal((await jd.check(newer)).active, true);
      const cutoff = await jd.revokeAll(sub);
      assert.ok(cutoff >= t, `${cutoff} >= ${t}`);
      assert.equal((await jd.check(newer)).active, false);
    });

    test('inspect', async () => {
      const { sub, token } = fresh();
      const info = await jd.inspect(token);
      assert.equal(info.status, 'active');
      assert.equal(info.sub, sub);
      assert.equal(info.key, jwtdeny.keysFor(token).entry);
      await jd.revoke(token);
      assert.equal((await jd.inspect(token)).revoked_by, 'token');
    });

    test('logout (OIDC back-channel) and revokeSession end one session', async () => {
      const { sub } = fresh();
      const t = now();
      const s1 = mint({ sub, sid: 's-1', iat: t - 60, exp: t + 3600 });
      const s2 = mint({ sub, sid: 's-2', iat: t - 60, exp: t + 3600 });
      const plain = mint({ sub, iat: t - 60, exp: t + 3600 });
      assert.equal(jwtdeny.sessionKeyFor(s1), `${jwtdeny.subjectKey(sub)}:sid:s-1`);
      assert.equal(jwtdeny.sessionKeyFor(plain), null);
      for (const tok of [s1, s2, plain]) assert.equal((await jd.check(tok)).active, true);

      const lo = logoutToken({ sub, sid: 's-1' });
      assert.equal(await jd.logout(lo), true);
      assert.equal(await jd.logout(lo), false, 'replayed');
      assert.equal((await jd.check(s1)).active, false);
      assert.deepEqual(await jd.check(s1, { withClaims: true }), { active: false });
      assert.equal((await jd.inspect(s1)).status, 'revoked');
      if (CLUSTER) {
        // No max-lifetime: the logout revoked every token of sub up to its iat.
        assert.equal((await jd.check(s2)).active, false);
        assert.equal((await jd.check(plain)).active, false);
        const other = fresh().sub;
        const o = mint({ sub: other, sid: 'x', iat: t - 60, exp: t + 3600 });
        assert.equal(await jd.revokeSession(other, 'x'), true);
        assert.equal((await jd.check(o)).active, false);
      } else {
        assert.equal((await jd.check(s2)).active, true);
        // A token without sid cannot be told apart by session: any session's end revokes it.
        assert.equal((await jd.check(plain)).active, false);

        assert.equal(await jd.revokeSession(sub, 's-2'), true);
        assert.equal(await jd.revokeSession(sub, 's-2'), false);
        assert.equal((await jd.check(s2)).active, false);

        // A logout token without sid ends every session of its sub.
        assert.equal(await jd.logout(logoutToken({ sub })), true);
        assert.equal((await jd.check(plain)).active, false);
      }

      // Not a logout token: no back-channel event.
      await assert.rejects(jd.logout(mint({ sub, aud: LOGOUT_AUDIENCE, iat: t, exp: t + 60 }, SECRET, 'logout+jwt')),
        (err) => err instanceof JwtdenyError && err.code === 'BADCLAIMS');
    });

    if (CLUSTER) {
      test('a token with a session is checked with KSCHECK / KSINSPECT', async () => {
        const count = async (cmd) => {
          let n = 0;
          for (const { host, port } of CLUSTER) {
            const direct = new IORedis({ host, port, lazyConnect: true });
            try {
              const m = new RegExp(`cmdstat_jwtdeny\\.${cmd}:calls=(\\d+)`).exec(await direct.info('commandstats'));
              if (m) n += Number(m[1]);
            } finally {
              direct.disconnect();
            }
          }
          return n;
        };
        const { sub } = fresh();
        const tok = mint({ sub, sid: 'ks', iat: now() - 60, exp: now() + 3600 });
        const [c0, i0] = [await count('kscheck'), await count('ksinspect')];
        assert.equal((await jd.check(tok, { withClaims: true })).claims.sid, 'ks');
        assert.equal((await jd.inspect(tok)).status, 'active');
        assert.deepEqual([await count('kscheck') - c0, await count('ksinspect') - i0], [1, 1]);
      });

      test('each keyed command goes straight to the node that owns its keys (no MOVED)', async () => {
        const stats = async () => {
          let calls = 0;
          let rejected = 0;
          for (const { host, port } of CLUSTER) {
            const direct = new IORedis({ host, port, lazyConnect: true });
            try {
              const info = await direct.info('commandstats');
              // Every token's keyed check is a KSCHECK (the third key: session or sid-less).
              const m = /cmdstat_jwtdeny\.kscheck:calls=(\d+),.*rejected_calls=(\d+)/.exec(info);
              if (m) {
                calls += Number(m[1]);
                rejected += Number(m[2]);
              }
            } finally {
              direct.disconnect();
            }
          }
          return { calls, rejected };
        };
        const tokens = Array.from({ length: 24 }, () => fresh().token);
        for (const t of tokens) await jd.check(t); // slots and connections are known from here on
        const before = await stats();
        for (const t of tokens) assert.equal((await jd.check(t)).active, true);
        const after = await stats();
        assert.deepEqual({ calls: after.calls - before.calls, rejected: after.rejected - before.rejected },
          { calls: tokens.length, rejected: 0 });
      });
    }

    test('refused tokens reject with JwtdenyError and its code', async () => {
      const cases = [
        ['EXPIRED', mint({ sub: fresh().sub, iat: now() - 7200, exp: now() - 3600 })],
        ['BADSIG', mint({ sub: fresh().sub, iat: now() - 60, exp: now() + 3600 }, Buffer.from('wrong'))],
        ['NOTYET', mint({ sub: fresh().sub, iat: now() - 60, nbf: now() + 3600, exp: now() + 7200 })],
        ['MALFORMED', 'not-a-token'],
      ];
      for (const [code, token] of cases) {
        for (const call of [() => jd.check(token), () => jd.revoke(token), () => jd.check(token, { withClaims: true })]) {
          await assert.rejects(call, (err) => {
            assert.ok(err instanceof JwtdenyError, `${code}: ${err}`);
            assert.equal(err.code, code);
            assert.equal(err.name, 'JwtdenyError');
            return true;
          });
        }
      }
    });
  });
}

// -- HTTP guards -----------------------------------------------------------------------------

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
}
const get = async (base, token, urlPath = '/me') => {
  const res = await fetch(base + urlPath, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return {
    status: res.status, auth: res.headers.get('www-authenticate'), headers: res.headers,
    body: await res.json(),
  };
};

async function guardCases(base) {
  const { sub, token } = fresh({ scope: 'read' });
  const ok = await get(base, token);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.sub, sub);
  assert.equal(ok.body.scope, 'read');

  const none = await get(base, null);
  assert.equal(none.status, 401);
  assert.equal(none.auth, 'Bearer');

  const expired = await get(base, mint({ sub, iat: now() - 7200, exp: now() - 3600 }));
  assert.equal(expired.status, 401);
  assert.equal(expired.auth, 'Bearer error="invalid_token", error_description="EXPIRED"');
  assert.deepEqual(expired.body, {
    error: 'invalid_token', error_description: 'the token has expired', code: 'EXPIRED',
  });

  const forged = await get(base, mint({ sub, iat: now() - 60, exp: now() + 60 }, Buffer.from('x')));
  assert.equal(forged.auth, 'Bearer error="invalid_token", error_description="BADSIG"');

  const out = await get(base, token, '/logout');
  assert.deepEqual(out.body, { revoked: true });
  const revoked = await get(base, token);
  assert.equal(revoked.status, 401);
  assert.equal(revoked.auth, 'Bearer error="invalid_token", error_description="REVOKED"');
}

function expressApp(jd, options) {
  const app = express();
  app.use(jd.express(options));
  app.get('/me', (req, res) => res.json(req.auth));
  app.get('/logout', async (req, res) => res.json({ revoked: await jd.revoke(req.token) }));
  return app;
}

async function fastifyApp(jd, options) {
  const app = Fastify();
  app.decorateRequest('auth', null);
  app.decorateRequest('token', null);
  app.addHook('onRequest', jd.fastify(options));
  app.get('/me', async (request) => request.auth);
  app.get('/logout', async (request) => ({ revoked: await jd.revoke(request.token) }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return app;
}

describe(`${MODE}: guards`, () => {
  test('express: req.auth, 401 with RFC 6750 header, revoked', async () => {
    const jd = createJwtdeny(clients[names()[0]]);
    const server = expressApp(jd).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      await guardCases(`http://127.0.0.1:${server.address().port}`);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('fastify: request.auth, the same answers', async () => {
    const jd = createJwtdeny(clients[names()[1]]);
    const app = await fastifyApp(jd);
    try {
      await guardCases(`http://127.0.0.1:${app.server.address().port}`);
    } finally {
      await app.close();
    }
  });

  test('getToken replaces the bearer header', async () => {
    const jd = createJwtdeny(clients[names()[0]]);
    const app = express();
    app.use(jd.express({ getToken: (req) => req.headers['x-token'] }));
    app.get('/me', (req, res) => res.json(req.auth));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const { sub, token } = fresh();
      const res = await fetch(`http://127.0.0.1:${server.address().port}/me`, { headers: { 'x-token': token } });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).sub, sub);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

if (!CLUSTER) {
  describe('standalone: Redis unreachable', () => {
    let port;
    let down;
    before(async () => {
      port = await freePort(); // nothing listens there
      down = nodeRedis.createClient({
        socket: { host: '127.0.0.1', port, reconnectStrategy: false }, disableOfflineQueue: true,
      });
      down.on('error', () => {});
      await down.connect().catch(() => {});
    });
    after(() => {
      if (down.isOpen) down.destroy();
    });

    test('express and fastify answer 503 (fail closed)', async () => {
      const jd = createJwtdeny(down);
      const { token } = fresh();
      const server = expressApp(jd).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const app = await fastifyApp(jd);
      try {
        for (const base of [`http://127.0.0.1:${server.address().port}`,
          `http://127.0.0.1:${app.server.address().port}`]) {
          const res = await get(base, token);
          assert.equal(res.status, 503, base);
          assert.equal(res.body.error, 'unavailable');
          assert.equal(res.body.code, 'UNAVAILABLE');
        }
      } finally {
        server.closeAllConnections();
        server.close();
        await app.close();
      }
    });

    test('fastify: onUnavailable may let the request in (dangerous, but its choice)', async () => {
      const jd = createJwtdeny(down);
      const app = await fastifyApp(jd, {
        onUnavailable: async (err, request) => {
          request.auth = { sub: 'unchecked', why: String(err && err.name) };
        },
      });
      try {
        const res = await get(`http://127.0.0.1:${app.server.address().port}`, fresh().token);
        assert.equal(res.status, 200);
        assert.equal(res.body.sub, 'unchecked');
      } finally {
        await app.close();
      }
    });

    test('onUnavailable decides instead', async () => {
      const jd = createJwtdeny(down);
      const seen = [];
      const app = express();
      app.use(jd.express({
        onUnavailable: (err, req, res) => {
          seen.push(err);
          res.status(500).json({ error: 'custom' });
        },
      }));
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      try {
        const res = await get(`http://127.0.0.1:${server.address().port}`, fresh().token);
        assert.equal(res.status, 500);
        assert.equal(seen.length, 1);
        assert.ok(!(seen[0] instanceof JwtdenyError));
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });
  });
}

// Issue 17 §1.11: the guards hung while Redis did, and the quick start's client crashed the
// process when Redis stopped. The guards have their own deadline (503 with Retry-After), and a
// client built as the README's quick start survives Redis stopping and recovers.
if (!CLUSTER) {
  describe('standalone: Redis stopped or not answering', { timeout: 60000 }, () => {
    // A redis-server of its own, to stop and start again on the same port.
    async function ownRedis(port) {
      const child = await spawnRedis(port, fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-down-')), []);
      return { child, stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGKILL'); }) };
    }

    async function answersWithin(base, token, bound) {
      const started = Date.now();
      const res = await get(base, token);
      const took = Date.now() - started;
      assert.ok(took < bound, `answered after ${took} ms, bound ${bound} ms`);
      return res;
    }

    test('a client that queues while Redis is down: 503 with Retry-After at the deadline', async () => {
      const port = await freePort();
      const redis = await ownRedis(port);
      // node-redis with its defaults: an offline queue, reconnecting for ever.
      const client = nodeRedis.createClient({ socket: { host: '127.0.0.1', port } });
      client.on('error', () => {});
      await client.connect();
      const jd = createJwtdeny(client);
      const server = expressApp(jd, { timeoutMs: 300, retryAfter: 7 }).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const app = await fastifyApp(jd, { timeoutMs: 300 });
      try {
        const { token } = fresh();
        const base = `http://127.0.0.1:${server.address().port}`;
        assert.equal((await get(base, token)).status, 200);
        await redis.stop();
        const res = await answersWithin(base, token, 3000);
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('retry-after'), '7');
        assert.equal(res.body.error, 'unavailable');
        assert.equal(res.body.code, 'UNAVAILABLE');
        const fres = await answersWithin(`http://127.0.0.1:${app.server.address().port}`, token, 3000);
        assert.equal(fres.status, 503);
        assert.equal(fres.headers.get('retry-after'), '5');
      } finally {
        server.closeAllConnections();
        server.close();
        await app.close();
        client.destroy();
      }
    });

    test('a Redis that accepts connections and never answers: 503 at the deadline', async () => {
      const silent = net.createServer((sock) => sock.on('data', () => {}));
      await new Promise((r) => silent.listen(0, '127.0.0.1', r));
      const client = new IORedis({ host: '127.0.0.1', port: silent.address().port, lazyConnect: true });
      client.on('error', () => {});
      const jd = createJwtdeny(client);
      const server = expressApp(jd, { timeoutMs: 300 }).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      try {
        const res = await answersWithin(`http://127.0.0.1:${server.address().port}`, fresh().token, 3000);
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('retry-after'), '5');
      } finally {
        server.closeAllConnections();
        server.close();
        client.disconnect();
        silent.close();
      }
    });

    test("the quick start's client survives Redis stopping, and recovers", async () => {
      const port = await freePort();
      let redis = await ownRedis(port);
      // Exactly as clients/node/README.md's quick start builds it.
      const client = nodeRedis.createClient({
        url: `redis://127.0.0.1:${port}`,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: 2000,
          reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000),
        },
      });
      const errors = [];
      client.on('error', (err) => errors.push(err.message));
      await client.connect();
      const jd = createJwtdeny(client);
      const server = expressApp(jd).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const base = `http://127.0.0.1:${server.address().port}`;
      try {
        const { token } = fresh();
        assert.equal((await get(base, token)).status, 200);
        await redis.stop();
        const down = await answersWithin(base, token, 3000);
        assert.equal(down.status, 503);
        redis = await ownRedis(port);
        let status = 0;
        for (let i = 0; i < 100 && status !== 200; i += 1) {
          status = (await get(base, token)).status;
          if (status !== 200) await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(status, 200, 'requests succeed again once Redis is back');
        assert.ok(errors.length > 0, 'the error listener saw the outage');
      } finally {
        server.closeAllConnections();
        server.close();
        await client.close().catch(() => {});
        await redis.stop();
      }
    });
  });
}
