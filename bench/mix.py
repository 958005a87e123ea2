#!/usr/bin/env python3
"""jwtdeny under a realistic mix (issue 12 §3): `make bench-mix`, see bench/README.md.

What production looks like, rather than one token repeated: a population of distinct sessions
(default 100,000 tokens, a quarter per algorithm: HS256 RS256 ES256 EdDSA, in random order),
requests drawn Zipf(1.0) over them (a few sessions are busy, most are rare), 2% of requests with
a never-seen token (a new session: full verification), 1% with a revoked one (1% of the
population is revoked beforehand). Sent by `jwtbench load` over 50 connections, unpipelined and
-P 16, next to EXISTS through the same tool in the same run; then again with jwtdeny.workers 2.
Reports ops/s, p50/p99, × EXISTS, the verification cache's hit rate (INFO jwtdeny) and the
server's CPU per request. One unmeasured pass of the same mix warms the cache first, so the
rows show a steady state, not a cold start.

Every run checks every reply: the number of `:0` answers must equal the revoked draws, the rest
`:1`. Python 3 standard library only; the server and the RESP client come from bench/run.py.
"""

import argparse
import bisect
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402  (bench/run.py: Server, Redis, build helpers)

REPO = harness.REPO
JWTBENCH = harness.JWTBENCH
KEY_DIR = harness.KEY_DIR
ALGS = harness.ALGS
RESULTS = harness.BENCH / "results.md"
BEGIN = "<!-- mix: begin (bench/mix.py --save replaces this section) -->"
END = "<!-- mix: end -->"


def log(msg):
    print(f"[mix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    print(f"bench/mix: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_args():
    env = os.environ.get
    ap = argparse.ArgumentParser(description="jwtdeny under a realistic mix (issue 12 §3)")
    ap.add_argument("--tokens", type=int, default=100000,
                    help="distinct session tokens, a quarter per algorithm (100000)")
    ap.add_argument("--requests", type=int, default=int(env("BENCH_MIX_REQUESTS", "100000")),
                    help="requests per measured run (100000); env BENCH_MIX_REQUESTS")
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent (1.0)")
    ap.add_argument("--never-seen", type=float, default=0.02,
                    help="share of requests with a never-seen token (0.02)")
    ap.add_argument("--revoked", type=float, default=0.01,
                    help="share of the population revoked, and of requests drawn from it (0.01)")
    ap.add_argument("--clients", type=int, default=50, help="connections (50)")
    ap.add_argument("--pipeline", type=int, default=16, help="pipelined depth (16)")
    ap.add_argument("--workers", type=int, default=2,
                    help="jwtdeny.workers for the second pair of rows (2); 0 skips them")
    ap.add_argument("--seed", type=int, default=12, help="random seed (12)")
    ap.add_argument("--no-build", action="store_true", help="use the existing builds")
    ap.add_argument("--redis-server", default=env("REDIS_SERVER", "redis-server"))
    ap.add_argument("--save", nargs="?", const=str(RESULTS),
                    default=str(RESULTS) if env("BENCH_SAVE") == "1" else None, metavar="PATH",
                    help="write the table into PATH (bench/results.md); env BENCH_SAVE=1")
    o = ap.parse_args()
    if o.tokens < 400 or o.requests < 100:
        fail("--tokens must be at least 400 and --requests at least 100")
    return o


def mint(alg, tag, iat, exp, count):
    p = harness.run([JWTBENCH, "mint", "--alg", alg, "--sub", tag, "--iat", iat, "--exp", exp,
                     "--count", count, "--key-dir", KEY_DIR], quiet=True)
    toks = p.stdout.split()
    if len(toks) != count:
        fail(f"jwtbench mint {alg}: {len(toks)} tokens, expected {count}")
    return toks


class Zipf:
    """Draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s."""

    def __init__(self, n, s):
        self.cum = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))

    def draw(self, rng):
        return bisect.bisect_left(self.cum, rng.random() * self.cum[-1])


def jwtdeny_info(r):
    return {k.removeprefix("jwtdeny_"): int(v) for k, v in r.info("jwtdeny").items()
            if v.isdigit()}


