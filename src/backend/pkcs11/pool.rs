//! A pool of open sessions on one token, so that several threads sign at once.
//!
//! A PKCS#11 session runs one operation at a time and must not be shared between threads, but a
//! token takes many sessions. Each signature checks one out, uses it and hands it back. Sessions
//! carry the generation of the token state (slot, key handle) they were opened under; after a
//! reopen, older ones are closed as they come back instead of being reused.
//!
//! Sessions are never closed for being idle: closing a token's last session logs the whole
//! application out of it.
//!
//! A session whose operation failed is closed rather than reused, unless it is the pool's only
//! one (closing that could log the application out of the token); sessions older than a reopen
//! are closed as they come back. Only when the error says the module closed our sessions itself
//! (`C_CloseAllSessions` by other code, a token removed: see `fault::sessions_dead`) are they
//! forgotten instead: a module may reuse session handle numbers (PKCS#11 allows it), so closing
//! a dead handle could close a session someone else just opened. For the same reason a session
//! is closed only if the module still reports it on our slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

/// Something kept in the pool, tagged with the generation it was made under.
pub(crate) trait Generational {
    fn generation(&self) -> u64;
    /// Marks the item as already closed by the device: dropping it must not close it again.
    fn forget(&mut self) {}
}

/// A session opened without close-on-drop; `Drop` closes it only when that is safe.
pub(crate) struct OwnedSession {
    session: Option<Session>,
    slot: Slot,
    generation: u64,
    /// Sessions of generations below this one were closed by the module, not by us.
    valid_from: Arc<AtomicU64>,
    gone: bool,
}

impl OwnedSession {
    /// Wraps a session opened with `open_*_session_no_drop` under `generation`.
    pub(crate) fn new(
        session: Session,
        slot: Slot,
        generation: u64,
        valid_from: &Arc<AtomicU64>,
    ) -> Self {
        OwnedSession {
            session: Some(session),
            slot,
            generation,
            valid_from: Arc::clone(valid_from),
            gone: false,
        }
    }

    pub(crate) fn get(&self) -> &Session {
        // Present from `new` until drop.
        self.session.as_ref().expect("session present until drop")
    }
}

impl Drop for OwnedSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let ours = !self.gone
                && self.generation >= self.valid_from.load(Ordering::Acquire)
                && session
                    .get_session_info()
                    .is_ok_and(|info| info.slot_id() == self.slot);
            if ours {
                // An error closing is of no use to anyone: the session is being let go.
                let _ = session.close();
            }
        }
    }
}

/// A session with the key handle valid in it.
pub(crate) struct Pooled {
    pub(crate) session: OwnedSession,
    pub(crate) key: ObjectHandle,
}

impl Generational for Pooled {
    fn generation(&self) -> u64 {
        self.session.generation
    }

    fn forget(&mut self) {
        self.session.gone = true;
    }
}

struct State<T> {
    idle: Vec<T>,
    /// Sessions that exist: idle plus checked out.
    open: usize,
    /// Threads waiting for a session; returns wake the condvar only when there are some (a wake
    /// is a system call, which the common uncontended case need not pay).
    waiting: usize,
    /// Checkouts that had to wait for a session to come back, since the pool was made.
    waits: u64,
    /// The newest generation for which stale idle items were swept out.
    swept: u64,
}

/// Up to `capacity` sessions, opened on demand.
pub(crate) struct Pool<T = Pooled> {
    state: Mutex<State<T>>,
    returned: Condvar,
    capacity: usize,
}

