'use strict';
// Several issuers (jwtdeny.issuers-file): with the registry, the package places each token by
// its iss exactly as the server does, so the keyed forms (forced here on a standalone server)
// name the scoped keys the server derives, and revocations never cross issuers.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const jwtdeny = require('jwtdeny');
const nodeRedis = require('redis');
const {
  SECRET, KID, CLUSTER, b64, now, freePort, spawnRedis,
} = require('./support.js');

const ACME = 'https://acme.example/';
const KC = 'https://sso.example/realms/{tenant}';
const secretOf = (name) => Buffer.from(`${name}-secret-of-at-least-thirty-two-bytes!`);

function mintWith(secret, claims) {
  const input = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: KID }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

let proc;
let client;
let registry;
before(async () => {
  if (CLUSTER) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-node-issuers-'));
  registry = { issuers: { acme: { issuer: ACME, 'max-lifetime': 86400 }, kc: { issuer: KC, tenants: ['t1', 't2'] } } };
  for (const [name, entry] of Object.entries(registry.issuers)) {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({ keys: [{ kty: 'oct', kid: KID, alg: 'HS256', k: secretOf(name).toString('base64url') }] }));
    entry['keys-file'] = file;
  }
  const file = path.join(dir, 'issuers.json');
  fs.writeFileSync(file, JSON.stringify(registry));
  const port = await freePort();
  proc = await spawnRedis(port, dir, ['issuers-file', file, 'max-lifetime', '86400']);
  client = nodeRedis.createClient({ socket: { host: '127.0.0.1', port } });
  client.on('error', () => {});
  await client.connect();
});

after(async () => {
  if (client) await client.close();
  if (proc) proc.kill();
});

for (const keyed of [false, true]) {
  test(`issuers scope their subjects' keys (keyed: ${keyed})`, { skip: Boolean(CLUSTER) }, async () => {
    const jd = jwtdeny.createJwtdeny(client, { cluster: keyed, issuers: registry });
    const sub = `node-issuers-${keyed}`;
    const t = now();
    const token = (secret, iss, extra = {}) => mintWith(secret, {
      sub, iat: t - 60, exp: t + 3600, ...(iss ? { iss } : {}), ...extra,
    });
    const t1 = KC.replace('{tenant}', 't1');
    const t2 = KC.replace('{tenant}', 't2');
    const acme = token(secretOf('acme'), ACME);
    const dflt = token(SECRET, null);
    const kc1 = token(secretOf('kc'), t1);
    const kc2 = token(secretOf('kc'), t2);
    const issuers = new jwtdeny.Issuers(registry);
    assert.deepEqual([acme, dflt, kc1, kc2].map((x) => issuers.scopeFor(x)), ['%acme:', '', '%kc.t1:', '%kc.t2:']);
    assert.deepEqual(jwtdeny.keysFor(acme, { issuers }), {
      entry: `jwtdeny:{%acme:${sub}}:${t - 60}`, subject: `jwtdeny:{%acme:${sub}}`,
    });
    for (const x of [acme, dflt, kc1, kc2]) assert.equal((await jd.check(x)).active, true);
    await assert.rejects(jd.check(token(secretOf('acme'), t1)), jwtdeny.JwtdenyError);
    assert.equal(await jd.revoke(acme), true);
    assert.ok((await client.keys('*')).includes(`jwtdeny:{%acme:${sub}}:${t - 60}`));
    assert.equal((await jd.check(acme)).active, false);
    assert.equal((await jd.check(dflt)).active, true);
    assert.ok(await jd.revokeAll(sub, { issuer: t1 }) >= t);
    assert.equal((await jd.check(kc1)).active, false);
    assert.equal((await jd.check(kc2)).active, true);
    await assert.rejects(jd.revokeAll(sub, { issuer: 'kc' })); // a template needs its tenant's iss
    await assert.rejects(jd.revokeAll(sub, { issuer: 'nobody' }));
    const withSid = token(secretOf('acme'), ACME, { sid: 's1', iat: t - 30 });
    assert.equal((await jd.check(withSid)).active, true);
    assert.equal(await jd.revokeSession(sub, 's1', { issuer: 'acme' }), true);
    assert.equal((await jd.check(withSid)).active, false);
    assert.ok((await client.keys('*')).includes(`jwtdeny:{%acme:${sub}}:sid:s1`));
    assert.equal((await jd.check(dflt)).active, true, "the default issuer's subject untouched");
    assert.ok(await jd.revokeAll(sub) >= t);
    assert.equal((await jd.check(dflt)).active, false);
    assert.equal((await jd.check(kc2)).active, true, "t2's subject untouched by the default's cutoff");
  });
}
