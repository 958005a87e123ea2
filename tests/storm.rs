//! The "garbage storm" (issue 5, §1): 100,000 random and mutated tokens against a live server,
//! pipelined over a few connections.
//!
//! Every reply must be `:0`, `:1`, or an error whose first word is a documented code (or `ERR`
//! for wrong arity and syntax); no mutation of a revoked token may ever check `1`; garbage never
//! writes anything; and afterwards the server still answers PING and INFO, still knows every
//! revocation, and logged no internal error.
//!
//! Reproduce a run with `JWTDENY_STORM_SEED=<seed printed by the failing run>`; change the count
//! with `JWTDENY_STORM_TOKENS=<n>`.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const CONNECTIONS: usize = 4;
const BATCH: usize = 500;
const DEFAULT_TOKENS: usize = 100_000;
const MAX_TOKEN_BYTES: usize = 8192;

/// xorshift64*: small, fast, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, alphabet: &[u8], n: usize) -> Vec<u8> {
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
    fn text_n(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.text(alphabet, n)
    }
    fn bytes_n(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }
}

/// What a reply must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Any well-formed answer: `:0`, `:1` or a documented error.
    Any,
    /// Derived from a revoked token: never `:1`.
    NotActive,
    /// Exactly this integer.
    Int(i64),
    /// An error with this first word.
    Code(&'static str),
}

struct Case {
    args: Vec<Vec<u8>>,
    expect: Expect,
    kind: &'static str,
}

/// The valid tokens the storm starts from.
struct Pool {
    revoked: Vec<String>,
    live: Vec<String>,
}

fn hs256(header: &str, payload: &str) -> Vec<u8> {
    sign_raw("HS256", header, payload).into_bytes()
}

const HS_HEADER: &str = r#"{"alg":"HS256","kid":"shared-hs256"}"#;

/// Numbers that have tripped JSON parsers and date arithmetic.
const NUMBERS: [&str; 24] = [
    "1e400",
    "-1e400",
    "1e-400",
    "-1",
    "-0",
    "0",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "inf",
    "1.7976931348623157e308",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "253402300799",
    "253402300800",
    "-253402300800",
    "4102444800",
    "4102444800.999",
    "1e19",
    "0x10",
];

fn mutate_bits(rng: &mut Rng, token: &str) -> Vec<u8> {
    let mut t = token.as_bytes().to_vec();
    for _ in 0..rng.range(1, 3) {
        let i = rng.below(t.len());
        t[i] ^= 1 << rng.below(8);
    }
    t
}

fn mutate_shape(rng: &mut Rng, token: &str) -> Vec<u8> {
    let t = token.as_bytes();
    match rng.below(7) {
        // Truncated anywhere, never to the full length.
        0 => t[..rng.below(t.len())].to_vec(),
        // A character dropped.
        1 => {
            let i = rng.below(t.len());
            [&t[..i], &t[i + 1..]].concat()
        }
        // Base64url characters appended to one segment.
        2 => {
            let extra = rng.text_n(B64URL, 1, 8);
            let mut parts: Vec<Vec<u8>> = t.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
            let i = rng.below(parts.len());
            parts[i].extend(extra);
            parts.join(&b'.')
        }
        // An extra dot, or one fewer.
        3 => {
            let i = rng.below(t.len());
            [&t[..i], b".", &t[i..]].concat()
        }
        4 => {
            let dot = t.iter().rposition(|b| *b == b'.').unwrap_or(0);
            [&t[..dot], &t[dot + 1..]].concat()
        }
        // Padding or the standard alphabet.
        5 => {
            let mut v = t.to_vec();
            v.extend_from_slice(&b"=="[..rng.range(1, 2)]);
            v
        }
        _ => t
            .iter()
            .map(|b| match b {
                b'-' => b'+',
                b'_' => b'/',
                b => *b,
            })
            .chain(std::iter::once(b'+'))
            .collect(),
    }
}

/// `header.payload` of one token with the signature of another.
fn splice(a: &str, b: &str) -> Vec<u8> {
    let (signed, _) = a.rsplit_once('.').expect("three segments");
    let (_, sig) = b.rsplit_once('.').expect("three segments");
    format!("{signed}.{sig}").into_bytes()
}

