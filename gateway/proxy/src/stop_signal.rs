//! The worker's own copy of the shutdown signal, for the waits its connections make.
//!
//! Every idle keep-alive read also waits for shutdown. On the process-wide watch channel that
//! wait joins and leaves a mutex-guarded list of waiters once per request; here it takes a
//! slot in a list only this worker's thread touches. The worker sets the signal when the
//! process-wide one turns, and every wait ends.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Set once, when the worker begins to shut down.
#[derive(Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl StopSignal {
    /// Sets the signal: every wait under way ends, and later ones end at once.
    pub fn stop(&self) {
        self.stopped.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// True once [`Self::stop`] ran.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Waits until the signal is set.
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped {
            signal: self,
            slot: None,
        }
    }
}

/// Runs `work` unless `signal` is set first (then `None`); without a signal, runs it.
pub fn unless_stopped<F: Future>(signal: Option<&StopSignal>, work: F) -> UnlessStopped<'_, F> {
    UnlessStopped {
        work,
        stop: signal.map(StopSignal::stopped),
    }
}

pin_project_lite::pin_project! {
    /// [`unless_stopped`]'s future (a struct, so that a connection task waiting between
    /// requests holds `work` once; see [`crate::conn_timer::Within`]).
    pub struct UnlessStopped<'a, F> {
        #[pin]
        work: F,
        stop: Option<Stopped<'a>>,
    }
}

impl<F: Future> Future for UnlessStopped<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(stop) = this.stop
            && Pin::new(stop).poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        this.work.poll(cx).map(Some)
    }
}

/// A wait for [`StopSignal::stop`]; dropping it leaves the list.
pub struct Stopped<'a> {
    signal: &'a StopSignal,
    slot: Option<usize>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_stopped() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        match self.slot {
            Some(slot) => {
                // `clone_from` keeps the stored waker when it already wakes this task.
                if let Some(waker) = waiters.get_mut(slot) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let slot = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

/// A list this long (in slots) is freed once its last wait ends: the slab never shrinks by
/// itself, and a burst of idle clients would otherwise keep its peak for good (24 bytes a
/// slot).
const KEEP_SLOTS: usize = 1024;

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        // After `stop` the list is empty and the slot is gone with it.
        if let Some(slot) = self.slot
            && !self.signal.is_stopped()
        {
            let mut waiters = self.signal.waiters.borrow_mut();
            waiters.try_remove(slot);
            if waiters.is_empty() && waiters.capacity() > KEEP_SLOTS {
                *waiters = Slab::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(wait: &mut Stopped<'_>, waker: &Waker) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn stop_wakes_every_wait_and_ends_later_ones_at_once() {
        let signal = StopSignal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (mut a, mut b) = (signal.stopped(), signal.stopped());
        assert!(poll(&mut a, &waker).is_pending());
        assert!(poll(&mut b, &waker).is_pending());
        assert!(
            poll(&mut a, &waker).is_pending(),
            "a second poll keeps its slot"
        );
        assert_eq!(signal.waiters.borrow().len(), 2);
        signal.stop();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(poll(&mut a, &waker).is_ready());
        assert!(poll(&mut signal.stopped(), &waker).is_ready());
        drop((a, b));
        assert!(signal.waiters.borrow().is_empty());
    }

    #[test]
    fn a_long_list_is_freed_when_its_last_wait_ends() {
        let signal = StopSignal::default();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut waits: Vec<_> = (0..KEEP_SLOTS * 2).map(|_| signal.stopped()).collect();
        for wait in &mut waits {
            assert!(poll(wait, &waker).is_pending());
        }
        assert!(signal.waiters.borrow().capacity() >= KEEP_SLOTS * 2);
        let last = waits.pop();
        drop(waits);
        assert!(
            signal.waiters.borrow().capacity() >= KEEP_SLOTS * 2,
            "one wait remains"
        );
        drop(last);
        assert_eq!(signal.waiters.borrow().capacity(), 0);
    }

    #[test]
    fn a_dropped_wait_leaves_the_list() {
        let signal = StopSignal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        for _ in 0..3 {
            let mut wait = signal.stopped();
            assert!(poll(&mut wait, &waker).is_pending());
        }
        assert!(signal.waiters.borrow().is_empty());
        signal.stop();
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }
}
