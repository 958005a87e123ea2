'use strict';
// Unit tests of jwtdeny-keys.js (node's built-in test runner): `node --test clients/node/test`.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const jk = require('../jwtdeny-keys');

const ROOT = path.resolve(__dirname, '../../..');
const VECTORS = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/vectors/vectors.json'))).vectors;
const KEY_CASES = JSON.parse(
  fs.readFileSync(path.join(ROOT, 'clients/testdata/key-cases.json'), 'utf8'),
);
const CASES = KEY_CASES.cases;
const LOGOUT_VECTORS = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/vectors/logout.json')));

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64url');
// An (unsigned) token with this exact payload text: the helpers never verify.
const tokenWith = (payload) => `${b64('{"alg":"HS256"}')}.${b64(payload)}.${b64('sig')}`;

test('active vectors give jwtdeny:{<sub>}:<iat>', () => {
  const active = VECTORS.filter((v) => v.expect === 'active');
  assert.ok(active.length >= 14);
  for (const v of active) {
    const want = { entry: `jwtdeny:{${v.sub}}:${v.iat}`, subject: `jwtdeny:{${v.sub}}` };
    assert.deepEqual(jk.keysFor(v.token), want, v.name);
    assert.deepEqual(jk.keysFor(Buffer.from(v.token)), want, v.name);
    assert.equal(jk.subjectKey(v.sub), want.subject, v.name);
  }
});

test('iat-float and iat-exponent vectors are whole seconds', () => {
  for (const name of ['iat-float', 'iat-exponent']) {
    const v = VECTORS.find((x) => x.name === name);
    assert.deepEqual(jk.keysFor(v.token), {
      entry: 'jwtdeny:{carol}:1767225800',
      subject: 'jwtdeny:{carol}',
    });
  }
});

for (const c of CASES) {
  test(`shared case: ${c.note || c.payload}`, () => {
    const token = tokenWith(c.payload);
    if (c.error === true) {
      assert.throws(() => jk.keysFor(token));
    } else if (c.error === 'may') {
      try {
        jk.keysFor(token);
      } catch {
        /* either is fine: the server refuses this token */
      }
    } else {
      assert.deepEqual(jk.keysFor(token), { entry: c.entry, subject: c.subject });
      assert.equal(jk.sessionKeyFor(token), c.session ?? null);
    }
  });
}

for (const c of KEY_CASES.logout_cases) {
  test(`shared logout case: ${c.note || c.payload}`, () => {
    const token = tokenWith(c.payload);
    if (c.error) {
      assert.throws(() => jk.logoutKeysFor(token));
    } else {
      assert.deepEqual(jk.logoutKeysFor(token), { subject: c.subject, session: c.session });
    }
  });
}

test('logout vectors give the keys of what they end', () => {
  for (const v of LOGOUT_VECTORS.logout.filter((x) => x.expect === 'ok')) {
    const { sub, sid } = v.revokes;
    const subject = `jwtdeny:{${sub}}`;
    const session = sid === null ? subject : `${subject}:sid:${sid}`;
    assert.deepEqual(jk.logoutKeysFor(v.token), { subject, session }, v.name);
  }
  const access = Object.fromEntries(LOGOUT_VECTORS.access.map((v) => [v.name, v.token]));
  assert.equal(jk.sessionKeyFor(access['alice-sess-1']), 'jwtdeny:{alice}:sid:sess-1');
  assert.equal(jk.sessionKeyFor(access['alice-no-sid']), null);
});

test('session helpers refuse what the server refuses', () => {
  assert.throws(() => jk.sessionKeyFor(tokenWith('{"sub":"a","iat":5,"sid":"\\udc00"}')));
  for (const bad of ['', null, 5]) assert.throws(() => jk.sessionKey('a', bad));
  assert.equal(jk.sessionKey('a{b', 's', { prefix: 'p:' }), 'p:{a%7Bb}:sid:s');
});

test('prefix option', () => {
  const token = tokenWith('{"sub":"a{b","iat":7}');
  assert.deepEqual(jk.keysFor(token, { prefix: 'p:' }), { entry: 'p:{a%7Bb}:7', subject: 'p:{a%7Bb}' });
  assert.equal(jk.subjectKey('a{b', { prefix: 'p:' }), 'p:{a%7Bb}');
  assert.equal(jk.subjectKey('a{b'), 'jwtdeny:{a%7Bb}');
});

