'use strict';
// node-redis createCluster against the real cluster that tests/cluster/test_clients.py starts.
// It is run by that test (`node --test node/cluster.test.js` with JWTDENY_SCENARIO=<json file>),
// which then checks with redis-py and redis-cli that what this file revoked is seen everywhere.
//
// Scenario: { rootNode, ports: [every live node], revokedElsewhere: [tokens revoked by redis-py
// and redis-cli], active: [tokens nobody revoked], toRevoke: [tokens this file revokes],
// revokeAll: { sub, at, before: [tokens], after: [tokens] } (this file runs KREVOKEALL),
// seenRevokeAll: { before: [...], after: [...] } (KREVOKEALLs made by the other clients) }
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createCluster, createClient } = require('redis');
const jk = require(path.resolve(__dirname, '../../../clients/node/jwtdeny-keys.js'));

const file = process.env.JWTDENY_SCENARIO;
if (!file) {
  console.error('JWTDENY_SCENARIO is not set: this file is run by tests/cluster/test_clients.py');
  process.exit(2);
}
const S = JSON.parse(fs.readFileSync(file, 'utf8'));

let cluster; // masters only
let replicaCluster; // useReplicas: reads spread over masters and replicas
test.before(async () => {
  cluster = createCluster({ rootNodes: [{ url: `redis://${S.rootNode}` }] });
  replicaCluster = createCluster({
    rootNodes: [{ url: `redis://${S.rootNode}` }],
    useReplicas: true,
  });
  for (const c of [cluster, replicaCluster]) {
    c.on('error', (e) => console.error('cluster client error', e));
    await c.connect();
  }
});
test.after(async () => {
  await cluster?.close();
  await replicaCluster?.close();
});

test('discovers all 6 nodes from one', () => {
  assert.equal(cluster.masters.length, 3);
  assert.equal(replicaCluster.masters.length, 3);
  assert.equal(replicaCluster.replicas.length, 3);
});

test('sees revocations made by redis-py and redis-cli (masters and replicas)', async () => {
  for (const c of [cluster, replicaCluster]) {
    for (const t of S.revokedElsewhere) assert.equal(await jk.kcheck(c, t), 0, t);
    for (const t of S.active) assert.equal(await jk.kcheck(c, t), 1, t);
  }
});

test('sees REVOKEALLs made by the other clients', async () => {
  for (const c of [cluster, replicaCluster]) {
    for (const t of S.seenRevokeAll.before) assert.equal(await jk.kcheck(c, t), 0, t);
    for (const t of S.seenRevokeAll.after) assert.equal(await jk.kcheck(c, t), 1, t);
  }
});

test('KREVOKE with cluster.sendCommand(entry, false, [...])', async () => {
  for (const t of S.toRevoke) {
    const { entry, subject } = jk.keysFor(t);
    // The exact call, spelled out once: the first key routes it.
    assert.equal(await cluster.sendCommand(entry, false, ['JWTDENY.KREVOKE', entry, subject, t]), 1);
    // node-redis keeps one connection per node, so a WAIT routed by the same key counts the
    // revocation: 1 = its replica has it.
    assert.equal(await cluster.sendCommand(entry, false, ['WAIT', '1', '1000']), 1);
    assert.equal(await jk.krevoke(cluster, t), 0, 'already revoked');
    assert.equal(await cluster.sendCommand(entry, true, ['JWTDENY.KCHECK', entry, subject, t]), 0);
  }
});

test('KCHECK WITHCLAIMS and KINSPECT', async () => {
  const t = S.active[0];
  const [ok, claims] = await jk.kcheck(cluster, t, { withClaims: true });
  assert.equal(ok, 1);
  assert.equal(JSON.parse(claims).sub, jk.claimsOf(t).sub);
  const fields = await jk.kinspect(cluster, S.toRevoke[0]);
  const m = {};
  for (let i = 0; i < fields.length; i += 2) m[fields[i]] = fields[i + 1];
  assert.equal(m.status, 'revoked');
  assert.equal(m.revoked_by, 'token');
  assert.equal(m.key, jk.keysFor(S.toRevoke[0]).entry);
});

test('KREVOKEALL: issued at or before the cutoff → 0, after → 1', async () => {
  const { sub, at, before, after } = S.revokeAll;
  for (const t of [...before, ...after]) assert.equal(await jk.kcheck(cluster, t), 1, t);
  const key = jk.subjectKey(sub);
  assert.equal(
    await cluster.sendCommand(key, false, ['JWTDENY.KREVOKEALL', key, sub, 'AT', String(at)]),
    at,
  );
  assert.equal(await jk.krevokeall(cluster, sub, { at: at - 100 }), at, 'the cutoff only moves forward');
  for (const t of before) assert.equal(await jk.kcheck(cluster, t), 0, t);
  for (const t of after) assert.equal(await jk.kcheck(cluster, t), 1, t);
});

test('a declared key that is not the token\'s own is refused', async () => {
  const t = S.active[0];
  const { entry, subject } = jk.keysFor(t);
  const wrong = `${entry}1`;
  await assert.rejects(
    cluster.sendCommand(wrong, false, ['JWTDENY.KREVOKE', wrong, subject, t]),
    /does not match the derived key/,
  );
  assert.equal(await jk.kcheck(cluster, t), 1, 'nothing was written');
});

test('standalone JWTDENY.CHECK is refused on every node, never answered 0/1', async () => {
  const t = S.revokedElsewhere[0];
  const { entry, subject } = jk.keysFor(t);
  // Keyless, so node-redis sends it to some node of its choosing.
  await assert.rejects(
    cluster.sendCommand(undefined, true, ['JWTDENY.CHECK', t]),
    (e) => e.message.startsWith(`ERR in Redis Cluster use the keyed form JWTDENY.KCHECK '${entry}' '${subject}'`),
  );
  for (const port of S.ports) {
    const c = createClient({ url: `redis://127.0.0.1:${port}` });
    await c.connect();
    try {
      await assert.rejects(c.sendCommand(['JWTDENY.CHECK', t]), /use the keyed form JWTDENY\.KCHECK/);
    } finally {
      await c.close();
    }
  }
});
