//! Random scenarios across the configuration matrix, checked step by step against a model of
//! the denylist (issue 17 §2): the test that finds where features meet.
//!
//! Each cell of `workers` {0, 2} × key source {file, url, both} × verification cache {on, off}
//! starts a master, a replica and (for url/both) the test identity provider, then runs random
//! operations for its share of `SCENARIO_SECONDS` (default 60 for the whole matrix):
//! CHECK/KCHECK/KSCHECK (with and without WITHCLAIMS), CHECKDPOP/KCHECKDPOP of DPoP-bound
//! tokens with fresh and replayed proofs, REVOKE/KREVOKE, REVOKEALL, LOGOUT and
//! KLOGOUT (with and without sid), REVOKESESSION, INSPECT, forged tokens, unknown kids, pipelined
//! and MULTI batches, key rotation and removal at the provider, provider outages and slow
//! answers, CONFIG SET of bounds, KEYS RELOAD, the replica, an AOF restart and MODULE
//! UNLOAD/LOAD. Tokens are minted by another library (jsonwebtoken) with the shared test keys.
//!
//! Invariants at every step: each command gets its own reply, in order, within the connection's
//! read timeout; never `1` for a revoked, forged, expired or removed-key token, for a DPoP-bound
//! token without its proof, or for a proof used before; never an error
//! for an active token whose key is served; PING answers within a bound while the provider is
//! slow. At the end of a cell: no blocked client left, the server alive, memory back near where
//! it started. A failure prints the seed, the cell and the last steps; replay it with
//! `SCENARIO_SEED=<seed> SCENARIO_CELL=<cell> cargo test --profile release-tests --test
//! scenarios -- --nocapture` (what `make scenarios` runs; `SCENARIO_SECONDS` sets the length).

mod common;
mod idp;

use common::*;
use idp::{Idp, JWKS_PATH};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "scenario-client";
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const MAX_LIFETIME: i64 = 86_400;
const SUBJECTS: [&str; 5] = ["ann", "bo{b}", "cy:1", "dee", "eve%"];
const SIDS: [&str; 2] = ["s1", "s2"];
/// The second issuer, of `jwtdeny.issuers-file`: the same vector keys under the same kids as
/// the default issuer's keys file, and the same subjects, which must never meet the default's.
const SECOND_ISS: &str = "https://second.example/";
const SECOND: &str = "%second:";
/// The second issuer's keys (its keys file is the vectors' JWKS, in every cell).
const SECOND_KEYS: [(&str, &str); 4] = [
    ("HS256", "shared-hs256"),
    ("ES256", "shared-es256"),
    ("RS256", "shared-rsa"),
    ("EdDSA", "shared-ed25519"),
];

/// splitmix64: small, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    File,
    Url,
    Both,
}

#[derive(Clone, Copy, Debug)]
struct Cell {
    workers: u8,
    source: Source,
    cache: bool,
}

impl Cell {
    fn all() -> Vec<Cell> {
        let mut out = Vec::new();
        for workers in [0, 2] {
            for source in [Source::File, Source::Url, Source::Both] {
                for cache in [true, false] {
                    out.push(Cell {
                        workers,
                        source,
                        cache,
                    });
                }
            }
        }
        out
    }
    fn name(&self) -> String {
        format!(
            "workers{}-{:?}-cache{}",
            self.workers,
            self.source,
            if self.cache { "on" } else { "off" }
        )
        .to_ascii_lowercase()
    }
}

/// A signing key the test holds: the shared vector key behind `alg`, named `kid`.
#[derive(Clone, Debug)]
struct SigningKey {
    alg: &'static str,
    kid: String,
}

/// What a token is, as the model knows it.
#[derive(Clone, Debug)]
struct Tok {
    text: String,
    /// Its issuer's scope: `""` for the default issuer, [`SECOND`] for the second.
    scope: &'static str,
    sub: &'static str,
    sid: Option<&'static str>,
    iat: i64,
    kid: String,
    /// Signed as the server will check it; false for a forgery of any kind.
    authentic: bool,
    expired: bool,
    /// Bound to the DPoP test key (`cnf.jkt`): never `1` as a bearer token.
    bound: bool,
}

/// The model of the denylist, and of which keys the server has in force.
#[derive(Default)]
struct Model {
    entries: BTreeSet<(String, i64)>,
    subject: BTreeMap<String, i64>,
    session: BTreeMap<(String, String), i64>,
    sidless: BTreeMap<String, i64>,
    /// kids the server has in force.
    served: BTreeSet<String>,
    /// Provider kids, as the provider serves them now (maybe not fetched yet).
    provider: BTreeSet<String>,
}

impl Model {
    fn revoked(&self, t: &Tok) -> bool {
        let sub = format!("{}{}", t.scope, t.sub);
        self.entries.contains(&(sub.clone(), t.iat))
            || self.subject.get(&sub).is_some_and(|c| t.iat <= *c)
            || match t.sid {
                Some(sid) => self
                    .session
                    .get(&(sub.clone(), sid.to_string()))
                    .is_some_and(|c| t.iat <= *c),
                None => self.sidless.get(&sub).is_some_and(|c| t.iat <= *c),
            }
    }

    /// What CHECK must answer: `Some(revoked)` for a token that verifies, `None` for one that
    /// must be refused with an error.
    fn expect(&self, t: &Tok) -> Option<bool> {
        if t.bound {
            return None; // DPOP invalid_token, or another refusal
        }
        self.expect_verified(t)
    }

