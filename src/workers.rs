//! An optional fixed pool of threads that verify signatures off Redis's main thread.
//!
//! Redis runs commands on one thread, so a 50 µs ECDSA verification stalls every other client
//! for 50 µs. With `jwtdeny.workers` > 0, a CHECK whose token is not in the verification cache
//! blocks its client, a worker verifies the token, and the reply callback — back on the main
//! thread — does the denylist lookup and the reply. Lookups never leave the main thread, so the
//! answer is as atomic as the inline path. Where blocking is not allowed (MULTI, Lua, a call
//! from another module) the command runs inline, and so it does in Redis Cluster (see
//! [`submit`]).

use crate::blocked::{self, Blocked, Callback};
use crate::cache::Digest;
use crate::route::{KeyArgs, Route};
use crate::stats;
use jwtdeny_core::dpop::Proof;
use jwtdeny_core::error::Error;
use jwtdeny_core::token::Claims;
use redis_module::{Context, ContextFlags};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A verification: it owns everything it needs (the token, and the snapshot of settings and
/// keys it is judged by), so a worker reads no global state.
pub type Verify = Box<dyn FnOnce() -> Verdict + Send>;

/// What a worker judged: the token (`None`: the verification cache had it) and, for CHECKDPOP,
/// the proof.
pub struct Verdict {
    pub token: Option<Result<Claims, Error>>,
    pub proof: Option<Result<Proof, Error>>,
}

impl Verdict {
    fn failed(why: &str) -> Verdict {
        Verdict {
            token: Some(Err(Error::Internal(why.into()))),
            proof: None,
        }
    }
}

struct Job {
    client: Blocked<Done>,
    verify: Verify,
    done: Done,
}

/// What the reply callback gets back.
pub struct Done {
    pub verdict: Verdict,
    /// The cache slot to fill, if the cache is on.
    pub digest: Option<Digest>,
    /// The generation of the snapshot the job was verified by: if the snapshot in force has
    /// another (keys reloaded, rules changed), the result is stale and the token is verified
    /// again inline.
    pub generation: u64,
    /// Where the command's declared keys are, to read its arguments again in the reply.
    pub keys: KeyArgs,
}

impl Done {
    /// What a job of a command routed by `route` starts with: no verdict yet, the cache slot to
    /// fill and the generation it is judged by.
    pub fn awaiting(digest: Option<Digest>, generation: u64, route: Route) -> Done {
        Done {
            verdict: Verdict {
                token: None,
                proof: None,
            },
            digest,
            generation,
            keys: match route {
                Route::Derived => KeyArgs::None,
                Route::Declared(keys) => KeyArgs::Leading(keys.len()),
            },
        }
    }
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
        done.verdict =
            verified.unwrap_or_else(|_| Verdict::failed("verification failed unexpectedly"));
        client.unblock(Some(done));
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
    verify: impl FnOnce() -> Verdict + Send + 'static,
    done: Done,
    reply: Callback,
) -> bool {
    if ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return false;
    }
    let guard = pool();
    let Some(p) = guard.as_ref() else {
        return false;
    };
    let Some(client) = Blocked::new(ctx, reply, None, 0) else {
        return false;
    };
    let job = Job {
        client,
        verify: Box::new(verify),
        done,
    };
    if let Err(mpsc::SendError(job)) = p.sender.send(job) {
        // No worker left to take it: unblock with nothing; the callback verifies inline.
        job.client.unblock(None);
    }
    true
}

/// Takes the worker's result in a reply callback; `None` if there is none.
pub fn take_done(ctx: &Context) -> Option<Done> {
    // SAFETY: `check`'s reply callback, of a client blocked by `submit` as a Blocked<Done>.
    let done = unsafe { blocked::data::<Done>(ctx) }?;
    Some(Done {
        verdict: std::mem::replace(&mut done.verdict, Verdict::failed("taken")),
        digest: done.digest,
        generation: done.generation,
        keys: done.keys,
    })
}
