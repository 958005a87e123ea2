//! Verification keys: loading a JWKS (RFC 7517) and choosing the key for a token header.
//!
//! Plain Rust, no Redis: the token's `kid` is only ever a lookup in the map built here, never a
//! path or an address, and headers that carry their own key (`jwk`, `jku`, `x5u`, `x5c`) are
//! never consulted.

use crate::error::{quote, Error};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Every JWS algorithm jwtdeny verifies, in the order used for listings.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The largest keys file read: a JWKS of 100,000 RSA keys is about 20 MB. Anything larger is
/// refused before it is read, so a wrong path (`/dev/zero`, a log file) cannot exhaust memory.
pub const MAX_KEYS_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Reads a whole regular file of at most `max` bytes, without ever blocking on what is not one:
/// the file is opened non-blocking (a FIFO with no writer would otherwise block `open` forever),
/// checked with `fstat`, and read through a bounded reader (it may grow while being read).
pub fn read_regular_file(path: &str, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!(
            "the file is {} bytes, over the limit of {max} bytes",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("the file grew over the limit of {max} bytes"));
    }
    Ok(bytes)
}

/// Below this modulus size RSA signatures are forgeable in practice (and aws-lc refuses them).
const MIN_RSA_BITS: usize = 2048;
/// The largest modulus aws-lc verifies with.
const MAX_RSA_BITS: usize = 8192;
/// The longest public exponent aws-lc accepts (2^33 - 1 at most).
const MAX_RSA_EXPONENT_BITS: usize = 33;

/// The JOSE name of an algorithm (RFC 7518), exactly as it appears in a token's `alg`.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // The enum is non-exhaustive; a future variant is simply never served.
        _ => "unknown",
    }
}

/// Parses a JOSE algorithm name; names are case-sensitive (RFC 7515 §4.1.1). `Ed25519`, the
/// fully-specified name of RFC 9864 that current providers send, is EdDSA over Ed25519: the
/// only EdDSA served (the crypto library has no Ed448, so `Ed448` stays unsupported).
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    if name == "Ed25519" {
        return Some(Algorithm::EdDSA);
    }
    ALGORITHMS.into_iter().find(|a| alg_name(*a) == name)
}

/// A small set of algorithms, cheap to copy and test on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    pub const ALL: AlgSet = AlgSet((1 << ALGORITHMS.len()) - 1);

    fn bit(alg: Algorithm) -> u16 {
        ALGORITHMS
            .iter()
            .position(|a| *a == alg)
            .map_or(0, |i| 1 << i)
    }

    pub fn of(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |acc, a| acc | Self::bit(*a)))
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALGORITHMS.into_iter().filter(move |a| self.contains(*a))
    }
}

/// One usable verification key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub kty: &'static str,
    pub algorithms: AlgSet,
    pub decoding: DecodingKey,
    pub source: KeySource,
    /// SHA-256 of what the key is (kid, kty, algorithms, public or secret members): two loads
    /// of the same key compare equal without keeping a second copy of its material.
    fingerprint: [u8; 32],
}

/// Where a key was loaded from (`JWTDENY.KEYS LIST` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `jwtdeny.keys-file`.
    File,
    /// `jwtdeny.jwks-uri` (or the `jwks_uri` of OIDC discovery).
    Uri,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::File => "file",
            KeySource::Uri => "uri",
        }
    }
}

impl Key {
    /// How the key is named in messages: its kid, or its position in the file.
    fn label(&self, index: usize) -> String {
        match &self.kid {
            Some(kid) => quote(kid),
            None => format!("#{index} (no kid)"),
        }
    }
}