    /// What a command that accepts bound tokens (REVOKE, CHECKDPOP with its proof) judges.
    fn expect_verified(&self, t: &Tok) -> Option<bool> {
        if !t.authentic || t.expired || !self.serves(t) {
            return None;
        }
        Some(self.revoked(t))
    }

    /// Whether the keys of the token's issuer in force have its kid.
    fn serves(&self, t: &Tok) -> bool {
        if t.scope.is_empty() {
            self.served.contains(&t.kid)
        } else {
            SECOND_KEYS.iter().any(|(_, kid)| *kid == t.kid)
        }
    }
}

fn enc(sub: &str) -> String {
    sub.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

fn subject_key(scope: &str, sub: &str) -> String {
    format!("jwtdeny:{{{scope}{}}}", enc(sub))
}

fn entry_key(scope: &str, sub: &str, iat: i64) -> String {
    format!("{}:{iat}", subject_key(scope, sub))
}

fn third_key(scope: &str, sub: &str, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("{}:sid:{sid}", subject_key(scope, sub)),
        None => format!("{}:nosid", subject_key(scope, sub)),
    }
}

struct Run {
    cell: Cell,
    seed: u64,
    rng: Rng,
    model: Model,
    master: Server,
    replica: Server,
    idp: Option<Idp>,
    conn: Conn,
    steps: VecDeque<String>,
    keys: Vec<SigningKey>,
    /// A token pool, so that revocations are checked again later.
    pool: Vec<Tok>,
    counter: u64,
    /// The DPoP test key, and proofs sent: (token, proof, method, when), and which the server
    /// recorded (a `1` reply).
    dpop: ProofKey,
    proofs: VecDeque<(Tok, String, Instant)>,
    used: BTreeSet<String>,
    /// CHECKDPOP replies `1`, and replays refused: the summary shows the op did its work.
    dpop_counts: (u64, u64),
}

impl Run {
    fn step(&mut self, what: String) {
        if self.steps.len() == 40 {
            self.steps.pop_front();
        }
        self.steps.push_back(what);
    }

    /// Fails with everything needed to replay.
    fn fail(&self, why: &str) -> ! {
        let steps: Vec<&String> = self.steps.iter().collect();
        panic!(
            "scenario invariant broken: {why}\n  cell {} seed {}\n  replay: SCENARIO_SEED={} \
             SCENARIO_CELL={} cargo test --profile release-tests --test scenarios -- \
             --nocapture\n  last steps:\n    {}",
            self.cell.name(),
            self.seed,
            self.seed,
            self.cell.name(),
            steps
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        )
    }

    fn cmd(&mut self, args: &[&str]) -> Reply {
        match self.conn.try_cmd(args) {
            Ok(r) => r,
            Err(e) => self.fail(&format!(
                "no reply to {:?} within the deadline: {e}",
                args[0]
            )),
        }
    }

    fn provider_keys(&self) -> Vec<(&'static str, String)> {
        self.model
            .provider
            .iter()
            .map(|kid| {
                let vector = match kid.as_str() {
                    "idp-es256" => "shared-es256",
                    "idp-rsa" => "shared-rsa",
                    "idp-ed" => "shared-ed25519",
                    other => panic!("unknown provider kid {other}"),
                };
                (vector, kid.clone())
            })
            .collect()
    }

    fn publish_provider(&self) {
        let Some(idp) = &self.idp else { return };
        let keys: Vec<Value> = self
            .provider_keys()
            .into_iter()
            .map(|(vector, kid)| {
                let mut k = jwk(vector);
                k["kid"] = json!(kid);
                k
            })
            .collect();
        idp.set_jwks(&json!({ "keys": keys }).to_string());
    }

    /// Makes the server take what the provider serves now (KEYS RELOAD waits for the fetch).
    fn sync_keys(&mut self) {
        let r = self.cmd(&["JWTDENY.KEYS", "RELOAD"]);
        if r.is_error() {
            self.fail(&format!("KEYS RELOAD of a healthy provider: {r}"));
        }
        let mut served: BTreeSet<String> = BTreeSet::new();
        if self.cell.source != Source::Url {
            served.extend(
                [
                    "shared-hs256",
                    "shared-es256",
                    "shared-rsa",
                    "shared-ed25519",
                ]
                .map(String::from),
            );
        }
        if self.cell.source != Source::File {
            served.extend(self.model.provider.iter().cloned());
        }
        self.model.served = served;
    }

    fn signing_keys(&self) -> Vec<SigningKey> {
        let mut keys = Vec::new();
        if self.cell.source != Source::Url {
            keys.extend(
                [
                    ("HS256", "shared-hs256"),
                    ("ES256", "shared-es256"),
                    ("RS256", "shared-rsa"),
                    ("EdDSA", "shared-ed25519"),
                ]
                .map(|(alg, kid)| SigningKey {
                    alg,
                    kid: kid.into(),
                }),
            );
        }
        if self.cell.source != Source::File {
            keys.extend(
                [
                    ("ES256", "idp-es256"),
                    ("RS256", "idp-rsa"),
                    ("EdDSA", "idp-ed"),
                ]
                .map(|(alg, kid)| SigningKey {
                    alg,
                    kid: kid.into(),
                }),
            );
        }
        keys
    }

