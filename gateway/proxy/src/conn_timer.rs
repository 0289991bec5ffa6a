//! One timer per connection, for every bounded read and write it makes.
//!
//! A fresh `tokio::time::timeout` files an entry in the runtime's timer wheel when first
//! polled and takes it out when dropped: two trips through the time driver's lock, and a
//! handful of atomics, for every read and write. Here a connection keeps one sleep armed, and
//! an operation whose deadline is later than the armed instant only notes it: when the sleep
//! goes off early (once per timeout period at most), it is moved on to the deadline of the
//! operation then under way. Only a deadline earlier than the armed one re-files the entry.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gangway_net::Stream;
use tokio::time::{Instant, Sleep};

/// The deadline a timeout too long for the clock stands for (as `tokio::time::timeout` does,
/// it never comes).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A connection's timer. Made on the first bounded operation, dropped with the connection.
#[derive(Default)]
pub struct ConnTimer {
    /// The sleep, while no operation holds it.
    idle: Cell<Option<Pin<Box<Sleep>>>>,
}

/// A client stream whose writes must each finish within `send` (nginx's `send_timeout`):
/// a client that stops reading would otherwise hold its connection, its buffers and an
/// upstream connection for as long as it likes. Reads pass through; their limits are the
/// callers'.
pub(crate) struct SendBounded<'t, S> {
    pub inner: S,
    pub timer: &'t ConnTimer,
    pub send: Duration,
}

impl<S: Stream> Stream for SendBounded<'_, S> {
    // The inner futures themselves, not wrapped in an async fn of their own: each wrapper
    // would add its arguments to the state an idle connection's task holds.
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        self.inner.read(buf)
    }

    fn ready_to_read(&self) -> impl Future<Output = bool> {
        self.inner.ready_to_read()
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        match self
            .timer
            .within(self.send, self.inner.write_all(buf, range))
            .await
        {
            Ok(done) => done,
            // The write owned the buffer; the connection is done with anyway.
            Err(TimedOut) => (Err(send_timed_out()), Vec::new()),
        }
    }

    async fn shutdown(&self) -> io::Result<()> {
        match self.timer.within(self.send, self.inner.shutdown()).await {
            Ok(done) => done,
            Err(TimedOut) => Err(send_timed_out()),
        }
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.socket_fd()
    }
}

fn send_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client did not read within send_timeout",
    )
}

/// The operation did not finish within its limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

impl ConnTimer {
    /// Runs `work`, giving up once `limit` (counted from the first poll) has passed.
    pub(crate) fn within<F: Future>(&self, limit: Duration, work: F) -> Within<'_, F> {
        Within {
            work,
            timer: self,
            limit,
            armed: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`ConnTimer::within`]'s future. A struct rather than an `async fn`: the generated
    /// state machine would hold `work` twice (as argument and as pinned local), and it sits
    /// in every connection task's state while the connection waits for its next request.
    pub(crate) struct Within<'t, F> {
        #[pin]
        work: F,
        timer: &'t ConnTimer,
        limit: Duration,
        // The sleep, taken from the timer at the first poll, and this operation's deadline.
        armed: Option<(Pin<Box<Sleep>>, Instant)>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (sleep, deadline) = this.armed.get_or_insert_with(|| {
            let now = Instant::now();
            let deadline = now.checked_add(*this.limit).unwrap_or(now + FAR_FUTURE);
            // Two bounded operations of one connection at once (none does so today)
            // cannot share the sleep: the second makes one of its own.
            let sleep = match this.timer.idle.take() {
                Some(mut sleep) => {
                    if sleep.deadline() > deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            };
            (sleep, deadline)
        });
        let out = match this.work.poll(cx) {
            Poll::Ready(out) => Ok(out),
            Poll::Pending => loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if sleep.deadline() >= *deadline {
                    break Err(TimedOut);
                }
                // Armed for an earlier operation's deadline: this one has longer.
                sleep.as_mut().reset(*deadline);
            },
        };
        if let Some((sleep, _)) = this.armed.take() {
            this.timer.idle.set(Some(sleep));
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
            .block_on(f)
    }

    /// An operation that never finishes, under a limit of `ms`.
    async fn stall(timer: &ConnTimer, ms: u64) -> Result<(), TimedOut> {
        timer
            .within(Duration::from_millis(ms), std::future::pending())
            .await
    }

    #[test]
    fn work_that_finishes_in_time_returns_its_output() {
        run(async {
            let timer = ConnTimer::default();
            let out = timer
                .within(Duration::from_millis(50), async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    7
                })
                .await;
            assert_eq!(out, Ok(7));
        });
    }

    #[test]
    fn each_operation_gets_its_own_limit_from_when_it_starts() {
        run(async {
            let timer = ConnTimer::default();
            let started = Instant::now();
            // Three operations of 40 ms under a 50 ms limit: the deadline moves with each.
            for _ in 0..3 {
                let out = timer
                    .within(
                        Duration::from_millis(50),
                        tokio::time::sleep(Duration::from_millis(40)),
                    )
                    .await;
                assert_eq!(out, Ok(()));
            }
            assert_eq!(stall(&timer, 50).await, Err(TimedOut));
            assert_eq!(started.elapsed(), Duration::from_millis(170));
        });
    }

    #[test]
    fn a_shorter_limit_after_a_longer_one_still_holds() {
        run(async {
            let timer = ConnTimer::default();
            let quick = timer.within(Duration::from_secs(60), async { 1 }).await;
            assert_eq!(quick, Ok(1));
            let started = Instant::now();
            assert_eq!(stall(&timer, 20).await, Err(TimedOut));
            assert_eq!(started.elapsed(), Duration::from_millis(20));
            // After firing, the timer arms again.
            assert_eq!(stall(&timer, 30).await, Err(TimedOut));
            assert_eq!(started.elapsed(), Duration::from_millis(50));
        });
    }

    #[test]
    fn nested_operations_each_keep_their_limit() {
        run(async {
            let timer = ConnTimer::default();
            let started = Instant::now();
            let inner = timer.within(Duration::from_millis(100), async {
                stall(&timer, 10).await
            });
            assert_eq!(inner.await, Ok(Err(TimedOut)));
            assert_eq!(started.elapsed(), Duration::from_millis(10));
        });
    }

    #[test]
    fn an_operation_dropped_midway_leaves_the_timer_usable() {
        run(async {
            let timer = ConnTimer::default();
            let cut = tokio::time::timeout(Duration::from_millis(5), stall(&timer, 50)).await;
            assert!(cut.is_err(), "the outer timeout drops the operation first");
            let started = Instant::now();
            assert_eq!(stall(&timer, 30).await, Err(TimedOut));
            assert_eq!(started.elapsed(), Duration::from_millis(30));
        });
    }

    #[test]
    fn a_limit_too_long_for_the_clock_never_fires() {
        run(async {
            let timer = ConnTimer::default();
            let out = timer
                .within(Duration::MAX, tokio::time::sleep(Duration::from_secs(3600)))
                .await;
            assert_eq!(out, Ok(()));
        });
    }
}