/// The keys loaded from one JWKS document, or the union of several (see [`KeySet::union`]).
#[derive(Default, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Ordered rather than hashed: a lookup by a token's kid compares a few strings, where
    /// std's SipHash spent ~800 instructions on a short one, on every first-sight token.
    by_kid: BTreeMap<String, usize>,
    /// Keys of the file that were passed over (encryption keys, unsupported curves), for the log.
    pub skipped: Vec<String>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Reads and parses a JWKS file. Errors never quote the file's content: it holds secrets.
    pub fn load(path: &str) -> Result<KeySet, Error> {
        if path.is_empty() {
            return Err(Error::KeysFile("jwtdeny.keys-file is not set".into()));
        }
        // The path is the operator's own, shown in full (escaped, never truncated).
        let shown = format!("'{}'", path.escape_debug());
        let bytes = read_regular_file(path, MAX_KEYS_FILE_BYTES)
            .map_err(|e| Error::KeysFile(format!("cannot read {shown}: {e}")))?;
        KeySet::from_json(&bytes).map_err(|e| match e {
            Error::KeysFile(m) => Error::KeysFile(format!("{shown}: {m}")),
            other => other,
        })
    }

    /// Parses a JWKS document. A file is refused whole, never half-loaded.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, Error> {
        KeySet::parse(bytes, KeySource::File)
    }

    /// Parses a JWKS fetched from an identity provider. Its keys are public (anyone can read the
    /// URL), so a secret (`oct`) key there would let anyone mint tokens: such keys are passed
    /// over, with a reason for the log.
    pub fn fetched(bytes: &[u8]) -> Result<KeySet, Error> {
        KeySet::parse(bytes, KeySource::Uri)
    }

    fn parse(bytes: &[u8], source: KeySource) -> Result<KeySet, Error> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's messages give a position, never the text around it.
            Error::KeysFile(format!("not valid JSON ({e})"))
        })?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::KeysFile("no \"keys\" array (expected a JWKS)".into()))?;

        let mut set = KeySet::default();
        for (index, jwk) in list.iter().enumerate() {
            let obj = jwk
                .as_object()
                .ok_or_else(|| Error::KeysFile(format!("key #{index} is not a JSON object")))?;
            match parse_jwk(obj, index, source)? {
                Parsed::Key(key) => {
                    if let Some(kid) = &key.kid {
                        if set.by_kid.insert(kid.clone(), set.keys.len()).is_some() {
                            return Err(Error::KeysFile(format!(
                                "kid {} appears more than once",
                                quote(kid)
                            )));
                        }
                    }
                    set.keys.push(key);
                }
                Parsed::Skipped(why) => set.skipped.push(why),
            }
        }
        if set.keys.is_empty() {
            return Err(Error::KeysFile(
                "no usable signature verification key".into(),
            ));
        }
        Ok(set)
    }

    /// The keys passed over, as one log line: their count and the first few reasons (each
    /// already escaped and capped), so a JWKS of thousands of unusable keys logs one line.
    pub fn skipped_summary(&self) -> Option<String> {
        const SHOWN: usize = 3;
        let n = self.skipped.len();
        if n == 0 {
            return None;
        }
        let shown: Vec<&str> = self
            .skipped
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        let more = match n.checked_sub(SHOWN) {
            Some(rest) if rest > 0 => format!("; and {rest} more"),
            _ => String::new(),
        };
        let s = if n == 1 { "" } else { "s" };
        Some(format!("skipped {n} key{s}: {}{more}", shown.join("; ")))
    }

    /// Whether a key with this `kid` is loaded.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Marks every key as coming from `source`.
    pub fn from_source(mut self, source: KeySource) -> KeySet {
        for key in &mut self.keys {
            key.source = source;
        }
        self
    }

    /// The keys of both sets. A `kid` in both is an error: which key it names would depend on
    /// the order of loading.
    pub fn union(a: &KeySet, b: &KeySet) -> Result<KeySet, Error> {
        let mut set = KeySet {
            skipped: Vec::new(),
            ..a.clone()
        };
        for key in &b.keys {
            if let Some(kid) = &key.kid {
                if set.by_kid.insert(kid.clone(), set.keys.len()).is_some() {
                    return Err(Error::KeysFile(format!(
                        "kid {} is served by both the keys file and the JWKS URI",
                        quote(kid)
                    )));
                }
            }
            set.keys.push(key.clone());
        }
        Ok(set)
    }

    /// Whether every key of `self` is in `newer` unchanged (same kid, type, algorithms and
    /// material): then nothing `self` verified became false, and verified tokens may stay
    /// cached. Keys added by `newer` do not matter.
    pub fn kept_by(&self, newer: &KeySet) -> bool {
        self.keys.iter().all(|key| {
            newer
                .keys
                .iter()
                .any(|k| k.fingerprint == key.fingerprint && k.source == key.source)
        })
    }

    /// Whether both sets hold exactly the same keys.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.len() == other.len() && self.kept_by(other)
    }

    /// Chooses the key for a token whose header names `kid` (if any) and `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, Error> {
        if self.is_empty() {
            return Err(Error::NoKey("no verification keys are loaded".into()));
        }
        if let Some(kid) = kid {
            let (index, key) = self
                .by_kid
                .get(kid)
                .and_then(|&i| self.keys.get(i).map(|k| (i, k)))
                .ok_or_else(|| Error::NoKey(format!("no key with kid {}", quote(kid))))?;
            if !key.algorithms.contains(alg) {
                return Err(Error::BadAlg(format!(
                    "alg {} does not fit key {} ({})",
                    alg_name(alg),
                    key.label(index),
                    key.kty
                )));
            }
            return Ok(key);
        }
        let mut fitting = self.keys.iter().filter(|k| k.algorithms.contains(alg));
        match (fitting.next(), fitting.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(Error::NoKey(format!("no key serves alg {}", alg_name(alg)))),
            (Some(_), Some(_)) => Err(Error::NoKey(format!(
                "several keys serve alg {} and the token has no kid to choose one",
                alg_name(alg)
            ))),
        }
    }
}