impl<T: Generational> Pool<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Pool {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
                waits: 0,
                swept: 0,
            }),
            returned: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session opened elsewhere (by a reopen). Accepted even above capacity: dropping it
    /// could close the token's only logged-in session; the excess goes as stale ones return.
    pub(crate) fn put(&self, item: T) {
        let mut st = self.lock();
        st.open += 1;
        st.idle.push(item);
        self.wake_one(st);
    }

    /// Releases the lock and wakes one waiting thread, if any.
    fn wake_one(&self, st: MutexGuard<'_, State<T>>) {
        let waiting = st.waiting > 0;
        drop(st);
        if waiting {
            self.returned.notify_one();
        }
    }

    /// Takes an idle session of generation `current`, or opens one with `open` while under
    /// capacity, or waits up to `wait` for one to come back; past that returns `busy()`: every
    /// session is held by an operation that has not returned (a stuck token), and waiting on
    /// would only pile callers up behind it.
    pub(crate) fn checkout<E>(
        &self,
        current: u64,
        wait: Duration,
        open: impl FnOnce() -> Result<T, E>,
        busy: impl FnOnce() -> E,
    ) -> Result<Lease<'_, T>, E> {
        let deadline = Instant::now() + wait;
        let mut stale = Vec::new();
        let mut counted = false;
        let mut st = self.lock();
        if current > st.swept {
            // First checkout since a reopen: close every older idle session at once, so stale
            // ones do not linger under fresh ones.
            st.swept = current;
            let (fresh, old): (Vec<T>, Vec<T>) =
                st.idle.drain(..).partition(|p| p.generation() >= current);
            st.idle = fresh;
            st.open -= old.len();
            stale = old;
        }
        loop {
            while let Some(p) = st.idle.pop() {
                if p.generation() >= current {
                    drop(st);
                    drop(stale); // closes stale sessions outside the lock
                    return Ok(Lease {
                        pool: self,
                        item: Some(p),
                    });
                }
                st.open -= 1;
                stale.push(p);
            }
            if st.open < self.capacity {
                st.open += 1;
                drop(st);
                drop(stale);
                return match open() {
                    Ok(p) => Ok(Lease {
                        pool: self,
                        item: Some(p),
                    }),
                    Err(e) => {
                        let mut st = self.lock();
                        st.open -= 1;
                        self.wake_one(st);
                        Err(e)
                    }
                };
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                drop(st);
                drop(stale);
                return Err(busy());
            };
            st.waiting += 1;
            if !counted {
                st.waits += 1;
                counted = true;
            }
            st = self
                .returned
                .wait_timeout(st, left)
                .map(|(st, _)| st)
                .unwrap_or_else(|p| p.into_inner().0);
            st.waiting -= 1;
        }
    }

    /// The most sessions this pool opens.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sessions open now (idle and checked out).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }

    /// Checkouts that had to wait for a session, since the pool was made.
    pub(crate) fn waits(&self) -> u64 {
        self.lock().waits
    }
}

/// A checked-out session; it goes back to the pool when dropped, unless discarded.
pub(crate) struct Lease<'a, T: Generational = Pooled> {
    pool: &'a Pool<T>,
    item: Option<T>,
}

impl<T: Generational> Lease<'_, T> {
    pub(crate) fn get(&self) -> &T {
        // Present from creation until `discard` or drop, which both consume the lease.
        self.item
            .as_ref()
            .expect("lease holds its session until consumed")
    }

    /// Drops a session the module already closed, without closing it again.
    pub(crate) fn forget(mut self) {
        if let Some(item) = self.item.as_mut() {
            item.forget();
        }
        self.discard();
    }

    /// Closes the session after a failed operation, unless it is the only one the pool holds:
    /// that one goes back for reuse, as closing it could be closing the application's last
    /// session on the token, which logs it out (PKCS#11 ends a login with the last session) and
    /// makes the next call log in again. Reuse is sound: PKCS#11 ends an operation that failed.
    pub(crate) fn discard_unless_last(mut self) {
        let mut st = self.pool.lock();
        if st.open > 1 {
            st.open -= 1;
            let item = self.item.take();
            self.pool.wake_one(st);
            drop(item);
        }
        // Otherwise `Drop` returns it to the pool.
    }

    /// Closes the session instead of returning it (it failed in a way that may have broken it).
    pub(crate) fn discard(mut self) {
        let item = self.item.take();
        let mut st = self.pool.lock();
        st.open -= 1;
        self.pool.wake_one(st);
        drop(item);
    }
}

