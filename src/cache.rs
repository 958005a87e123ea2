//! A bounded cache of verified tokens, so that a session's token pays for its signature once,
//! and for building the names of its denylist keys once.
//!
//! Only the signature work is skipped: a hit still has its times checked against the clock and
//! is still looked up in the denylist, on every command.
//!
//! An entry is identified by a 128-bit digest of the whole token: POLYVAL, a universal hash,
//! of the token and its length under a secret key drawn at load. Two distinct tokens of up to
//! L bytes share a digest with probability at most (L / 16 + 1) / 2^128 over that key, so
//! an attacker who does not know it can neither predict nor collide one: a token is served the
//! claims verified for another only with that probability. The digest is never replied or
//! logged, and the index finds it through SipHash-1-3 (a PRF) of it under a key of its own, so
//! not even the table's timing depends on it but through that PRF. With carry-less
//! multiplication POLYVAL costs under an instruction a byte; SipHash-2-4 over the whole token,
//! as before, cost about six. Eviction is CLOCK (second chance): one reference bit per slot,
//! no list to maintain on a hit.
//!
//! An entry's value holds Redis strings (its key names), which are freed on the main thread
//! only (see `denylist::KeyName`): entries the cache lets go of are retired, and dropped by the
//! next main-thread call, so a key rotation published by the fetch thread frees none itself.

use crate::denylist::Place;
use crate::stats::{self, CacheStats};
use jwtdeny_core::dpop::Binding;
use jwtdeny_core::token::Lifetime;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;
use siphasher::sip::SipHasher13;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

pub type Digest = [u8; 16];

/// How the index hashes a digest: SipHash-1-3 under a random key of the digest's two halves
/// folded into one word, one SipHash block (std's `RandomState` spends several on the array's
/// length prefix and bytes).
#[derive(Clone, Copy, Default)]
struct IndexKey(u64, u64);

impl IndexKey {
    fn random() -> Option<IndexKey> {
        let mut k = [0u8; 16];
        aws_lc_rs::rand::fill(&mut k).ok()?;
        let (a, b) = k.split_at(8);
        Some(IndexKey(
            u64::from_le_bytes(a.try_into().ok()?),
            u64::from_le_bytes(b.try_into().ok()?),
        ))
    }
}

impl BuildHasher for IndexKey {
    type Hasher = IndexHash;

    fn build_hasher(&self) -> IndexHash {
        IndexHash {
            key: *self,
            word: 0,
        }
    }
}

struct IndexHash {
    key: IndexKey,
    word: u64,
}

impl Hasher for IndexHash {
    /// A digest's bytes, folded 8 at a time.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word = self.word.rotate_left(17) ^ u64::from_le_bytes(w);
        }
    }

    /// The array's length prefix: every digest has 16 bytes.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u64(self.word);
        h.finish()
    }
}

/// A verified token as a command uses it once its keys are built: its times and where its
/// revocation would be (its subject and session are in the key names).
pub struct Verified {
    pub lifetime: Lifetime,
    pub place: Place,
    /// What the token's `cnf` binds it to; `None` for nearly every token, which then costs one
    /// test of this field.
    pub binding: Option<Arc<Binding>>,
    /// The CHECK counters of its issuer, for an issuer of the registry.
    pub issuer: Option<Arc<crate::stats::Checks>>,
}

/// What a cached value holds on the heap besides its own block, as the allocator counts it.
pub trait Weigh {
    fn heap_bytes(&self) -> usize;
}

impl Weigh for Verified {
    fn heap_bytes(&self) -> usize {
        let binding = self.binding.as_ref().map_or(0, |b| {
            let counted = 2 * std::mem::size_of::<usize>();
            size_class(counted + std::mem::size_of::<Binding>())
                + b.jkt
                    .as_ref()
                    .map_or(0, |j| size_class((counted + j.len()).next_multiple_of(8)))
        });
        self.place.heap_bytes(size_class) + binding
    }
}

struct Slot<V> {
    digest: Digest,
    value: Arc<V>,
    referenced: bool,
}