/// The one public key a DPoP proof carries in its header (RFC 9449 §4.2), with the checks a
/// provider's key gets (RSA size and exponent, EC point on its curve). A secret (`oct`) key or an
/// unsupported type is refused; the text says why.
pub(crate) fn public_jwk(obj: &Map<String, Value>) -> Result<Key, String> {
    match parse_jwk(obj, 0, KeySource::Uri) {
        Ok(Parsed::Key(key)) => Ok(key),
        Ok(Parsed::Skipped(why)) => Err(why),
        Err(e) => Err(e.message().to_string()),
    }
}

enum Parsed {
    Key(Key),
    Skipped(String),
}

fn parse_jwk(obj: &Map<String, Value>, index: usize, source: KeySource) -> Result<Parsed, Error> {
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Error::KeysFile(format!(
                "key #{index}: kid is not a string"
            )))
        }
    };
    let label = match &kid {
        Some(k) => format!("key {}", quote(k)),
        None => format!("key #{index}"),
    };
    let bad = |what: &str| Error::KeysFile(format!("{label}: {what}"));

    if obj.get("use").and_then(Value::as_str) == Some("enc") {
        return Ok(Parsed::Skipped(format!(
            "{label}: an encryption key (use: enc)"
        )));
    }
    if let Some(ops) = obj.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(Parsed::Skipped(format!(
                "{label}: key_ops has no \"verify\""
            )));
        }
    }
    let declared = match obj.get("alg") {
        None => None,
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(bad("alg \"none\" is never a verification algorithm"))
        }
        Some(Value::String(name)) => match parse_alg(name) {
            Some(alg) => Some(alg),
            None => {
                return Ok(Parsed::Skipped(format!(
                    "{label}: alg {} is not a supported JWS algorithm",
                    quote(name)
                )))
            }
        },
        Some(_) => return Err(bad("alg is not a string")),
    };
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("kty is missing or not a string"))?;
    let member = |name: &str| -> Result<Vec<u8>, Error> {
        let text = obj
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("\"{name}\" is missing or not a string")))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad(&format!("\"{name}\" is not valid base64url")))
    };
    // Only algorithms the key's type can serve; a declared alg narrows that to one.
    let serve = |fits: &[Algorithm], kty: &'static str| -> Result<AlgSet, Error> {
        match declared {
            Some(alg) if fits.contains(&alg) => Ok(AlgSet::of(&[alg])),
            Some(alg) => Err(bad(&format!(
                "alg {} does not fit kty {kty}",
                alg_name(alg)
            ))),
            None => Ok(AlgSet::of(fits)),
        }
    };

    let (kty, algorithms, decoding) = match kty {
        "oct" if source == KeySource::Uri => {
            return Ok(Parsed::Skipped(format!(
                "{label}: a secret (oct) key served at a URL, which anyone who can read it \
                 could sign with (keys from an identity provider are public keys only)"
            )))
        }
        "oct" => {
            let secret = member("k")?;
            let algorithms = serve(&HMAC, "oct")?;
            // RFC 7518 §3.2: the secret must be at least as long as the hash output.
            let strong: Vec<Algorithm> = algorithms
                .iter()
                .filter(|a| secret.len() >= hmac_min_len(*a))
                .collect();
            if strong.is_empty() {
                return Err(bad(&format!(
                    "HMAC secret of {} bytes is shorter than the hash output ({} bytes at least)",
                    secret.len(),
                    algorithms.iter().map(hmac_min_len).min().unwrap_or(32)
                )));
            }
            (
                "oct",
                AlgSet::of(&strong),
                DecodingKey::from_secret(&secret).map_err(|_| bad("unusable secret"))?,
            )
        }
        "RSA" => {
            let n = member("n")?;
            let e = member("e")?;
            let bits = bit_length(&n);
            if bits < MIN_RSA_BITS {
                return Err(bad(&format!(
                    "RSA modulus of {bits} bits is shorter than {MIN_RSA_BITS}"
                )));
            }
            if e.is_empty() || e.len() > 8 || e.iter().all(|b| *b == 0) {
                return Err(bad("RSA exponent \"e\" is not usable"));
            }
            // e = 1 makes every signature its own message; an even e is no RSA key at all.
            // Either would load and then refuse every token as BADSIG.
            if bit_length(&e) == 1 {
                return Err(bad("RSA exponent \"e\" is 1, which is no signature key"));
            }
            if e.last().is_some_and(|b| b % 2 == 0) {
                return Err(bad("RSA exponent \"e\" is even, which is no RSA key"));
            }
            // What aws-lc refuses when it verifies, refused here: such a key would load and then
            // answer BADSIG for every token.
            if bits > MAX_RSA_BITS {
                return Err(bad(&format!(
                    "RSA modulus of {bits} bits is longer than {MAX_RSA_BITS}"
                )));
            }
            if n.last().is_some_and(|b| b % 2 == 0) {
                return Err(bad("RSA modulus \"n\" is even, which is no RSA key"));
            }
            if bit_length(&e) > MAX_RSA_EXPONENT_BITS {
                return Err(bad(&format!(
                    "RSA exponent \"e\" is longer than {MAX_RSA_EXPONENT_BITS} bits"
                )));
            }
            // Leading zero bytes are legal in a JWK's integers but not to aws-lc.
            (
                "RSA",
                serve(&RSA, "RSA")?,
                DecodingKey::from_rsa_raw_components(
                    without_leading_zeros(&n),
                    without_leading_zeros(&e),
                ),
            )
        }
        "EC" => {
            let crv = obj.get("crv").and_then(Value::as_str).unwrap_or("");
            let (alg, size) = match crv {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                other => {
                    return Ok(Parsed::Skipped(format!(
                        "{label}: EC curve {} is not supported",
                        quote(other)
                    )))
                }
            };
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != size || y.len() != size {
                return Err(bad(&format!("{crv} coordinates must be {size} bytes each")));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04); // uncompressed SEC1 point, what aws-lc expects
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // A point off the curve would load and then refuse every token as BADSIG (and
            // invalid-curve points are how ECDH keys leak; refuse them on principle).
            let check = match alg {
                Algorithm::ES384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
                _ => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            };
            if aws_lc_rs::signature::ParsedPublicKey::new(check, &point).is_err() {
                return Err(bad(&format!("the point (x, y) is not on the curve {crv}")));
            }
            ("EC", serve(&[alg], "EC")?, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            let crv = obj.get("crv").and_then(Value::as_str).unwrap_or("");
            if crv != "Ed25519" {
                return Ok(Parsed::Skipped(format!(
                    "{label}: OKP curve {} is not supported",
                    quote(crv)
                )));
            }
            let x = member("x")?;
            if x.len() != 32 {
                return Err(bad("Ed25519 public key \"x\" must be 32 bytes"));
            }
            (
                "OKP",
                serve(&[Algorithm::EdDSA], "OKP")?,
                DecodingKey::from_ed_der(&x),
            )
        }
        other => {
            return Ok(Parsed::Skipped(format!(
                "{label}: kty {} is not supported",
                quote(other)
            )))
        }
    };
    Ok(Parsed::Key(Key {
        fingerprint: fingerprint(obj, kty, algorithms),
        kid,
        kty,
        algorithms,
        decoding,
        source,
    }))
}

