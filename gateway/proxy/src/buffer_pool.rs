//! The worker's spare request buffers. A connection holds a [`ConnBuffers`] only while a
//! request is in flight; between requests it waits with a small read buffer and gives the
//! big ones back here, so an idle keep-alive connection costs a few KiB, not tens.

use std::cell::{Cell, RefCell};

use gangway_pipeline::ReadLimits;

use crate::session::{ConnBuffers, REQUEST_BUF};

/// How many spare buffer sets a worker keeps; above that, returned sets are freed.
const KEEP: usize = 256;

/// Spare sets [`BufferPool::release_idle`] always leaves, for the next requests.
const FLOOR: usize = 16;

/// A returned set whose buffers grew past this (a large head or body) is shrunk first.
const SHRINK_ABOVE: usize = 4 * REQUEST_BUF;

/// The spare buffer sets of one worker.
pub(crate) struct BufferPool {
    #[expect(
        clippy::vec_box,
        reason = "a set moves between the pool and a connection as one pointer"
    )]
    free: RefCell<Vec<Box<ConnBuffers>>>,
    /// The fewest spare sets held since the last [`BufferPool::release_idle`]: that many
    /// were not needed all that time.
    low: Cell<usize>,
    /// Sets freed on return (the pool was full) since the last [`BufferPool::release_idle`].
    dropped: Cell<usize>,
    /// `lua_max_uri_args`, given to each new set's query edits (which keep it across requests).
    max_uri_args: u16,
    /// The other `lua_max_*` settings, given to each new set's plugin state.
    limits: ReadLimits,
}

impl BufferPool {
    /// An empty pool whose sets let plugins read `max_uri_args` query arguments, and as much
    /// of the rest as `limits` allows.
    pub fn new(max_uri_args: u16, limits: ReadLimits) -> Self {
        BufferPool {
            free: RefCell::default(),
            low: Cell::default(),
            dropped: Cell::default(),
            max_uri_args,
            limits,
        }
    }

    /// A buffer set for a request: a spare one, or a new one.
    pub fn take(&self) -> Box<ConnBuffers> {
        let mut free = self.free.borrow_mut();
        let bufs = free.pop();
        self.low.set(self.low.get().min(free.len()));
        bufs.unwrap_or_else(|| {
            let mut bufs = Box::new(ConnBuffers::new());
            bufs.plugins.query.set_max_args(self.max_uri_args);
            bufs.plugins.limits = self.limits;
            bufs
        })
    }

    /// Takes back a set whose request is done; its input must hold no pipelined bytes.
    pub fn give(&self, mut bufs: Box<ConnBuffers>) {
        let mut free = self.free.borrow_mut();
        if free.len() >= KEEP {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        bufs.input.clear();
        for buf in [&mut bufs.input, &mut bufs.upstream, &mut bufs.output] {
            if buf.capacity() > SHRINK_ABOVE {
                buf.clear();
                buf.shrink_to(REQUEST_BUF);
            }
        }
        bufs.txn.shrink(SHRINK_ABOVE);
        free.push(bufs);
    }

    /// Frees the spare sets no request needed since the last call, but [`FLOOR`] of them,
    /// so the memory a burst of concurrent requests took goes back once the burst is over
    /// (called every second). Returns how many sets were freed since the last call,
    /// these and those the full pool refused.
    pub fn release_idle(&self) -> usize {
        let mut free = self.free.borrow_mut();
        let unused = self.low.get().min(free.len()).saturating_sub(FLOOR);
        // The front holds the sets returned longest ago (take and give work at the back).
        free.drain(..unused);
        self.low.set(free.len());
        unused + self.dropped.replace(0)
    }

    /// Spare sets held now.
    #[cfg(test)]
    pub fn spare(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_pipeline::edits::DEFAULT_MAX_URI_ARGS;

    #[test]
    fn sets_are_reused_shrunk_and_capped() {
        let pool = BufferPool::new(DEFAULT_MAX_URI_ARGS, ReadLimits::default());
        let mut a = pool.take();
        a.input.reserve(1 << 20);
        pool.give(a);
        assert_eq!(pool.spare(), 1);
        let b = pool.take();
        assert!(
            b.input.capacity() <= SHRINK_ABOVE,
            "a grown buffer is shrunk"
        );
        pool.give(b);
        let many: Vec<_> = (0..KEEP + 10).map(|_| pool.take()).collect();
        for bufs in many {
            pool.give(bufs);
        }
        assert_eq!(pool.spare(), KEEP, "the pool keeps at most KEEP spare sets");
        assert_eq!(pool.release_idle(), 10, "the 10 it refused count as freed");
    }

    #[test]
    fn sets_no_request_needed_for_an_interval_are_released() {
        let pool = BufferPool::new(DEFAULT_MAX_URI_ARGS, ReadLimits::default());
        let burst: Vec<_> = (0..40).map(|_| pool.take()).collect();
        burst.into_iter().for_each(|b| pool.give(b));
        assert_eq!(
            pool.release_idle(),
            0,
            "the burst's interval needed them all"
        );

        // Steady load of 20 requests at once: their sets stay, the rest go.
        let steady: Vec<_> = (0..20).map(|_| pool.take()).collect();
        steady.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.release_idle(), 4);
        assert_eq!(pool.spare(), 36);

        // Quiet: everything above the floor goes.
        assert_eq!(pool.release_idle(), 36 - FLOOR);
        assert_eq!(pool.spare(), FLOOR);
        assert_eq!(pool.release_idle(), 0);
    }
}
