#!/usr/bin/env node
// jwtdeny against the pattern it replaces (issue 4, section 5; issue 12 §4). See bench/README.md.
//
// The same number of checks, done two ways from one Node process, through node-redis and ioredis:
//   classic: jsonwebtoken.verify() in Node, then GET of the denylist key
//   jwtdeny: JWTDENY.CHECK <token> (verification and denylist lookup inside redis-server)
// for HS256 and RS256, printing checks/s, the Node process's CPU µs per check
// (process.cpuUsage(): user + system) and redis-server's CPU µs per check (INFO cpu).
// It starts its own redis-server with the module on a free loopback port and stops it after.
// The checks are split into rounds; each round runs every client and way in turn; checks/s is
// the median of the rounds (one disturbed round on a shared machine does not decide it), CPU is
// the total. Both clients send the 50 in flight coalesced on one connection, with no per-command
// timeout; --client-defaults uses them as shipped instead (see bench/README.md).
//
//   node bench/node/bench.js [--checks 48000] [--rounds 3] [--tokens 1000] [--revoked 10]
//                            [--concurrency 50] [--algs HS256,RS256] [--clients node-redis,ioredis]
//                            [--client-defaults] [--json]
//                            [--module target/release/libjwtdeny.so] [--redis-server redis-server]
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');

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
    clients: 'node-redis,ioredis',
    clientDefaults: false,
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
      case '--clients': o.clients = val(); break;
      case '--client-defaults': o.clientDefaults = true; break;
      case '--module': o.module = path.resolve(val()); break;
      case '--keys-file': o.keysFile = path.resolve(val()); break;
      case '--redis-server': o.redisServer = val(); break;
      case '--json': o.json = true; break;
      case '-h': case '--help':
        console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 17).join('\n'));
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
  o.clients = o.clients.split(',').filter(Boolean);
  for (const c of o.clients) {
    if (!CLIENTS[c]) die(`unknown client ${c} (${Object.keys(CLIENTS).join(', ')})`);
  }
  if (!o.clients.length) die('--clients needs at least one client');
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

// What each way needs of a client, with the clients set up alike: the checks in flight leave
// coalesced in one write per event-loop turn (node-redis always does this; ioredis only with
// enableAutoPipelining) and no command carries a timer. As shipped, node-redis 6 arms a 5 s
// AbortSignal.timeout() for every command (~20 µs of Node CPU each on Node 20, 4x the rest of
// the command) and ioredis pays a write() per command: costs of the client, the same for a GET
// and a JWTDENY.CHECK, that buried the difference between the two ways. --client-defaults
// measures the clients as shipped.
const CLIENTS = {
  'node-redis': {
    version: () => require('redis/package.json').version,
    async connect(port, asShipped) {
      const { createClient } = require('redis');
      const c = createClient({
        socket: { host: '127.0.0.1', port },
        ...(asShipped ? {} : { commandOptions: { timeout: 0 } }),
      });
      c.on('error', (e) => die(`node-redis: ${e.message}`));
      await c.connect();
      return {
        get: (key) => c.get(key),
        call: (args) => c.sendCommand(args),
        close: async () => { try { await c.close(); } catch (_) { c.destroy(); } },
      };
    },
  },
  ioredis: {
    version: () => require('ioredis/package.json').version,
    async connect(port, asShipped) {
      const Redis = require('ioredis');
      const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true,
        enableAutoPipelining: !asShipped });
      c.on('error', (e) => die(`ioredis: ${e.message}`));
      await c.connect();
      return {
        get: (key) => c.get(key),
        call: (args) => c.call(...args),
        close: async () => { try { await c.quit(); } catch (_) { c.disconnect(); } },
      };
    },
  },
};

