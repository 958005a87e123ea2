//! `jwtbench`: the Rust side of jwtdeny's benchmark (driven by bench/run.py; see bench/README.md).
//!
//! - `jwtbench mint` prints tokens signed with the repo's test keys (tests/vectors/private).
//! - `jwtbench verify` times jsonwebtoken's own verification in-process, per algorithm: the
//!   floor under what `JWTDENY.CHECK` can cost on a token it has not seen.
//! - `jwtbench load` is a small RESP load generator for what redis-benchmark cannot do: every
//!   request with its own validly signed token (REVOKE of fresh tokens, CHECK of never-seen
//!   tokens), plus EXISTS/GET/SET through the same tool so ratios compare like with like.
//!   N connections, optional pipelining, one thread and poll(2), like redis-benchmark; prints
//!   one JSON line.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

const USAGE: &str = "\
usage:
  jwtbench mint   --alg ALG --sub SUB --iat N --exp N [--count N] [--bytes N] [--key-dir DIR]
                  (--count N > 1: subjects SUB0 .. SUB<N-1>, one token a line;
                  --bytes N: one token of at most N bytes, the longest a pad claim makes)
  jwtbench verify [--algs HS256,RS256,ES256,EdDSA] [--seconds 1.0] [--key-dir DIR]
                  (µs per call in thread CPU time, and in wall time)
  jwtbench load   --port P --workload W --count N [--conns 50] [--pipeline 1] [--host 127.0.0.1]
                  [--tag SUBPREFIX] [--iat N] [--exp N] [--prefix jwtdeny:] [--key-dir DIR]
                  [--timeout-secs 30] [--ready-file PATH (written once ready to send)]
                  [--wait-go 1 (then wait for a line on stdin before sending)]
    workloads: exists:KEY  get:KEY          the same key every request
               check:ALG   revoke:ALG       JWTDENY.CHECK/REVOKE, a distinct fresh token each
                                            (subject <tag><i>, iat, exp; minted before timing;
                                            --distinct N: N tokens sent in turn instead)
               setpxat                      SET <the key revoke:ALG would write> 1 PXAT <exp*1000>
               lines:PATH                   one command a line of PATH, words split on spaces
                                            (the first --count lines; bench/mix.py)
  jwtbench verify-file --alg ALG --file PATH [--mode verify|decode] [--key-dir DIR]
                  (verifies every token of PATH, one a line, once, in `counted_verify` /
                  `counted_decode`: for callgrind --toggle-collect, bench/instructions.py)
  jwtbench sign   --alg ALG [--key-dir DIR]
                  (one compact JWS a line for each stdin line `<header JSON>\t<payload JSON>`,
                  signed as they are with ALG's key: DPoP proofs and bound tokens, bench/dpop.py)
ALG is one of HS256 RS256 ES256 EdDSA; keys come from --key-dir (default tests/vectors/private).";

fn die(msg: &str) -> ! {
    eprintln!("jwtbench: {msg}");
    exit(2)
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                die(&format!("unexpected argument {k:?}\n{USAGE}"))
            };
            let v = it
                .next()
                .unwrap_or_else(|| die(&format!("--{name} needs a value")));
            map.insert(name.to_string(), v.clone());
        }
        Args(map)
    }
    fn str(&self, k: &str, default: Option<&str>) -> String {
        match (self.0.get(k), default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => die(&format!("--{k} is required\n{USAGE}")),
        }
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: Option<&str>) -> T {
        let s = self.str(k, default);
        s.parse()
            .unwrap_or_else(|_| die(&format!("--{k}: not a number: {s:?}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and minting

struct Alg {
    alg: Algorithm,
    kid: &'static str,
    file: &'static str,
}

fn alg_info(name: &str) -> Alg {
    let (alg, kid, file) = match name {
        "HS256" => (Algorithm::HS256, "shared-hs256", "shared-hs256"),
        "RS256" => (Algorithm::RS256, "shared-rsa", "shared-rsa"),
        "ES256" => (Algorithm::ES256, "shared-es256", "shared-es256"),
        "EdDSA" => (Algorithm::EdDSA, "shared-ed25519", "shared-ed25519"),
        other => die(&format!(
            "unknown algorithm {other:?} (HS256 RS256 ES256 EdDSA)"
        )),
    };
    Alg { alg, kid, file }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| die(&format!("cannot read {}: {e}", path.display())))
}

fn encoding_key(a: &Alg, dir: &Path) -> EncodingKey {
    let r = match a.alg {
        Algorithm::HS256 => EncodingKey::from_secret(&read(&dir.join(format!("{}.key", a.file)))),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&read(&dir.join(format!("{}.pem", a.file)))),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read(&dir.join(format!("{}.pem", a.file)))),
        _ => EncodingKey::from_ed_pem(&read(&dir.join(format!("{}.pem", a.file)))),
    };
    r.unwrap_or_else(|e| die(&format!("signing key for {}: {e}", a.kid)))
}

fn decoding_key(a: &Alg, dir: &Path) -> DecodingKey {
    let pubf = dir.join(format!("{}.pub.pem", a.file));
    let r = match a.alg {
        Algorithm::HS256 => DecodingKey::from_secret(&read(&dir.join(format!("{}.key", a.file)))),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(&read(&pubf)),
        Algorithm::ES256 => DecodingKey::from_ec_pem(&read(&pubf)),
        _ => DecodingKey::from_ed_pem(&read(&pubf)),
    };
    r.unwrap_or_else(|e| die(&format!("verification key for {}: {e}", a.kid)))
}

struct Minter {
    header: Header,
    key: EncodingKey,
}

impl Minter {
    fn new(name: &str, dir: &Path) -> Minter {
        let a = alg_info(name);
        let mut header = Header::new(a.alg);
        header.kid = Some(a.kid.to_string());
        Minter {
            header,
            key: encoding_key(&a, dir),
        }
    }
    fn mint(&self, sub: &str, iat: i64, exp: i64) -> String {
        self.sign(&json!({"sub": sub, "iat": iat, "exp": exp}))
    }

    fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            .unwrap_or_else(|e| die(&format!("signing failed: {e}")))
    }

    /// The longest token of at most `bytes` bytes that padding its claims with a `pad` string
    /// makes (unpadded base64url has no length of 1 mod 4, so exactly `bytes` may not exist).
    fn mint_sized(&self, sub: &str, iat: i64, exp: i64, bytes: usize) -> String {
        let mut best = None;
        for pad in 0..bytes {
            let claims = json!({"sub": sub, "iat": iat, "exp": exp, "pad": "x".repeat(pad)});
            let token = self.sign(&claims);
            if token.len() > bytes {
                break;
            }
            best = Some(token);
        }
        best.unwrap_or_else(|| die(&format!("no token of {bytes} bytes or less")))
    }
}

