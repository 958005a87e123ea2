'use strict';
// The README's quick start, run as written: its first ```js block, taken from the installed
// package's README, saved as app.mjs in this project (which installed the packed tarball,
// express and node-redis) and run with node against a server of its own; then a token through
// it, and a logout. Standalone only.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { CLUSTER, now, mint, freePort, spawnRedis } = require('./support.js');

let redisProc;
let tmpDir;
let redisPort;
before(async () => {
  if (CLUSTER) return;
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-qs-'));
  redisPort = await freePort();
  redisProc = await spawnRedis(redisPort, tmpDir, []);
});
after(() => {
  if (redisProc) redisProc.kill('SIGTERM');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

test('the quick start runs as written', { skip: Boolean(CLUSTER) }, async () => {
  const readme = fs.readFileSync(path.join(path.dirname(require.resolve('jwtdeny/package.json')), 'README.md'), 'utf8');
  const block = /## Quick start\s+```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'the README has a quick start');
  // In this project, so that its imports resolve to what it installed.
  const app = path.join(__dirname, '..', `quickstart-${process.pid}.mjs`);
  fs.writeFileSync(app, block[1]);
  const port = await freePort();
  const child = spawn(process.execPath, [app], {
    env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${redisPort}`, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`the quick start did not listen:\n${out}`)), 10000);
      const onData = (chunk) => {
        out += chunk;
        if (out.includes(`listening on ${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => reject(new Error(`the quick start exited (${code}):\n${out}`)));
    });
    const base = `http://127.0.0.1:${port}`;
    const token = mint({ sub: 'quickstart', iat: now() - 10, exp: now() + 600 });
    const auth = { authorization: `Bearer ${token}` };
    const me = await fetch(`${base}/me`, { headers: auth });
    assert.equal(me.status, 200);
    assert.equal((await me.json()).sub, 'quickstart');
    const out = await fetch(`${base}/logout`, { method: 'POST', headers: auth });
    assert.deepEqual(await out.json(), { revoked: true });
    assert.equal((await fetch(`${base}/me`, { headers: auth })).status, 401);
    assert.equal((await fetch(`${base}/me`)).status, 401);
  } finally {
    child.kill('SIGTERM');
    fs.rmSync(app, { force: true });
  }
});
