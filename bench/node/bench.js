#!/usr/bin/env node
// jwtdeny against the pattern it replaces (issue 4, section 5). See bench/README.md.
//
// The same number of checks, done two ways from one Node process through node-redis:
//   classic: jsonwebtoken.verify() in Node, then GET of the denylist key
//   jwtdeny: JWTDENY.CHECK <token> (verification and denylist lookup inside redis-server)
// for HS256 and RS256, printing checks/s, the Node process's CPU seconds per 100k checks
// (process.cpuUsage(): user + system) and redis-server's CPU seconds per 100k (INFO cpu).
// It starts its own redis-server with the module on a free loopback port and stops it after.
// The checks are split into rounds that alternate between the two ways; checks/s is the median
// of the rounds (one disturbed round on a shared machine does not decide it), CPU is the total.
//
//   node bench/node/bench.js [--checks 48000] [--rounds 3] [--tokens 1000] [--revoked 10]
//                            [--concurrency 50] [--algs HS256,RS256] [--json]
//                            [--module target/release/libjwtdeny.so] [--redis-server redis-server]
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { createClient } = require('redis');

const REPO = path.resolve(__dirname, '..', '..');
const PRIVATE = path.join(REPO, 'tests', 'vectors', 'private');

function parseArgs(argv) {
  const o = {
    checks: Number(process.env.NODE_BENCH_CHECKS || 48000),
    rounds: 3,
    tokens: 1000,
    revoked: 10,
    concurrency: 50,
    algs: 'HS256,RS256',
    module: path.join(REPO, 'target', 'release', 'libjwtdeny.so'),
    keysFile: path.join(REPO, 'tests', 'vectors', 'jwks.json'),
    redisServer: 'redis-server',
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--checks': o.checks = Number(val()); break;
      case '--rounds': o.rounds = Number(val()); break;
      case '--tokens': o.tokens = Number(val()); break;
      case '--revoked': o.revoked = Number(val()); break;
      case '--concurrency': o.concurrency = Number(val()); break;
      case '--algs': o.algs = val(); break;
      case '--module': o.module = path.resolve(val()); break;
      case '--keys-file': o.keysFile = path.resolve(val()); break;
      case '--redis-server': o.redisServer = val(); break;
      case '--json': o.json = true; break;
      case '-h': case '--help':
        console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 16).join('\n'));
        process.exit(0);
      default: die(`unknown argument ${a}`);
    }
  }
  for (const k of ['checks', 'rounds', 'tokens', 'revoked', 'concurrency']) {
    if (!Number.isInteger(o[k]) || o[k] < 0) die(`--${k} must be a non-negative integer`);
  }
  if (o.tokens < 1 || o.checks < 1 || o.concurrency < 1 || o.rounds < 1) {
    die('--tokens, --checks, --rounds, --concurrency must be >= 1');
  }
  o.perRound = Math.ceil(o.checks / o.rounds);
  o.checks = o.perRound * o.rounds;
  if (o.revoked > o.tokens) die('--revoked must be <= --tokens');
  return o;
}

function die(msg) {
  console.error(`bench/node: ${msg}`);
  process.exit(2);
}