/// `count` tokens for subjects `<tag>0 ..`, minted on every core (RSA signing is ~1 ms each).
fn mint_many(m: &Minter, tag: &str, iat: i64, exp: i64, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.max(1));
    let chunk = count.div_ceil(threads.max(1)).max(1);
    let mut out: Vec<String> = Vec::with_capacity(count);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = (t * chunk).min(count);
                let hi = ((t + 1) * chunk).min(count);
                s.spawn(move || {
                    (lo..hi)
                        .map(|i| m.mint(&format!("{tag}{i}"), iat, exp))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("minting thread panicked"));
        }
    });
    out
}

fn key_dir(args: &Args) -> PathBuf {
    PathBuf::from(args.str("key-dir", Some("tests/vectors/private")))
}

fn cmd_mint(args: &Args) {
    let m = Minter::new(&args.str("alg", None), &key_dir(args));
    let sub = args.str("sub", None);
    let iat: i64 = args.num("iat", None);
    let exp: i64 = args.num("exp", None);
    let count: usize = args.num("count", Some("1"));
    let bytes: usize = args.num("bytes", Some("0"));
    let out = if bytes > 0 {
        vec![m.mint_sized(&sub, iat, exp, bytes)]
    } else if count == 1 {
        vec![m.mint(&sub, iat, exp)]
    } else {
        mint_many(&m, &sub, iat, exp, count)
    };
    let mut so = std::io::BufWriter::new(std::io::stdout().lock());
    for t in out {
        writeln!(so, "{t}").unwrap();
    }
}