pub struct Cache<V> {
    /// `None` when no random key could be drawn: such a cache stays off whatever size it is
    /// given, rather than run on a guessable key.
    /// POLYVAL under its secret key, its powers computed once: a digest starts from a clone.
    keyed: Option<Polyval>,
    capacity: usize,
    slots: Vec<Slot<V>>,
    index: HashMap<Digest, usize, IndexKey>,
    hand: usize,
    /// The generation of the snapshot (keys and rules) the entries were verified under: set
    /// by the publish of a snapshot that changes them (see `state::Snapshot::generation`).
    generation: u64,
    /// What the values hold on the heap, kept as entries come and go so that the memory figure
    /// costs no walk over the slots.
    value_bytes: usize,
    /// Entries let go of off the main thread, dropped by the next [`Cache::release_retired`].
    retired: Vec<Arc<V>>,
    retired_bytes: usize,
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

/// What one cached value takes: its `Arc` block (two counters and the value) and its heap.
fn entry_bytes<V: Weigh>(value: &V) -> usize {
    size_class(2 * std::mem::size_of::<usize>() + std::mem::size_of::<V>()) + value.heap_bytes()
}

impl<V: Weigh> Cache<V> {
    pub fn new(capacity: usize, stats: &'static CacheStats) -> Cache<V> {
        let mut secret = [0u8; 16];
        let drawn = aws_lc_rs::rand::fill(&mut secret).is_ok();
        match IndexKey::random() {
            Some(index) if drawn => Cache::with_key(Some(secret), index, capacity, stats),
            _ => Cache::with_key(None, IndexKey::default(), capacity, stats),
        }
    }

    fn with_key(
        key: Option<[u8; 16]>,
        index: IndexKey,
        capacity: usize,
        stats: &'static CacheStats,
    ) -> Cache<V> {
        let keyed = key.map(|k| Polyval::new(&k.into()));
        let cache = Cache {
            capacity: if keyed.is_some() { capacity } else { 0 },
            keyed,
            slots: Vec::new(),
            index: HashMap::with_hasher(index),
            hand: 0,
            generation: 0,
            value_bytes: 0,
            retired: Vec::new(),
            retired_bytes: 0,
            stats,
        };
        cache.publish();
        cache
    }

    /// The token's digest; all zeros for a cache without a key, which stores nothing.
    pub fn digest(&self, token: &[u8]) -> Digest {
        let Some(keyed) = &self.keyed else {
            return Digest::default();
        };
        let mut poly = keyed.clone();
        poly.update_padded(token);
        // The length, so that neither zero padding nor leading zero blocks make two tokens one.
        let mut length = polyval::Block::default();
        length[..8].copy_from_slice(&(token.len() as u64).to_le_bytes());
        poly.update(&[length]);
        poly.finalize().into()
    }

    pub fn enabled(&self) -> bool {
        self.keyed.is_some() && self.capacity > 0
    }

    pub fn get(&mut self, digest: &Digest) -> Option<Arc<V>> {
        let found = self
            .index
            .get(digest)
            .and_then(|&i| self.slots.get_mut(i))
            .map(|slot| {
                slot.referenced = true;
                Arc::clone(&slot.value)
            });
        stats::bump(match found {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        });
        found
    }

    pub fn insert(&mut self, digest: Digest, value: Arc<V>) {
        if !self.enabled() || self.index.contains_key(&digest) {
            return;
        }
        self.place(digest, value);
        self.publish();
    }

    fn place(&mut self, digest: Digest, value: Arc<V>) {
        let added = entry_bytes(&*value);
        if self.slots.len() < self.capacity {
            self.index.insert(digest, self.slots.len());
            self.slots.push(Slot {
                digest,
                value,
                referenced: false,
            });
            self.value_bytes += added;
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
            let evicted = std::mem::replace(
                slot,
                Slot {
                    digest,
                    value,
                    referenced: false,
                },
            );
            let evicted_bytes = entry_bytes(&*evicted.value);
            self.retire(evicted.value, evicted_bytes);
            self.index.insert(digest, i);
            self.value_bytes = self.value_bytes.saturating_sub(evicted_bytes) + added;
            return;
        }
    }

    fn retire(&mut self, value: Arc<V>, bytes: usize) {
        self.retired.push(value);
        self.retired_bytes += bytes;
    }

    /// Drops what was let go of. Main thread only: this is where the values' Redis strings
    /// are freed.
    pub fn release_retired(&mut self) {
        if !self.retired.is_empty() {
            self.retired.clear();
            self.retired_bytes = 0;
            self.publish();
        }
    }

    /// Forgets every entry; counters and the generation are kept. Safe on any thread: the
    /// entries are retired, not dropped.
    pub fn clear(&mut self) {
        self.retired.extend(self.slots.drain(..).map(|s| s.value));
        self.retired_bytes += self.value_bytes;
        self.index.clear();
        self.hand = 0;
        self.value_bytes = 0;
        self.publish();
    }

    /// Forgets every entry and serves only verifications made under `generation` from now on:
    /// the generation of the snapshot just published with other keys or rules.
    pub fn clear_to(&mut self, generation: u64) {
        self.clear();
        self.generation = generation;
    }

