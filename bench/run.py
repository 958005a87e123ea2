#!/usr/bin/env python3
"""jwtdeny benchmark (issue 4): `bench/run.sh [options]`, see bench/README.md.

Builds the release module and the helper tools (bench/mint: `jwtbench`), starts its own
redis-server on a free loopback port with the module and tests/vectors/jwks.json, and measures:

  1. redis-benchmark, 50 clients, unpipelined and -P 16: EXISTS on an existing key, then
     JWTDENY.CHECK of one token per algorithm (HS256 RS256 ES256 EdDSA), active and revoked;
  2. `jwtbench load`, same shape, where every request needs its own token: JWTDENY.REVOKE of fresh
     HS256 tokens, JWTDENY.CHECK of never-seen tokens per algorithm, with EXISTS and
     SET ... PXAT through the same tool as baselines;
  3. memory per revoked entry: used_memory delta over N revocations vs N `SET <same key> 1 PXAT`;
  4. jsonwebtoken's own verification cost in-process (µs/op), against the server time per
     first-sight CHECK (INFO commandstats), i.e. the module's overhead over the crypto;
  5. (issue 4 §4) p50/p99 of plain GET from a second client while never-seen ES256 CHECKs run,
     inline and with jwtdeny.workers where the module has it;
  6. (issue 4 §5) the Node comparison in bench/node (needs node + npm), through node-redis
     and ioredis;
  7. (issue 10) a second server with its keys from an HTTPS JWKS server run here (openssl CLI
     for the certificates): cache hits and misses of cached CHECKs while JWTDENY.KEYS RELOAD
     refetches unchanged keys, and, as a contrast, a changed key;
 10. (issue 19) JWTDENY.CHECKDPOP of a cached bound token with a never-seen DPoP proof each
     request, ES256, EdDSA and RS256 proofs, inline and with workers (part of `main`).

Prints Markdown tables; --save also writes bench/results.md with the machine, date and commands.
--only main,node,jwks runs some of them. Python 3 standard library only.
"""

import argparse
import csv
import datetime
import http.server
import io
import json
import os
import platform
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
MODULE = REPO / "target" / "release" / "libjwtdeny.so"
JWKS = REPO / "tests" / "vectors" / "jwks.json"
KEY_DIR = REPO / "tests" / "vectors" / "private"
# The root target dir: aws-lc-sys (minutes to compile) is then shared with the module's build.
TOOLS_TARGET = REPO / "target"
JWTBENCH = TOOLS_TARGET / "release" / "jwtbench"
ALGS = ["HS256", "RS256", "ES256", "EdDSA"]

COMMANDS = []  # (section, command line) for results.md
LATE = []  # sections measured with the main server but numbered after the others
TOKENS = {}  # token -> placeholder name, so logged commands stay readable


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def show(argv):
    out = []
    for a in argv:
        a = str(a)
        if a in TOKENS:
            out.append("$" + TOKENS[a])
        else:
            out.append(shlex.quote(a.replace(str(REPO) + "/", "").replace(str(REPO), ".")))
    return " ".join(out)


def record(section, argv, env=None):
    if isinstance(argv, str):  # already a shell line
        COMMANDS.append((section, argv))
        return
    prefix = " ".join(f"{k}={show([v])}" for k, v in (env or {}).items())
    COMMANDS.append((section, (prefix + " " if prefix else "") + show(argv)))


def run(argv, section=None, env=None, timeout=1800, cwd=REPO, check=True, quiet=False):
    if section:
        record(section, argv, env)
    full_env = dict(os.environ, **{k: str(v) for k, v in (env or {}).items()})
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=full_env, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None,
                       text=True)
    if check and p.returncode != 0:
        err = (p.stderr or "")[-3000:] if quiet else ""
        fail(f"command failed ({p.returncode}): {show(argv)}\n{p.stdout[-3000:]}{err}")
    return p


# ----------------------------------------------------------------------------------------------
# A minimal RESP client for setup and INFO (the measurements use redis-benchmark / jwtbench)

class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.f = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"bad reply {line!r}")

    def info(self, section):
        d = {}
        for ln in self("INFO", section).splitlines():
            if ":" in ln and not ln.startswith("#"):
                k, v = ln.split(":", 1)
                d[k] = v
        return d

    def cmdstat(self, name):
        v = self.info("commandstats").get("cmdstat_" + name.lower())
        if v is None:
            return {"calls": 0, "usec_per_call": 0.0, "failed_calls": 0, "rejected_calls": 0}
        d = dict(kv.split("=", 1) for kv in v.split(","))
        return {k: float(x) if "." in x else int(x) for k, x in d.items()}

    def used_memory(self):
        return int(self.info("memory")["used_memory"])

    def cpu_secs(self):
        """redis-server's CPU time so far (all threads, user + system)."""
        d = self.info("cpu")
        return float(d["used_cpu_user"]) + float(d["used_cpu_sys"])


def git_commit():
    """The commit measured, marked when tracked files other than the results differ from it."""
    p = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                            "--untracked-files=no"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True).stdout.splitlines()
    # results.md itself is what these scripts write; any other change makes the figures suspect.
    dirty = [ln for ln in dirty if not ln.endswith("bench/results.md")]
    return (p.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty else "")


def write_section(path, begin, end, section):
    """Puts `section` (which starts with the `begin` marker and ends with `end`) into the
    results file at `path`, in place of the one between those markers, or else at its end."""
    p = Path(path)
    text = p.read_text() if p.exists() else "# jwtdeny benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    p.write_text(text)