/// Signs header and payload text exactly as given (a DPoP proof's header carries its `jwk`,
/// which jsonwebtoken's `Header` would reorder): `jwtbench sign`.
fn cmd_sign(args: &Args) {
    use std::io::BufRead;
    let a = alg_info(&args.str("alg", None));
    let key = encoding_key(&a, &key_dir(args));
    let b64 = |text: &str| base64url(text.as_bytes());
    let mut so = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_else(|e| die(&format!("stdin: {e}")));
        let Some((header, payload)) = line.split_once('\t') else {
            die("each line is <header JSON>\\t<payload JSON>")
        };
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, a.alg)
            .unwrap_or_else(|e| die(&format!("signing failed: {e}")));
        writeln!(so, "{input}.{sig}").unwrap();
    }
}

/// RFC 4648 §5 base64url without padding.
fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// In-process verification cost

fn cmd_verify(args: &Args) {
    let dir = key_dir(args);
    let seconds: f64 = args.num("seconds", Some("1.0"));
    let algs = args.str("algs", Some("HS256,RS256,ES256,EdDSA"));
    for name in algs.split(',').filter(|s| !s.is_empty()) {
        let a = alg_info(name);
        let m = Minter::new(name, &dir);
        let dk = decoding_key(&a, &dir);
        let now = jsonwebtoken::get_current_timestamp() as i64;
        // A few distinct tokens, cycled: nothing below caches, but this keeps it honest.
        let tokens = mint_many(&m, "verify-bench-", now, now + 86_400, 64);
        let parts: Vec<(String, String)> = tokens
            .iter()
            .map(|t| {
                let (msg, sig) = t.rsplit_once('.').unwrap();
                (msg.to_string(), sig.to_string())
            })
            .collect();
        let mut validation = Validation::new(a.alg);
        validation.validate_aud = false;

        // crypto::verify: what the module calls per token (verifier for the key, base64url
        // decode of the signature, the signature check), without parsing header or claims.
        let verify = time_loop(seconds, |i| {
            let (msg, sig) = &parts[i % parts.len()];
            let ok = jsonwebtoken::crypto::verify(sig, msg.as_bytes(), &dk, a.alg)
                .unwrap_or_else(|e| die(&format!("{name}: verify error: {e}")));
            assert!(ok, "{name}: signature did not verify");
        });
        // decode: the whole jsonwebtoken pipeline (header JSON, signature, claims JSON, exp).
        let decode = time_loop(seconds, |i| {
            let t = &tokens[i % tokens.len()];
            let d = jsonwebtoken::decode::<Value>(t, &dk, &validation)
                .unwrap_or_else(|e| die(&format!("{name}: decode error: {e}")));
            std::hint::black_box(d);
        });
        println!(
            "{}",
            json!({"alg": name,
                   "verify_us": verify.cpu_us, "verify_wall_us": verify.wall_us,
                   "verify_iters": verify.iters,
                   "decode_us": decode.cpu_us, "decode_wall_us": decode.wall_us,
                   "decode_iters": decode.iters})
        );
    }
}

/// This thread's CPU time in seconds: unlike wall time, not inflated when another process
/// takes the core away (these machines are shared).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

struct Timing {
    cpu_us: f64,
    wall_us: f64,
    iters: usize,
}

/// Runs `f` in batches until `seconds` of CPU time have been spent (at least 200 calls, after
/// a short warm-up); returns CPU and wall µs per call.
fn time_loop(seconds: f64, mut f: impl FnMut(usize)) -> Timing {
    for i in 0..50 {
        f(i);
    }
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut n = 0usize;
    let mut batch = 16usize;
    loop {
        for _ in 0..batch {
            f(n);
            n += 1;
        }
        let cpu = thread_cpu_secs() - cpu0;
        if cpu >= seconds && n >= 200 {
            let wall = start.elapsed().as_secs_f64();
            return Timing {
                cpu_us: cpu * 1e6 / n as f64,
                wall_us: wall * 1e6 / n as f64,
                iters: n,
            };
        }
        batch = (batch * 2).min(4096);
    }
}