    /// What the cache knows of `token` for a command judged by the snapshot of `generation`.
    /// A cache still at another generation serves nothing and keeps nothing for it: either
    /// the command's snapshot is older than the cache (keys or rules changed since the command
    /// read them), or newer (the publish that cleared it has not reached the cache yet). Either
    /// way an answer would mix two key sets.
    pub fn lookup(&mut self, token: &[u8], generation: u64) -> Lookup<V> {
        if !self.enabled() || self.generation != generation {
            return Lookup::Off;
        }
        let digest = self.digest(token);
        match self.get(&digest) {
            Some(v) => Lookup::Hit(v),
            None => Lookup::Miss(digest),
        }
    }

    /// Keeps a verification made by the snapshot of `generation`, unless the cache has moved
    /// to another since.
    pub fn store(&mut self, digest: Digest, generation: u64, value: &Arc<V>) {
        if self.generation == generation {
            self.insert(digest, Arc::clone(value));
        }
    }

    /// Sets the bound; a cache without a random key stays off. Main thread only.
    pub fn resize(&mut self, capacity: usize) {
        self.clear();
        self.release_retired();
        self.slots = Vec::new();
        self.retired = Vec::new();
        self.index.shrink_to_fit();
        self.capacity = if self.keyed.is_some() { capacity } else { 0 };
        self.publish();
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The heap the cache holds, as the allocator counts it: the slots' and the index's blocks
    /// with their spare capacity, and each value, retired ones included until they are dropped.
    pub fn memory_bytes(&self) -> usize {
        size_class(self.slots.capacity() * std::mem::size_of::<Slot<V>>())
            + table_bytes(
                self.index.capacity(),
                std::mem::size_of::<(Digest, usize)>(),
            )
            + self.value_bytes
            + size_class(self.retired.capacity() * std::mem::size_of::<Arc<V>>())
            + self.retired_bytes
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
static CACHE: LazyLock<Mutex<Cache<Verified>>> =
    LazyLock::new(|| Mutex::new(Cache::new(0, &stats::CACHE)));

/// The process-wide cache.
pub fn global() -> MutexGuard<'static, Cache<Verified>> {
    lock(&CACHE)
}

/// A panic while the cache was held can at worst have left it half-updated: it is emptied once
/// and the lock marked sound again, rather than propagated (or emptied on every later access).
fn lock<V: Weigh>(cache: &Mutex<Cache<V>>) -> MutexGuard<'_, Cache<V>> {
    cache.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.clear();
        cache.clear_poison();
        guard
    })
}

/// What the cache knows of a token.
pub enum Lookup<V = Verified> {
    /// Verified earlier under the keys and rules of the command's snapshot.
    Hit(Arc<V>),
    /// Not cached: verify it, then [`store`] the result under this digest.
    Miss(Digest),
    /// The cache is off, or not at the command's generation: verify, keep nothing.
    Off,
}

/// What the cache knows of `token` for a command judged by the snapshot of `generation`. Main
/// thread only (it drops retired entries).
pub fn lookup(token: &[u8], generation: u64) -> Lookup {
    let mut cache = global();
    cache.release_retired();
    cache.lookup(token, generation)
}

/// Keeps a verification made by the snapshot of `generation`. Main thread only (it drops
/// retired entries).
pub fn store(digest: Digest, generation: u64, verified: &Arc<Verified>) {
    let mut cache = global();
    cache.release_retired();
    cache.store(digest, generation, verified);
}

/// Empties the cache for good, freeing what it holds: the module is being unloaded. Main thread.
pub fn release() {
    global().resize(0);
}