def load(srv, workload, count, pipeline, conns, expect, tmpdir):
    """One `jwtbench load` run; the server's counters open once the tool is ready to send."""
    r = srv.r
    ready = os.path.join(tmpdir, "load.ready")
    if os.path.exists(ready):
        os.unlink(ready)
    argv = [JWTBENCH, "load", "--port", srv.port, "--workload", workload, "--count", count,
            "--conns", conns, "--pipeline", pipeline, "--key-dir", KEY_DIR,
            "--timeout-secs", 120, "--ready-file", ready, "--wait-go", 1]
    lg = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, cwd=REPO)
    deadline = time.time() + 600
    while not os.path.exists(ready):
        if lg.poll() is not None or time.time() > deadline:
            lg.kill()
            fail(f"jwtbench load {workload} did not get ready")
        time.sleep(0.01)
    before = jwtdeny_info(r)
    cpu0 = r.cpu_secs()
    out, _ = lg.communicate("go\n", timeout=3600)
    cpu = r.cpu_secs() - cpu0
    after = jwtdeny_info(r)
    if lg.returncode != 0:
        fail(f"jwtbench load {workload} failed ({lg.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    if res["replies"] != expect:
        fail(f"{workload}: replies {res['replies']}, expected {expect} "
             f"(first error: {res.get('first_error')})")
    hits = after.get("verify_cache_hits", 0) - before.get("verify_cache_hits", 0)
    misses = after.get("verify_cache_misses", 0) - before.get("verify_cache_misses", 0)
    return {"ops": res["ops_per_sec"], "p50": res["p50_ms"], "p99": res["p99_ms"],
            "cpu": cpu * 1e6 / count, "hits": hits, "misses": misses,
            "offloaded": after.get("verifications_offloaded", 0)
            - before.get("verifications_offloaded", 0)}


def main():
    opts = parse_args()
    started = time.time()
    if not opts.no_build:
        log("building the module and jwtbench (cargo build --release)")
        harness.run(["cargo", "build", "--release"], quiet=True)
        harness.run(["cargo", "build", "--release", "--manifest-path",
                     harness.BENCH / "mint" / "Cargo.toml"], quiet=True,
                    env={"CARGO_TARGET_DIR": harness.TOOLS_TARGET})
    rng = random.Random(opts.seed)
    now = int(time.time())
    iat, exp = now, now + 30 * 86400
    R, P = opts.requests, opts.pipeline
    per_alg = opts.tokens // len(ALGS)

    runs = [("warm-up", P, 0), ("mix", 1, 0), ("mix", P, 0)]
    if opts.workers > 0:
        runs += [("mix", 1, opts.workers), ("mix", P, opts.workers)]
    fresh_per_run = max(1, round(R * opts.never_seen))
    fresh_per_alg = -(-fresh_per_run // len(ALGS))

    log(f"minting {per_alg * len(ALGS):,} session tokens and "
        f"{fresh_per_alg * len(ALGS) * len(runs):,} never-seen ones (RS256 signing is the slow "
        "part)")
    pop, fresh = [], []
    for alg in ALGS:
        pop += mint(alg, f"mix-{alg}-", iat, exp, per_alg)
        fresh += mint(alg, f"mix-new-{alg}-", iat, exp, fresh_per_alg * len(runs))
    rng.shuffle(pop)
    rng.shuffle(fresh)
    n_rev = max(1, round(len(pop) * opts.revoked))
    # Revoked sessions sit at random popularity ranks; requests reach them in proportion.
    rev_idx = set(rng.sample(range(len(pop)), n_rev))
    zipf = Zipf(len(pop), opts.zipf)

    srv = harness.Server(opts)
    tmpdir = srv.dir
    log(f"redis-server {srv.version} on 127.0.0.1:{srv.port}; {len(pop):,} tokens, "
        f"{n_rev:,} revoked, {R:,} requests per run")
    rows = []
    try:
        r = srv.r
        r("SET", "bench:exists", "1")
        for i in sorted(rev_idx):
            if r("JWTDENY.REVOKE", pop[i]) != 1:
                fail("JWTDENY.REVOKE did not answer 1")
        old_workers = None
        got = r("CONFIG", "GET", "jwtdeny.workers")
        if got:
            old_workers = got[1]
        fresh_it = iter(fresh)
        for n, (kind, pipe, workers) in enumerate(runs):
            if old_workers is not None:
                r("CONFIG", "SET", "jwtdeny.workers", workers)
            elif workers:
                log("this module has no jwtdeny.workers: skipping the workers rows")
                break
            # The request sequence: Zipf over the population, with never-seen tokens spread
            # through it at random positions.
            lines, n_revoked = [], 0
            new_at = set(rng.sample(range(R), fresh_per_run))
            for i in range(R):
                if i in new_at:
                    tok = next(fresh_it)
                else:
                    k = zipf.draw(rng)
                    n_revoked += k in rev_idx
                    tok = pop[k]
                lines.append(f"JWTDENY.CHECK {tok}\n")
            path = os.path.join(tmpdir, f"mix-{n}.txt")
            Path(path).write_text("".join(lines))
            expect = {":1": R - n_revoked}
            if n_revoked:
                expect[":0"] = n_revoked
            if kind == "warm-up":
                log(f"warm-up pass: {R:,} requests -P {pipe}")
                load(srv, f"lines:{path}", R, pipe, opts.clients, expect, tmpdir)
                continue
            log(f"EXISTS -P {pipe}, then the mix -P {pipe}, jwtdeny.workers {workers}")
            ex = load(srv, "exists:bench:exists", R, pipe, opts.clients, {":1": R}, tmpdir)
            mx = load(srv, f"lines:{path}", R, pipe, opts.clients, expect, tmpdir)
            mx["revoked"] = n_revoked
            rows.append((pipe, workers, ex, mx))
            os.unlink(path)
        if old_workers is not None:
            r("CONFIG", "SET", "jwtdeny.workers", old_workers)
    finally:
        srv.stop()

    body = report(opts, rows, len(pop), n_rev, fresh_per_run, srv.version)
    print(body)
    elapsed = time.time() - started
    print(f"\n(took {elapsed:.0f}s)")
    if opts.save:
        save(opts.save, body, elapsed)


def report(opts, rows, n_pop, n_rev, n_new, version):
    out = []
    for pipe, workers, ex, mx in rows:
        looked = mx["hits"] + mx["misses"]
        hit = f"{mx['hits'] / looked * 100:.1f}%" if looked else "-"
        for label, d in (("EXISTS", ex), ("CHECK mix", mx)):
            out.append([label, pipe, workers if label != "EXISTS" else "",
                        f"{d['ops']:,.0f}", f"{d['ops'] / ex['ops']:.2f}", f"{d['p50']:.3f}",
                        f"{d['p99']:.3f}", f"{d['cpu']:.2f}",
                        hit if label != "EXISTS" else "",
                        f"{mx['revoked']:,}" if label != "EXISTS" else ""])
    tab = harness.table(["case", "-P", "workers", "ops/s", "× EXISTS", "p50 ms", "p99 ms",
                         "server CPU µs/req", "cache hit rate", "revoked answers"], out)
    return (
        "## A realistic mix (issue 12 §3)\n\n"
        f"redis-server {version}, commit {harness.git_commit()}. "
        f"{n_pop:,} distinct tokens ({n_pop // len(ALGS):,} per algorithm, in random order), "
        f"{n_rev:,} of them revoked; each run {opts.requests:,} requests drawn "
        f"Zipf({opts.zipf:g}) over them, {n_new:,} of them ({opts.never_seen * 100:g}%) "
        f"never-seen tokens at random positions; {opts.clients} connections through "
        "`jwtbench load`, EXISTS through the same tool just before each mix run. One unmeasured "
        "pass of the mix warms the verification cache first. `cache hit rate` is "
        "verify_cache_hits / (hits + misses) over the run (INFO jwtdeny); `workers` is "
        "jwtdeny.workers. Wall-clock figures: expect ±30% between runs on a shared machine.\n\n"
        + tab)


def save(path, body, elapsed):
    argv = " ".join(sys.argv[1:])
    section = (f"{BEGIN}\n{body}\n\nMeasured by `python3 bench/mix.py {argv}` "
               f"(`make bench-mix`), {elapsed:.0f}s.\n{END}\n")
    harness.write_section(path, BEGIN, END, section)
    log(f"wrote the mix table into {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        fail("interrupted")
