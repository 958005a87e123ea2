//! Issue 5, "Under load, nothing leaks": a soak of mixed CHECK / REVOKE / INSPECT (and CHECK
//! WITHCLAIMS) with unique short-lived tokens from many pipelined connections; once every entry
//! has expired, `used_memory` and the process RSS must be back within 5% of where they were
//! before the run, and no reply may be other than the one intended.
//!
//! Ignored by `cargo test`; `make soak` runs it:
//!   cargo test --release --test soak -- --ignored --nocapture
//! Knobs (environment): SOAK_OPS (2,000,000), SOAK_CLIENTS (50), SOAK_TTL (token lifetime in
//! seconds, 3), SOAK_PIPELINE (tokens per pipelined batch per client, 16), SOAK_WARMUP_OPS
//! (default: enough to fill the verification cache), SOAK_WORKERS (jwtdeny.workers; unset =
//! the module default), SOAK_TOLERANCE_PCT (5).
//!
//! How memory is compared. The baseline is taken after a warm-up with the same workload, once
//! the warm-up's entries have expired, so it already holds what legitimately stays: the full
//! verification cache (a fixed number of slots), the 50 connections, Redis's counters. The end
//! figure is taken the same way after the run. At both points `MEMORY PURGE` is issued first:
//! it asks jemalloc to hand back to the kernel the dirty pages it keeps for reuse (memory that
//! is already free by the allocator's account, and that jemalloc's own decay would return
//! after a few seconds anyway), so the two RSS readings compare live memory rather than the
//! allocator's timing. `used_memory` (the allocator's count of live bytes) is not affected by it.

mod common;
mod faults;

use common::*;
use faults::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one command is expected to answer.
#[derive(Clone, Copy)]
enum Expect {
    Int(i64),
    /// INSPECT with this status.
    Inspect(&'static str),
    /// CHECK … WITHCLAIMS: `[1, "<payload>"]` or `[0, nil]`.
    WithClaims(i64),
}

#[derive(Default)]
struct Stats {
    ops: u64,
    by_cmd: BTreeMap<&'static str, u64>,
    /// Error codes (or "wrong reply") of replies that were not the intended one, counted by
    /// code; EXPIRED received after the token's exp is counted separately as intended.
    unexpected: BTreeMap<String, u64>,
    expired_intended: u64,
    samples: Vec<String>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.ops += o.ops;
        for (k, v) in o.by_cmd {
            *self.by_cmd.entry(k).or_default() += v;
        }
        for (k, v) in o.unexpected {
            *self.unexpected.entry(k).or_default() += v;
        }
        self.expired_intended += o.expired_intended;
        for s in o.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }

    fn unexpected_total(&self) -> u64 {
        self.unexpected.values().sum()
    }
}

fn matches(expect: Expect, r: &Reply, sub: &str) -> bool {
    match (expect, r) {
        (Expect::Int(want), Reply::Int(got)) => want == *got,
        (Expect::Inspect(status), Reply::Array(Some(items))) => {
            items.len() == 20 && is_text(&items[0], "status") && is_text(&items[1], status)
        }
        (Expect::WithClaims(1), Reply::Array(Some(items))) => {
            items.len() == 2
                && items[0] == Reply::Int(1)
                && matches!(&items[1], Reply::Bulk(Some(b)) if contains(b, sub.as_bytes()))
        }
        (Expect::WithClaims(0), Reply::Array(Some(items))) => {
            items.len() == 2 && items[0] == Reply::Int(0) && items[1] == Reply::Bulk(None)
        }
        _ => false,
    }
}

/// A status or bulk reply with exactly this text.
fn is_text(r: &Reply, s: &str) -> bool {
    match r {
        Reply::Status(t) => t == s,
        Reply::Bulk(Some(b)) => b == s.as_bytes(),
        _ => false,
    }
}