    fn mint(&mut self) -> Tok {
        self.mint_as(false)
    }

    /// A token; `dpop`: one issued just now (after any cutoff so far, as a client's new token is),
    /// most often bound to the DPoP test key.
    fn mint_as(&mut self, dpop: bool) -> Tok {
        self.counter += 1;
        let sub = *self.rng.pick(&SUBJECTS);
        let sid = match self.rng.below(3) {
            0 => None,
            n => Some(SIDS[n as usize - 1]),
        };
        let second = self.rng.chance(25);
        let key = if second {
            let (alg, kid) = *self.rng.pick(&SECOND_KEYS);
            SigningKey {
                alg,
                kid: kid.into(),
            }
        } else {
            self.rng.pick(&self.keys).clone()
        };
        let now = now();
        let expired = self.rng.chance(5);
        // A second ahead: after every cutoff written so far (a logout's is its own second).
        let iat = if dpop {
            now + 1
        } else {
            now - 5 - self.rng.below(200) as i64
        };
        let exp = if expired {
            now - 2
        } else {
            now + 600 + self.rng.below(3000) as i64
        };
        let mut claims = json!({"sub": sub, "iat": iat, "exp": exp, "jti": self.counter});
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        if second {
            claims["iss"] = json!(SECOND_ISS);
        }
        let bound = self.rng.chance(if dpop { 85 } else { 15 });
        if bound {
            claims["cnf"] = json!({"jkt": self.dpop.jkt});
        }
        let text = mint(key.alg, Some(&key.kid), &claims);
        Tok {
            text,
            scope: if second { SECOND } else { "" },
            sub,
            sid,
            iat,
            kid: key.kid,
            authentic: true,
            expired,
            bound,
        }
    }

    /// A token the server must never accept.
    fn forge(&mut self) -> Tok {
        let mut t = self.mint();
        t.authentic = false;
        match self.rng.below(5) {
            4 if self.idp.is_some() => {
                // The second issuer's iss under a key only the default issuer's provider
                // serves: the default would accept it, the second has no such key.
                let claims = json!({"iss": SECOND_ISS, "sub": t.sub, "iat": t.iat,
                                    "exp": now() + 600});
                t.scope = SECOND;
                t.kid = "idp-es256".into();
                t.text = mint("ES256", Some("idp-es256"), &claims);
            }
            0 => {
                // A changed signature.
                let cut = t.text.rfind('.').expect("dots") + 5;
                let mut bytes = t.text.into_bytes();
                bytes[cut] = if bytes[cut] == b'A' { b'B' } else { b'A' };
                t.text = String::from_utf8(bytes).expect("ascii");
            }
            1 => {
                // alg none.
                let payload = t.text.split('.').nth(1).expect("payload").to_string();
                t.text = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
            }
            2 => {
                // An unknown kid (a fetch, maybe; never a key).
                self.counter += 1;
                let claims = json!({"sub": t.sub, "iat": t.iat, "exp": now() + 600});
                t.kid = format!("unknown-{}", self.counter);
                t.text = mint("ES256", Some(&t.kid), &claims);
            }
            _ => {
                // Algorithm confusion: HS256 naming an asymmetric key.
                let claims = json!({"sub": t.sub, "iat": t.iat, "exp": now() + 600});
                let kid = if self.cell.source == Source::File {
                    "shared-es256"
                } else {
                    "idp-es256"
                };
                t.text = mint("HS256", Some(kid), &claims);
            }
        }
        t
    }

    fn any_token(&mut self) -> Tok {
        if !self.pool.is_empty() && self.rng.chance(60) {
            let i = self.rng.below(self.pool.len() as u64) as usize;
            return self.pool[i].clone();
        }
        if self.rng.chance(12) {
            return self.forge();
        }
        let t = self.mint();
        if self.pool.len() < 64 {
            self.pool.push(t.clone());
        } else {
            let i = self.rng.below(64) as usize;
            self.pool[i] = t.clone();
        }
        t
    }

    /// Judges one CHECK reply (plain or WITHCLAIMS) of `t`.
    fn judge_check(&self, t: &Tok, r: &Reply, with_claims: bool, what: &str) {
        let got = match (r, with_claims) {
            (Reply::Int(n), false) => Some(*n),
            (Reply::Array(Some(a)), true) if a.len() == 2 => {
                if let (Reply::Int(1), Reply::Bulk(Some(b))) = (&a[0], &a[1]) {
                    let claims: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
                    if claims["sub"] != t.sub || claims["iat"] != t.iat {
                        self.fail(&format!("{what}: someone else's claims {claims} for {t:?}"));
                    }
                }
                match &a[0] {
                    Reply::Int(n) => Some(*n),
                    _ => None,
                }
            }
            (Reply::Error(_), _) => None,
            _ => self.fail(&format!("{what}: a reply of the wrong shape {r}")),
        };
        // A token whose kid the provider serves but the server has not been synchronised with
        // may have been fetched meanwhile (an unknown-kid fetch): it is then judged like any
        // token of a served key, or refused (NOKEY) if not.
        let pending = self.model.provider.contains(&t.kid) && !self.model.serves(t);
        let fetched =
            (pending && t.authentic && !t.expired && !t.bound).then(|| self.model.revoked(t));
        match (self.model.expect(t), got) {
            (Some(revoked), Some(n)) if n == i64::from(!revoked) => {}
            (None, Some(n)) if fetched.is_some_and(|revoked| n == i64::from(!revoked)) => {}
            (None, None) => {
                let code = r.err_code().unwrap_or_default().to_string();
                if !is_error_code(&code) {
                    self.fail(&format!("{what}: an unknown error code {r}"));
                }
            }
            (expect, got) => self.fail(&format!(
                "{what}: expected {} for {t:?}, got {r} ({got:?})",
                match expect {
                    Some(true) => "0 (revoked)".to_string(),
                    Some(false) => "1 (active)".to_string(),
                    None => "an error".to_string(),
                }
            )),
        }
    }

