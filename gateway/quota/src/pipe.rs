//! A worker's own pipelined connection to a standalone Redis, on the worker's I/O backend
//! (io_uring or epoll), for realtime counting (the one Redis exchange on the request path)
//! and for batched counting's reads and flushes.
//!
//! Calls append their commands to one output buffer and wait in a queue; a writer task
//! sends whatever has gathered in one write, and a reader task hands the replies to the
//! queue in order. One deadline check per connection (a watchdog task) bounds every call by
//! the timeout, instead of a timer per call. A call that timed out keeps its place in the
//! queue, so the replies that still come stay in step; when the oldest call has had no
//! reply for a second timeout, or the server answers `READONLY` (a failover made it a
//! replica), the connection is broken off, and the next call opens another.
//!
//! The redis crate's multiplexed connection does the same on tokio's epoll reactor, which
//! inside an io_uring worker costs a system call of its own for every write, read and wait;
//! with its channel, codec and per-call timer it took about a third of a realtime request's
//! CPU. Cluster, Sentinel and shared connections keep using the crate.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use gangway_net::{Backend, Stream};
use gangway_pipeline::quota::QuotaError;
use rustls_pki_types::ServerName;

use super::resp::{self, ProtocolError, Reply};

/// The read buffer's size, and the least spare room a read is given.
const READ_CHUNK: usize = 4096;

/// Where a pipe connects and how it logs in.
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The client config and the name the certificate is checked against.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    /// Bounds every call (and, in the caller, the connect).
    pub timeout: Duration,
}

/// How a pipe counts, as the server's version allows (asked once, at connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counting {
    /// `INCR` and `EXPIRE ... NX` per window (Redis 7.0 and later).
    ExpireNx,
    /// Kong's script.
    Script,
}

/// A connection's shared state: what the calls, the writer, the reader and the watchdog
/// see.
pub(crate) struct Pipe {
    pub counting: Counting,
    timeout: Duration,
    /// The socket, to break it off (`shutdown`) so a read pending on it ends.
    fd: Option<RawFd>,
    state: RefCell<State>,
}

struct State {
    /// Commands not yet handed to the writer.
    out: Vec<u8>,
    /// Calls waiting for replies, oldest first.
    queue: VecDeque<Waiter>,
    /// The writer, parked while `out` is empty.
    writer: Option<Waker>,
    /// Why the connection ended; calls then fail at once.
    closed: Option<String>,
}

struct Waiter {
    /// Replies still to come.
    left: usize,
    replies: Vec<Reply>,
    answer: Rc<Answer>,
    deadline: Instant,
}

/// One call's result, handed from the reader (or the watchdog) to the call.
#[derive(Default)]
struct Answer(RefCell<AnswerState>);

#[derive(Default)]
enum AnswerState {
    #[default]
    Waiting,
    Parked(Waker),
    Done(Result<Vec<Reply>, QuotaError>),
    Taken,
}

impl Answer {
    /// Settles the call; later results (a reply after its timeout) are dropped.
    fn finish(&self, result: Result<Vec<Reply>, QuotaError>) {
        let mut state = self.0.borrow_mut();
        let waker = match std::mem::take(&mut *state) {
            AnswerState::Waiting => None,
            AnswerState::Parked(waker) => Some(waker),
            settled => {
                *state = settled;
                return;
            }
        };
        *state = AnswerState::Done(result);
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<Vec<Reply>, QuotaError>> {
        let mut state = self.0.borrow_mut();
        match std::mem::replace(&mut *state, AnswerState::Taken) {
            AnswerState::Done(result) => Poll::Ready(result),
            AnswerState::Parked(waker) if waker.will_wake(cx.waker()) => {
                *state = AnswerState::Parked(waker);
                Poll::Pending
            }
            AnswerState::Waiting | AnswerState::Parked(_) => {
                *state = AnswerState::Parked(cx.waker().clone());
                Poll::Pending
            }
            AnswerState::Taken => Poll::Ready(Err(QuotaError::Store(
                "a Redis answer was asked for twice".into(),
            ))),
        }
    }
}

impl Pipe {
    fn new(counting: Counting, timeout: Duration, fd: Option<RawFd>) -> Pipe {
        Pipe {
            counting,
            timeout,
            fd,
            state: RefCell::new(State {
                out: Vec::with_capacity(512),
                queue: VecDeque::new(),
                writer: None,
                closed: None,
            }),
        }
    }

