'use strict';
// What the package's test files share: the environment run-tests.sh (or the cluster suite)
// sets, HS256 tokens signed with the server's test key, and a redis-server of their own.
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run clients/node/run-tests.sh)`);
  return v;
};
const SECRET = fs.readFileSync(env('JWTDENY_TEST_HS256_FILE'));
const KID = env('JWTDENY_TEST_KID');
const CLUSTER = process.env.JWTDENY_CLUSTER_NODES
  ? process.env.JWTDENY_CLUSTER_NODES.split(',').map((hp) => {
    const [host, port] = hp.split(':');
    return { host, port: Number(port) };
  })
  : null;
const MODE = CLUSTER ? 'cluster' : 'standalone';

const b64 = (s) => Buffer.from(s).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
function mint(claims, secret = SECRET, typ = 'JWT') {
  const input = `${b64(JSON.stringify({ alg: 'HS256', typ, kid: KID }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// A redis-server with the module on `port` in `dir`, once it accepts connections.
async function spawnRedis(port, dir, moduleArgs) {
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', 'no', '--loadmodule', env('JWTDENY_MODULE'),
    'keys-file', env('JWTDENY_TEST_KEYS_FILE'), ...moduleArgs,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => child.kill('SIGKILL'));
  await new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${log}`)), 10000);
    const onData = (chunk) => {
      log += chunk;
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
  });
  return child;
}

module.exports = {
  env, SECRET, KID, CLUSTER, MODE, b64, now, mint, freePort, spawnRedis,
};
