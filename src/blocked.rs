//! Clients blocked while work runs elsewhere (a worker's verification, a JWKS fetch), and the
//! one rule of their callbacks: a reply or timeout callback answers; it never blocks again.
//! A client blocked from inside a callback never gets that command's reply, and every later
//! reply on its connection would answer the request before it.

use redis_module::{raw, Context, ContextFlags};
use std::cell::Cell;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};

/// A blocked client's reply or timeout callback, as Redis calls it.
pub type Callback = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

thread_local! {
    /// Set while a command runs from a blocked client's reply or timeout callback.
    static ANSWERING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the command runs from a blocked client's callback (it may not block again).
pub fn answering() -> bool {
    ANSWERING.get()
}

/// Runs `f` as the answer of a blocked client's callback: nothing in it blocks the client again.
pub fn answer<R>(f: impl FnOnce() -> R) -> R {
    let before = ANSWERING.replace(true);
    let answered = f();
    ANSWERING.set(before);
    answered
}

/// A blocked client, unblocked exactly once (by [`Blocked::unblock`], which consumes it) with
/// a `T` for its reply callback. RM_UnblockClient may be called from any thread.
pub struct Blocked<T> {
    client: *mut raw::RedisModuleBlockedClient,
    data: PhantomData<fn(T)>,
}

// SAFETY: RM_UnblockClient is thread-safe, and the handle is used exactly once.
unsafe impl<T> Send for Blocked<T> {}

impl<T> Blocked<T> {
    /// Blocks the client of the command running in `ctx`: `reply` runs on the main thread once
    /// it is unblocked, `timeout` after `timeout_ms` (0: never). `None` where the client may
    /// not block: MULTI, Lua, a call from another module, or a callback answering already.
    pub fn new(
        ctx: &Context,
        reply: Callback,
        timeout: Option<Callback>,
        timeout_ms: i64,
    ) -> Option<Blocked<T>> {
        if answering() || ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
            return None;
        }
        // SAFETY: a plain read of the API table, filled in before any command runs.
        let block = unsafe { raw::RedisModule_BlockClient }?;
        // SAFETY: main thread, inside a command, as RM_BlockClient requires; `free::<T>` frees
        // exactly what `unblock` hands over.
        let client = unsafe {
            block(
                ctx.get_raw(),
                Some(reply),
                timeout,
                Some(free::<T>),
                timeout_ms,
            )
        };
        (!client.is_null()).then_some(Blocked {
            client,
            data: PhantomData,
        })
    }

    /// Unblocks the client; its reply callback gets `data` (see [`data`]). Redis frees it after
    /// the callback, also when the client timed out or went away.
    pub fn unblock(self, data: Option<T>) {
        // SAFETY: a plain read of the API table.
        let Some(unblock) = (unsafe { raw::RedisModule_UnblockClient }) else {
            return;
        };
        let data = data.map_or(std::ptr::null_mut(), |d| Box::into_raw(Box::new(d)));
        // SAFETY: the handle came from RM_BlockClient and is unblocked exactly once (`self` is
        // consumed); Redis hands `data` to the reply callback and then to `free::<T>`.
        unsafe { unblock(self.client, data.cast::<c_void>()) };
    }
}

/// In a reply callback: what the unblock handed over, `None` if nothing (a timeout).
///
/// # Safety
/// Only in the reply callback of a client blocked as a `Blocked<T>` of this very `T`.
// The data is Redis's, lent for the callback, not borrowed from `ctx`.
#[allow(clippy::mut_from_ref)]
pub unsafe fn data<T>(ctx: &Context) -> Option<&mut T> {
    // SAFETY: a plain read of the API table.
    let get = unsafe { raw::RedisModule_GetBlockedClientPrivateData }?;
    // SAFETY: the private data is a Box<T> from `unblock`, or null; it is freed by `free::<T>`
    // after the callback, so it is only borrowed here.
    let data = unsafe { get(ctx.get_raw()) }.cast::<T>();
    (!data.is_null()).then(|| unsafe { &mut *data })
}

unsafe extern "C" fn free<T>(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the Box<T> that `unblock` leaked.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }
}
