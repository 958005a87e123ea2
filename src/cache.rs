//! A bounded cache of verified tokens, so that a session's token pays for its signature once.
//!
//! Only the signature work is skipped: a hit still has its times checked against the clock and
//! is still looked up in the denylist, on every command. Entries are keyed by SipHash-2-4-128 of
//! the whole token under a 128-bit key drawn at load: a keyed PRF, so an attacker who does not
//! know the key can neither predict nor collide a cache slot, and two tokens differing in any
//! byte never share one. Eviction is CLOCK (second chance): one reference bit per slot, no list
//! to maintain on a hit.

use crate::token::Claims;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{LazyLock, Mutex, MutexGuard};

pub type Digest = [u8; 16];

/// The digest is already uniformly random, so its first 8 bytes are the hash: no SipHash pass.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(bytes) {
            *w = *b;
        }
        self.0 ^= u64::from_le_bytes(word);
    }
}

struct Slot {
    digest: Digest,
    claims: Claims,
    referenced: bool,
}

pub struct Cache {
    key: [u8; 16],
    capacity: usize,
    slots: Vec<Slot>,
    index: HashMap<Digest, usize, BuildHasherDefault<DigestHasher>>,
    hand: usize,
    generation: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        let mut secret = [0u8; 16];
        // Without randomness the cache stays off rather than run on a guessable key.
        let capacity = if aws_lc_rs::rand::fill(&mut secret).is_ok() {
            capacity
        } else {
            0
        };
        Cache {
            key: secret,
            capacity,
            slots: Vec::new(),
            index: HashMap::default(),
            hand: 0,
            generation: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn digest(&self, token: &[u8]) -> Digest {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(token);
        h.finish128().as_bytes()
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn get(&mut self, digest: &Digest) -> Option<Claims> {
        let found = self
            .index
            .get(digest)
            .and_then(|&i| self.slots.get_mut(i))
            .map(|slot| {
                slot.referenced = true;
                slot.claims.clone()
            });
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    pub fn insert(&mut self, digest: Digest, claims: Claims) {
        if self.capacity == 0 || self.index.contains_key(&digest) {
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(digest, self.slots.len());
            self.slots.push(Slot {
                digest,
                claims,
                referenced: false,
            });
            return;
        }
        // CLOCK: pass over recently used slots once, clearing their bit; evict the first cold one.
        loop {
            let i = self.hand % self.slots.len();
            self.hand = i + 1;
            let Some(slot) = self.slots.get_mut(i) else {
                return;
            };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.index.remove(&slot.digest);
            *slot = Slot {
                digest,
                claims,
                referenced: false,
            };
            self.index.insert(digest, i);
            return;
        }
    }

    /// Forgets every entry (keys or validation settings changed); counters are kept.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }

    pub fn resize(&mut self, capacity: usize) {
        self.clear();
        self.slots.shrink_to_fit();
        self.index.shrink_to_fit();
        self.capacity = capacity;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An estimate of the heap the cache holds, for INFO.
    pub fn memory_bytes(&self) -> usize {
        let per_index = std::mem::size_of::<(Digest, usize)>() + 1;
        let subjects: usize = self.slots.iter().map(|s| s.claims.sub.len()).sum();
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * per_index
            + subjects
    }
}

/// Sized by `jwtdeny.verify-cache-size` as the module loads.
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::new(0)));

/// The process-wide cache. A panic while it was held can at worst have left one slot stale, so
/// a poisoned lock is cleared and reused rather than propagated.
pub fn global() -> MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| {
        let mut cache = e.into_inner();
        cache.clear();
        cache
    })
}

/// What the cache knows of a token.
pub enum Lookup {
    /// Verified earlier under the current keys and rules.
    Hit(Claims),
    /// Not cached: verify it, then [`store`] the result under this digest and generation.
    Miss(Digest, u64),
    /// The cache is off.
    Off,
}

pub fn lookup(token: &[u8]) -> Lookup {
    let mut cache = global();
    if !cache.enabled() {
        return Lookup::Off;
    }
    let digest = cache.digest(token);
    match cache.get(&digest) {
        Some(claims) => Lookup::Hit(claims),
        None => Lookup::Miss(digest, cache.generation),
    }
}

/// Keeps a verification made under `generation`, unless keys or rules changed since.
pub fn store(digest: Digest, generation: u64, claims: &Claims) {
    let mut cache = global();
    if cache.generation == generation {
        cache.insert(digest, claims.clone());
    }
}

/// The current generation: it moves on every clear, so work started before a key rotation or
/// a rule change can tell that it is stale.
pub fn generation() -> u64 {
    global().generation
}

/// Verifies through the cache: a hit returns the claims verified earlier, a miss runs `verify`
/// (without holding the cache) and keeps its success.
pub fn verified<E>(token: &[u8], verify: impl FnOnce() -> Result<Claims, E>) -> Result<Claims, E> {
    match lookup(token) {
        Lookup::Hit(claims) => Ok(claims),
        Lookup::Off => verify(),
        Lookup::Miss(digest, generation) => {
            let claims = verify()?;
            store(digest, generation, &claims);
            Ok(claims)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            iat: 1,
            exp: 2,
            nbf: None,
            sid: None,
        }
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let mut c = Cache::new(4);
        let d = c.digest(b"token-a");
        assert_eq!(c.get(&d), None);
        c.insert(d, claims("a"));
        assert_eq!(c.get(&d).map(|c| c.sub), Some("a".into()));
        assert_eq!((c.hits, c.misses), (1, 1));
    }

    #[test]
    fn any_changed_byte_is_another_entry() {
        let c = Cache::new(4);
        assert_ne!(c.digest(b"a.b.c"), c.digest(b"a.b.d"));
        assert_eq!(c.digest(b"a.b.c"), c.digest(b"a.b.c"));
        // Another process (another key) digests differently.
        assert_ne!(Cache::new(4).digest(b"a.b.c"), c.digest(b"a.b.c"));
    }

    #[test]
    fn clock_evicts_a_cold_entry_and_keeps_the_bound() {
        let mut c = Cache::new(3);
        let ds: Vec<Digest> = (0..3).map(|i| c.digest(&[i])).collect();
        for (i, d) in ds.iter().enumerate() {
            c.insert(*d, claims(&i.to_string()));
        }
        // Touch 0 and 2: entry 1 is the cold one.
        assert!(c.get(&ds[0]).is_some());
        assert!(c.get(&ds[2]).is_some());
        let new = c.digest(b"new");
        c.insert(new, claims("new"));
        assert_eq!(c.len(), 3);
        assert!(c.get(&ds[1]).is_none(), "the cold entry was evicted");
        assert!(c.get(&ds[0]).is_some() && c.get(&ds[2]).is_some() && c.get(&new).is_some());
        for i in 0..100u8 {
            let d = c.digest(&[i, i]);
            c.insert(d, claims("x"));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.index.len(), 3);
    }

    #[test]
    fn zero_capacity_disables_and_clear_forgets() {
        let mut c = Cache::new(0);
        let d = c.digest(b"t");
        c.insert(d, claims("a"));
        assert_eq!(c.len(), 0);
        c.resize(2);
        c.insert(d, claims("a"));
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.get(&d).is_none());
    }
}