    /// Whether the connection has ended (the next call should open another).
    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed.is_some()
    }

    /// Queues the commands `encode` writes, which answer `replies` replies, and waits for
    /// them (at most the timeout). The commands are queued before this returns, so calls
    /// made in one order are sent in that order.
    pub fn call(&self, replies: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Call {
        let answer = Rc::new(Answer::default());
        let mut state = self.state.borrow_mut();
        match &state.closed {
            Some(why) => answer.finish(Err(QuotaError::Store(why.clone()))),
            None => {
                encode(&mut state.out);
                state.queue.push_back(Waiter {
                    left: replies.max(1),
                    replies: Vec::with_capacity(replies),
                    answer: answer.clone(),
                    deadline: Instant::now() + self.timeout,
                });
                if let Some(writer) = state.writer.take() {
                    writer.wake();
                }
            }
        }
        drop(state);
        Call(answer)
    }

    /// Ends the connection: every waiting call fails with `why`, the tasks stop, and the
    /// socket is shut down so a pending read returns.
    fn close(&self, why: String) {
        let mut state = self.state.borrow_mut();
        if state.closed.is_some() {
            return;
        }
        for waiter in state.queue.drain(..) {
            waiter.answer.finish(Err(QuotaError::Store(why.clone())));
        }
        state.closed = Some(why);
        if let Some(writer) = state.writer.take() {
            writer.wake();
        }
        drop(state);
        if let Some(fd) = self.fd {
            // SAFETY: the reader and writer tasks own the stream until after the first
            // close (they end only once `closed` is set), so `fd` is still this socket.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    /// Hands the writer everything queued (swapping in its emptied buffer), or parks it.
    fn take_output(&self, cx: &mut Context<'_>, spare: &mut Vec<u8>) -> Poll<Option<Vec<u8>>> {
        let mut state = self.state.borrow_mut();
        if state.closed.is_some() {
            return Poll::Ready(None);
        }
        if state.out.is_empty() {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Some(std::mem::replace(
            &mut state.out,
            std::mem::take(spare),
        )))
    }

    /// Gives `reply` to the oldest call.
    fn deliver(&self, reply: Reply) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        let Some(front) = state.queue.front_mut() else {
            return Err("Redis sent a reply no command asked for".into());
        };
        front.replies.push(reply);
        front.left -= 1;
        if front.left == 0
            && let Some(done) = state.queue.pop_front()
        {
            done.answer.finish(Ok(done.replies));
        }
        Ok(())
    }

    /// Fails the calls past their deadline (they keep their place), breaks the connection
    /// when the oldest has waited a second timeout, and says when to look again.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let state = self.state.borrow();
        if state.closed.is_some() {
            return None;
        }
        let mut next = now + self.timeout;
        for waiter in &state.queue {
            if waiter.deadline > now {
                next = next.min(waiter.deadline);
                break;
            }
            waiter
                .answer
                .finish(Err(QuotaError::Timeout(self.timeout.as_millis() as u64)));
        }
        let Some(oldest) = state.queue.front().map(|w| w.deadline) else {
            return Some(next);
        };
        if oldest > now {
            return Some(next);
        }
        let broken_at = oldest + self.timeout;
        if broken_at > now {
            return Some(next.min(broken_at));
        }
        drop(state);
        self.close(format!(
            "no reply from Redis in {} ms",
            2 * self.timeout.as_millis()
        ));
        None
    }
}

/// The number an integer reply holds.
pub(crate) fn integer(reply: &Reply) -> Result<i64, QuotaError> {
    match reply {
        Reply::Int(n) => Ok(*n),
        other => Err(unexpected(other)),
    }
}

/// The totals of `windows` increments among a call's replies: one `INCR` reply per window,
/// each followed by its `EXPIRE` reply where `expire` says. Any error reply fails the whole
/// call.
pub(crate) fn incr_totals(
    replies: &[Reply],
    windows: usize,
    expire: &[bool],
) -> Result<Vec<i64>, QuotaError> {
    if let Some(refused) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
        return Err(unexpected(refused));
    }
    let mut replies = replies.iter();
    let mut next = || {
        replies
            .next()
            .ok_or_else(|| QuotaError::Store("Redis answered too few replies".into()))
    };
    let mut totals = Vec::with_capacity(windows);
    for i in 0..windows {
        totals.push(integer(next()?)?);
        if expire.get(i).copied().unwrap_or(false) {
            integer(next()?)?;
        }
    }
    Ok(totals)
}

