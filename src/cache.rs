//! A bounded cache of verified tokens, so that a session's token pays for its signature once.
//!
//! Only the signature work is skipped: a hit still has its times checked against the clock and
//! is still looked up in the denylist, on every command. Entries are keyed by SipHash-2-4-128 of
//! the whole token under a 128-bit key drawn at load: a keyed PRF, so an attacker who does not
//! know the key can neither predict nor collide a cache slot, and two tokens differing in any
//! byte never share one. Eviction is CLOCK (second chance): one reference bit per slot, no list
//! to maintain on a hit.

use crate::stats::{self, CacheStats};
use crate::token::Claims;
use siphasher::sip128::{Hasher128, SipHasher24};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::Relaxed;
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
    /// False when no random key could be drawn: such a cache stays off whatever size it is
    /// given, rather than run on a guessable key.
    keyed: bool,
    capacity: usize,
    slots: Vec<Slot>,
    index: HashMap<Digest, usize, BuildHasherDefault<DigestHasher>>,
    hand: usize,
    generation: u64,
    /// What the subjects' own allocations take, kept as entries come and go so that the memory
    /// figure costs no walk over the slots.
    subject_bytes: usize,
    /// Where INFO reads this cache's state without taking its lock.
    stats: &'static CacheStats,
}

/// What jemalloc, Redis's allocator, hands out for a request of `n` bytes (and what Redis's
/// `used_memory` counts): 8, then multiples of 16 up to 128, then four size classes per power
/// of two.
fn size_class(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => n.next_multiple_of(16),
        _ => {
            let spacing = 1usize << ((n - 1).ilog2() - 2);
            n.next_multiple_of(spacing)
        }
    }
}

/// The allocation of a hash table with this `capacity()`: hashbrown keeps a power-of-two
/// number of buckets (7/8 of them usable), each an entry plus one control byte, and 16 more
/// control bytes, in one block aligned to 16.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    let buckets = match capacity {
        0 => return 0, // no allocation yet
        1..=7 => capacity + 1,
        _ => capacity / 7 * 8,
    };
    let group = 16;
    size_class((buckets * entry).next_multiple_of(group) + buckets + group)
}

/// The allocation of an `Arc<str>` of `len` bytes: two counters, then the text, rounded up to
/// their alignment.
fn subject_bytes(len: usize) -> usize {
    size_class((2 * std::mem::size_of::<usize>() + len).next_multiple_of(8))
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        let mut secret = [0u8; 16];
        let keyed = aws_lc_rs::rand::fill(&mut secret).is_ok();
        Cache::with_key(keyed.then_some(secret), capacity, &stats::CACHE)
    }

    fn with_key(key: Option<[u8; 16]>, capacity: usize, stats: &'static CacheStats) -> Cache {
        let cache = Cache {
            key: key.unwrap_or_default(),
            keyed: key.is_some(),
            capacity: if key.is_some() { capacity } else { 0 },
            slots: Vec::new(),
            index: HashMap::default(),
            hand: 0,
            generation: 0,
            subject_bytes: 0,
            stats,
        };
        cache.publish();
        cache
    }

    pub fn digest(&self, token: &[u8]) -> Digest {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(token);
        h.finish128().as_bytes()
    }

    pub fn enabled(&self) -> bool {
        self.keyed && self.capacity > 0
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
        stats::bump(match found {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        });
        found
    }

    pub fn insert(&mut self, digest: Digest, claims: Claims) {
        if !self.enabled() || self.index.contains_key(&digest) {
            return;
        }
        self.place(digest, claims);
        self.publish();
    }

    fn place(&mut self, digest: Digest, claims: Claims) {
        let added = subject_bytes(claims.sub.len());
        if self.slots.len() < self.capacity {
            self.index.insert(digest, self.slots.len());
            self.slots.push(Slot {
                digest,
                claims,
                referenced: false,
            });
            self.subject_bytes += added;
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
            let evicted = subject_bytes(slot.claims.sub.len());
            *slot = Slot {
                digest,
                claims,
                referenced: false,
            };
            self.index.insert(digest, i);
            self.subject_bytes = self.subject_bytes.saturating_sub(evicted) + added;
            return;
        }
    }

    /// Forgets every entry (keys or validation settings changed); counters are kept.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
        self.subject_bytes = 0;
        self.publish();
    }

    /// Sets the bound; a cache without a random key stays off.
    pub fn resize(&mut self, capacity: usize) {
        self.clear();
        self.slots.shrink_to_fit();
        self.index.shrink_to_fit();
        self.capacity = if self.keyed { capacity } else { 0 };
        self.publish();
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The heap the cache holds, as the allocator counts it: the slots' and the index's blocks
    /// with their spare capacity, and each cached subject's own block.
    pub fn memory_bytes(&self) -> usize {
        size_class(self.slots.capacity() * std::mem::size_of::<Slot>())
            + table_bytes(
                self.index.capacity(),
                std::mem::size_of::<(Digest, usize)>(),
            )
            + self.subject_bytes
    }

    /// Hands the figures INFO shows to its lock-free counters.
    fn publish(&self) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let s = self.stats;
        s.entries.store(n(self.len()), Relaxed);
        s.capacity.store(n(self.capacity), Relaxed);
        s.memory_bytes.store(n(self.memory_bytes()), Relaxed);
    }
}

/// Sized by `jwtdeny.verify-cache-size` as the module loads.
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::new(0)));

/// The process-wide cache.
pub fn global() -> MutexGuard<'static, Cache> {
    lock(&CACHE)
}