    fn op_check(&mut self) {
        let t = self.any_token();
        let with_claims = self.rng.chance(40);
        let form = self.rng.below(3);
        let mut args: Vec<String> = match form {
            0 => vec!["JWTDENY.CHECK".into()],
            1 => vec![
                "JWTDENY.KCHECK".into(),
                entry_key(t.scope, t.sub, t.iat),
                subject_key(t.scope, t.sub),
            ],
            _ => vec![
                "JWTDENY.KSCHECK".into(),
                entry_key(t.scope, t.sub, t.iat),
                subject_key(t.scope, t.sub),
                third_key(t.scope, t.sub, t.sid),
            ],
        };
        args.push(t.text.clone());
        if with_claims {
            args.push("WITHCLAIMS".into());
        }
        self.step(format!("{} {:?} withclaims={with_claims}", args[0], t));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = self.cmd(&refs);
        // A keyed form names the keys of the claims the test minted: for a forgery those may
        // not be the token's own, and an ERR is then as good as any other refusal.
        self.judge_check(&t, &r, with_claims, &args[0]);
    }

    fn op_revoke(&mut self) {
        let t = self.any_token();
        if !self.model.serves(&t) {
            // A revocation of a kid not in force waits for a fetch at the cooldown's end
            // (tests/jwks.rs judges that): here it would only slow the run down.
            return;
        }
        let keyed = self.rng.chance(50);
        self.step(format!("REVOKE keyed={keyed} {t:?}"));
        let r = if keyed {
            let (e, s) = (
                entry_key(t.scope, t.sub, t.iat),
                subject_key(t.scope, t.sub),
            );
            self.cmd(&["JWTDENY.KREVOKE", &e, &s, &t.text])
        } else {
            self.cmd(&["JWTDENY.REVOKE", &t.text])
        };
        match (self.model.expect_verified(&t), &r) {
            (Some(revoked), Reply::Int(n)) if *n == i64::from(!revoked) => {
                if !revoked {
                    self.model
                        .entries
                        .insert((format!("{}{}", t.scope, t.sub), t.iat));
                }
            }
            (None, Reply::Error(_)) => {}
            _ => self.fail(&format!("REVOKE of {t:?}: {r}")),
        }
    }