async function serverCpu(client) {
  const info = await client.call(['INFO', 'cpu']);
  const get = (k) => Number((String(info).match(new RegExp(`^${k}:([0-9.]+)`, 'm')) || [])[1] || 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

// Runs `n` checks with `concurrency` in flight (the client pipelines what is in flight).
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
  const clients = {};
  const rows = [];
  try {
    for (const name of o.clients) {
      clients[name] = await CLIENTS[name].connect(server.port, o.clientDefaults);
    }
    const admin = clients[o.clients[0]];
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
        // Spread over the pool; every client and way sees the same denylist entries.
        const token = tokens[Math.floor(i * o.tokens / o.revoked)];
        const r = await admin.call(['JWTDENY.REVOKE', token]);
        if (Number(r) !== 1) die(`JWTDENY.REVOKE answered ${r}`);
      }
      const expectRevoked = countRevoked(o.perRound, o);

      const cases = [];
      for (const name of o.clients) {
        const c = clients[name];
        cases.push({ client: name, way: 'classic', check: async (token) => {
          const p = jwt.verify(token, a.verify, { algorithms: [alg] });
          return (await c.get(`jwtdeny:{${p.sub}}:${p.iat}`)) === null;
        } });
        cases.push({ client: name, way: 'jwtdeny',
          check: async (token) => Number(await c.call(['JWTDENY.CHECK', token])) === 1 });
      }
      for (const k of cases) {
        await run(Math.min(2000, o.checks), o.concurrency, tokens, k.check); // warm-up (JIT)
        Object.assign(k, { rates: [], secs: 0, nodeCpu: 0, serverCpu: 0 });
      }
      for (let round = 0; round < o.rounds; round++) {
        for (const k of cases) {
          const srv0 = await serverCpu(admin);
          const cpu0 = process.cpuUsage();
          const t0 = process.hrtime.bigint();
          const revoked = await run(o.perRound, o.concurrency, tokens, k.check);
          const secs = Number(process.hrtime.bigint() - t0) / 1e9;
          const cpu = process.cpuUsage(cpu0);
          const srv = (await serverCpu(admin)) - srv0;
          if (revoked !== expectRevoked) {
            die(`${k.client} ${alg} ${k.way}: ${revoked} revoked answers, ` +
              `expected ${expectRevoked}`);
          }
          k.rates.push(o.perRound / secs);
          k.secs += secs;
          k.nodeCpu += (cpu.user + cpu.system) / 1e6;
          k.serverCpu += srv;
        }
      }
      for (const k of cases) {
        const sorted = [...k.rates].sort((x, y) => x - y);
        rows.push({
          client: k.client, alg, way: k.way, checks: o.checks, secs: k.secs,
          checks_per_sec: sorted[Math.floor(sorted.length / 2)],
          checks_per_sec_rounds: k.rates,
          node_cpu_us_per_check: k.nodeCpu * 1e6 / o.checks,
          server_cpu_us_per_check: k.serverCpu * 1e6 / o.checks,
        });
      }
    }
  } finally {
    for (const c of Object.values(clients)) await c.close();
    server.proc.kill('SIGTERM');
    await new Promise((r) => { server.proc.once('exit', r); setTimeout(r, 5000); });
    fs.rmSync(server.dir, { recursive: true, force: true });
  }
  // Grouped by client, then algorithm, as the table reads.
  rows.sort((x, y) => o.clients.indexOf(x.client) - o.clients.indexOf(y.client));

  const versions = Object.fromEntries(o.clients.map((c) => [c, CLIENTS[c].version()]));
  const setup = o.clientDefaults
    ? 'clients as shipped (node-redis: 5 s timeout per command; ioredis: no auto-pipelining)'
    : 'no command timeout, checks in flight coalesced (ioredis: enableAutoPipelining)';
  const cfg = `${o.checks} checks per row in ${o.rounds} rounds, each running every client and ` +
    `way in turn (checks/s: the median round), ${o.tokens} distinct tokens cycled (${o.revoked} ` +
    `revoked), ${o.concurrency} in flight over one connection per client, ${setup}; ` +
    `Node ${process.version}, ${o.clients.map((c) => `${c} ${versions[c]}`).join(', ')}, ` +
    `jsonwebtoken ${require('jsonwebtoken/package.json').version}`;
  if (o.json) {
    console.log(JSON.stringify({
      config: cfg, node: process.version, clients: versions,
      jsonwebtoken: require('jsonwebtoken/package.json').version,
      client_defaults: o.clientDefaults, checks: o.checks, rounds: o.rounds, tokens: o.tokens,
      revoked: o.revoked, concurrency: o.concurrency, rows,
    }));
    return;
  }
  console.log(`Node comparison: ${cfg}`);
  console.log('');
  console.log('| client | alg | way | checks/s | × classic | Node CPU µs/check | ' +
    'redis CPU µs/check |');
  console.log('|---|---|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const base = rows.find((x) => x.client === r.client && x.alg === r.alg && x.way === 'classic');
    const label = r.way === 'classic' ? 'jsonwebtoken.verify + GET' : 'JWTDENY.CHECK';
    console.log(`| ${r.client} | ${r.alg} | ${label} | ${Math.round(r.checks_per_sec)} | ` +
      `${(r.checks_per_sec / base.checks_per_sec).toFixed(2)} | ` +
      `${r.node_cpu_us_per_check.toFixed(1)} | ${r.server_cpu_us_per_check.toFixed(1)} |`);
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
