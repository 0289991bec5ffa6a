//! `tokio-ring`: the io-uring crate driven under a tokio runtime, as gangway's io_uring
//! backend could drive it while keeping tokio for its tasks and timers, in place of
//! tokio-uring. A driver task (a local task like the connections') makes one
//! `io_uring_enter` per turn of the task queue: it submits what the tasks queued since its
//! last turn and takes the completions due, waking their tasks, then requeues itself behind
//! them. Waking tasks from inside the queue's own turn costs no syscall; from tokio's park
//! hook (where tokio-uring submits) it would, as the LocalSet then wakes the runtime's
//! thread through an eventfd. With nothing in flight it sleeps, and tokio parks in epoll,
//! which holds the ring's fd.
//!
//! The ring is COOP_TASKRUN, as tokio-uring's, not DEFER_TASKRUN: on this kernel (6.18) a
//! DEFER_TASKRUN ring tells nobody parked outside `io_uring_enter` that completions are
//! due. Its fd never turned readable in epoll (17 requests a second, each finished by some
//! other wake-up) and a registered eventfd rarely fired (1,046 a second), so DEFER_TASKRUN
//! needs `io_uring_enter` as the worker's one blocking point (`ring`), which tokio's own
//! park in epoll rules out.
//!
//! One operation = one slot in a slab; its future owns the buffer, which an abandoned
//! operation hands to its slot until the kernel is done with it.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::types::Fd;
use io_uring::{IoUring, opcode, squeue};
use slab::Slab;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::READ_SIZE;

/// `io_uring_enter`'s flag to run and reap completions (the crate keeps its `sys` private).
const IORING_ENTER_GETEVENTS: u32 = 1;

enum Slot {
    Waiting(Option<Waker>),
    Done(i32),
    /// Its future was dropped first: the buffer stays until the completion comes.
    Abandoned(#[allow(dead_code)] Vec<u8>),
}

struct Driver {
    ring: IoUring,
    ops: Slab<Slot>,
    /// The driver task, while it sleeps: a submission wakes it.
    asleep: Option<Waker>,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

fn with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    DRIVER.with_borrow_mut(|d| f(d.as_mut().expect("a ring on this thread")))
}

impl Driver {
    fn push(&mut self, entry: squeue::Entry) -> usize {
        let index = self.ops.insert(Slot::Waiting(None));
        let entry = entry.user_data(index as u64);
        // SAFETY: the buffer an entry names is owned by its operation's future or slot
        // until the completion arrives.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit().expect("io_uring_enter");
        }
        if let Some(driver) = self.asleep.take() {
            driver.wake();
        }
        index
    }

    /// Submits what is queued and runs the completions the kernel deferred, waiting for
    /// none, then hands them to their operations. False when there was nothing to do.
    fn flush(&mut self) -> bool {
        let queued = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed.
        let _ = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, IORING_ENTER_GETEVENTS, None)
        };
        let mut progressed = queued > 0;
        for cqe in self.ring.completion() {
            progressed = true;
            let index = cqe.user_data() as usize;
            match self.ops.get_mut(index) {
                Some(slot @ Slot::Waiting(_)) => {
                    if let Slot::Waiting(Some(waker)) =
                        std::mem::replace(slot, Slot::Done(cqe.result()))
                    {
                        waker.wake();
                    }
                }
                Some(Slot::Abandoned(_)) => {
                    self.ops.remove(index);
                }
                _ => {}
            }
        }
        progressed
    }
}

/// An operation in flight and the buffer it uses.
struct Op {
    index: Option<usize>,
    buf: Option<Vec<u8>>,
}

impl Op {
    fn submit(entry: squeue::Entry, buf: Vec<u8>) -> Op {
        let index = with_driver(|d| d.push(entry));
        Op {
            index: Some(index),
            buf: Some(buf),
        }
    }
}