/// The tokens of `--file`, each verified once inside one function that does nothing else, so
/// `valgrind --tool=callgrind --toggle-collect='*counted_verify*'` counts exactly
/// jsonwebtoken's work on them (bench/instructions.py runs it with N and 4N tokens and takes the
/// difference, like the server's counts). Reading the file and making the key are outside it.
fn cmd_verify_file(args: &Args) {
    let name = args.str("alg", None);
    let a = alg_info(&name);
    let dk = decoding_key(&a, &key_dir(args));
    let path = args.str("file", None);
    let text = String::from_utf8(read(Path::new(&path)))
        .unwrap_or_else(|_| die(&format!("{path}: not UTF-8")));
    let tokens: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let ok = match args.str("mode", Some("verify")).as_str() {
        "verify" => {
            let parts: Vec<(&str, &str)> = tokens
                .iter()
                .map(|t| {
                    t.rsplit_once('.')
                        .unwrap_or_else(|| die(&format!("{path}: not a JWT: {t:?}")))
                })
                .collect();
            counted_verify(&parts, &dk, a.alg)
        }
        "decode" => {
            let mut validation = Validation::new(a.alg);
            validation.validate_aud = false;
            counted_decode(&tokens, &dk, &validation)
        }
        other => die(&format!("--mode {other:?}: verify or decode")),
    };
    if ok != tokens.len() {
        die(&format!("{name}: {ok} of {} tokens verified", tokens.len()));
    }
    println!("{}", json!({"alg": name, "tokens": tokens.len()}));
}

/// `jsonwebtoken::crypto::verify` on each (message, signature): what the module calls.
#[inline(never)]
fn counted_verify(parts: &[(&str, &str)], dk: &DecodingKey, alg: Algorithm) -> usize {
    parts
        .iter()
        .filter(|(msg, sig)| {
            jsonwebtoken::crypto::verify(sig, msg.as_bytes(), dk, alg).unwrap_or(false)
        })
        .count()
}

/// `jsonwebtoken::decode` on each token: the whole library pipeline (header and claims JSON too).
#[inline(never)]
fn counted_decode(tokens: &[&str], dk: &DecodingKey, validation: &Validation) -> usize {
    tokens
        .iter()
        .filter(|t| jsonwebtoken::decode::<Value>(t, dk, validation).is_ok())
        .count()
}

// ---------------------------------------------------------------------------------------------
// Load generator