    /// A subject's issuer for the commands that name a subject: `""` or [`SECOND`].
    fn pick_scope(&mut self) -> &'static str {
        if self.rng.chance(30) {
            SECOND
        } else {
            ""
        }
    }

    fn op_revokeall(&mut self) {
        let sub = *self.rng.pick(&SUBJECTS);
        let scope = self.pick_scope();
        // Mostly in the past, so that tokens minted later are not all covered.
        let at = now() - 100 - self.rng.below(150) as i64;
        self.step(format!("REVOKEALL {scope}{sub} AT {at}"));
        let at_text = at.to_string();
        let mut args = vec!["JWTDENY.REVOKEALL", sub, "AT", &at_text];
        if !scope.is_empty() {
            args.extend(["ISSUER", "second"]);
        }
        let r = self.cmd(&args);
        match r {
            Reply::Int(c) if c >= at => {
                self.model.subject.insert(format!("{scope}{sub}"), c);
            }
            _ => self.fail(&format!("REVOKEALL {sub} AT {at}: {r}")),
        }
    }

    fn op_logout(&mut self) {
        let sub = *self.rng.pick(&SUBJECTS);
        let scope = self.pick_scope();
        let sid = if self.rng.chance(70) {
            Some(*self.rng.pick(&SIDS))
        } else {
            None
        };
        let at = now() - 60 - self.rng.below(100) as i64;
        let mut claims = json!({"aud": AUDIENCE, "iat": at, "exp": now() + 120, "sub": sub,
                                "jti": self.counter, "events": {LOGOUT_EVENT: {}}});
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        // Signed by an asymmetric key its issuer has in force.
        let served: Vec<SigningKey> = if scope.is_empty() {
            self.keys
                .iter()
                .filter(|k| k.alg != "HS256" && self.model.served.contains(&k.kid))
                .cloned()
                .collect()
        } else {
            claims["iss"] = json!(SECOND_ISS);
            SECOND_KEYS
                .iter()
                .filter(|(alg, _)| *alg != "HS256")
                .map(|(alg, kid)| SigningKey {
                    alg,
                    kid: kid.to_string(),
                })
                .collect()
        };
        let signer = self.rng.pick(&served).clone();
        let key = (signer.alg, signer.kid.as_str());
        let header = json!({"alg": key.0, "kid": key.1, "typ": "logout+jwt"});
        let token = sign_raw(key.0, &header.to_string(), &claims.to_string());
        let keyed = self.rng.chance(50);
        self.step(format!("LOGOUT keyed={keyed} {scope}{sub} {sid:?} at {at}"));
        let r = if keyed {
            let s = subject_key(scope, sub);
            let second = sid.map_or(s.clone(), |sid| third_key(scope, sub, Some(sid)));
            self.cmd(&[
                "JWTDENY.KLOGOUT",
                &s,
                &second,
                &third_key(scope, sub, None),
                &token,
            ])
        } else {
            self.cmd(&["JWTDENY.LOGOUT", &token])
        };
        let msub = format!("{scope}{sub}");
        let subject_cut = self.model.subject.get(&msub).copied().unwrap_or(i64::MIN);
        let expect = if subject_cut >= at {
            0
        } else {
            match sid {
                Some(sid) => {
                    let k = (msub.clone(), sid.to_string());
                    i64::from(self.model.session.get(&k).is_none_or(|c| *c < at))
                }
                None => 1,
            }
        };
        if r != Reply::Int(expect) {
            self.fail(&format!(
                "LOGOUT {sub} {sid:?} at {at}: expected {expect}, got {r}"
            ));
        }
        if subject_cut < at {
            match sid {
                Some(sid) => {
                    let k = (msub.clone(), sid.to_string());
                    let v = self.model.session.entry(k).or_insert(at);
                    *v = (*v).max(at);
                    let v = self.model.sidless.entry(msub.clone()).or_insert(at);
                    *v = (*v).max(at);
                }
                None => {
                    self.model.subject.insert(msub.clone(), at);
                }
            }
        }
    }

    fn op_revokesession(&mut self) {
        let sub = *self.rng.pick(&SUBJECTS);
        let sid = *self.rng.pick(&SIDS);
        let scope = self.pick_scope();
        let keyed = self.rng.chance(50);
        self.step(format!("REVOKESESSION keyed={keyed} {scope}{sub} {sid}"));
        let (s, k, n) = (
            subject_key(scope, sub),
            third_key(scope, sub, Some(sid)),
            third_key(scope, sub, None),
        );
        let r = match (keyed, scope.is_empty()) {
            (true, _) => self.cmd(&["JWTDENY.KREVOKESESSION", &s, &k, &n, sub, sid]),
            (false, true) => self.cmd(&["JWTDENY.REVOKESESSION", sub, sid]),
            (false, false) => self.cmd(&["JWTDENY.REVOKESESSION", sub, sid, "ISSUER", "second"]),
        };
        if !matches!(r, Reply::Int(0) | Reply::Int(1)) {
            self.fail(&format!("REVOKESESSION: {r}"));
        }
        // Its instant is the server's now: read back what it wrote.
        let msub = format!("{scope}{sub}");
        for (key, slot) in [(k, 0), (n, 1)] {
            let v = self.cmd(&["GET", &key]);
            if let Reply::Bulk(Some(b)) = v {
                let at: i64 = String::from_utf8_lossy(&b).parse().expect("cutoff");
                if slot == 0 {
                    self.model
                        .session
                        .insert((msub.clone(), sid.to_string()), at);
                } else {
                    self.model.sidless.insert(msub.clone(), at);
                }
            }
        }
    }

    fn op_inspect(&mut self) {
        let t = self.any_token();
        self.step(format!("INSPECT {t:?}"));
        let r = self.cmd(&["JWTDENY.INSPECT", &t.text]);
        let status = match &r {
            Reply::Array(Some(a)) if a.len() == 20 => a[1].text(),
            _ => self.fail(&format!("INSPECT reply {r}")),
        };
        let pending = self.model.provider.contains(&t.kid) && !self.model.serves(&t);
        let ok = match self.model.expect(&t) {
            Some(true) => status == "revoked",
            Some(false) => status == "active",
            None if pending && t.authentic && !t.expired && !t.bound => {
                status
                    == if self.model.revoked(&t) {
                        "revoked"
                    } else {
                        "active"
                    }
                    || (status != "active" && status != "revoked")
            }
            None => status != "active",
        };
        if !ok {
            self.fail(&format!("INSPECT of {t:?}: status {status}"));
        }
    }

    /// Several commands written at once, replies read after: each must be its own.
    fn op_pipeline(&mut self) {
        let n = 2 + self.rng.below(6) as usize;
        let tokens: Vec<Tok> = (0..n).map(|_| self.any_token()).collect();
        self.step(format!("pipeline of {n} CHECK WITHCLAIMS"));
        for t in &tokens {
            self.conn.queue(&["JWTDENY.CHECK", &t.text, "WITHCLAIMS"]);
        }
        self.conn.queue(&["PING"]);
        if let Err(e) = self.conn.flush() {
            self.fail(&format!("pipeline write: {e}"));
        }
        for (i, t) in tokens.iter().enumerate() {
            let r = match self.conn.read() {
                Ok(r) => r,
                Err(e) => self.fail(&format!("pipeline reply {i}: {e}")),
            };
            self.judge_check(t, &r, true, &format!("pipelined CHECK {i}"));
        }
        match self.conn.read() {
            Ok(Reply::Status(s)) if s == "PONG" => {}
            other => self.fail(&format!("the pipeline's PING got {other:?}")),
        }
    }

    fn op_multi(&mut self) {
        let n = 1 + self.rng.below(4) as usize;
        let tokens: Vec<Tok> = (0..n).map(|_| self.any_token()).collect();
        self.step(format!("MULTI of {n} CHECK"));
        self.cmd(&["MULTI"]);
        for t in &tokens {
            self.cmd(&["JWTDENY.CHECK", &t.text]);
        }
        let r = self.cmd(&["EXEC"]);
        let replies = match &r {
            Reply::Array(Some(a)) if a.len() == n => a.clone(),
            _ => self.fail(&format!("EXEC: {r}")),
        };
        for (t, r) in tokens.iter().zip(&replies) {
            self.judge_check(t, r, false, "CHECK in MULTI");
        }
    }

    /// CHECKDPOP or KCHECKDPOP of a token with a proof: a fresh one, or one sent before (a
    /// replay). Never `1` for a revoked, forged, expired, unbound or unserved token, nor for a
    /// proof the server has recorded; `1` for a bound active token with a fresh proof.
    fn op_dpop(&mut self) {
        const URL: &str = "https://api.example.com/scenario";
        let now = Instant::now();
        // A proof older than half the window may be refused for its age: not replayed.
        self.proofs
            .retain(|(_, _, at)| now.duration_since(*at) < Duration::from_secs(30));
        let (t, proof, replay) = match self.proofs.len() {
            n if n > 0 && self.rng.chance(30) => {
                let (t, p, _) = self.proofs[self.rng.below(n as u64) as usize].clone();
                (t, p, true)
            }
            _ => {
                let t = if self.rng.chance(70) {
                    let t = self.mint_as(true);
                    if self.pool.len() < 64 {
                        self.pool.push(t.clone());
                    }
                    t
                } else {
                    self.any_token()
                };
                let p = self.dpop.proof_for(&t.text, "GET", URL);
                self.proofs.push_back((t.clone(), p.clone(), now));
                if self.proofs.len() > 32 {
                    self.proofs.pop_front();
                }
                (t, p, false)
            }
        };
        let keyed = self.rng.chance(40);
        self.step(format!("CHECKDPOP keyed={keyed} replay={replay} {t:?}"));
        let r = if keyed {
            let jti = b64_decode(proof.split('.').nth(1).expect("payload"));
            let jti: Value = serde_json::from_slice(&jti).expect("json");
            let record = format!(
                "{}:dpop:{}",
                subject_key(t.scope, t.sub),
                jwtdeny_core::dpop::replay_id(&self.dpop.jkt, jti["jti"].as_str().expect("jti"))
            );
            let (e, s, th) = (
                entry_key(t.scope, t.sub, t.iat),
                subject_key(t.scope, t.sub),
                third_key(t.scope, t.sub, t.sid),
            );
            self.cmd(&[
                "JWTDENY.KCHECKDPOP",
                &e,
                &s,
                &th,
                &record,
                &t.text,
                &proof,
                "GET",
                URL,
            ])
        } else {
            self.cmd(&["JWTDENY.CHECKDPOP", &t.text, &proof, "GET", URL])
        };
        let pending = self.model.provider.contains(&t.kid) && !self.model.serves(&t);
        let expect = match self.model.expect_verified(&t) {
            _ if !t.bound => None,
            None if pending && t.authentic && !t.expired => {
                // Fetched meanwhile, or not: either judgement, or a refusal.
                match &r {
                    Reply::Error(_) => None,
                    _ => Some(self.model.revoked(&t)),
                }
            }
            e => e,
        };
        match (expect, &r) {
            (Some(true), Reply::Int(0)) => {}
            (Some(false), Reply::Int(1)) if !self.used.contains(&proof) => {
                self.used.insert(proof);
                self.dpop_counts.0 += 1;
            }
            (Some(false), Reply::Error(e)) if self.used.contains(&proof) => {
                if !e.starts_with("DPOP invalid_dpop_proof") {
                    self.fail(&format!("a replayed proof for {t:?}: {r}"));
                }
                self.dpop_counts.1 += 1;
            }
            (None, Reply::Error(e)) => {
                if t.authentic && !t.expired && t.bound && !e.starts_with("NOKEY") && !pending {
                    self.fail(&format!("CHECKDPOP of an active bound token {t:?}: {r}"));
                }
            }
            _ => self.fail(&format!(
                "CHECKDPOP of {t:?} (expected {expect:?}, proof used before: {}): {r}",
                self.used.contains(&proof)
            )),
        }
    }

    fn op_rotate(&mut self) {
        if self.idp.is_none() {
            return;
        }
        let kid = ["idp-es256", "idp-rsa", "idp-ed"][self.rng.below(3) as usize].to_string();
        let add = !self.model.provider.contains(&kid);
        // Keep one provider key at least, so that the key set stays usable.
        if !add && self.model.provider.len() == 1 {
            return;
        }
        if add {
            self.model.provider.insert(kid.clone());
        } else {
            self.model.provider.remove(&kid);
        }
        self.publish_provider();
        let sync = !add || self.rng.chance(50);
        self.step(format!("rotate: add={add} {kid}, sync={sync}"));
        // A removal is synchronised at once (its tokens must fail from then on); an addition is
        // left for an unknown-kid fetch half of the time.
        if sync {
            self.sync_keys();
        }
    }

    fn op_outage(&mut self) {
        let Some(idp) = &self.idp else { return };
        idp.set_status(JWKS_PATH, 503);
        self.step("outage: KEYS RELOAD against a 503".into());
        let r = self.cmd(&["JWTDENY.KEYS", "RELOAD"]);
        if !r.is_error() {
            self.fail(&format!("KEYS RELOAD during an outage: {r}"));
        }
        if let Some(idp) = &self.idp {
            idp.set_status(JWKS_PATH, 200);
        }
    }

    fn op_slow(&mut self) {
        let Some(idp) = &self.idp else { return };
        idp.set_path_delay(JWKS_PATH, 1500);
        self.step("slow provider: KEYS RELOAD waits, PING does not".into());
        let mut side = self.master.conn();
        side.set_read_timeout(Duration::from_secs(20));
        side.send(&["JWTDENY.KEYS", "RELOAD"]).expect("send");
        let started = Instant::now();
        let r = self.cmd(&["PING"]);
        if r != Reply::Status("PONG".into()) || started.elapsed() > Duration::from_secs(1) {
            self.fail(&format!(
                "PING during a slow fetch: {r} after {:?}",
                started.elapsed()
            ));
        }
        let r = side.read();
        if !matches!(r, Ok(Reply::Int(_))) {
            self.fail(&format!("KEYS RELOAD of a slow provider: {r:?}"));
        }
        if let Some(idp) = &self.idp {
            idp.set_path_delay(JWKS_PATH, 0);
        }
        self.sync_keys();
    }

    fn op_config(&mut self) {
        let leeway = self.rng.below(3).to_string();
        self.step(format!("CONFIG SET leeway {leeway}"));
        let r = self.cmd(&["CONFIG", "SET", "jwtdeny.leeway", &leeway]);
        if r != Reply::Status("OK".into()) {
            self.fail(&format!("CONFIG SET leeway: {r}"));
        }
        // The tokens are far from their expiry, and a leeway of seconds changes no answer but
        // of the expired ones, which expired two seconds ago: keep those expired.
        let r = self.cmd(&["CONFIG", "SET", "jwtdeny.leeway", "0"]);
        if r != Reply::Status("OK".into()) {
            self.fail(&format!("CONFIG SET leeway 0: {r}"));
        }
    }

    fn op_replica(&mut self) {
        self.step("WAIT, then the replica answers as the master".into());
        let r = self.cmd(&["WAIT", "1", "5000"]);
        if r != Reply::Int(1) {
            self.fail(&format!("WAIT: {r}"));
        }
        // The replica fetches on its own: judge only tokens of keys both have for sure.
        let file_kids = [
            "shared-hs256",
            "shared-es256",
            "shared-rsa",
            "shared-ed25519",
        ];
        let candidates: Vec<Tok> = self
            .pool
            .iter()
            .filter(|t| file_kids.contains(&t.kid.as_str()))
            .cloned()
            .collect();
        for t in candidates.iter().take(8) {
            let r = self.replica.cmd(&["JWTDENY.CHECK", &t.text]);
            self.judge_check(t, &r, false, "CHECK on the replica");
        }
    }

    fn op_restart(&mut self) {
        self.step("AOF restart of the master".into());
        self.master.restart();
        self.conn = self.master.conn();
        self.conn.set_read_timeout(Duration::from_secs(30));
        wait_for_link(&self.replica);
        if self.idp.is_some() {
            self.sync_keys();
        }
    }

    fn op_unload(&mut self) {
        self.step("MODULE UNLOAD, MODULE LOADEX".into());
        let r = self.cmd(&["MODULE", "UNLOAD", "jwtdeny"]);
        if r != Reply::Status("OK".into()) {
            self.fail(&format!("MODULE UNLOAD: {r}"));
        }
        let module = module_path().to_string_lossy().to_string();
        let mut args: Vec<String> = vec!["MODULE".into(), "LOADEX".into(), module];
        for (name, value) in self.configs() {
            args.extend(["CONFIG".into(), format!("jwtdeny.{name}"), value]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = self.cmd(&refs);
        if r != Reply::Status("OK".into()) {
            self.fail(&format!("MODULE LOADEX: {r}"));
        }
        if self.idp.is_some() {
            self.sync_keys();
        }
    }

    fn configs(&self) -> Vec<(&'static str, String)> {
        Run::configs_for(self.cell, self.idp.as_ref())
    }
}

fn run_cell(cell: Cell, seed: u64, budget: Duration) {
    let idp = (cell.source != Source::File).then(Idp::start);
    let mut model = Model::default();
    if idp.is_some() {
        model.provider = ["idp-es256", "idp-rsa"].map(String::from).into();
    }
    let mut builder = ServerBuilder::new().aof();
    let probe = Run::configs_for(cell, idp.as_ref());
    for (name, value) in &probe {
        builder = builder.conf(format!("jwtdeny.{name} {}", conf_quote(value)));
    }
    if let Some(idp) = &idp {
        let keys: Vec<Value> = ["idp-es256", "idp-rsa"]
            .iter()
            .zip(["shared-es256", "shared-rsa"])
            .map(|(kid, vector)| {
                let mut k = jwk(vector);
                k["kid"] = json!(kid);
                k
            })
            .collect();
        idp.set_jwks(&json!({ "keys": keys }).to_string());
    }
    let master = builder.start();
    let mut rb = ServerBuilder::new();
    for (name, value) in &probe {
        if *name != "logout-audience" {
            rb = rb.conf(format!("jwtdeny.{name} {}", conf_quote(value)));
        }
    }
    let replica = rb.replica_of(&master).start();
    wait_for_link(&replica);
    let conn = master.conn();
    conn.set_read_timeout(Duration::from_secs(30));
    let mut run = Run {
        cell,
        seed,
        rng: Rng(seed),
        model,
        master,
        replica,
        idp,
        conn,
        steps: VecDeque::new(),
        keys: Vec::new(),
        pool: Vec::new(),
        counter: 0,
        dpop: ProofKey::of("ES256"),
        proofs: VecDeque::new(),
        used: BTreeSet::new(),
        dpop_counts: (0, 0),
    };
    run.keys = run.signing_keys();
    run.sync_keys();
    let start_memory = info_i64(&run.master, "memory", "used_memory");
    let deadline = Instant::now() + budget;
    let (mut steps, mut restarted, mut unloaded) = (0u64, false, false);
    while Instant::now() < deadline {
        steps += 1;
        match run.rng.below(100) {
            0..=24 => run.op_check(),
            25..=29 => run.op_dpop(),
            30..=39 => run.op_revoke(),
            40..=44 => run.op_revokeall(),
            45..=52 => run.op_logout(),
            53..=56 => run.op_revokesession(),
            57..=62 => run.op_inspect(),
            63..=72 => run.op_pipeline(),
            73..=77 => run.op_multi(),
            78..=82 => run.op_rotate(),
            83..=84 => run.op_outage(),
            85 => run.op_slow(),
            86..=88 => run.op_config(),
            89..=93 => run.op_replica(),
            94 if !restarted => {
                restarted = true;
                run.op_restart();
            }
            95 if !unloaded => {
                unloaded = true;
                run.op_unload();
            }
            _ => run.op_check(),
        }
    }
    // The end of the cell: nobody left blocked, and memory back near its start once the
    // denylist and the cache are emptied (the allocator keeps some: a generous bound).
    let blocked = (0..100).find_map(|_| {
        let n = info_i64(&run.master, "clients", "blocked_clients");
        (n == 0).then_some(()).or_else(|| {
            std::thread::sleep(Duration::from_millis(20));
            None
        })
    });
    if blocked.is_none() {
        run.fail("blocked clients left at the end");
    }
    run.cmd(&["FLUSHALL"]);
    run.cmd(&["CONFIG", "SET", "jwtdeny.verify-cache-size", "0"]);
    let end_memory = info_i64(&run.master, "memory", "used_memory");
    if end_memory > start_memory + 4 * 1024 * 1024 {
        run.fail(&format!(
            "memory did not come back: {start_memory} at the start, {end_memory} at the end"
        ));
    }
    println!(
        "scenario cell {} seed {seed}: {steps} operations, {} revocations modelled, {} DPoP \
         proofs accepted, {} replays refused",
        cell.name(),
        run.model.entries.len(),
        run.dpop_counts.0,
        run.dpop_counts.1
    );
}

impl Run {
    fn configs_for(cell: Cell, idp: Option<&Idp>) -> Vec<(&'static str, String)> {
        let mut c = vec![
            ("issuers-file", issuers_file().to_string_lossy().to_string()),
            ("workers", cell.workers.to_string()),
            (
                "verify-cache-size",
                if cell.cache { "4096" } else { "0" }.to_string(),
            ),
            ("max-lifetime", MAX_LIFETIME.to_string()),
            ("logout-audience", AUDIENCE.to_string()),
            ("jwks-cooldown", "1".to_string()),
        ];
        if cell.source != Source::Url {
            c.push(("keys-file", jwks_path().to_string_lossy().to_string()));
        }
        if let Some(idp) = idp {
            c.push(("jwks-ca-file", idp.ca_file().to_string_lossy().to_string()));
            c.push(("jwks-uri", idp.url(JWKS_PATH)));
        }
        c
    }
}

/// The registry every cell's servers load: the second issuer, with the vectors' keys.
fn issuers_file() -> std::path::PathBuf {
    static FILE: std::sync::OnceLock<(TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = TempDir::new("scenario-issuers");
        let path = dir.path().join("issuers.json");
        let registry = json!({"issuers": {"second": {
            "issuer": SECOND_ISS,
            "keys-file": jwks_path().to_string_lossy(),
            "max-lifetime": MAX_LIFETIME,
            "logout-audience": AUDIENCE,
        }}});
        std::fs::write(&path, registry.to_string()).expect("write the registry");
        (dir, path)
    })
    .1
    .clone()
}

#[test]
fn random_scenarios_across_the_matrix_hold_every_invariant() {
    let total: u64 = std::env::var("SCENARIO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only = std::env::var("SCENARIO_CELL").ok();
    let seed: u64 = std::env::var("SCENARIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 ^ u64::from(std::process::id()).rotate_left(32));
    let cells: Vec<Cell> = Cell::all()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name()))
        .collect();
    assert!(!cells.is_empty(), "no cell named {only:?}");
    let budget = Duration::from_millis(total * 1000 / cells.len() as u64);
    println!(
        "scenarios: seed {seed}, {} cells, {budget:?} each (SCENARIO_SEED={seed} replays)",
        cells.len()
    );
    for (i, cell) in cells.into_iter().enumerate() {
        // Each cell its own stream, derived from the one seed.
        let cell_seed = seed.wrapping_add(i as u64 * 0x9E37_79B9);
        let cell_seed = if only.is_some() { seed } else { cell_seed };
        println!("scenario cell {} seed {cell_seed}", cell.name());
        run_cell(cell, cell_seed, budget);
    }
}