impl Future for Op {
    type Output = (i32, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index.expect("polled after completion");
        let done = with_driver(|d| match &mut d.ops[index] {
            Slot::Done(res) => {
                let res = *res;
                d.ops.remove(index);
                Some(res)
            }
            Slot::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                None
            }
            Slot::Abandoned(_) => unreachable!("a live operation is not abandoned"),
        });
        match done {
            Some(res) => {
                self.index = None;
                Poll::Ready((res, self.buf.take().expect("the buffer")))
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some(index) = self.index.take() {
            let buf = self.buf.take().unwrap_or_default();
            let _ = DRIVER.try_with(|d| {
                if let Some(d) = d.borrow_mut().as_mut() {
                    match d.ops[index] {
                        Slot::Done(_) => {
                            d.ops.remove(index);
                        }
                        _ => d.ops[index] = Slot::Abandoned(buf),
                    }
                }
            });
        }
    }
}

async fn recv(fd: RawFd, mut buf: Vec<u8>) -> (i32, Vec<u8>) {
    buf.clear();
    let entry = opcode::Recv::new(Fd(fd), buf.as_mut_ptr(), buf.capacity() as u32).build();
    let (res, mut buf) = Op::submit(entry, buf).await;
    if res > 0 {
        // SAFETY: the kernel wrote `res` bytes into the spare capacity.
        unsafe { buf.set_len(res as usize) };
    }
    (res, buf)
}

async fn send_all(fd: RawFd, mut buf: Vec<u8>) -> (bool, Vec<u8>) {
    let mut sent = 0;
    while sent < buf.len() {
        let rest = &buf[sent..];
        let entry = opcode::Send::new(Fd(fd), rest.as_ptr(), rest.len() as u32).build();
        let (res, back) = Op::submit(entry, buf).await;
        buf = back;
        if res <= 0 {
            return (false, buf);
        }
        sent += res as usize;
    }
    (true, buf)
}

async fn forward(client: RawFd, upstream: SocketAddr) {
    let Ok(up) = std::net::TcpStream::connect(upstream) else {
        // SAFETY: the accepted socket is ours alone.
        unsafe { libc::close(client) };
        return;
    };
    let _ = up.set_nodelay(true);
    let up = up.into_raw_fd();
    let mut buf = Vec::with_capacity(READ_SIZE);
    'conn: loop {
        for (from, to) in [(client, up), (up, client)] {
            let (n, b) = recv(from, buf).await;
            if n <= 0 {
                break 'conn;
            }
            let (ok, b) = send_all(to, b).await;
            buf = b;
            if !ok {
                break 'conn;
            }
        }
    }
    // SAFETY: both sockets are this task's alone, and no operation on them is in flight.
    unsafe {
        libc::close(client);
        libc::close(up);
    }
}

/// The driver task: one enter per turn of the task queue while operations are in flight;
/// waiting for the ring's fd to turn readable (completions posted) when none are due, or
/// for a task to submit one when none are in flight.
async fn drive(ring_fd: RawFd) {
    // SAFETY: the ring stays open for the life of the thread.
    let watched = unsafe { AsyncFd::register_with_interest(ring_fd, Interest::READABLE) }
        .expect("the ring's fd in epoll");
    std::future::poll_fn(|cx| {
        loop {
            if with_driver(Driver::flush) {
                // Behind the tasks just woken: they queue their next operations first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let in_flight = with_driver(|d| {
                d.asleep = Some(cx.waker().clone());
                !d.ops.is_empty()
            });
            if !in_flight {
                return Poll::Pending;
            }
            match watched.poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    ready.clear_ready();
                }
                Poll::Ready(Err(e)) => panic!("the ring's fd: {e}"),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

pub fn run(listen: SocketAddr, upstream: SocketAddr) {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(1024)
        .expect("io_uring with COOP_TASKRUN");
    // (DEFER_TASKRUN here stalls: see the module's comment.)
    let ring_fd = ring.as_raw_fd();
    DRIVER.set(Some(Driver {
        ring,
        ops: Slab::with_capacity(1024),
        asleep: None,
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        tokio::task::spawn_local(drive(ring_fd));
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let Ok(client) = client.into_std() else {
                continue;
            };
            // io_uring's recv and send do not care whether the socket blocks.
            tokio::task::spawn_local(forward(client.into_raw_fd(), upstream));
        }
    });
}