/// A reply that is not the one asked for, as the error it stands for.
pub(crate) fn unexpected(reply: &Reply) -> QuotaError {
    QuotaError::Store(match reply {
        Reply::Error(e) => e.clone(),
        other => format!("unexpected reply from Redis: {other:?}"),
    })
}

/// A call's reply, awaited.
pub(crate) struct Call(Rc<Answer>);

impl Future for Call {
    type Output = Result<Vec<Reply>, QuotaError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx)
    }
}

/// Opens pipes on the worker's backend.
trait Open {
    fn open(
        &self,
        endpoint: Arc<Endpoint>,
    ) -> Pin<Box<dyn Future<Output = Result<Rc<Pipe>, String>>>>;
}

struct On<B>(PhantomData<fn() -> B>);

impl<B: Backend> Open for On<B> {
    fn open(
        &self,
        endpoint: Arc<Endpoint>,
    ) -> Pin<Box<dyn Future<Output = Result<Rc<Pipe>, String>>>> {
        Box::pin(open::<B>(endpoint))
    }
}

thread_local! {
    /// This thread's backend, when it is a worker ([`install`]).
    static OPENER: Cell<Option<&'static dyn Open>> = const { Cell::new(None) };
}

/// Lets counting on this thread use pipes on `B`'s sockets. Each worker calls it as it
/// starts, and so does the thread that flushes batched counts; elsewhere counting goes
/// through the redis crate.
pub fn install<B: Backend>() {
    let on: &'static On<B> = Box::leak(Box::new(On(PhantomData)));
    OPENER.set(Some(on));
}

/// Whether this thread can open pipes.
pub(crate) fn installed() -> bool {
    OPENER.get().is_some()
}

/// Connects to `endpoint` on this thread's backend, logs in, selects the database and
/// learns the server's version; the caller bounds it by the timeout.
pub(crate) async fn connect(endpoint: Arc<Endpoint>) -> Result<Rc<Pipe>, String> {
    match OPENER.get() {
        Some(opener) => opener.open(endpoint).await,
        None => Err("no I/O backend on this thread".into()),
    }
}