test('the hash tag is the whole encoded subject, and decodes back', () => {
  for (const sub of ['}', '{', 'a}b', '{x}', '%', '}{', '{}', 'a:b', '{a}:1']) {
    const { entry, subject } = jk.keysFor(tokenWith(JSON.stringify({ sub, iat: 1 })));
    const open = entry.indexOf('{');
    const close = entry.indexOf('}', open + 1);
    const tag = entry.slice(open + 1, close);
    assert.equal(tag, jk.encodeSubject(sub));
    assert.ok(entry.startsWith(subject));
    assert.equal(tag.replaceAll('%7B', '{').replaceAll('%7D', '}').replaceAll('%25', '%'), sub);
  }
});

test('tokens that cannot be JWTs are refused', () => {
  for (const t of ['', 'a.b', 'a.b.c.d', 'x.!!!.y', 'x.a.y', 'x.YQ==.y', 'x. eyJ9.y', null, 5]) {
    assert.throws(() => jk.keysFor(t), undefined, String(t));
  }
  for (const s of ['', null, 5]) assert.throws(() => jk.subjectKey(s));
});

test('wrappers send the documented cluster.sendCommand calls', async () => {
  const v = VECTORS.find((x) => x.expect === 'active');
  const t = v.token;
  const e = `jwtdeny:{${v.sub}}:${v.iat}`;
  const s = `jwtdeny:{${v.sub}}`;
  const calls = [];
  const cluster = { sendCommand: async (...a) => (calls.push(a), 1) };
  await jk.kcheck(cluster, t);
  await jk.kcheck(cluster, t, { withClaims: true });
  await jk.krevoke(cluster, t);
  await jk.kinspect(cluster, t);
  await jk.krevokeall(cluster, v.sub);
  await jk.krevokeall(cluster, v.sub, { at: 1767225600 });
  assert.deepEqual(calls, [
    // A token without sid declares its subject's sid-less cutoff as the third key.
    [e, true, ['JWTDENY.KSCHECK', e, s, `${s}:nosid`, t]],
    [e, true, ['JWTDENY.KSCHECK', e, s, `${s}:nosid`, t, 'WITHCLAIMS']],
    [e, false, ['JWTDENY.KREVOKE', e, s, t]],
    [e, true, ['JWTDENY.KSINSPECT', e, s, `${s}:nosid`, t]],
    [s, false, ['JWTDENY.KREVOKEALL', s, v.sub]],
    [s, false, ['JWTDENY.KREVOKEALL', s, v.sub, 'AT', '1767225600']],
  ]);
});

test('wrappers declare the session of a token that has one', async () => {
  const t = tokenWith('{"sub":"alice","iat":5,"sid":"s-1"}');
  const [e, s, ss] = ['jwtdeny:{alice}:5', 'jwtdeny:{alice}', 'jwtdeny:{alice}:sid:s-1'];
  const loSid = tokenWith('{"sub":"alice","sid":"s-1","iat":5}');
  const loSub = tokenWith('{"sub":"alice","iat":5}');
  const calls = [];
  const cluster = { sendCommand: async (...a) => (calls.push(a), 1) };
  await jk.kcheck(cluster, t);
  await jk.kcheck(cluster, t, { withClaims: true });
  await jk.kinspect(cluster, t);
  await jk.krevoke(cluster, t);
  await jk.klogout(cluster, loSid);
  await jk.klogout(cluster, loSub);
  await jk.krevokesession(cluster, 'alice', 's-1');
  assert.deepEqual(calls, [
    [e, true, ['JWTDENY.KSCHECK', e, s, ss, t]],
    [e, true, ['JWTDENY.KSCHECK', e, s, ss, t, 'WITHCLAIMS']],
    [e, true, ['JWTDENY.KSINSPECT', e, s, ss, t]],
    [e, false, ['JWTDENY.KREVOKE', e, s, t]],
    [s, false, ['JWTDENY.KLOGOUT', s, ss, `${s}:nosid`, loSid]],
    [s, false, ['JWTDENY.KLOGOUT', s, s, `${s}:nosid`, loSub]],
    [s, false, ['JWTDENY.KREVOKESESSION', s, ss, `${s}:nosid`, 'alice', 's-1']],
  ]);
});