fn resp(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Every command, RESP-encoded, back to back; `ends[i]` is where command i ends.
struct Commands {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Commands {
    fn push(&mut self, args: &[&[u8]]) {
        resp(args, &mut self.bytes);
        self.ends.push(self.bytes.len());
    }
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        (if i == 0 { 0 } else { self.ends[i - 1] })..self.ends[i]
    }
}

fn build_commands(args: &Args, workload: &str, count: usize) -> Commands {
    let mut c = Commands {
        bytes: Vec::new(),
        ends: Vec::with_capacity(count),
    };
    let tag = args.str("tag", Some("bench-"));
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let iat: i64 = args.num("iat", Some(&now.to_string()));
    let exp: i64 = args.num("exp", Some(&(iat + 86_400).to_string()));
    let prefix = args.str("prefix", Some("jwtdeny:"));
    let (kind, arg) = workload.split_once(':').unwrap_or((workload, ""));
    match kind {
        "exists" | "get" => {
            let name = if kind == "exists" { "EXISTS" } else { "GET" };
            for _ in 0..count {
                c.push(&[name.as_bytes(), arg.as_bytes()]);
            }
        }
        "check" | "revoke" => {
            let name = if kind == "check" {
                "JWTDENY.CHECK"
            } else {
                "JWTDENY.REVOKE"
            };
            let m = Minter::new(arg, &key_dir(args));
            // --distinct N: N tokens sent in turn (a pool of live sessions, each checked again
            // and again) instead of a fresh token every request.
            let distinct: usize = args.num("distinct", Some(&count.to_string()));
            let tokens = mint_many(&m, &tag, iat, exp, distinct.clamp(1, count.max(1)));
            for i in 0..count {
                let t = &tokens[i % tokens.len()];
                c.push(&[name.as_bytes(), t.as_bytes()]);
            }
        }
        "setpxat" => {
            // The key JWTDENY.REVOKE writes for subject <tag><i> (an ordinary subject, so
            // enc(sub) is the identity) and its expiry at leeway 0.
            let pxat = (exp * 1000).to_string();
            for i in 0..count {
                let key = format!("{prefix}{{{tag}{i}}}:{iat}");
                c.push(&[b"SET", key.as_bytes(), b"1", b"PXAT", pxat.as_bytes()]);
            }
        }
        "lines" => {
            let text = String::from_utf8(read(Path::new(arg)))
                .unwrap_or_else(|_| die(&format!("{arg}: not UTF-8")));
            for line in text.lines().filter(|l| !l.trim().is_empty()).take(count) {
                let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
                c.push(&words);
            }
            if c.ends.len() != count {
                die(&format!(
                    "{arg}: {} commands, --count is {count}",
                    c.ends.len()
                ));
            }
        }
        _ => die(&format!("unknown workload {workload:?}\n{USAGE}")),
    }
    c
}

/// Parses one RESP2 reply at the start of `buf`: its length and the bytes that classify it for
/// counting (`:1`, `+OK`, `-ERR`: the first word of an error, `$` any bulk, `$-1` nil, `*` array).
fn parse_reply(buf: &[u8]) -> Option<(usize, &[u8])> {
    let cr = buf.iter().position(|b| *b == b'\r')?;
    if buf.len() < cr + 2 {
        return None;
    }
    let line = &buf[1..cr];
    let after = cr + 2;
    match buf[0] {
        b'+' | b':' => Some((after, &buf[..cr])),
        b'-' => {
            let word = line.iter().position(|b| *b == b' ').map_or(cr, |i| i + 1);
            Some((after, &buf[..word]))
        }
        b'$' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            if n < 0 {
                return Some((after, &buf[..cr]));
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some((end, &buf[..1]))
        }
        b'*' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            let mut pos = after;
            for _ in 0..n.max(0) {
                let (len, _) = parse_reply(&buf[pos..])?;
                pos += len;
            }
            Some((pos, &buf[..1]))
        }
        other => die(&format!(
            "protocol error: reply starts with {:?}",
            other as char
        )),
    }
}

struct Conn {
    s: TcpStream,
    w: Vec<u8>,
    wpos: usize,
    pending: usize,
    sent_at: Instant,
    r: Vec<u8>,
}