/// A panic while the cache was held can at worst have left it half-updated: it is emptied once
/// and the lock marked sound again, rather than propagated (or emptied on every later access).
fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.clear();
        cache.clear_poison();
        guard
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
    use std::sync::atomic::AtomicU64;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            iat: 1,
            exp: 2,
            nbf: None,
            sid: None,
        }
    }

    /// A cache of its own, with counters of its own, as the module's is but for one test.
    fn cache(capacity: usize) -> Cache {
        let mut key = [0u8; 16];
        aws_lc_rs::rand::fill(&mut key).expect("random key");
        Cache::with_key(Some(key), capacity, Box::leak(Box::default()))
    }

    fn read(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let mut c = cache(4);
        let d = c.digest(b"token-a");
        assert_eq!(c.get(&d), None);
        c.insert(d, claims("a"));
        assert_eq!(c.get(&d).map(|c| c.sub), Some("a".into()));
        assert_eq!((read(&c.stats.hits), read(&c.stats.misses)), (1, 1));
    }

    #[test]
    fn any_changed_byte_is_another_entry() {
        let c = cache(4);
        assert_ne!(c.digest(b"a.b.c"), c.digest(b"a.b.d"));
        assert_eq!(c.digest(b"a.b.c"), c.digest(b"a.b.c"));
        // Another process (another key) digests differently.
        assert_ne!(cache(4).digest(b"a.b.c"), c.digest(b"a.b.c"));
    }

    #[test]
    fn clock_evicts_a_cold_entry_and_keeps_the_bound() {
        let mut c = cache(3);
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
        let mut c = cache(0);
        let d = c.digest(b"t");
        c.insert(d, claims("a"));
        assert_eq!(c.len(), 0);
        c.resize(2);
        c.insert(d, claims("a"));
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.get(&d).is_none());
    }

    #[test]
    fn a_cache_without_a_random_key_stays_off() {
        let mut c = Cache::with_key(None, 4, Box::leak(Box::default()));
        assert!(!c.enabled());
        c.resize(8);
        assert!(
            !c.enabled(),
            "a resize must not turn on a cache with an all-zero key"
        );
        assert_eq!(c.capacity(), 0);
        let d = c.digest(b"t");
        c.insert(d, claims("a"));
        assert_eq!(c.len(), 0);
        assert_eq!(read(&c.stats.capacity), 0);
    }

    #[test]
    fn a_poisoned_lock_empties_the_cache_once() {
        let m = Mutex::new(cache(4));
        let (a, b) = {
            let mut c = lock(&m);
            let (a, b) = (c.digest(b"a"), c.digest(b"b"));
            c.insert(a, claims("a"));
            (a, b)
        };
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = lock(&m);
                panic!("a bug while the cache is held");
            })
            .join()
        });
        assert!(panicked.is_err() && m.is_poisoned());
        {
            let mut c = lock(&m);
            assert!(
                c.get(&a).is_none(),
                "what the panic may have half-written is gone"
            );
            c.insert(b, claims("b"));
        }
        assert!(!m.is_poisoned());
        assert!(lock(&m).get(&b).is_some(), "later accesses keep the cache");
    }

    #[test]
    fn the_published_figures_follow_every_change() {
        let mut c = cache(2);
        let figures = |c: &Cache| {
            (
                read(&c.stats.entries),
                read(&c.stats.capacity),
                read(&c.stats.memory_bytes),
            )
        };
        assert_eq!(figures(&c), (0, 2, 0));
        for (i, sub) in ["a", "b", "a-longer-subject-than-the-others"]
            .iter()
            .enumerate()
        {
            c.insert(c.digest(&[i as u8]), claims(sub));
            let n = (i as u64 + 1).min(2);
            assert_eq!(
                figures(&c),
                (n, 2, c.memory_bytes() as u64),
                "after insert {i}"
            );
        }
        // The evicted "a" is no longer counted; the long subject is, with its 16 bytes of counters.
        assert_eq!(
            c.subject_bytes,
            subject_bytes(1) + subject_bytes(32),
            "{}",
            c.subject_bytes
        );
        c.clear();
        assert_eq!(figures(&c).0, 0);
        assert_eq!(c.subject_bytes, 0);
        c.resize(5);
        assert_eq!(figures(&c), (0, 5, 0), "a resize frees the blocks");
    }

    #[test]
    fn memory_is_what_the_allocator_hands_out() {
        let classes = [
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 32),
            (128, 128),
            (129, 160),
            (257, 320),
            (14_337, 16_384),
            (72 << 17, 10 << 20),
        ];
        for (n, class) in classes {
            assert_eq!(size_class(n), class, "size class of {n}");
        }
        assert_eq!(subject_bytes(1), 32);
        assert_eq!(subject_bytes(23), 48);
        // hashbrown's capacities, read back as bucket counts: 7/8 of a power of two (or one
        // less than a small one).
        let mut map: HashMap<Digest, usize, BuildHasherDefault<DigestHasher>> = HashMap::default();
        assert_eq!(table_bytes(map.capacity(), 24), 0);
        for i in 0..3000usize {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&(i as u64).to_le_bytes());
            map.insert(d, i);
            let cap = map.capacity();
            let buckets = if cap < 8 { cap + 1 } else { cap / 7 * 8 };
            assert!(buckets.is_power_of_two() && buckets > cap, "capacity {cap}");
        }
        assert_eq!(table_bytes(229_376, 24), size_class(262_144 * 25 + 16));
    }
}