fn deep(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn case(rng: &mut Rng, pool: &Pool) -> Case {
    let from_revoked = rng.chance(50);
    let base = if from_revoked {
        rng.pick(&pool.revoked).clone()
    } else {
        rng.pick(&pool.live).clone()
    };
    let mutated = if from_revoked {
        Expect::NotActive
    } else {
        Expect::Any
    };
    let check = |t: Vec<u8>| vec![b"JWTDENY.CHECK".to_vec(), t];
    let roll = rng.below(100);
    let (args, expect, kind) = match roll {
        0..=29 => (check(mutate_bits(rng, &base)), mutated, "bit flips"),
        30..=39 => (check(mutate_shape(rng, &base)), mutated, "shape mutation"),
        40..=44 => {
            // A revoked token's header and payload under another token's signature, or the
            // other way round.
            let other_revoked = rng.chance(50);
            let other = if other_revoked {
                rng.pick(&pool.revoked).clone()
            } else {
                rng.pick(&pool.live).clone()
            };
            let t = if rng.chance(50) {
                splice(&base, &other)
            } else {
                splice(&other, &base)
            };
            let expect = if from_revoked || other_revoked {
                Expect::NotActive
            } else {
                Expect::Any
            };
            (check(t), expect, "spliced signature")
        }
        45 => {
            // Over jwtdeny.max-token-bytes: refused before anything is decoded.
            let n = rng.range(MAX_TOKEN_BYTES + 1, 2 * MAX_TOKEN_BYTES);
            let mut t = base.as_bytes().to_vec();
            let seg = rng.text(B64URL, n);
            let at = t.iter().position(|b| *b == b'.').unwrap_or(0) + 1;
            t.splice(at..at, seg);
            (check(t), Expect::Code("MALFORMED"), "huge segment")
        }
        46..=52 => {
            // Deeply nested JSON in the header, the payload or a claim, correctly signed.
            let depth = rng.range(16, 3000);
            let (open, close) = if rng.chance(50) {
                ("[", "]")
            } else {
                (r#"{"a":"#, "}")
            };
            let t = match rng.below(3) {
                0 => hs256(
                    &deep(depth, open, close, "1"),
                    r#"{"sub":"x","iat":1,"exp":4102444800}"#,
                ),
                1 => hs256(HS_HEADER, &deep(depth, open, close, "{}")),
                _ => hs256(
                    HS_HEADER,
                    &format!(
                        r#"{{"sub":"deep","iat":1,"exp":4102444800,"aud":{}}}"#,
                        deep(depth, open, close, "0")
                    ),
                ),
            };
            let expect = if t.len() > MAX_TOKEN_BYTES {
                Expect::Code("MALFORMED")
            } else {
                Expect::Any
            };
            (check(t), expect, "deep nesting")
        }
        65..=67 => {
            // Non-ASCII characters where error replies quote client input (kid, alg, an option).
            let c = if rng.chance(50) {
                *rng.pick(&[
                    '\u{100}', '一', '가', '\u{10a}', '\u{10d}', 'é', '\u{fffd}', '🔑', '\u{200}',
                ])
            } else {
                char::from_u32(rng.range(0x80, 0x10FFFF) as u32).unwrap_or('\u{4e00}')
            };
            let text = format!("k{c}");
            let args = match rng.below(3) {
                0 => check(hs256(
                    &serde_json::json!({"alg": "HS256", "kid": text}).to_string(),
                    r#"{"sub":"u","iat":1,"exp":4102444800}"#,
                )),
                1 => check(hs256(
                    &serde_json::json!({"alg": text, "kid": "shared-hs256"}).to_string(),
                    r#"{"sub":"u","iat":1,"exp":4102444800}"#,
                )),
                _ => vec![
                    b"JWTDENY.CHECK".to_vec(),
                    base.into_bytes(),
                    text.into_bytes(),
                ],
            };
            (args, Expect::Any, "non-ASCII quoted")
        }
        53..=64 => {
            // Odd NumericDates and claim types behind a valid signature.
            let mut claim = |name: &str| -> String {
                match rng.below(4) {
                    0 => String::new(),
                    1 => format!(r#","{name}":{}"#, rng.pick(&NUMBERS)),
                    2 => format!(r#","{name}":"{}""#, rng.pick(&NUMBERS)),
                    _ => format!(
                        r#","{name}":{}"#,
                        common::now() + rng.below(1000) as i64 - 500
                    ),
                }
            };
            let (iat, exp, nbf) = (claim("iat"), claim("exp"), claim("nbf"));
            let payload = format!(r#"{{"sub":"numbers"{iat}{exp}{nbf}}}"#);
            (
                check(hs256(HS_HEADER, &payload)),
                Expect::Any,
                "odd numbers",
            )
        }
        68..=77 => {
            // Random bytes, non-UTF-8 included.
            let n = rng.range(0, 400);
            let mut t = rng.bytes(n);
            if rng.chance(50) && n > 4 {
                t[n / 3] = b'.';
                t[2 * n / 3] = b'.';
            }
            (check(t), Expect::Any, "random bytes")
        }
        78..=84 => {
            // Three random base64url segments.
            let t = [
                rng.text_n(B64URL, 0, 200),
                rng.text_n(B64URL, 0, 200),
                rng.text_n(B64URL, 0, 200),
            ]
            .join(&b'.');
            (check(t), Expect::Any, "random segments")
        }
        85..=89 => {
            // Valid base64url of invalid or hostile JSON, including non-UTF-8 inside strings.
            let mut payload = br#"{"sub":""#.to_vec();
            payload.extend(rng.bytes_n(0, 20));
            payload.extend_from_slice(br#"","iat":1,"exp":4102444800}"#);
            let headers: [&[u8]; 7] = [
                br#"{"alg":"none"}"#,
                br#"{"alg":"HS256","kid":"shared-hs256","crit":["b64"]}"#,
                br#"{"alg":"HS256","kid":null}"#,
                br#"{"alg":["HS256"]}"#,
                br#"{"alg":"HS256","kid":"shared-hs256","kid":"shared-hs384"}"#,
                br#"[{"alg":"HS256"}]"#,
                b"\xef\xbb\xbf{\"alg\":\"HS256\"}",
            ];
            let header = *rng.pick(&headers);
            let t = format!("{}.{}.{}", b64(header), b64(&payload), b64(&rng.bytes(32)));
            (check(t.into_bytes()), Expect::Any, "hostile JSON")
        }
        90..=93 => {
            // Wrong arities and bad options: Redis's or the module's ERR.
            let t = base.into_bytes();
            let args = match rng.below(6) {
                0 => vec![b"JWTDENY.CHECK".to_vec()],
                1 => vec![
                    b"JWTDENY.CHECK".to_vec(),
                    t.clone(),
                    b"WITHCLAIMS".to_vec(),
                    t,
                ],
                2 => vec![b"JWTDENY.CHECK".to_vec(), t, rng.bytes(5)],
                3 => vec![b"JWTDENY.REVOKE".to_vec()],
                4 => vec![b"JWTDENY.REVOKE".to_vec(), t.clone(), t],
                _ => vec![b"JWTDENY.INSPECT".to_vec(), t.clone(), t],
            };
            (args, Expect::Code("ERR"), "wrong arity")
        }
        94..=96 => {
            // REVOKE of a mutation: of a revoked token (nothing new may be written) or garbage.
            let t = if from_revoked {
                mutate_bits(rng, &base)
            } else {
                rng.bytes_n(0, 100)
            };
            let expect = if from_revoked {
                Expect::NotActive
            } else {
                Expect::Any
            };
            (
                vec![b"JWTDENY.REVOKE".to_vec(), t],
                expect,
                "revoke garbage",
            )
        }
        _ => {
            // The originals, as a control: revoked answer 0, live answer 1.
            let expect = Expect::Int(if from_revoked { 0 } else { 1 });
            (check(base.into_bytes()), expect, "original")
        }
    };
    Case { args, expect, kind }
}

/// Checks one reply against what it must be; `Err` describes the violation.
fn judge(case: &Case, reply: &Reply) -> Result<(), String> {
    let well_formed = match reply {
        Reply::Int(0) | Reply::Int(1) => true,
        Reply::Error(_) => is_error_code(reply.err_code().unwrap_or("")),
        _ => false,
    };
    if !well_formed {
        return Err(format!("not a valid answer: {reply}"));
    }
    match case.expect {
        Expect::Any => Ok(()),
        Expect::NotActive if *reply == Reply::Int(1) => {
            Err("a mutation of a revoked token checked 1".into())
        }
        Expect::NotActive => Ok(()),
        Expect::Int(n) if *reply == Reply::Int(n) => Ok(()),
        Expect::Code(c) if reply.err_code() == Some(c) => Ok(()),
        other => Err(format!("expected {other:?}, got {reply}")),
    }
}

fn shown(args: &[Vec<u8>]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| {
            let s = String::from_utf8_lossy(a);
            if a.len() > 300 {
                format!(
                    "{}…({} bytes)",
                    s.chars().take(300).collect::<String>(),
                    a.len()
                )
            } else {
                s.into_owned()
            }
        })
        .collect();
    format!("{parts:?}")
}

#[test]
fn garbage_storm() {
    let seed: u64 = std::env::var("JWTDENY_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let total: usize = std::env::var("JWTDENY_STORM_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TOKENS);
    eprintln!("garbage storm: {total} commands, JWTDENY_STORM_SEED={seed}");

    let server = Server::with_vector_keys();
    let iat = now() - 60;

    // Two tokens per algorithm: one revoked, one left alone; plus a subject revoked as a whole.
    let mut pool = Pool {
        revoked: Vec::new(),
        live: Vec::new(),
    };
    for alg in ALL_ALGS {
        let revoked = mint_default(alg, &claims(&format!("storm-revoked-{alg}"), iat, FAR_EXP));
        assert_int(
            &server.revoke(&revoked),
            1,
            &format!("revoking the {alg} token"),
        );
        pool.revoked.push(revoked);
        let live = mint_default(alg, &claims(&format!("storm-live-{alg}"), iat, FAR_EXP));
        assert_int(&server.check(&live), 1, &format!("the live {alg} token"));
        pool.live.push(live);
    }
    for alg in ["ES256", "EdDSA", "HS512"] {
        pool.revoked
            .push(mint_default(alg, &claims("storm-cut", iat - 1, FAR_EXP)));
    }
    let cutoff = server.cmd(&["JWTDENY.REVOKEALL", "storm-cut"]).int();
    assert!(cutoff >= iat, "REVOKEALL cutoff {cutoff}");
    for t in &pool.revoked {
        assert_int(&server.check(t), 0, "a revoked token before the storm");
    }
    let keys_before = server.dbsize();

    let started = Instant::now();
    let port = server.port;
    let per_conn = total.div_ceil(CONNECTIONS);
    let pool = std::sync::Arc::new(pool);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut conn = Conn::connect(port).expect("connect");
                conn.set_read_timeout(Duration::from_secs(60));
                let mut tally: BTreeMap<String, usize> = BTreeMap::new();
                let mut failures = Vec::new();
                let mut done = 0;
                while done < per_conn {
                    let n = BATCH.min(per_conn - done);
                    let cases: Vec<Case> = (0..n).map(|_| case(&mut rng, &pool)).collect();
                    for c in &cases {
                        conn.send(&c.args).expect("send");
                    }
                    for c in &cases {
                        let reply = match conn.read() {
                            Ok(r) => r,
                            // A line that is not UTF-8 or not RESP: a violation, and the
                            // stream is still in step (the whole line was read).
                            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                failures.push(format!(
                                    "{} [{}]: not a valid reply ({e})",
                                    shown(&c.args),
                                    c.kind
                                ));
                                continue;
                            }
                            Err(e) => {
                                failures.push(format!(
                                    "connection {w}: no reply to {} [{}] ({e}): did the server die?",
                                    shown(&c.args),
                                    c.kind
                                ));
                                return (tally, failures);
                            }
                        };
                        let label = match &reply {
                            Reply::Int(n) => format!(":{n}"),
                            r => r.err_code().unwrap_or("?").to_string(),
                        };
                        *tally.entry(format!("{:<16} {label}", c.kind)).or_default() += 1;
                        if let Err(why) = judge(c, &reply) {
                            failures.push(format!("{} [{}]: {why}", shown(&c.args), c.kind));
                        }
                    }
                    done += n;
                }
                (tally, failures)
            })
        })
        .collect();

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for w in workers {
        let (t, f) = w.join().expect("storm connection thread");
        for (k, v) in t {
            *tally.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    let sent: usize = tally.values().sum();
    eprintln!("{sent} commands in {elapsed:.1?}; replies by kind:");
    for (k, v) in &tally {
        eprintln!("  {k} {v}");
    }
    if !failures.is_empty() {
        let log = server.log();
        let why: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("internal error") || l.contains("crashed by signal"))
            .collect();
        panic!(
            "{} bad replies (JWTDENY_STORM_SEED={seed}), the first ones:\n{}\nserver log: {}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n"),
            if why.is_empty() {
                "no crash or internal error".to_string()
            } else {
                why.join("\n")
            }
        );
    }
    assert_eq!(sent, per_conn * CONNECTIONS);

    // The server is fine afterwards.
    assert_eq!(
        server.cmd(&["PING"]),
        Reply::Status("PONG".into()),
        "PING after the storm"
    );
    let info = server.cmd(&["INFO", "jwtdeny"]).text();
    assert!(
        info.contains("jwtdeny_checks_malformed:"),
        "INFO jwtdeny after the storm:\n{info}"
    );
    let everything = server.cmd(&["INFO", "everything"]).text();
    assert!(everything.contains("redis_version:"), "INFO everything");
    // Nothing was written by garbage, and every revocation is still there.
    assert_eq!(
        server.dbsize(),
        keys_before,
        "the storm changed the number of keys"
    );
    for t in &pool.revoked {
        assert_int(&server.check(t), 0, "a revoked token after the storm");
    }
    for t in &pool.live {
        assert_int(&server.check(t), 1, "a live token after the storm");
    }
    // No handler panicked (the guard would have turned it into an ERR and logged it).
    let log = server.log();
    assert!(
        !log.contains("internal error"),
        "the module logged an internal error during the storm:\n{log}"
    );
}