/// See [`Key`]: the members that make a key what it is, hashed.
fn fingerprint(obj: &Map<String, Value>, kty: &str, algorithms: AlgSet) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut part = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    part(kty.as_bytes());
    part(&algorithms.bits().to_be_bytes());
    for member in ["kid", "crv", "k", "n", "e", "x", "y"] {
        match obj.get(member).and_then(Value::as_str) {
            Some(text) => part(text.as_bytes()),
            None => part(b"\xff"),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// A big-endian unsigned integer without its leading zero bytes.
fn without_leading_zeros(be: &[u8]) -> &[u8] {
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    &be[first..]
}

/// Bit length of a big-endian unsigned integer (leading zero bytes allowed).
fn bit_length(be: &[u8]) -> usize {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(first) => &be[first..],
        None => &[],
    };
    match trimmed.first() {
        Some(top) => trimmed.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: &str = include_str!("../../tests/vectors/jwks.json");

    fn jwks(keys: &str) -> Result<KeySet, Error> {
        KeySet::from_json(format!("{{\"keys\":[{keys}]}}").as_bytes())
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn loads_the_shared_jwks() {
        let set = KeySet::from_json(SHARED.as_bytes()).expect("shared jwks loads");
        assert_eq!(set.len(), 7);
        let rsa = set
            .select(Some("shared-rsa"), Algorithm::PS512)
            .expect("rsa key");
        assert_eq!(rsa.kty, "RSA");
        assert_eq!(rsa.algorithms, AlgSet::of(&RSA));
        let hs = set
            .select(Some("shared-hs384"), Algorithm::HS384)
            .expect("hs key");
        assert_eq!(hs.algorithms, AlgSet::of(&[Algorithm::HS384]));
    }

    #[test]
    fn kid_naming_a_key_of_another_type_is_badalg() {
        let set = KeySet::from_json(SHARED.as_bytes()).unwrap();
        let err = set
            .select(Some("shared-rsa"), Algorithm::HS256)
            .err()
            .unwrap();
        assert_eq!(err.code(), "BADALG");
        let err = set
            .select(Some("shared-es256"), Algorithm::ES384)
            .err()
            .unwrap();
        assert_eq!(err.code(), "BADALG");
    }

    #[test]
    fn unknown_kid_and_missing_keys_are_nokey() {
        let set = KeySet::from_json(SHARED.as_bytes()).unwrap();
        assert_eq!(
            set.select(Some("../etc/passwd"), Algorithm::HS256)
                .err()
                .unwrap()
                .code(),
            "NOKEY"
        );
        assert_eq!(
            KeySet::default()
                .select(None, Algorithm::HS256)
                .err()
                .unwrap()
                .code(),
            "NOKEY"
        );
    }

    #[test]
    fn no_kid_picks_the_single_fitting_key_or_refuses() {
        let set = KeySet::from_json(SHARED.as_bytes()).unwrap();
        assert_eq!(
            set.select(None, Algorithm::ES256).unwrap().kid.as_deref(),
            Some("shared-es256")
        );
        let k = b64(&[7u8; 32]);
        let two = jwks(&format!(
            r#"{{"kty":"oct","kid":"a","k":"{k}"}},{{"kty":"oct","kid":"b","k":"{k}"}}"#
        ))
        .unwrap();
        assert_eq!(
            two.select(None, Algorithm::HS256).err().unwrap().code(),
            "NOKEY"
        );
        assert!(two.select(Some("b"), Algorithm::HS256).is_ok());
    }

    #[test]
    fn weak_and_broken_keys_refuse_the_file() {
        let short = b64(&[1u8; 16]);
        let e = jwks(&format!(r#"{{"kty":"oct","k":"{short}"}}"#))
            .err()
            .unwrap();
        assert!(e.message().contains("shorter than the hash output"), "{e}");
        let e = jwks(&format!(
            r#"{{"kty":"oct","alg":"HS512","k":"{}"}}"#,
            b64(&[1u8; 32])
        ))
        .err()
        .unwrap();
        assert!(
            e.message().contains("16") || e.message().contains("64"),
            "{e}"
        );
        let e = jwks(&format!(
            r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#,
            b64(&[0xff; 128])
        ))
        .err()
        .unwrap();
        assert!(e.message().contains("1024 bits"), "{e}");
        // What aws-lc would refuse at verification time is refused at load.
        let mut even = vec![0xffu8; 256];
        even[255] = 0xfe;
        for (n, e, why) in [
            (b64(&even), "AQAB".to_string(), "even"),
            (b64(&[0xff; 1025]), "AQAB".to_string(), "longer than 8192"),
            (
                b64(&[0xff; 256]),
                b64(&[2, 0, 0, 0, 1]),
                "longer than 33 bits",
            ),
        ] {
            let err = jwks(&format!(r#"{{"kty":"RSA","n":"{n}","e":"{e}"}}"#))
                .err()
                .unwrap();
            assert!(err.message().contains(why), "{why}: {err}");
        }
        let e = jwks(r#"{"kty":"oct","k":"!!"}"#).err().unwrap();
        assert!(e.message().contains("base64url"), "{e}");
        let e = jwks(r#"{"kty":"oct","alg":"none","k":"AAAA"}"#)
            .err()
            .unwrap();
        assert!(e.message().contains("none"), "{e}");
        let e = jwks(&format!(
            r#"{{"kty":"oct","alg":"RS256","k":"{}"}}"#,
            b64(&[1u8; 32])
        ))
        .err()
        .unwrap();
        assert!(e.message().contains("does not fit kty oct"), "{e}");
        let k = b64(&[7u8; 32]);
        let e = jwks(&format!(
            r#"{{"kty":"oct","kid":"a","k":"{k}"}},{{"kty":"oct","kid":"a","k":"{k}"}}"#
        ))
        .err()
        .unwrap();
        assert!(e.message().contains("more than once"), "{e}");
        assert!(KeySet::from_json(b"[]").is_err());
        assert!(KeySet::from_json(b"not json").is_err());
        assert!(jwks("").is_err(), "a JWKS with no usable key is refused");
    }

    #[test]
    fn errors_never_quote_key_material() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0x!";
        let e = jwks(&format!(r#"{{"kty":"oct","kid":"x","k":"{secret}"}}"#))
            .err()
            .unwrap();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = KeySet::from_json(format!("{{\"keys\":[{{\"k\":\"{secret}\"").as_bytes())
            .err()
            .unwrap();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn encryption_and_unsupported_keys_are_skipped() {
        let k = b64(&[7u8; 32]);
        let set = jwks(&format!(
            r#"{{"kty":"oct","kid":"sig","k":"{k}"}},
               {{"kty":"oct","kid":"enc","use":"enc","k":"{k}"}},
               {{"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"}},
               {{"kty":"OKP","kid":"x25519","crv":"X25519","x":"AA"}}"#
        ))
        .unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped.len(), 3);
        assert_eq!(
            set.select(Some("enc"), Algorithm::HS256)
                .err()
                .unwrap()
                .code(),
            "NOKEY"
        );
    }

    #[test]
    fn unsized_hmac_key_serves_only_the_hashes_it_is_long_enough_for() {
        let set = jwks(&format!(r#"{{"kty":"oct","k":"{}"}}"#, b64(&[9u8; 48]))).unwrap();
        let key = set.iter().next().unwrap();
        assert_eq!(
            key.algorithms,
            AlgSet::of(&[Algorithm::HS256, Algorithm::HS384])
        );
    }

    #[test]
    fn alg_names_round_trip_and_are_case_sensitive() {
        for alg in ALGORITHMS {
            assert_eq!(parse_alg(alg_name(alg)), Some(alg));
        }
        assert_eq!(parse_alg("hs256"), None);
        assert_eq!(parse_alg("none"), None);
        assert_eq!(AlgSet::ALL.iter().count(), 12);
    }

    #[test]
    fn unions_refuse_a_kid_in_both_and_keep_sources() {
        let file = KeySet::from_json(SHARED.as_bytes()).unwrap();
        let k = b64(&[7u8; 32]);
        let uri = jwks(&format!(r#"{{"kty":"oct","kid":"idp-1","k":"{k}"}}"#))
            .unwrap()
            .from_source(KeySource::Uri);
        let both = KeySet::union(&file, &uri).unwrap();
        assert_eq!(both.len(), 8);
        let idp = both.select(Some("idp-1"), Algorithm::HS256).unwrap();
        assert_eq!(idp.source, KeySource::Uri);
        let rsa = both.select(Some("shared-rsa"), Algorithm::RS256).unwrap();
        assert_eq!(rsa.source, KeySource::File);
        let clash = KeySet::from_json(SHARED.as_bytes())
            .unwrap()
            .from_source(KeySource::Uri);
        let e = KeySet::union(&file, &clash).err().unwrap();
        assert!(e.message().contains("both"), "{e}");
    }

    #[test]
    fn key_sets_compare_by_what_their_keys_are() {
        let k1 = b64(&[7u8; 32]);
        let k2 = b64(&[8u8; 32]);
        let one = |kid: &str, k: &str| format!(r#"{{"kty":"oct","kid":"{kid}","k":"{k}"}}"#);
        let a = jwks(&one("a", &k1)).unwrap();
        let a_again = jwks(&format!(" {} ", one("a", &k1))).unwrap();
        assert!(a.same_keys(&a_again) && a.kept_by(&a_again));
        let a_and_b = jwks(&format!("{},{}", one("a", &k1), one("b", &k2))).unwrap();
        assert!(a.kept_by(&a_and_b), "adding a key keeps what a verified");
        assert!(!a.same_keys(&a_and_b));
        assert!(!a_and_b.kept_by(&a), "removing a key does not");
        let a_replaced = jwks(&one("a", &k2)).unwrap();
        assert!(!a.kept_by(&a_replaced), "new material under the same kid");
        let long = b64(&[7u8; 64]);
        let every_hs = jwks(&one("a", &long)).unwrap();
        let hs256_only = jwks(&format!(
            r#"{{"kty":"oct","kid":"a","alg":"HS256","k":"{long}"}}"#
        ))
        .unwrap();
        assert!(!every_hs.kept_by(&hs256_only), "fewer algorithms");
        assert!(!a.kept_by(&a.clone().from_source(KeySource::Uri)));
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("jwtdeny-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.json");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(
            read_regular_file(small.to_str().unwrap(), 2).unwrap(),
            b"{}"
        );
        let e = read_regular_file(small.to_str().unwrap(), 1).unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        let e = read_regular_file("/dev/zero", MAX_KEYS_FILE_BYTES).unwrap_err();
        assert_eq!(e, "not a regular file");
        let e = read_regular_file(dir.to_str().unwrap(), MAX_KEYS_FILE_BYTES).unwrap_err();
        assert_eq!(e, "not a regular file");
        assert!(read_regular_file("/nonexistent/x", 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}