impl<T: Generational> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let mut st = self.pool.lock();
            st.idle.push(item);
            self.pool.wake_one(st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A stand-in for a session: counts how many exist at once.
    struct Item {
        generation: u64,
        live: Arc<AtomicUsize>,
    }
    impl Generational for Item {
        fn generation(&self) -> u64 {
            self.generation
        }
    }
    impl Drop for Item {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    const WAIT: Duration = Duration::from_secs(10);

    fn make(generation: u64, live: &Arc<AtomicUsize>) -> Result<Item, ()> {
        live.fetch_add(1, Ordering::SeqCst);
        Ok(Item {
            generation,
            live: Arc::clone(live),
        })
    }

    #[test]
    fn threads_share_at_most_capacity_items() {
        let pool = Arc::new(Pool::<Item>::new(3));
        let live = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let max_busy = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, live, busy, max_busy) =
                    (pool.clone(), live.clone(), busy.clone(), max_busy.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let lease = pool.checkout(0, WAIT, || make(0, &live), || ()).unwrap();
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        max_busy.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        busy.fetch_sub(1, Ordering::SeqCst);
                        drop(lease);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(max_busy.load(Ordering::SeqCst) <= 3);
        assert!(live.load(Ordering::SeqCst) <= 3);
        assert_eq!(pool.open_sessions(), live.load(Ordering::SeqCst));
    }

    #[test]
    fn stale_items_are_dropped_and_discards_free_room() {
        let pool = Pool::<Item>::new(2);
        let live = Arc::new(AtomicUsize::new(0));
        let a = pool.checkout(0, WAIT, || make(0, &live), || ()).unwrap();
        let b = pool.checkout(0, WAIT, || make(0, &live), || ()).unwrap();
        drop(a);
        drop(b);
        assert_eq!(live.load(Ordering::SeqCst), 2);
        // A reopen adds a generation-1 item even though the pool is full.
        make(1, &live).map(|i| pool.put(i)).unwrap();
        assert_eq!(pool.open_sessions(), 3);
        // Checking out under generation 1 closes stale items on the way to a fresh one.
        let c = pool.checkout(1, WAIT, || make(1, &live), || ()).unwrap();
        assert_eq!(c.get().generation, 1);
        assert_eq!(
            live.load(Ordering::SeqCst),
            1,
            "stale items were not closed"
        );
        c.discard();
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(pool.open_sessions(), 0);
        // After a failure the pool's last session is kept (closing it would log the token
        // out); with others open, it is closed.
        let a = pool.checkout(1, WAIT, || make(1, &live), || ()).unwrap();
        a.discard_unless_last();
        assert_eq!((live.load(Ordering::SeqCst), pool.open_sessions()), (1, 1));
        let a = pool.checkout(1, WAIT, || make(1, &live), || ()).unwrap();
        let b = pool.checkout(1, WAIT, || make(1, &live), || ()).unwrap();
        assert_eq!(
            live.load(Ordering::SeqCst),
            2,
            "the kept session was reused"
        );
        a.discard_unless_last();
        assert_eq!((live.load(Ordering::SeqCst), pool.open_sessions()), (1, 1));
        b.discard();
        // A failed open gives its room back.
        assert!(pool
            .checkout(1, WAIT, || Err::<Item, ()>(()), || ())
            .is_err());
        assert_eq!(pool.open_sessions(), 0);
    }

    #[test]
    fn a_full_pool_fails_after_the_wait_instead_of_hanging() {
        let pool = Pool::<Item>::new(1);
        let live = Arc::new(AtomicUsize::new(0));
        let held = pool.checkout(0, WAIT, || make(0, &live), || ()).unwrap();
        let started = Instant::now();
        let second = pool.checkout(0, Duration::from_millis(200), || make(0, &live), || ());
        assert!(
            second.is_err(),
            "a second checkout of a one-session pool must time out"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Nothing leaked: the held one is still the only one, and comes back usable.
        assert_eq!(pool.open_sessions(), 1);
        drop(held);
        assert!(pool
            .checkout(0, Duration::from_millis(200), || make(0, &live), || ())
            .is_ok());
    }
}