// The classic side gets KeyObjects made once, as a careful app (or jwks-rsa) does: handing
// jsonwebtoken.verify a Buffer or PEM string re-imports the key on every call (~10x slower here).
const ALGS = {
  HS256: {
    kid: 'shared-hs256',
    sign: fs.readFileSync(path.join(PRIVATE, 'shared-hs256.key')),
    verify: crypto.createSecretKey(fs.readFileSync(path.join(PRIVATE, 'shared-hs256.key'))),
  },
  RS256: {
    kid: 'shared-rsa',
    sign: fs.readFileSync(path.join(PRIVATE, 'shared-rsa.pem')),
    verify: crypto.createPublicKey(fs.readFileSync(path.join(PRIVATE, 'shared-rsa.pub.pem'))),
  },
};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(o) {
  if (!fs.existsSync(o.module)) die(`module not built: ${o.module} (cargo build --release)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtdeny-node-bench-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', path.join(dir, 'redis.log'),
    '--loadmodule', o.module, 'keys-file', o.keysFile];
  const proc = spawn(o.redisServer, args, { stdio: 'ignore' });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  for (let i = 0; i < 100; i++) {
    if (exited !== null) break;
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return { proc, port, dir, args };
    await sleep(50);
  }
  let log = '';
  try { log = fs.readFileSync(path.join(dir, 'redis.log'), 'utf8'); } catch (_) { /* none */ }
  proc.kill('SIGKILL');
  die(`redis-server did not start on port ${port}\n${log.split('\n').slice(-15).join('\n')}`);
}

async function serverCpu(client) {
  const info = await client.sendCommand(['INFO', 'cpu']);
  const get = (k) => Number((String(info).match(new RegExp(`^${k}:([0-9.]+)`, 'm')) || [])[1] || 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

// Runs `n` checks with `concurrency` in flight (node-redis pipelines what is in flight).
async function run(n, concurrency, tokens, check) {
  let next = 0;
  let revoked = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      if (!(await check(tokens[i % tokens.length]))) revoked++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return revoked;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const server = await startServer(o);
  const client = createClient({ socket: { host: '127.0.0.1', port: server.port } });
  client.on('error', (e) => die(`redis client: ${e.message}`));
  const rows = [];
  try {
    await client.connect();
    const now = Math.floor(Date.now() / 1000);
    for (const alg of o.algs.split(',').filter(Boolean)) {
      const a = ALGS[alg];
      if (!a) die(`unsupported algorithm ${alg} (HS256, RS256)`);
      // A pool of session tokens, each checked many times, as on a real API; a few revoked.
      const tokens = [];
      for (let i = 0; i < o.tokens; i++) {
        tokens.push(jwt.sign({ sub: `node-${alg}-${i}`, iat: now, exp: now + 86400 }, a.sign,
          { algorithm: alg, keyid: a.kid }));
      }
      for (let i = 0; i < o.revoked; i++) {
        // Spread over the pool; both ways see the same denylist entries.
        const r = await client.sendCommand(['JWTDENY.REVOKE', tokens[Math.floor(i * o.tokens / o.revoked)]]);
        if (Number(r) !== 1) die(`JWTDENY.REVOKE answered ${r}`);
      }
      const expectRevoked = countRevoked(o.perRound, o);

      const ways = {
        classic: async (token) => {
          const p = jwt.verify(token, a.verify, { algorithms: [alg] });
          const v = await client.get(`jwtdeny:{${p.sub}}:${p.iat}`);
          return v === null;
        },
        jwtdeny: async (token) => Number(await client.sendCommand(['JWTDENY.CHECK', token])) === 1,
      };
      const acc = {};
      for (const [way, check] of Object.entries(ways)) {
        await run(Math.min(2000, o.checks), o.concurrency, tokens, check); // warm-up (JIT, sockets)
        acc[way] = { rates: [], secs: 0, nodeCpu: 0, serverCpu: 0 };
      }
      for (let round = 0; round < o.rounds; round++) {
        for (const [way, check] of Object.entries(ways)) {
          const srv0 = await serverCpu(client);
          const cpu0 = process.cpuUsage();
          const t0 = process.hrtime.bigint();
          const revoked = await run(o.perRound, o.concurrency, tokens, check);
          const secs = Number(process.hrtime.bigint() - t0) / 1e9;
          const cpu = process.cpuUsage(cpu0);
          const srv = (await serverCpu(client)) - srv0;
          if (revoked !== expectRevoked) {
            die(`${alg} ${way}: ${revoked} revoked answers, expected ${expectRevoked}`);
          }
          const w = acc[way];
          w.rates.push(o.perRound / secs);
          w.secs += secs;
          w.nodeCpu += (cpu.user + cpu.system) / 1e6;
          w.serverCpu += srv;
        }
      }
      for (const [way, w] of Object.entries(acc)) {
        const sorted = [...w.rates].sort((x, y) => x - y);
        rows.push({
          alg, way, checks: o.checks, secs: w.secs,
          checks_per_sec: sorted[Math.floor(sorted.length / 2)],
          checks_per_sec_rounds: w.rates,
          node_cpu_s_per_100k: w.nodeCpu * 100000 / o.checks,
          server_cpu_s_per_100k: w.serverCpu * 100000 / o.checks,
        });
      }
    }
  } finally {
    try { await client.close(); } catch (_) { client.destroy(); }
    server.proc.kill('SIGTERM');
    await new Promise((r) => { server.proc.once('exit', r); setTimeout(r, 5000); });
    fs.rmSync(server.dir, { recursive: true, force: true });
  }

  const cfg = `${o.checks} checks per row in ${o.rounds} alternating rounds (checks/s: the median ` +
    `round), ${o.tokens} distinct tokens cycled (${o.revoked} revoked), ${o.concurrency} in flight ` +
    `over one node-redis connection; Node ${process.version}, node-redis ` +
    `${require('redis/package.json').version}, jsonwebtoken ${require('jsonwebtoken/package.json').version}`;
  if (o.json) {
    console.log(JSON.stringify({ config: cfg, rows }));
    return;
  }
  console.log(`Node comparison: ${cfg}`);
  console.log('');
  console.log('| alg | way | checks/s | × classic | Node CPU s / 100k | redis CPU s / 100k |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const base = rows.find((x) => x.alg === r.alg && x.way === 'classic');
    const label = r.way === 'classic' ? 'jsonwebtoken.verify + GET' : 'JWTDENY.CHECK';
    console.log(`| ${r.alg} | ${label} | ${Math.round(r.checks_per_sec)} | ` +
      `${(r.checks_per_sec / base.checks_per_sec).toFixed(2)} | ${r.node_cpu_s_per_100k.toFixed(2)} | ` +
      `${r.server_cpu_s_per_100k.toFixed(2)} |`);
  }
}

// How many of `checks` answers are "revoked" when cycling the pool in order.
function countRevoked(checks, o) {
  const revokedIdx = new Set();
  for (let i = 0; i < o.revoked; i++) revokedIdx.add(Math.floor(i * o.tokens / o.revoked));
  let n = 0;
  for (const idx of revokedIdx) {
    // token idx is checked at i = idx, idx + tokens, ... < checks
    if (idx < checks) n += Math.floor((checks - 1 - idx) / o.tokens) + 1;
  }
  return n;
}

main().catch((e) => die(e.stack || String(e)));