fn cmd_load(args: &Args) {
    let host = args.str("host", Some("127.0.0.1"));
    let port: u16 = args.num("port", None);
    let workload = args.str("workload", None);
    let count: usize = args.num("count", None);
    let nconns: usize = args.num("conns", Some("50"));
    let pipeline: usize = args.num::<usize>("pipeline", Some("1")).max(1);
    let timeout = Duration::from_secs_f64(args.num("timeout-secs", Some("30")));

    let t0 = Instant::now();
    let cmds = build_commands(args, &workload, count);
    let prep_secs = t0.elapsed().as_secs_f64();

    let mut conns: Vec<Conn> = (0..nconns.max(1))
        .map(|_| {
            let s = TcpStream::connect((host.as_str(), port))
                .unwrap_or_else(|e| die(&format!("connect {host}:{port}: {e}")));
            s.set_nodelay(true).unwrap();
            s.set_nonblocking(true).unwrap();
            Conn {
                s,
                w: Vec::new(),
                wpos: 0,
                pending: 0,
                sent_at: Instant::now(),
                r: Vec::new(),
            }
        })
        .collect();

    if let Some(path) = args.0.get("ready-file") {
        // Tokens are minted and connections are up: tell a waiting driver (bench/run.py).
        std::fs::write(path, b"ready\n").unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    if args.0.get("wait-go").is_some_and(|v| v == "1") {
        // ... and start only when it says so (a line on stdin), after its own snapshot.
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .unwrap_or_else(|e| die(&format!("stdin: {e}")));
    }
    let mut next = 0usize;
    let mut lat_us: Vec<u32> = Vec::with_capacity(count);
    let mut classes: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut first_error: Option<String> = None;
    let mut buf = vec![0u8; 1 << 16];

    let start = Instant::now();
    let queue = |c: &mut Conn, next: &mut usize| {
        c.w.clear();
        c.wpos = 0;
        while c.pending < pipeline && *next < count {
            c.w.extend_from_slice(&cmds.bytes[cmds.range(*next)]);
            *next += 1;
            c.pending += 1;
        }
        c.sent_at = Instant::now();
    };
    for c in conns.iter_mut() {
        queue(c, &mut next);
    }
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    loop {
        // Write whatever is queued, as far as the socket takes it.
        for c in conns.iter_mut() {
            while c.wpos < c.w.len() {
                match c.s.write(&c.w[c.wpos..]) {
                    Ok(n) => c.wpos += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => die(&format!("write: {e}")),
                }
            }
        }
        if conns.iter().all(|c| c.pending == 0) && next >= count {
            break;
        }
        pfds.clear();
        for c in &conns {
            let mut ev = 0;
            if c.pending > 0 {
                ev |= libc::POLLIN;
            }
            if c.wpos < c.w.len() {
                ev |= libc::POLLOUT;
            }
            pfds.push(libc::pollfd {
                fd: c.s.as_raw_fd(),
                events: ev,
                revents: 0,
            });
        }
        let rc = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                timeout.as_millis() as libc::c_int,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            die(&format!("poll: {e}"));
        }
        if rc == 0 {
            die(&format!(
                "no reply for {}s ({} of {count} answered)",
                timeout.as_secs(),
                lat_us.len()
            ));
        }
        for (c, p) in conns.iter_mut().zip(pfds.iter()) {
            if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
                continue;
            }
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => die("server closed the connection"),
                    Ok(n) => c.r.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => die(&format!("read: {e}")),
                }
            }
            let now = Instant::now();
            let mut pos = 0;
            while pos < c.r.len() {
                let Some((len, class)) = parse_reply(&c.r[pos..]) else {
                    break;
                };
                if class[0] == b'-' && first_error.is_none() {
                    first_error =
                        Some(String::from_utf8_lossy(&c.r[pos + 1..pos + len - 2]).into_owned());
                }
                // A handful of distinct classes: a linear scan, no allocation per reply.
                match classes.iter_mut().find(|(k, _)| k.as_slice() == class) {
                    Some((_, n)) => *n += 1,
                    None => classes.push((class.to_vec(), 1)),
                }
                pos += len;
                c.pending = c.pending.saturating_sub(1);
                let us = now.duration_since(c.sent_at).as_micros();
                lat_us.push(us.min(u32::MAX as u128) as u32);
            }
            c.r.drain(..pos);
            if c.pending == 0 && next < count {
                queue(c, &mut next);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if lat_us.is_empty() {
            return 0.0;
        }
        let i = ((q * lat_us.len() as f64).ceil() as usize).clamp(1, lat_us.len()) - 1;
        lat_us[i] as f64 / 1000.0
    };
    let avg = lat_us.iter().map(|x| *x as f64).sum::<f64>() / lat_us.len().max(1) as f64 / 1000.0;
    let errors: u64 = classes
        .iter()
        .filter(|(k, _)| k[0] == b'-')
        .map(|(_, v)| v)
        .sum();
    let classes: BTreeMap<String, u64> = classes
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect();
    println!(
        "{}",
        json!({
            "workload": workload, "count": count, "conns": conns.len(), "pipeline": pipeline,
            "prep_secs": prep_secs, "secs": secs, "ops_per_sec": count as f64 / secs,
            "avg_ms": avg, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "replies": classes, "errors": errors, "first_error": first_error,
        })
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let args = Args::parse(argv.get(2..).unwrap_or(&[]));
    match argv.get(1).map(String::as_str) {
        Some("mint") => cmd_mint(&args),
        Some("verify") => cmd_verify(&args),
        Some("verify-file") => cmd_verify_file(&args),
        Some("sign") => cmd_sign(&args),
        Some("load") => cmd_load(&args),
        _ => {
            eprintln!("{USAGE}");
            exit(2)
        }
    }
}
