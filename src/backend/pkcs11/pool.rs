//! A pool of open sessions on one token, so that several threads sign at once.
//!
//! A PKCS#11 session runs one operation at a time and must not be shared between threads, but a
//! token takes many sessions. Each signature checks one out, uses it and hands it back. Sessions
//! carry the generation of the token state (slot, key handle) they were opened under; after a
//! reopen, older ones are closed as they come back instead of being reused.
//!
//! Sessions are never closed for being idle: closing a token's last session logs the whole
//! application out of it.

use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

/// A session with the key handle valid in it and the generation it belongs to.
pub(crate) struct Pooled {
    pub(crate) session: Session,
    pub(crate) key: ObjectHandle,
    pub(crate) generation: u64,
}

struct State {
    idle: Vec<Pooled>,
    /// Sessions that exist: idle plus checked out.
    open: usize,
}

/// Up to `capacity` sessions, opened on demand.
pub(crate) struct Pool {
    state: Mutex<State>,
    returned: Condvar,
    capacity: usize,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Self {
        Pool { state: Mutex::new(State { idle: Vec::new(), open: 0 }), returned: Condvar::new(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session opened elsewhere (by a reopen). Accepted even above capacity: dropping it
    /// could close the token's only logged-in session; the excess goes as stale ones return.
    pub(crate) fn put(&self, item: Pooled) {
        let mut st = self.lock();
        st.open += 1;
        st.idle.push(item);
        drop(st);
        self.returned.notify_one();
    }

    /// Takes an idle session of generation `current`, or opens one with `open` while under
    /// capacity, or waits for one to come back.
    pub(crate) fn checkout<E>(
        &self,
        current: u64,
        open: impl FnOnce() -> Result<Pooled, E>,
    ) -> Result<Lease<'_>, E> {
        let mut stale = Vec::new();
        let mut st = self.lock();
        loop {
            while let Some(p) = st.idle.pop() {
                if p.generation >= current {
                    drop(st);
                    drop(stale); // closes stale sessions outside the lock
                    return Ok(Lease { pool: self, item: Some(p) });
                }
                st.open -= 1;
                stale.push(p);
            }
            if st.open < self.capacity {
                st.open += 1;
                drop(st);
                drop(stale);
                return match open() {
                    Ok(p) => Ok(Lease { pool: self, item: Some(p) }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            st = self.returned.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Sessions open now (idle and checked out).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }
}

/// A checked-out session; it goes back to the pool when dropped, unless discarded.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    item: Option<Pooled>,
}

impl Lease<'_> {
    pub(crate) fn get(&self) -> &Pooled {
        // Present from creation until `discard` or drop, which both consume the lease.
        self.item.as_ref().expect("lease holds its session until consumed")
    }

    /// Closes the session instead of returning it (it failed in a way that may have broken it).
    pub(crate) fn discard(mut self) {
        let item = self.item.take();
        self.pool.lock().open -= 1;
        self.pool.returned.notify_one();
        drop(item);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.lock().idle.push(item);
            self.pool.returned.notify_one();
        }
    }
}
