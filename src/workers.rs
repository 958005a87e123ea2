//! An optional fixed pool of threads that verify signatures off Redis's main thread.
//!
//! Redis runs commands on one thread, so a 50 µs ECDSA verification stalls every other client
//! for 50 µs. With `jwtdeny.workers` > 0, a CHECK whose token is not in the verification cache
//! blocks its client, a worker verifies the token, and the reply callback — back on the main
//! thread — does the denylist lookup and the reply. Lookups never leave the main thread, so the
//! answer is as atomic as the inline path. Where blocking is not allowed (MULTI, Lua, a call
//! from another module) the command runs inline, and so it does in Redis Cluster (see
//! [`submit`]).

use crate::cache::Digest;
use crate::error::Error;
use crate::stats;
use crate::token::Claims;
use redis_module::{raw, Context, ContextFlags};
use std::os::raw::{c_int, c_void};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A blocked client handle; Redis allows unblocking it from any thread.
struct Blocked(*mut raw::RedisModuleBlockedClient);

// SAFETY: RM_UnblockClient is documented as thread-safe; the handle is used exactly once.
unsafe impl Send for Blocked {}

/// A verification: it owns everything it needs (the token, and the snapshot of settings and
/// keys it is judged by), so a worker reads no global state.
pub type Verify = Box<dyn FnOnce() -> Result<Claims, Error> + Send>;

struct Job {
    client: Blocked,
    verify: Verify,
    done: Done,
}

/// What the reply callback gets back.
pub struct Done {
    pub result: Result<Claims, Error>,
    /// The cache slot to fill, if the cache is on.
    pub digest: Option<Digest>,
    /// The cache generation when the job was queued: if it moved (keys reloaded, rules
    /// changed), the result is stale and the token is verified again inline.
    pub generation: u64,
}

struct Pool {
    sender: Sender<Job>,
    threads: Vec<JoinHandle<()>>,
}

static POOL: LazyLock<Mutex<Option<Pool>>> = LazyLock::new(|| Mutex::new(None));

fn pool() -> MutexGuard<'static, Option<Pool>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a pool runs: checked before any per-token work is spent on offloading.
pub fn running() -> bool {
    pool().is_some()
}

/// Starts `n` workers after stopping the current ones (0: verify inline).
pub fn resize(n: usize) {
    stop();
    if n == 0 {
        return;
    }
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = (0..n)
        .filter_map(|i| {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("jwtdeny-worker-{i}"))
                .spawn(move || work(&receiver))
                .ok()
        })
        .collect();
    *pool() = Some(Pool { sender, threads });
}

/// Stops the workers; the jobs already queued are finished first, so no client stays blocked.
pub fn stop() {
    let old = pool().take();
    if let Some(Pool { sender, threads }) = old {
        drop(sender);
        for t in threads {
            let _ = t.join();
        }
    }
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(Job {
            client,
            verify,
            mut done,
        }) = job
        else {
            return;
        };
        let verified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(verify));
        stats::count_verification(true); // before the unblock, so INFO after the reply shows it
        done.result = verified
            .unwrap_or_else(|_| Err(Error::Internal("verification failed unexpectedly".into())));
        let done = Box::into_raw(Box::new(done));
        // SAFETY: the handle came from RM_BlockClient and is unblocked exactly once; Redis
        // hands `done` to the reply callback and then to `free_done`.
        unsafe {
            if let Some(unblock) = raw::RedisModule_UnblockClient {
                unblock(client.0, done.cast::<c_void>());
            }
        }
    }
}

/// Offloads `verify` if a pool runs and blocking is allowed here. Returns
/// false when the caller must verify inline.
///
/// Never in Redis Cluster. Redis decides that this node serves a command's keys when the
/// command starts; a blocked client's reply callback runs later, after any number of other
/// commands, and a `MIGRATE` among them can take the token's entry to another node. The
/// callback's lookup would then find nothing and answer `1` for a revoked token. Re-checking
/// ownership there is not possible on Redis 7.0 (no module API tells whether this node would
/// still serve those keys: slot owner, MIGRATING state and which keys already left), and a
/// `TRYAGAIN` would only make the client come back and pay for the verification again. So in a
/// cluster verification and lookup stay one command, inline: shards spread the signature work,
/// and the verification cache still spares repeats.
pub fn submit(
    ctx: &Context,
    verify: impl FnOnce() -> Result<Claims, Error> + Send + 'static,
    digest: Option<Digest>,
    generation: u64,
    reply: unsafe extern "C" fn(
        *mut raw::RedisModuleCtx,
        *mut *mut raw::RedisModuleString,
        c_int,
    ) -> c_int,
) -> bool {
    let flags = ctx.get_flags();
    if flags.contains(ContextFlags::DENY_BLOCKING) || flags.contains(ContextFlags::CLUSTER) {
        return false;
    }
    let guard = pool();
    let Some(p) = guard.as_ref() else {
        return false;
    };
    let Some(block) = (unsafe { raw::RedisModule_BlockClient }) else {
        return false;
    };
    // SAFETY: called on the main thread inside a command, as RM_BlockClient requires.
    let client = unsafe { block(ctx.get_raw(), Some(reply), None, Some(free_done), 0) };
    if client.is_null() {
        return false;
    }
    let job = Job {
        client: Blocked(client),
        verify: Box::new(verify),
        done: Done {
            result: Err(Error::Internal("not verified".into())),
            digest,
            generation,
        },
    };
    if let Err(mpsc::SendError(job)) = p.sender.send(job) {
        // No worker left to take it: unblock with nothing; the callback verifies inline.
        unsafe {
            if let Some(unblock) = raw::RedisModule_UnblockClient {
                unblock(job.client.0, std::ptr::null_mut());
            }
        }
    }
    true
}

/// Takes the worker's result in a reply callback; `None` if there is none.
pub fn take_done(ctx: &Context) -> Option<Done> {
    let get = unsafe { raw::RedisModule_GetBlockedClientPrivateData }?;
    // SAFETY: in a reply callback the private data is what a worker passed, a Box<Done>, or
    // null. It is freed by `free_done`, so it is read here without taking ownership.
    let data = unsafe { get(ctx.get_raw()) }.cast::<Done>();
    if data.is_null() {
        return None;
    }
    let done = unsafe { &mut *data };
    Some(Done {
        result: std::mem::replace(&mut done.result, Err(Error::Internal("taken".into()))),
        digest: done.digest,
        generation: done.generation,
    })
}

unsafe extern "C" fn free_done(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the Box<Done> a worker leaked with Box::into_raw.
        drop(unsafe { Box::from_raw(data.cast::<Done>()) });
    }
}