/// Whether `r` says the token has expired (an EXPIRED error, or INSPECT's status EXPIRED).
fn says_expired(r: &Reply) -> bool {
    match r {
        Reply::Error(_) => r.err_code() == Some("EXPIRED"),
        Reply::Array(Some(items)) => items.len() >= 2 && is_text(&items[1], "EXPIRED"),
        _ => false,
    }
}

/// The commands for the `t`-th token of a client, in four patterns that together cover every
/// reply of CHECK (1/0), REVOKE (1/0), INSPECT (active/revoked) and WITHCLAIMS.
fn script(t: u64) -> &'static [(&'static str, Expect)] {
    use Expect::*;
    match t % 4 {
        0 => &[("CHECK", Int(1)), ("INSPECT", Inspect("active"))],
        1 => &[("CHECK", Int(1)), ("REVOKE", Int(1)), ("CHECK", Int(0))],
        2 => &[
            ("REVOKE", Int(1)),
            ("REVOKE", Int(0)),
            ("INSPECT", Inspect("revoked")),
            ("CHECK", Int(0)),
        ],
        _ => &[
            ("WITHCLAIMS", WithClaims(1)),
            ("REVOKE", Int(1)),
            ("WITHCLAIMS", WithClaims(0)),
        ],
    }
}

/// One client: `quota` commands (rounded up to whole tokens) in pipelined batches of `depth`
/// tokens, each token unique (`s<client>-<phase>-<n>`) and expiring `ttl` seconds from now.
fn client(
    pipe: &mut Pipe,
    hs: &Hs256,
    id: usize,
    phase: &str,
    quota: u64,
    ttl: i64,
    depth: u64,
) -> Stats {
    let mut st = Stats::default();
    let mut t: u64 = 0;
    let mut batch: Vec<(String, i64, &'static str, Expect)> = Vec::new();
    while st.ops < quota {
        batch.clear();
        let now_s = now();
        for _ in 0..depth {
            let sub = format!("s{id}-{phase}-{t}");
            let exp = now_s + ttl;
            let token = hs.mint(&sub, now_s, exp);
            for &(cmd, expect) in script(t) {
                let tok = token.as_bytes();
                match cmd {
                    "CHECK" => pipe.queue(&[b"JWTDENY.CHECK", tok]),
                    "REVOKE" => pipe.queue(&[b"JWTDENY.REVOKE", tok]),
                    "INSPECT" => pipe.queue(&[b"JWTDENY.INSPECT", tok]),
                    _ => pipe.queue(&[b"JWTDENY.CHECK", tok, b"WITHCLAIMS"]),
                }
                batch.push((sub.clone(), exp, cmd, expect));
            }
            t += 1;
        }
        pipe.flush().expect("send batch");
        for (sub, exp, cmd, expect) in &batch {
            let r = pipe.read().expect("read reply");
            st.ops += 1;
            *st.by_cmd.entry(cmd).or_default() += 1;
            if matches(*expect, &r, sub) {
                continue;
            }
            // Intended: a token that ran out of time while queued behind other work.
            if says_expired(&r) && now_ms() >= exp * 1000 {
                st.expired_intended += 1;
                continue;
            }
            let code = r
                .err_code()
                .map(str::to_string)
                .unwrap_or_else(|| format!("wrong reply to {cmd}"));
            *st.unexpected.entry(code).or_default() += 1;
            if st.samples.len() < 10 {
                st.samples
                    .push(format!("{cmd} of {sub} (exp {exp}) answered {r}"));
            }
        }
    }
    st
}

/// Runs `ops` commands spread over the pipes; returns the merged stats and the elapsed time.
fn run_load(
    pipes: &mut [Pipe],
    hs: &Hs256,
    phase: &str,
    ops: u64,
    ttl: i64,
    depth: u64,
) -> (Stats, Duration) {
    let n = pipes.len() as u64;
    let started = Instant::now();
    let total = Mutex::new(Stats::default());
    std::thread::scope(|s| {
        for (i, pipe) in pipes.iter_mut().enumerate() {
            let quota = ops / n + u64::from((i as u64) < ops % n);
            let total = &total;
            s.spawn(move || {
                let st = client(pipe, hs, i, phase, quota, ttl, depth);
                total.lock().unwrap().merge(st);
            });
        }
    });
    (total.into_inner().unwrap(), started.elapsed())
}

struct Mem {
    used: i64,
    rss: i64,
}

fn mem(server: &Server, pid: u32) -> Mem {
    Mem {
        used: info_i64(server, "memory", "used_memory"),
        rss: vm_rss(pid) as i64,
    }
}

/// Waits until every entry has expired and been reclaimed (active expiry), then lets the
/// server's cron shrink its tables, purges the allocator and measures.
fn drained(server: &Server, pid: u32, what: &str, deadline: Duration) -> (Mem, Duration) {
    let started = Instant::now();
    wait_until(&format!("DBSIZE 0 after the {what}"), deadline, || {
        server.dbsize() == 0
    });
    let waited = started.elapsed();
    // Redis shrinks the keyspace's hash tables from its cron (hz 10) and rehashes them
    // incrementally: give it a few cron rounds.
    std::thread::sleep(Duration::from_secs(2));
    purge(server);
    (mem(server, pid), waited)
}

fn purge(server: &Server) {
    let r = server.cmd(&["MEMORY", "PURGE"]);
    assert_eq!(r, Reply::Status("OK".into()), "MEMORY PURGE");
    std::thread::sleep(Duration::from_millis(500));
}

fn pct(from: i64, to: i64) -> f64 {
    (to - from) as f64 * 100.0 / from as f64
}

#[test]
#[ignore = "long: run with `make soak`"]
fn soak_memory_returns_to_baseline_and_no_unintended_replies() {
    let ops = env_num("SOAK_OPS", 2_000_000);
    let clients = env_num("SOAK_CLIENTS", 50).max(1) as usize;
    let ttl = env_num("SOAK_TTL", 3) as i64;
    let depth = env_num("SOAK_PIPELINE", 16).max(1);
    let tolerance = env_num("SOAK_TOLERANCE_PCT", 5) as f64;

    let mut builder = ServerBuilder::new().vector_keys();
    if let Ok(w) = std::env::var("SOAK_WORKERS") {
        builder = builder.conf(format!("jwtdeny.workers {w}"));
    }
    let server = builder.start();
    let pid = server_pid(&server);
    let workers = server.config_get("jwtdeny.workers");
    let cache_cap = info_i64(&server, "jwtdeny", "jwtdeny_verify_cache_capacity") as u64;
    // Every token passes verification once (about 3.25 commands per token): fill the cache.
    let warmup = env_num("SOAK_WARMUP_OPS", cache_cap * 4 + 50_000);
    let hs = Hs256::new();
    let mut pipes: Vec<Pipe> = (0..clients)
        .map(|_| Pipe::connect(server.port).expect("connect"))
        .collect();
    let drain_deadline = Duration::from_secs(ttl as u64 + 120);

    println!(
        "soak: {ops} ops, {clients} clients, pipeline {depth} tokens, token ttl {ttl}s, \
         jwtdeny.workers {workers}, verify cache {cache_cap} slots, warm-up {warmup} ops"
    );

    // Warm-up, then the baseline.
    let (w, w_time) = run_load(&mut pipes, &hs, "w", warmup, ttl, depth);
    assert_eq!(
        w.unexpected_total(),
        0,
        "unintended replies during warm-up: {:?}; e.g. {:?}",
        w.unexpected,
        w.samples
    );
    let cache_entries = info_i64(&server, "jwtdeny", "jwtdeny_verify_cache_entries");
    let (start, _) = drained(&server, pid, "warm-up", drain_deadline);
    let cache_mem0 = info_i64(&server, "jwtdeny", "jwtdeny_verify_cache_memory_bytes");
    println!(
        "soak: warm-up {} ops in {:.1}s; verify cache {cache_entries}/{cache_cap} entries",
        w.ops,
        w_time.as_secs_f64()
    );

    // The run, with a sampler for the peaks.
    let stop = AtomicBool::new(false);
    let peak = Mutex::new((start.used, start.rss, 0i64));
    let (st, elapsed) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut conn = Conn::connect(server.port).expect("sampler connect");
            while !stop.load(Ordering::Relaxed) {
                let info = parse_info(&conn.cmd(&["INFO", "memory"]).text());
                let used: i64 = info["used_memory"].parse().unwrap();
                let rss = vm_rss(pid) as i64;
                let keys = conn.cmd(&["DBSIZE"]).int();
                let mut p = peak.lock().unwrap();
                p.0 = p.0.max(used);
                p.1 = p.1.max(rss);
                p.2 = p.2.max(keys);
                drop(p);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let r = run_load(&mut pipes, &hs, "r", ops, ttl, depth);
        stop.store(true, Ordering::Relaxed);
        r
    });
    let (peak_used, peak_rss, peak_keys) = *peak.lock().unwrap();
    let (end, drain_time) = drained(&server, pid, "run", drain_deadline);
    // The cron may still be shrinking tables: allow it a few more seconds to settle.
    let mut end = end;
    let settle = Instant::now();
    while (pct(start.used, end.used) > tolerance || pct(start.rss, end.rss) > tolerance)
        && settle.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_secs(1));
        purge(&server);
        end = mem(&server, pid);
    }
    let cache_mem1 = info_i64(&server, "jwtdeny", "jwtdeny_verify_cache_memory_bytes");
    let info = parse_info(&server.cmd(&["INFO", "jwtdeny"]).text());
    let expired_keys = info_i64(&server, "stats", "expired_keys");

    let ops_s = st.ops as f64 / elapsed.as_secs_f64();
    println!("soak: ---- figures ----");
    println!(
        "soak: ops {} in {:.1}s = {:.0} ops/s; by command {:?}",
        st.ops,
        elapsed.as_secs_f64(),
        ops_s,
        st.by_cmd
    );
    println!(
        "soak: used_memory start {} / peak {} / end {} ({:+.2}%)",
        mib(start.used),
        mib(peak_used),
        mib(end.used),
        pct(start.used, end.used)
    );
    println!(
        "soak: RSS         start {} / peak {} / end {} ({:+.2}%)",
        mib(start.rss),
        mib(peak_rss),
        mib(end.rss),
        pct(start.rss, end.rss)
    );
    println!(
        "soak: peak live entries {peak_keys}; DBSIZE 0 {:.1}s after the run; expired_keys {expired_keys}; \
         verify cache memory {} -> {}",
        drain_time.as_secs_f64(),
        mib(cache_mem0),
        mib(cache_mem1)
    );
    println!(
        "soak: replies: EXPIRED (token ran out while queued, intended) {}; unintended {} {:?}",
        st.expired_intended,
        st.unexpected_total(),
        st.unexpected
    );
    let counters: BTreeMap<_, _> = info
        .iter()
        .filter(|(k, _)| k.contains("checks_") || k.contains("revokes_"))
        .collect();
    println!("soak: INFO jwtdeny {counters:?}");

    assert_eq!(
        st.unexpected_total(),
        0,
        "unintended replies {:?}; e.g. {:#?}",
        st.unexpected,
        st.samples
    );
    assert!(st.ops >= ops, "ran {} ops of {ops}", st.ops);
    assert!(
        pct(start.used, end.used) <= tolerance,
        "used_memory did not come back: start {} end {}",
        start.used,
        end.used
    );
    assert!(
        pct(start.rss, end.rss) <= tolerance,
        "RSS did not come back: start {} end {}",
        start.rss,
        end.rss
    );
}