# ----------------------------------------------------------------------------------------------
# redis-server

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    # dpop-window: section 10's proofs are minted ahead of the run (it cannot be raised later).
    def __init__(self, opts, module_args=("keys-file", JWKS, "dpop-window", 3600)):
        self.dir = tempfile.mkdtemp(prefix="jwtdeny-bench-")
        self.port = free_port()
        self.argv = [opts.redis_server, "--port", self.port, "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", self.dir,
                     "--logfile", os.path.join(self.dir, "redis.log"),
                     "--loadmodule", MODULE, *module_args]
        record("server", self.argv)
        self.proc = subprocess.Popen([str(a) for a in self.argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                self.r = Redis(self.port)
                self.r("PING")
                break
            except (OSError, ConnectionError, RedisError):
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    fail(f"redis-server did not start; last log lines:\n{self.log_tail()}")
                time.sleep(0.05)
        self.version = self.r.info("server").get("redis_version", "?")

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Measurements

def jwtbench(*args, section=None, timeout=1800):
    p = run([JWTBENCH, *args, "--key-dir", KEY_DIR], section=section, timeout=timeout)
    return [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]


def mint(alg, sub, iat, exp, name):
    tok = run([JWTBENCH, "mint", "--alg", alg, "--sub", sub, "--iat", iat, "--exp", exp,
               "--key-dir", KEY_DIR], section="tokens").stdout.strip()
    COMMANDS[-1] = ("tokens", f"{name}=$({COMMANDS[-1][1]})")
    TOKENS[tok] = name
    return tok


def jwtdeny_counters(r):
    try:
        return {k: int(v) for k, v in r.info("jwtdeny").items() if v.isdigit()}
    except RedisError:
        return {}


def redis_benchmark(opts, srv, n, pipeline, argv, cmdname, expect_counter=None):
    """One redis-benchmark run of a single command; returns a result row."""
    r = srv.r
    r("CONFIG", "RESETSTAT")
    before = jwtdeny_counters(r)
    cpu0 = r.cpu_secs()
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", srv.port, "-c", opts.clients, "-n", n]
    if pipeline > 1:
        cmd += ["-P", pipeline]
    cmd += ["--csv", *argv]
    p = run(cmd, section="redis-benchmark", timeout=3600, quiet=True)
    cpu = r.cpu_secs() - cpu0
    rows = list(csv.reader(io.StringIO(p.stdout)))
    if len(rows) < 2:
        fail(f"unexpected redis-benchmark output:\n{p.stdout}\n{p.stderr}")
    head, vals = rows[0], rows[-1]
    d = dict(zip(head, vals))
    st = r.cmdstat(cmdname)
    if st.get("failed_calls", 0) or st.get("rejected_calls", 0) or st.get("calls", 0) < n:
        fail(f"{show(argv)}: server counted {st} for {n} requests (errors?)\n{p.stderr[-2000:]}")
    if expect_counter:
        after = jwtdeny_counters(r)
        if expect_counter in after:
            got = after[expect_counter] - before.get(expect_counter, 0)
            if got < n:
                fail(f"{show(argv)}: {expect_counter} rose by {got}, expected {n}")
    return {
        "ops": float(d["rps"]), "p50": float(d["p50_latency_ms"]),
        "p99": float(d["p99_latency_ms"]), "usec": float(st["usec_per_call"]),
        "cpu": cpu * 1e6 / n,
    }


def loadgen(opts, srv, workload, count, pipeline, expect, cmdname, tag="bench-", extra=(),
            flush=True, conns=None, section="jwtbench load"):
    r = srv.r
    if flush:
        rcmd(srv, section, "FLUSHALL")
    ready = os.path.join(srv.dir, "loadgen.ready")
    if os.path.exists(ready):
        os.unlink(ready)
    argv = [JWTBENCH, "load", "--port", srv.port, "--workload", workload, "--count", count,
            "--conns", conns or opts.clients, "--pipeline", pipeline, "--tag", tag, *extra,
            "--key-dir", KEY_DIR]
    record(section, argv)
    # Minting can take seconds: the server's counters start when the tool is ready to send.
    lg = subprocess.Popen([str(a) for a in argv + ["--ready-file", ready, "--wait-go", 1]],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 1800
    while not os.path.exists(ready):
        if lg.poll() is not None or time.time() > deadline:
            lg.kill()
            fail(f"jwtbench load {workload} did not get ready")
        time.sleep(0.01)
    r("CONFIG", "RESETSTAT")
    cpu0 = r.cpu_secs()
    out, _ = lg.communicate("go\n", timeout=3600)
    cpu = r.cpu_secs() - cpu0
    if lg.returncode != 0:
        fail(f"jwtbench load {workload} failed ({lg.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    if res["replies"] != {expect: count}:
        fail(f"{workload}: replies {res['replies']}, expected {{{expect!r}: {count}}} "
             f"(first error: {res.get('first_error')})")
    st = r.cmdstat(cmdname)
    return {"ops": res["ops_per_sec"], "p50": res["p50_ms"], "p99": res["p99_ms"],
            "usec": float(st["usec_per_call"]), "count": count, "secs": res["secs"],
            "prep": res["prep_secs"], "cpu": cpu * 1e6 / count}


def rcmd(srv, section, *args):
    """A setup command, sent and recorded as its redis-cli equivalent."""
    record(section, ["redis-cli", "-p", srv.port, *args])
    return srv.r(*args)


def try_config_set(r, name, value):
    try:
        old = r("CONFIG", "GET", name)
        if not old:
            return None
        r("CONFIG", "SET", name, value)
        return old[1]
    except RedisError:
        return None


# ----------------------------------------------------------------------------------------------
# Report helpers

def fmt_ops(x):
    return f"{x:,.0f}"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def table(head, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(head) - 1)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def machine_info(server_version):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def ver(argv):
        try:
            return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("commit", git_commit()),
        ("cpu", f"{cpu}, nproc {os.cpu_count()}"),
        ("memory", f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"),
        ("kernel", platform.release()),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("redis-server", server_version),
        ("rustc", ver(["rustc", "--version"])),
        ("node", ver(["node", "--version"]) if shutil.which("node") else "not installed"),
    ]


# ----------------------------------------------------------------------------------------------

def parse_args():
    env = os.environ.get
    ap = argparse.ArgumentParser(
        description="jwtdeny benchmark (issue 4). Every count is fixed; see bench/README.md.")
    ap.add_argument("--quick", action="store_true", default=env("BENCH_QUICK") == "1",
                    help="small counts for a smoke run (about a minute); env BENCH_QUICK=1")
    ap.add_argument("--requests", type=int, help="redis-benchmark -n, unpipelined (100000)")
    ap.add_argument("--requests-pipelined", type=int, help="redis-benchmark -n with -P (500000)")
    ap.add_argument("--clients", type=int, default=50, help="connections (50)")
    ap.add_argument("--pipeline", type=int, default=16, help="pipelined depth (16)")
    ap.add_argument("--fresh", type=int, help="never-seen tokens per algorithm for first-sight "
                    "CHECK through jwtbench (10000; RS256 signing makes this the slow part)")
    ap.add_argument("--fresh-rs256", type=int, help="the same for RS256, whose tokens take "
                    "milliseconds each to sign (2500)")
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "1")),
                    help="run sections 1 and 2 this many times and report medians (1); "
                    "env BENCH_ROUNDS")
    ap.add_argument("--dpop", type=int, help="CHECKDPOP requests per algorithm and worker "
                    "setting in section 10 (10000; 0 skips it); env BENCH_DPOP")
    ap.add_argument("--revokes", type=int, help="fresh HS256 tokens for REVOKE (100000)")
    ap.add_argument("--mem-count", type=int, help="revocations for memory per entry (1000000)")
    ap.add_argument("--verify-seconds", type=float, help="seconds per algorithm for the "
                    "in-process verify timing (1.0)")
    ap.add_argument("--contention-tokens", type=int, help="never-seen ES256 CHECKs sent while "
                    "GET is measured (40000); 0 skips that section")
    ap.add_argument("--contention-workers", default="2",
                    help="comma-separated jwtdeny.workers values to try in that section besides "
                    "0, where the module has the config (2)")
    ap.add_argument("--node-checks", type=int, help="checks per row in the Node comparison "
                    "(48000, in 3 rounds); 0 skips it")
    ap.add_argument("--no-node", action="store_true", help="skip the Node comparison")
    ap.add_argument("--jwks-checks", type=int, help="CHECKs per row in the JWKS refresh section "
                    "(300000); 0 skips it")
    ap.add_argument("--jwks-sessions", type=int, help="distinct RS256 tokens those CHECKs cycle "
                    "through, all cached (1000)")
    ap.add_argument("--jwks-reload-interval", type=float, default=0.5,
                    help="seconds between two JWTDENY.KEYS RELOAD in that section (0.5)")
    ap.add_argument("--only", default=env("BENCH_ONLY", ""), metavar="LIST",
                    help="comma-separated sections to run: main (1-5 and the targets), node (6), "
                    "jwks (7); all by default; env BENCH_ONLY")
    ap.add_argument("--no-build", action="store_true", help="use the existing builds")
    ap.add_argument("--redis-server", default=env("REDIS_SERVER", "redis-server"))
    ap.add_argument("--save", nargs="?", const="",
                    default="" if env("BENCH_SAVE") == "1" else None,
                    metavar="PATH", help="write the report to PATH (bench/results.md, or "
                    "bench/results-<sections>.md with --only); env BENCH_SAVE=1")
    o = ap.parse_args()
    quick = o.quick
    defaults = {
        "requests": (100000, 20000), "requests_pipelined": (500000, 50000),
        "fresh": (10000, 1000), "fresh_rs256": (2500, 300), "revokes": (100000, 20000), "mem_count": (1000000, 100000),
        "verify_seconds": (1.0, 0.3), "contention_tokens": (40000, 8000),
        "node_checks": (48000, 9000), "jwks_checks": (300000, 60000),
        "jwks_sessions": (1000, 200), "dpop": (int(env("BENCH_DPOP", "10000")), 1000),
    }
    for k, (full, small) in defaults.items():
        if getattr(o, k) is None:
            setattr(o, k, small if quick else full)
    if o.no_node:
        o.node_checks = 0
    o.rounds = max(1, o.rounds)
    sections = {"main", "node", "jwks"}
    o.only = {w.strip() for w in o.only.split(",") if w.strip()} or sections
    if not o.only <= sections:
        ap.error(f"--only: unknown section(s) {', '.join(sorted(o.only - sections))} "
                 f"(main, node, jwks)")
    if o.save == "":
        # A partial run must not replace the full results.
        part = "" if o.only == sections else "-" + "-".join(sorted(o.only))
        o.save = str(BENCH / f"results{part}.md")
    o.jwks_sessions = max(1, o.jwks_sessions)
    o.jwks_reload_interval = max(0.05, o.jwks_reload_interval)
    o.contention_workers = [int(w) for w in str(o.contention_workers).split(",") if w.strip()]
    return o


def build(opts):
    if opts.no_build:
        if not MODULE.exists() or not JWTBENCH.exists():
            fail(f"--no-build but {MODULE} or {JWTBENCH} is missing")
        return
    log("building the module (cargo build --release)")
    run(["cargo", "build", "--release"], section="build")
    log("building bench/mint (jwtbench)")
    run(["cargo", "build", "--release", "--manifest-path", BENCH / "mint" / "Cargo.toml"],
        section="build", env={"CARGO_TARGET_DIR": TOOLS_TARGET})


def main():
    opts = parse_args()
    tools = [opts.redis_server] + (["redis-benchmark"] if "main" in opts.only else [])
    for tool in tools:
        if not shutil.which(tool):
            fail(f"{tool} not found (Debian: apt-get install redis-server redis-tools)")
    started = time.time()
    build(opts)
    report = []
    version = None
    figures = None

    # --- 1.-5. against one server with the keys file ------------------------------------------
    if "main" in opts.only:
        version, figures = server_sections(opts, report)

    # --- 6. Node comparison (issue 4 §5) ------------------------------------------------------
    if "node" in opts.only and opts.node_checks > 0:
        node_out = node_comparison(opts)
        if node_out:
            report.append("## 6. Node: the classic pattern vs. JWTDENY.CHECK (bench/node)\n\n"
                          + node_out)

    # --- 7. JWKS refresh with unchanged keys (issue 10) --------------------------------------
    if "jwks" in opts.only and opts.jwks_checks > 0:
        jwks_version, jwks_out = jwks_refresh(opts)
        version = version or jwks_version
        if jwks_out:
            report.append(jwks_out)

    report.extend(LATE)

    # --- targets ------------------------------------------------------------------------------
    if figures:
        report.append(targets(*figures, opts.pipeline))

    elapsed = time.time() - started
    body = "\n\n".join(report)
    print(body)
    print(f"\n(bench took {elapsed:.0f}s)")
    if opts.save:
        save(opts, version or redis_version(opts), body, elapsed)


def redis_version(opts):
    try:
        out = subprocess.run([opts.redis_server, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
        return next((w[2:] for w in out.split() if w.startswith("v=")), "?")
    except (OSError, subprocess.SubprocessError):
        return "?"


def server_sections(opts, report):
    """Sections 1-5, against one redis-server loading tests/vectors/jwks.json; returns the
    server's version and the figures the targets table judges."""
    P = opts.pipeline
    srv = Server(opts)
    log(f"redis-server {srv.version} on 127.0.0.1:{srv.port} (pid {srv.proc.pid})")
    try:
        r = srv.r
        now = int(time.time())
        iat, exp = now, now + 30 * 86400

        # --- 1. redis-benchmark: the same token every request -------------------------------
        r("SET", "bench:exists", "1")
        toks = {}
        for alg in ALGS:
            toks[(alg, "active")] = mint(alg, f"bench-active-{alg}", iat, exp, f"{alg}_ACTIVE")
            toks[(alg, "revoked")] = mint(alg, f"bench-revoked-{alg}", iat, exp, f"{alg}_REVOKED")
        for alg in ALGS:
            if r("JWTDENY.REVOKE", toks[(alg, "revoked")]) != 1:
                fail(f"JWTDENY.REVOKE of the {alg} token did not answer 1")
            record("setup", ["redis-cli", "-p", srv.port, "JWTDENY.REVOKE", toks[(alg, "revoked")]])
            for state, want in (("active", 1), ("revoked", 0)):
                got = r("JWTDENY.CHECK", toks[(alg, state)])
                if got != want:
                    fail(f"JWTDENY.CHECK {alg} {state} answered {got!r}, expected {want}")

        runs = {}
        for rnd in range(opts.rounds):
            tag = f" (round {rnd + 1}/{opts.rounds})" if opts.rounds > 1 else ""
            for pipe, n in ((1, opts.requests), (P, opts.requests_pipelined)):
                log(f"redis-benchmark -c {opts.clients} -n {n} -P {pipe}: EXISTS{tag}")
                runs.setdefault(("EXISTS", pipe), []).append(redis_benchmark(
                    opts, srv, n, pipe, ["EXISTS", "bench:exists"], "exists"))
                for alg in ALGS:
                    for state in ("active", "revoked"):
                        log(f"redis-benchmark -n {n} -P {pipe}: JWTDENY.CHECK {alg} {state}{tag}")
                        runs.setdefault((f"CHECK {alg} {state}", pipe), []).append(
                            redis_benchmark(opts, srv, n, pipe,
                                            ["JWTDENY.CHECK", toks[(alg, state)]],
                                            "jwtdeny.check",
                                            expect_counter=f"jwtdeny_checks_{state}"))
        # With --rounds > 1: the median of each figure over the interleaved rounds.
        rb = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}
        rb_order = sorted(rb, key=lambda k: (k[1], k[0] != "EXISTS"))
        rows = []
        for case, pipe in rb_order:
            v = rb[(case, pipe)]
            base = rb[("EXISTS", pipe)]
            rows.append([case if case == "EXISTS" else f"JWTDENY.{case}", pipe, fmt_ops(v["ops"]),
                         ratio(v["ops"], base["ops"]), f"{v['p50']:.3f}", f"{v['p99']:.3f}",
                         f"{v['usec']:.2f}", f"{v['cpu']:.2f}"])
        report.append(
            f"## 1. redis-benchmark: the same token on every request (a token checked before)\n\n"
            f"{opts.clients} clients; -n {opts.requests} unpipelined, -n {opts.requests_pipelined} "
            f"with -P {P}"
            + (f"; median of {opts.rounds} interleaved rounds" if opts.rounds > 1 else "")
            + f". `× EXISTS` is ops/s over EXISTS at the same pipelining in this run; "
            f"`server µs/call` is INFO commandstats usec_per_call (time inside the command); "
            f"`server CPU µs/req` is redis-server's CPU time (INFO cpu) over the run per request, "
            f"networking included.\n\n"
            + table(["case", "-P", "ops/s", "× EXISTS", "p50 ms", "p99 ms", "server µs/call",
                     "server CPU µs/req"], rows))

        # --- 2. jwtbench load: a fresh token every request ----------------------------------
        lgruns, rawruns = {}, {}
        for rnd in range(opts.rounds):
            tag = f" (round {rnd + 1}/{opts.rounds})" if opts.rounds > 1 else ""
            rt = f"r{rnd}-"
            for pipe, n in ((1, opts.requests), (P, opts.requests_pipelined)):
                def add(case, res):
                    lgruns.setdefault((case, pipe), []).append(res)
                log(f"jwtbench load -c {opts.clients} -P {pipe}: EXISTS x{n}{tag}")
                r("SET", "bench:exists", "1")
                add("EXISTS", loadgen(opts, srv, "exists:bench:exists", n, pipe, ":1", "exists",
                                      flush=False))
                log(f"jwtbench load -P {pipe}: SET PXAT x{opts.revokes} fresh keys{tag}")
                add("SET <key> 1 PXAT <ms> (fresh keys)", loadgen(
                    opts, srv, "setpxat", opts.revokes, pipe, "+OK", "set",
                    tag=f"set-{rt}p{pipe}-", extra=("--iat", iat, "--exp", exp)))
                log(f"jwtbench load -P {pipe}: JWTDENY.REVOKE HS256 x{opts.revokes} fresh "
                    f"tokens{tag}")
                add("JWTDENY.REVOKE HS256 (fresh tokens)", loadgen(
                    opts, srv, "revoke:HS256", opts.revokes, pipe, ":1", "jwtdeny.revoke",
                    tag=f"rev-{rt}p{pipe}-", extra=("--iat", iat, "--exp", exp)))
                for alg in ALGS:
                    if pipe == P:
                        # The in-process floor, timed right before the server does the same
                        # work, so both see the machine in about the same state.
                        log(f"jwtbench verify --algs {alg}: {opts.verify_seconds}s in-process{tag}")
                        rawruns.setdefault(alg, []).append(jwtbench(
                            "verify", "--seconds", opts.verify_seconds, "--algs", alg,
                            section="in-process verify")[-1])
                    fresh = opts.fresh_rs256 if alg == "RS256" else opts.fresh
                    log(f"jwtbench load -P {pipe}: JWTDENY.CHECK {alg} x{fresh} never-seen "
                        f"tokens{tag}")
                    add(f"JWTDENY.CHECK {alg} (first sight)", loadgen(
                        opts, srv, f"check:{alg}", fresh, pipe, ":1", "jwtdeny.check",
                        tag=f"fresh-{alg}-{rt}p{pipe}-", extra=("--iat", iat, "--exp", exp)))
        lg = {k: {m: statistics.median(x[m] for x in v) for m in v[0]}
              for k, v in lgruns.items()}
        raw = {a: {m: statistics.median(x[m] for x in v) for m in ("verify_us", "decode_us")}
               for a, v in rawruns.items()}
        rows = []
        for (case, pipe), v in lg.items():
            base = lg[("EXISTS", pipe)]
            rows.append([case, pipe, fmt_ops(v["count"]), fmt_ops(v["ops"]),
                         ratio(v["ops"], base["ops"]), f"{v['p50']:.3f}", f"{v['p99']:.3f}",
                         f"{v['usec']:.2f}", f"{v['cpu']:.2f}"])
        report.append(
            f"## 2. jwtbench load: a distinct, validly signed token on every request\n\n"
            f"Tokens are minted before timing starts. {opts.clients} connections, unpipelined "
            f"and -P {P}"
            + (f"; median of {opts.rounds} rounds" if opts.rounds > 1 else "")
            + f"; `× EXISTS` is against EXISTS through the same tool at the same "
            f"pipelining. First-sight counts are short runs: read their server µs/call more than "
            f"their ops/s.\n\n"
            + table(["case", "-P", "requests", "ops/s", "× EXISTS", "p50 ms", "p99 ms",
                     "server µs/call", "server CPU µs/req"], rows))

        # --- 3. raw verify vs. first sight --------------------------------------------------
        rows = []
        overhead = {}
        for alg in ALGS:
            v = raw[alg]
            first = {p: lg[(f"JWTDENY.CHECK {alg} (first sight)", p)] for p in (1, P)}
            # Server CPU per first-sight CHECK beyond what a request costs anyway (EXISTS through
            # the same tool at the same pipelining): verification plus the module's own work.
            # Pipelined, where a request's networking is ~1 µs and the server is never idle, so
            # the baseline's own noise hardly matters.
            above = first[P]["cpu"] - lg[("EXISTS", P)]["cpu"]
            overhead[alg] = (above - v["verify_us"]) / v["verify_us"]
            cached = rb[(f"CHECK {alg} active", P)]["usec"]
            rows.append([alg, f"{v['verify_us']:.2f}", f"{v['decode_us']:.2f}",
                         f"{first[1]['usec']:.1f} / {first[P]['usec']:.1f}",
                         f"{above:.1f}", f"{above - v['verify_us']:+.1f}",
                         f"{overhead[alg] * 100:+.0f}%", f"{cached:.2f}"])
        report.append(
            "## 3. jsonwebtoken in-process vs. JWTDENY.CHECK in the server\n\n"
            "`crypto::verify` is `jsonwebtoken::crypto::verify` (what the module calls: the "
            "verifier for the key and the signature check); `decode` is the whole jsonwebtoken "
            "pipeline with a permissive Validation. Both are thread CPU time per call in "
            "`jwtbench verify`, run just before that algorithm's first-sight runs. First-sight "
            f"figures are from section 2: `µs/call` (-P 1 / -P {P}) from INFO commandstats; "
            f"`CPU µs/req above EXISTS` (-P {P}) is the server's CPU per CHECK minus its CPU per "
            "EXISTS through the same tool; `module µs` is that minus crypto::verify, and "
            "`overhead` is `module µs` / crypto::verify: what the module adds to the signature "
            f"check. `same token` is section 1's -P {P} µs/call.\n\n"
            + table(["alg", "crypto::verify µs", "decode µs", "first sight µs/call",
                     "first sight CPU µs/req above EXISTS", "module µs", "overhead",
                     "same token µs/call"], rows))

        # --- 4. memory per revoked entry ----------------------------------------------------
        mem = {}
        M = opts.mem_count
        cache_old = try_config_set(r, "jwtdeny.verify-cache-size", "0")
        if cache_old is not None:
            record("memory", ["redis-cli", "-p", srv.port, "CONFIG", "SET",
                              "jwtdeny.verify-cache-size", "0"])
        note = ("jwtdeny.verify-cache-size was set to 0 for this section, so the (bounded) "
                "verification cache is not counted as per-entry memory. "
                if cache_old is not None else "")
        mem_iat, mem_exp = now, now + 30 * 86400
        sample_key = f"jwtdeny:{{mem-0}}:{mem_iat}"
        for label, workload, expect, cmdname in (
                ("JWTDENY.REVOKE", "revoke:HS256", ":1", "jwtdeny.revoke"),
                ("SET <same key> 1 PXAT <ms>", "setpxat", "+OK", "set")):
            rcmd(srv, "memory", "FLUSHALL")
            time.sleep(0.5)
            record("memory", f"redis-cli -p {srv.port} INFO memory | grep '^used_memory:'")
            m0 = r.used_memory()
            log(f"memory: {label} x{M} (-P {P})")
            res = loadgen(opts, srv, workload, M, P, expect, cmdname, tag="mem-",
                          extra=("--iat", mem_iat, "--exp", mem_exp), flush=False,
                          section="memory")
            time.sleep(1.0)  # let clients go and incremental rehashing finish
            record("memory", f"redis-cli -p {srv.port} INFO memory | grep '^used_memory:'")
            m1 = r.used_memory()
            if r("DBSIZE") != M:
                fail(f"memory: DBSIZE is {r('DBSIZE')} after {M} x {label}")
            if r("PEXPIRETIME", sample_key) != mem_exp * 1000:
                fail(f"memory: {sample_key} has PEXPIRETIME {r('PEXPIRETIME', sample_key)}, "
                     f"expected {mem_exp * 1000} (is the key layout still <prefix>{{sub}}:<iat>?)")
            mem[label] = (m1 - m0, res)
        r("FLUSHALL")
        if cache_old is not None:
            r("CONFIG", "SET", "jwtdeny.verify-cache-size", cache_old)
        set_per = mem["SET <same key> 1 PXAT <ms>"][0] / M
        rows = [[label, fmt_ops(M), fmt_ops(d), f"{d / M:.1f}", ratio(d / M, set_per),
                 fmt_ops(res["ops"])] for label, (d, res) in mem.items()]
        report.append(
            "## 4. Memory per revoked entry\n\n"
            f"used_memory delta over {M:,} revocations of distinct HS256 tokens (subjects "
            f"`mem-<i>`, keys `jwtdeny:{{mem-<i>}}:<iat>`, through jwtbench -P {P}), then FLUSHALL "
            f"and the same keys with plain SET ... PXAT. {note}\n\n"
            + table(["what", "entries", "used_memory delta (bytes)", "bytes / entry", "× SET",
                     "ops/s while loading"], rows))

        # --- 5. main-thread contention (issue 4 §4) -----------------------------------------
        cont = None
        if opts.contention_tokens > 0:
            cont = contention(opts, srv, iat, exp)
            report.append(cont)

        # --- 10. DPoP: CHECKDPOP with a fresh proof every request (issue 19) ----------------
        # Measured on this server, reported after section 7.
        if opts.dpop > 0:
            LATE.append(dpop_section(opts, srv, lg, iat, exp))
    finally:
        srv.stop()
    return srv.version, (rb, lg, overhead, mem)


def contention(opts, srv, iat, exp):
    r = srv.r
    r("FLUSHALL")
    r("SET", "bench:get", "v")
    # About the number of GETs that run while the CHECKs last (a GET waits behind ~1 ms of them).
    n = max(1000, opts.contention_tokens // 4)
    gcmd = ["-c", 10, "-n", n, "GET", "bench:get"]
    log(f"contention: GET alone (redis-benchmark -c 10 -n {n})")
    alone = redis_benchmark_raw(srv, gcmd)
    rows = [["GET alone", "", fmt_ops(alone["ops"]), f"{alone['p50']:.3f}",
             f"{alone['p99']:.3f}", "", "", ""]]
    # jwtdeny.workers (issue 4 §4), where the module has it: inline (0) and a worker pool.
    workers = [None]
    old_workers = None
    try:
        got = r("CONFIG", "GET", "jwtdeny.workers")
        if got:
            old_workers = got[1]
            workers = [0] + [w for w in opts.contention_workers if w > 0]
    except RedisError:
        pass
    for w in workers:
        if w is not None:
            rcmd(srv, "contention", "CONFIG", "SET", "jwtdeny.workers", w)
        label = "" if w is None else str(w)
        log(f"contention: GET while jwtbench sends {opts.contention_tokens} never-seen ES256 "
            f"CHECKs" + ("" if w is None else f" (jwtdeny.workers {w})"))
        ready = os.path.join(srv.dir, f"contention-{label}.ready")
        argv = [JWTBENCH, "load", "--port", srv.port, "--workload", "check:ES256",
                "--count", opts.contention_tokens, "--conns", opts.clients, "--pipeline", 1,
                "--tag", f"contention-{label}-", "--iat", iat, "--exp", exp, "--key-dir", KEY_DIR]
        record("contention", argv + ["&"])
        # Tokens are minted first; both loads start together once the tool is ready.
        lg = subprocess.Popen([str(a) for a in argv + ["--ready-file", ready, "--wait-go", 1]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        deadline = time.time() + 600
        while not os.path.exists(ready):
            if lg.poll() is not None or time.time() > deadline:
                lg.kill()
                fail("contention: jwtbench load did not get ready")
            time.sleep(0.01)
        lg.stdin.write("go\n")
        lg.stdin.flush()
        t_load = time.time()
        loaded = redis_benchmark_raw(srv, gcmd)
        get_secs = time.time() - t_load
        out = lg.communicate(timeout=1800)[0]
        if lg.returncode != 0:
            fail("contention: jwtbench load failed")
        res = json.loads(out.strip().splitlines()[-1])
        if res["replies"] != {":1": opts.contention_tokens}:
            fail(f"contention: CHECK replies {res['replies']}")
        # Both started at t_load: the fraction of the GET run that had CHECKs going.
        overlap = min(1.0, res["secs"] / get_secs) if get_secs else 0.0
        rows.append(["GET during never-seen ES256 CHECKs", label, fmt_ops(loaded["ops"]),
                     f"{loaded['p50']:.3f}", f"{loaded['p99']:.3f}",
                     fmt_ops(res["ops_per_sec"]), f"{res['p99_ms']:.3f}", f"{overlap * 100:.0f}%"])
    if old_workers is not None:
        r("CONFIG", "SET", "jwtdeny.workers", old_workers)
    return ("## 5. Main-thread contention (issue 4 §4)\n\n"
            f"redis-benchmark -c 10 -n {n} GET, alone and while jwtbench sends "
            f"{opts.contention_tokens:,} never-seen ES256 tokens to JWTDENY.CHECK over "
            f"{opts.clients} connections, unpipelined"
            + (", with `jwtdeny.workers` as shown" if workers != [None] else "")
            + ". `overlap` is the share of the GET run during which the CHECKs were running.\n\n"
            + table(["scenario", "workers", "GET ops/s", "GET p50 ms", "GET p99 ms",
                     "CHECK ops/s", "CHECK p99 ms", "overlap"], rows))


def dpop_section(opts, srv, lg, iat, exp):
    """CHECKDPOP of a cached token with a never-seen proof each request, ES256, EdDSA and RS256
    proofs, inline and with a worker pool, against EXISTS and first-sight CHECK of section 2."""
    sys.path.insert(0, str(BENCH))
    import dpop  # bench/dpop.py
    r = srv.r
    old_workers = try_config_set(r, "jwtdeny.workers", "0")
    rows = []
    P = opts.pipeline
    n = opts.dpop
    with tempfile.TemporaryDirectory(prefix="jwtdeny-bench-dpop-") as d:
        for alg in ("ES256", "EdDSA", "RS256"):
            count = n if alg != "RS256" else max(1000, n // 4)  # RSA signing is slow to mint
            for workers in [0] + [w for w in opts.contention_workers if w > 0]:
                rcmd(srv, "dpop", "CONFIG", "SET", "jwtdeny.workers", workers)
                for pipe in (1, P):
                    sub = f"dpop-{alg}-w{workers}-p{pipe}"
                    log(f"DPoP: {count} CHECKDPOP with {alg} proofs, workers {workers}, -P {pipe}")
                    token, proofs = dpop.requests(JWTBENCH, KEY_DIR, alg, sub, count, iat, exp)
                    path = os.path.join(d, f"{sub}.txt")
                    Path(path).write_text("".join(" ".join(c) + "\n"
                                                  for c in dpop.commands(token, proofs)))
                    r("FLUSHALL")
                    res = loadgen(opts, srv, f"lines:{path}", count, pipe, ":1",
                                  "jwtdeny.checkdpop", flush=False, section="dpop")
                    base = lg[("EXISTS", pipe)]
                    first = lg.get((f"JWTDENY.CHECK {alg} (first sight)", pipe))
                    rows.append([f"CHECKDPOP, {alg} proof, cached token", workers, pipe,
                                 fmt_ops(count), fmt_ops(res["ops"]), ratio(res["ops"], base["ops"]),
                                 ratio(res["ops"], first["ops"]) if first else "",
                                 f"{res['p50']:.3f}", f"{res['p99']:.3f}", f"{res['usec']:.2f}",
                                 f"{res['cpu']:.2f}"])
    if old_workers is not None:
        r("CONFIG", "SET", "jwtdeny.workers", old_workers)
    return ("## 10. DPoP: JWTDENY.CHECKDPOP with a never-seen proof on every request\n\n"
            "The server runs with `jwtdeny.dpop-window 3600` (the proofs are minted before "
            "timing starts). One HS256 access token bound to the test key's thumbprint (verified once, then "
            "cached) and a distinct proof per request (`jwtbench sign`, bench/dpop.py), sent "
            f"through jwtbench over {opts.clients} connections; each reply is `1` (the proof "
            "recorded). `× EXISTS` and `× first-sight CHECK` are against section 2 at the same "
            "pipelining (a CHECK of a never-seen token of the proof's algorithm: one signature "
            "verification each, as here). With workers the proof's signature is verified off "
            "the main thread; `server µs/call` then counts the main thread's share only. "
            "`make bench-instructions` gives the instructions per request.\n\n"
            + table(["case", "workers", "-P", "requests", "ops/s", "× EXISTS",
                     "× first-sight CHECK", "p50 ms", "p99 ms", "server µs/call",
                     "server CPU µs/req"], rows))


def redis_benchmark_raw(srv, args):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", srv.port, *args[:4], "--csv", *args[4:]]
    p = run(cmd, section="contention", timeout=1800, quiet=True)
    d = dict(zip(*list(csv.reader(io.StringIO(p.stdout)))[-2:]))
    return {"ops": float(d["rps"]), "p50": float(d["p50_latency_ms"]),
            "p99": float(d["p99_latency_ms"])}


def node_comparison(opts):
    node_dir = BENCH / "node"
    if not shutil.which("node") or not shutil.which("npm"):
        log("node/npm not found: skipping the Node comparison (--no-node to silence)")
        return None
    if not all((node_dir / "node_modules" / m).exists() for m in ("redis", "ioredis",
                                                                     "jsonwebtoken")):
        log("installing bench/node dependencies (npm ci)")
        p = run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], section="node",
                cwd=node_dir, check=False, quiet=True)
        if p.returncode != 0:
            log(f"npm ci failed, skipping the Node comparison:\n{p.stderr[-1500:]}")
            return None
    log(f"Node comparison: {opts.node_checks} checks per row")
    p = run(["node", node_dir / "bench.js", "--checks", opts.node_checks, "--module", MODULE,
             "--redis-server", opts.redis_server, "--json"], section="node", timeout=3600)
    try:
        res = json.loads(p.stdout)
        rows = []
        for r in res["rows"]:
            base = next(x for x in res["rows"]
                        if (x["client"], x["alg"], x["way"]) == (r["client"], r["alg"], "classic"))
            rows.append([r["client"], r["alg"],
                         "jsonwebtoken.verify + GET" if r["way"] == "classic" else "JWTDENY.CHECK",
                         fmt_ops(r["checks_per_sec"]),
                         ratio(r["checks_per_sec"], base["checks_per_sec"]),
                         f"{r['node_cpu_us_per_check']:.1f}",
                         f"{r['server_cpu_us_per_check']:.1f}"])
    except (ValueError, KeyError, TypeError, StopIteration) as e:
        log(f"bench/node printed no result table ({e!r}), skipping the Node comparison:\n"
            f"{p.stdout[-1500:]}")
        return None
    return (f"{res['config']}.\n\n"
            "**Node CPU µs/check** is the Node process's CPU time (user + system) per check: what "
            "the application servers pay; **redis CPU µs/check** is redis-server's over the same "
            "rounds. × classic compares the two ways through the same client and algorithm.\n\n"
            + table(["client", "alg", "way", "checks/s", "× classic", "Node CPU µs/check",
                     "redis CPU µs/check"], rows,
                    ["---", "---", "---", "---:", "---:", "---:", "---:"]))


# ----------------------------------------------------------------------------------------------
# 7. JWKS refresh with unchanged keys (issue 10)

# The public keys an identity provider publishes: the vector keys of the asymmetric algorithms.
IDP_KIDS = ("shared-rsa", "shared-es256", "shared-ed25519")


class JwksServer:
    """An HTTPS server on a free loopback port serving `/jwks.json` with the body the bench
    sets, counting the requests; its certificate is signed by a CA made for the run."""

    def __init__(self, cert, key):
        self.lock = threading.Lock()
        self.body = b'{"keys":[]}'
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 30  # no connection holds a handler thread longer

            def do_GET(self):
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                with outer.lock:
                    outer.requests += 1
                    body = outer.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        # The handshake then happens in the handler's thread, not in the accepting one.
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                            do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set_keys(self, keys):
        with self.lock:
            self.body = json.dumps({"keys": keys}).encode()

    def count(self):
        with self.lock:
            return self.requests

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1, signed by it (openssl CLI); returns the
    paths of the CA, the certificate and its key."""
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(d, "server.ext")
    Path(ext).write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                         "basicConstraints=critical,CA:FALSE\n"
                         "keyUsage=critical,digitalSignature\n"
                         "extendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", 2,
         "-subj", "/CN=jwtdeny bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], section="jwks", quiet=True)
    run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr,
         "-subj", "/CN=jwtdeny bench IdP"], section="jwks", quiet=True)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", 2,
         "-days", 2, "-extfile", ext, "-out", crt], section="jwks", quiet=True)
    return ca, crt, key


class Reloader(threading.Thread):
    """Sends JWTDENY.KEYS RELOAD every `interval` seconds on its own connection, from the
    moment `ready` exists (the load generator is about to send) until `stop` is set; calls
    `before` ahead of each one (to change what the provider serves)."""

    def __init__(self, port, interval, ready, want, before=None):
        super().__init__(daemon=True)
        self.port, self.interval, self.ready, self.want = port, interval, ready, want
        self.before = before
        self.stop = threading.Event()
        self.sent = 0
        self.secs = []
        self.error = None

    def run(self):
        r = Redis(self.port)
        try:
            while not os.path.exists(self.ready):
                if self.stop.wait(0.005):
                    return
            while not self.stop.wait(self.interval):
                if self.before:
                    self.before(self.sent)
                t = time.time()
                got = r("JWTDENY.KEYS", "RELOAD")
                self.secs.append(time.time() - t)
                self.sent += 1
                if got != self.want:
                    self.error = f"JWTDENY.KEYS RELOAD answered {got!r}, expected {self.want}"
                    return
        except (OSError, ConnectionError, RedisError) as e:
            self.error = f"JWTDENY.KEYS RELOAD: {e}"
        finally:
            r.close()


def jwks_refresh(opts):
    """Section 7: CHECKs of cached tokens while the keys are refetched from an HTTPS JWKS
    server; returns the server's version and the section's Markdown (None, None if skipped)."""
    if not shutil.which("openssl"):
        log("openssl not found: skipping the JWKS refresh section (Debian: apt-get install "
            "openssl; --jwks-checks 0 to silence)")
        return None, None
    vectors = {k.get("kid"): k for k in json.loads(JWKS.read_text())["keys"]}
    keys = [vectors[kid] for kid in IDP_KIDS]
    # For the contrast row: the RS256 key with an `alg` member is, to the module, another key
    # (it serves other algorithms), yet the same material, so every token still verifies.
    changed = [dict(k, alg="RS256") if k["kid"] == "shared-rsa" else k for k in keys]
    tmp = tempfile.mkdtemp(prefix="jwtdeny-bench-jwks-")
    idp = srv = None
    try:
        ca, crt, key = make_certs(tmp)
        idp = JwksServer(crt, key)
        idp.set_keys(keys)
        url = f"https://127.0.0.1:{idp.port}/jwks.json"
        record("jwks", f"# bench/run.py serves {{\"keys\": [{', '.join(IDP_KIDS)}]}} "
                       f"(from tests/vectors/jwks.json) at {url} (python3 http.server + ssl, "
                       f"certificate {crt}); no keys file")
        srv = Server(opts, ("jwks-uri", url, "jwks-ca-file", ca))
        log(f"redis-server {srv.version} on 127.0.0.1:{srv.port}, keys from {url}")
        r = srv.r
        deadline = time.time() + 30
        while jwtdeny_counters(r).get("jwtdeny_jwks_fetches_ok", 0) < 1:
            if time.time() > deadline:
                fail(f"jwks: the first fetch did not succeed "
                     f"({r.info('jwtdeny').get('jwtdeny_jwks_last_fetch_result')}); log:\n"
                     f"{srv.log_tail()}")
            time.sleep(0.05)
        if r("JWTDENY.KEYS", "RELOAD") != len(keys):
            fail(f"jwks: expected {len(keys)} keys from {url}")
        record("jwks", ["redis-cli", "-p", srv.port, "JWTDENY.KEYS", "RELOAD"])
        cap = int(r("CONFIG", "GET", "jwtdeny.verify-cache-size")[1])
        if cap < opts.jwks_sessions:
            fail(f"jwks: --jwks-sessions {opts.jwks_sessions} > jwtdeny.verify-cache-size {cap}")

        now = int(time.time())
        D, N, iv = opts.jwks_sessions, opts.jwks_checks, opts.jwks_reload_interval
        # RS256 (what identity providers sign with by default) signs deterministically, so
        # every row's jwtbench mints the very same D tokens and finds them in the cache.
        extra = ("--distinct", D, "--iat", now, "--exp", now + 30 * 86400)
        ready = os.path.join(srv.dir, "loadgen.ready")

        def phase(label, count, reload=False, swap=None):
            if os.path.exists(ready):
                os.unlink(ready)
            reloader = None
            if reload:
                reloader = Reloader(srv.port, iv, ready, len(keys), before=swap)
                step = ("# (the server now serves the other key set); " if swap else "")
                record("jwks", f"while :; do sleep {iv}; {step}redis-cli -p {srv.port} "
                               f"JWTDENY.KEYS RELOAD; done &  # from when jwtbench is ready "
                               f"to send until it is done")
                reloader.start()
            c0, q0 = jwtdeny_counters(r), idp.count()
            log(f"jwks: {label}: {count} CHECKs over {D} cached RS256 tokens")
            try:
                res = loadgen(opts, srv, "check:RS256", count, 1, ":1", "jwtdeny.check",
                              tag="jwks-session-", extra=extra, flush=False, section="jwks")
            finally:
                if reloader:
                    reloader.stop.set()
                    reloader.join(60)
            c1, q1 = jwtdeny_counters(r), idp.count()
            if reloader and reloader.error:
                fail(f"jwks: {label}: {reloader.error}")
            d = {k: c1.get("jwtdeny_" + k, 0) - c0.get("jwtdeny_" + k, 0) for k in
                 ("verify_cache_hits", "verify_cache_misses", "jwks_fetches_ok",
                  "jwks_fetches_failed")}
            if d["jwks_fetches_failed"]:
                fail(f"jwks: {label}: {d['jwks_fetches_failed']} fetches failed "
                     f"({r.info('jwtdeny').get('jwtdeny_jwks_last_fetch_result')})")
            looked = d["verify_cache_hits"] + d["verify_cache_misses"]
            if looked != count:
                fail(f"jwks: {label}: {looked} cache lookups for {count} CHECKs")
            return {"label": label, "reloads": reloader.sent if reloader else 0,
                    "reload_secs": reloader.secs if reloader else [],
                    "fetches": d["jwks_fetches_ok"], "requests": q1 - q0, "checks": count,
                    "hits": d["verify_cache_hits"], "misses": d["verify_cache_misses"],
                    "entries": (c0.get("jwtdeny_verify_cache_entries", 0),
                                c1.get("jwtdeny_verify_cache_entries", 0)),
                    "ops": res["ops"], "p99": res["p99"]}

        rows = [phase("warm-up: each token's first CHECK", D)]
        rows.append(phase("no refresh", N))
        rows.append(phase(f"KEYS RELOAD every {iv:g} s, unchanged keys", N, reload=True))
        rows.append(phase(f"KEYS RELOAD every {iv:g} s, a key changed each time (contrast)", N,
                          reload=True,
                          swap=lambda i: idp.set_keys(changed if i % 2 == 0 else keys)))
    finally:
        if srv:
            srv.stop()
        if idp:
            idp.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    unchanged = rows[2]
    holds = (unchanged["misses"] == 0 and unchanged["reloads"] > 0
             and unchanged["fetches"] >= unchanged["reloads"]
             and unchanged["entries"][0] == unchanged["entries"][1] == D)
    body = []
    for x in rows:
        rate = x["hits"] / (x["hits"] + x["misses"]) if x["hits"] + x["misses"] else 0.0
        body.append([x["label"], x["reloads"], x["fetches"], x["requests"], fmt_ops(x["checks"]),
                     fmt_ops(x["hits"]), fmt_ops(x["misses"]), f"{rate * 100:.2f}%",
                     f"{x['entries'][0]:,} → {x['entries'][1]:,}", fmt_ops(x["ops"]),
                     f"{x['p99']:.3f}"])
    reload_ms = [t * 1e3 for x in rows for t in x["reload_secs"]]
    return srv.version, (
        "## 7. JWKS refresh with unchanged keys (issue 10)\n\n"
        f"A second redis-server gets its keys only from an HTTPS JWKS server on loopback "
        f"(`jwtdeny.jwks-uri`, `jwtdeny.jwks-ca-file`; CA and certificate made for the run; keys "
        f"{', '.join(IDP_KIDS)}). jwtbench sends {N:,} JWTDENY.CHECKs per row over "
        f"{opts.clients} connections, unpipelined, cycling through the same {D:,} RS256 tokens "
        f"(cached by the warm-up), while a second connection sends `JWTDENY.KEYS RELOAD` "
        f"(which refetches the URL and replies once the keys are in force"
        + (f", median {statistics.median(reload_ms):.1f} ms" if reload_ms else "")
        + f") every {iv:g} s. `fetches` is the jwks_fetches_ok delta, `requests` the JWKS "
        f"server's own count, hits and misses the verify_cache_* deltas (every CHECK is one "
        f"or the other, and every CHECK answered 1). In the contrast row the provider serves, "
        f"on every other refresh, the RS256 key with an `alg` member: the same material, so "
        f"the tokens still verify, but a changed key to the module, which drops what it "
        f"verified.\n\n"
        + table(["refresh", "KEYS RELOAD sent", "fetches", "requests", "CHECKs", "cache hits",
                 "cache misses", "hit rate", "cache entries before → after", "CHECK ops/s",
                 "p99 ms"], body)
        + f"\n\nAn unchanged refresh keeps the cache (no miss, entries kept): "
        + ("holds" if holds else "**MISSED**"))


def targets(rb, lg, overhead, mem, P):
    def status(ok):
        return "holds" if ok else "**MISSED**"

    rows = []
    worst = min(((rb[(f"CHECK {a} {s}", 1)]["ops"] / rb[("EXISTS", 1)]["ops"], f"{a} {s}")
                 for a in ALGS for s in ("active", "revoked")))
    rows.append(["CHECK, any algorithm, unpipelined, a token checked before", "≥ 0.90 × EXISTS",
                 f"{worst[0]:.3f} (worst: {worst[1]})", status(worst[0] >= 0.9)])
    hs = min(rb[(f"CHECK HS256 {s}", P)]["ops"] for s in ("active", "revoked")) \
        / rb[("EXISTS", P)]["ops"]
    rows.append([f"CHECK HS256, -P {P}", "≥ 0.50 × EXISTS", f"{hs:.3f} (worst of active, revoked)",
                 status(hs >= 0.5)])
    worst = min(((rb[(f"CHECK {a} {s}", P)]["ops"] / rb[("EXISTS", P)]["ops"], f"{a} {s}")
                 for a in ("RS256", "ES256", "EdDSA") for s in ("active", "revoked")))
    rows.append([f"CHECK RS256/ES256/EdDSA, -P {P}, a token checked before", "≥ 0.40 × EXISTS",
                 f"{worst[0]:.3f} (worst: {worst[1]})", status(worst[0] >= 0.4)])
    worst = max((overhead[a], a) for a in ("RS256", "ES256", "EdDSA"))
    rows.append(["CHECK RS256/ES256/EdDSA, first sight", "overhead ≤ 20% over raw verify",
                 f"{worst[0] * 100:+.0f}% (worst: {worst[1]})", status(worst[0] <= 0.2)])
    m = mem["JWTDENY.REVOKE"][0] / mem["SET <same key> 1 PXAT <ms>"][0]
    rows.append(["memory per revoked entry", "≤ 1.05 × SET … PXAT", f"{m:.3f}",
                 status(m <= 1.05)])
    return ("## Targets (issue 4 §2; ratios from this run)\n\n"
            + table(["case", "target", "measured", ""], rows, ["---", "---", "---", "---"]))


def save(opts, version, body, elapsed):
    info = machine_info(version)
    # In the order they ran, one block per stretch of the same section.
    blocks = []
    for section, line in COMMANDS:
        if not blocks or blocks[-1][0] != section:
            blocks.append((section, []))
        blocks[-1][1].append(line)
    cmds = [f"{section}:\n\n```sh\n" + "\n".join(lines) + "\n```" for section, lines in blocks]
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in
           ("BENCH_SAVE", "BENCH_QUICK", "BENCH_ROUNDS", "BENCH_ONLY") if os.environ.get(k)]
    invocation = " ".join(env + ["bench/run.sh"] + [shlex.quote(a) for a in sys.argv[1:]])
    text = (
        "# jwtdeny benchmark results\n\n"
        "Written by `bench/run.sh --save` (see bench/README.md for what each number means). "
        "These machines are noisy: compare ratios within one run, not figures across runs.\n\n"
        + table(["", ""], [[k, v] for k, v in info], ["---", "---"])
        + f"\n\nInvocation: `{invocation}`"
        f" — took {elapsed:.0f}s.\n\n"
        + body
        + "\n\n## Commands\n\nRun from the repository root, in this order (the port and the "
        "temporary directory differ per run; `$NAME` is a token minted by a `tokens` line; "
        "before each measured command the harness also sends CONFIG RESETSTAT and reads INFO "
        "commandstats, INFO cpu and INFO jwtdeny).\n\n"
        + "\n\n".join(cmds) + "\n")
    Path(opts.save).write_text(text)
    log(f"wrote {opts.save}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        fail("interrupted")