/// Verifies through the cache: a hit returns what was verified earlier, a miss runs `verify`
/// (without holding the cache) and keeps its success. Main thread only.
pub fn verify_through<E>(
    token: &[u8],
    generation: u64,
    verify: impl FnOnce() -> Result<Arc<Verified>, E>,
) -> Result<Arc<Verified>, E> {
    match lookup(token, generation) {
        Lookup::Hit(v) => Ok(v),
        Lookup::Off => verify(),
        Lookup::Miss(digest) => {
            let v = verify()?;
            store(digest, generation, &v);
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtdeny_core::token::Claims;

    /// The allocation of an `Arc<str>` of `len` bytes: two counters, then the text, rounded up to
    /// their alignment.
    fn arc_str_bytes(len: usize) -> usize {
        size_class((2 * std::mem::size_of::<usize>() + len).next_multiple_of(8))
    }

    impl Weigh for Claims {
        fn heap_bytes(&self) -> usize {
            arc_str_bytes(self.sub.len()) + self.sid.as_ref().map_or(0, |s| arc_str_bytes(s.len()))
        }
    }
    use std::sync::atomic::AtomicU64;

    fn claims(sub: &str) -> Arc<Claims> {
        Arc::new(Claims {
            sub: sub.into(),
            iat: 1,
            exp: 2,
            nbf: None,
            sid: None,
            binding: None,
            scope: None,
        })
    }

    /// A cache of its own, with counters of its own, as the module's is but for one test.
    fn cache(capacity: usize) -> Cache<Claims> {
        let mut key = [0u8; 16];
        aws_lc_rs::rand::fill(&mut key).expect("random key");
        let index = IndexKey::random().expect("random index key");
        Cache::with_key(Some(key), index, capacity, Box::leak(Box::default()))
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
        assert_eq!(c.get(&d).map(|c| c.sub.clone()), Some("a".into()));
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
    fn padding_and_leading_zeros_never_merge_two_tokens() {
        let c = cache(4);
        // POLYVAL alone pads the last block with zeros and ignores leading zero blocks; the
        // length block tells these apart.
        assert_ne!(c.digest(b"abc"), c.digest(b"abc\0"));
        assert_ne!(c.digest(b""), c.digest(&[0u8; 16]));
        let mut zeros_then = vec![0u8; 16];
        zeros_then.extend_from_slice(b"a.b.c");
        assert_ne!(c.digest(b"a.b.c"), c.digest(&zeros_then));
        // Every length up to four parallel blocks and past them, and every byte position.
        let base = vec![b'x'; 100];
        let digests: std::collections::HashSet<Digest> =
            (0..=base.len()).map(|n| c.digest(&base[..n])).collect();
        assert_eq!(digests.len(), base.len() + 1);
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i] ^= 1;
            assert_ne!(c.digest(&other), c.digest(&base), "byte {i}");
        }
    }

    #[test]
    fn what_the_cache_lets_go_of_is_dropped_only_when_released() {
        let mut c = cache(1);
        let kept = claims("kept");
        c.insert(c.digest(b"a"), Arc::clone(&kept));
        c.clear();
        assert_eq!(c.len(), 0);
        assert_eq!(Arc::strong_count(&kept), 2, "retired, not dropped");
        assert!(c.memory_bytes() > 0, "a retired entry still counts");
        c.release_retired();
        assert_eq!(Arc::strong_count(&kept), 1);
        // An eviction retires the evicted entry too.
        c.insert(c.digest(b"a"), Arc::clone(&kept));
        c.insert(c.digest(b"b"), claims("b"));
        assert_eq!(Arc::strong_count(&kept), 2);
        c.release_retired();
        assert_eq!(Arc::strong_count(&kept), 1);
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
        let mut c =
            Cache::<Claims>::with_key(None, IndexKey::default(), 4, Box::leak(Box::default()));
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
        let figures = |c: &Cache<Claims>| {
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
            c.value_bytes,
            entry_bytes(&*claims("b")) + entry_bytes(&*claims("a-longer-subject-than-the-others")),
            "{}",
            c.value_bytes
        );
        c.clear();
        assert_eq!(figures(&c).0, 0);
        assert_eq!(c.value_bytes, 0);
        c.release_retired();
        assert_eq!(c.retired_bytes, 0);
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
        assert_eq!(arc_str_bytes(1), 32);
        assert_eq!(arc_str_bytes(23), 48);
        // hashbrown's capacities, read back as bucket counts: 7/8 of a power of two (or one
        // less than a small one).
        let mut map: HashMap<Digest, usize, IndexKey> = HashMap::default();
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

    /// The interleavings of a publish (snapshot swapped, then the cache cleared, from the fetch
    /// thread) with a command (snapshot read, then the cache), forced step by step: none of
    /// them serves or keeps a verification of the other key set.
    #[test]
    fn a_publish_between_snapshot_and_cache_neither_serves_nor_keeps_the_other_keys() {
        let mut c = cache(4);
        let old_entry = claims("verified by the old keys");
        let token = b"a.token.signed-by-the-old-key";
        let Lookup::Miss(d) = c.lookup(token, 0) else {
            panic!("a first sight misses")
        };
        c.store(d, 0, &old_entry);
        assert!(matches!(c.lookup(token, 0), Lookup::Hit(_)));

        // A command read the snapshot of generation 1 (the key was removed), the publish has
        // not cleared the cache yet: the old entry must not be served to it.
        assert!(matches!(c.lookup(token, 1), Lookup::Off));

        // A command read the old snapshot (generation 0) and verified with the old keys; the
        // publish cleared the cache to generation 1 before it stored: nothing is kept.
        c.clear_to(1);
        c.store(d, 0, &old_entry);
        assert_eq!(c.len(), 0, "a verification by removed keys was kept");
        assert!(matches!(c.lookup(token, 1), Lookup::Miss(_)));
        // And a command of the new generation stores as usual.
        c.store(d, 1, &claims("verified by the new keys"));
        assert!(matches!(c.lookup(token, 1), Lookup::Hit(_)));
        assert!(matches!(c.lookup(token, 0), Lookup::Off));
    }
}