async fn open<B: Backend>(endpoint: Arc<Endpoint>) -> Result<Rc<Pipe>, String> {
    let addr = resolve(&endpoint.host, endpoint.port).await?;
    let tcp = B::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    match &endpoint.tls {
        None => start(tcp, &endpoint).await,
        Some((config, name)) => {
            let tls = gangway_net::tls::connect(tcp, config.clone(), name.clone())
                .await
                .map_err(|e| format!("TLS with {addr}: {e}"))?;
            start(tls, &endpoint).await
        }
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Logs in, then starts the connection's tasks.
async fn start<S: Stream + 'static>(stream: S, endpoint: &Endpoint) -> Result<Rc<Pipe>, String> {
    let mut out = Vec::new();
    let mut asked = Vec::new();
    if let Some(password) = &endpoint.password {
        match &endpoint.username {
            Some(user) => resp::command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => resp::command(&mut out, &[b"AUTH", password.as_bytes()]),
        }
        asked.push("AUTH");
    }
    if endpoint.database != 0 {
        let db = endpoint.database.to_string();
        resp::command(&mut out, &[b"SELECT", db.as_bytes()]);
        asked.push("SELECT");
    }
    resp::command(&mut out, &[b"INFO", b"server"]);
    asked.push("INFO");
    let len = out.len();
    let (written, _) = stream.write_all(out, 0..len).await;
    written.map_err(|e| format!("write: {e}"))?;
    let mut reader = Reader::default();
    let mut counting = Counting::Script;
    for what in asked {
        let reply = loop {
            match reader.next().map_err(|e| e.to_string())? {
                Some(reply) => break reply,
                None => reader.fill(&stream).await?,
            }
        };
        match (what, reply) {
            ("INFO", Reply::Bulk(Some(info))) => {
                if supports_expire_nx(&String::from_utf8_lossy(&info)) {
                    counting = Counting::ExpireNx;
                }
            }
            // An ACL user without INFO: taken as an older server. Any other error (a
            // server at maxclients, protected mode) fails the connect, which then waits
            // RETRY_AFTER, instead of a pipe that closes at once and reopens per request.
            ("INFO", Reply::Error(e)) if e.starts_with("NOPERM") => {}
            (_, Reply::Error(e)) => return Err(format!("{what}: {e}")),
            (_, Reply::Status(_)) => {}
            (_, other) => return Err(format!("{what}: unexpected reply {other:?}")),
        }
    }
    let pipe = Rc::new(Pipe::new(counting, endpoint.timeout, stream.socket_fd()));
    let stream = Rc::new(stream);
    tokio::task::spawn_local(read_loop(stream.clone(), pipe.clone(), reader));
    tokio::task::spawn_local(write_loop(stream, pipe.clone()));
    tokio::task::spawn_local(watch(pipe.clone()));
    Ok(pipe)
}

/// `EXPIRE ... NX` arrived in Redis 7.0.
pub(crate) fn supports_expire_nx(info: &str) -> bool {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .and_then(|v| v.trim().split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 7)
}

/// Bytes read and not yet parsed.
#[derive(Default)]
struct Reader {
    buf: Vec<u8>,
    at: usize,
    parser: resp::Parser,
}

impl Reader {
    fn next(&mut self) -> Result<Option<Reply>, ProtocolError> {
        self.parser.next(&self.buf, &mut self.at)
    }

    /// Reads more, after dropping what was parsed.
    async fn fill<S: Stream>(&mut self, stream: &S) -> Result<(), String> {
        if self.at == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.at);
        }
        self.at = 0;
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK.max(self.buf.len()));
        }
        let (read, buf) = stream.read(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match read {
            Ok(0) => Err("Redis closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// True for the error of a write to a replica: `READONLY ...`, or on Redis 6 the same
/// wrapped in a script's error (`ERR Error running script ...: -READONLY ...`).
pub(crate) fn says_demoted(error: &str) -> bool {
    error.starts_with("READONLY") || error.contains("-READONLY ")
}

async fn read_loop<S: Stream>(stream: Rc<S>, pipe: Rc<Pipe>, mut reader: Reader) {
    loop {
        let delivered = match reader.next() {
            // A failover made the server a replica (an ElastiCache primary endpoint then
            // names another node): connect again, resolving the name afresh.
            Ok(Some(Reply::Error(e))) if says_demoted(&e) => {
                let why = format!("Redis is a replica now ({e}); reconnecting");
                pipe.deliver(Reply::Error(e)).and(Err(why))
            }
            Ok(Some(reply)) => pipe.deliver(reply),
            Ok(None) => reader.fill(&*stream).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = delivered {
            pipe.close(why);
            return;
        }
        if pipe.is_closed() {
            return;
        }
    }
}

async fn write_loop<S: Stream>(stream: Rc<S>, pipe: Rc<Pipe>) {
    let mut spare = Vec::with_capacity(512);
    loop {
        let Some(buf) = poll_fn(|cx| pipe.take_output(cx, &mut spare)).await else {
            return;
        };
        let len = buf.len();
        let (written, mut buf) = stream.write_all(buf, 0..len).await;
        if let Err(e) = written {
            pipe.close(format!("write: {e}"));
            return;
        }
        buf.clear();
        spare = buf;
    }
}

async fn watch(pipe: Rc<Pipe>) {
    while let Some(next) = pipe.expire(Instant::now()) {
        tokio::time::sleep_until(next.into()).await;
    }
}

#[cfg(test)]
#[path = "pipe_tests.rs"]
pub(crate) mod tests;
