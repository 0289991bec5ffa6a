//! The io-uring crate driven directly: one ring on one thread, SINGLE_ISSUER and
//! DEFER_TASKRUN, so completions are processed only inside the loop's one
//! `io_uring_enter`, which also submits everything queued since the last one.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd, Fixed};
use io_uring::{IoUring, cqueue, opcode, squeue};

/// How the forwarder receives.
#[derive(Clone, Copy)]
pub enum Recv {
    /// One recv into the connection's own buffer at a time, re-posted after each send.
    Single { fixed: bool },
    /// One multishot recv per socket into a provided-buffer ring.
    Multishot,
}

const MAX_CONNECTIONS: usize = 4096;
const ACCEPT: u64 = u64::MAX;
/// Provided buffers (a power of two) and their size.
const BUFFERS: u16 = 4096;
const BUFFER_SIZE: usize = 4096;
const BUFFER_GROUP: u16 = 0;

/// Operation kinds in a completion's user data: receive on side 0 (client) or 1
/// (upstream), or send toward side 0 or 1.
const RECV: u64 = 0;
const SEND: u64 = 2;

fn user_data(generation: u32, slot: usize, op: u64) -> u64 {
    (u64::from(generation) << 32) | ((slot as u64) << 8) | op
}

struct Conn {
    generation: u32,
    /// The client's socket and the upstream's.
    fds: [RawFd; 2],
    /// Single: the buffer, the bytes in it and those sent, and the side being read.
    buf: Vec<u8>,
    len: usize,
    sent: usize,
    reading: usize,
    /// Multishot: per side received from, the buffers waiting to go to the other side
    /// (buffer id, length, bytes sent).
    queued: [VecDeque<(u16, usize, usize)>; 2],
}

/// The provided buffers and the ring that hands them to the kernel.
struct Provided {
    entries: *mut BufRingEntry,
    tail: u16,
    memory: Vec<u8>,
}

impl Provided {
    fn register(ring: &IoUring) -> Provided {
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; the kernel needs page alignment.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(entries, libc::MAP_FAILED, "mmap of the buffer ring");
        // SAFETY: the mapping lives as long as the process.
        unsafe {
            ring.submitter()
                .register_buf_ring(entries as u64, BUFFERS, BUFFER_GROUP)
                .expect("register the buffer ring");
        }
        let mut provided = Provided {
            entries: entries.cast(),
            tail: 0,
            memory: vec![0; usize::from(BUFFERS) * BUFFER_SIZE],
        };
        for id in 0..BUFFERS {
            provided.give_back(id);
        }
        provided
    }

    fn buffer(&self, id: u16) -> *const u8 {
        self.memory[usize::from(id) * BUFFER_SIZE..].as_ptr()
    }

    fn give_back(&mut self, id: u16) {
        // SAFETY: the slot at the tail is the application's until the tail moves past it.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & (BUFFERS - 1)));
            entry.set_addr(self.buffer(id) as u64);
            entry.set_len(BUFFER_SIZE as u32);
            entry.set_bid(id);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

struct Forwarder {
    ring: IoUring,
    mode: Recv,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generations: u32,
    provided: Option<Provided>,
}

pub fn run(listen: SocketAddr, upstream: SocketAddr, mode: Recv) {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(4096)
        .expect("io_uring with DEFER_TASKRUN");
    if let Recv::Single { fixed: true } = mode {
        ring.submitter()
            .register_files_sparse(2 * MAX_CONNECTIONS as u32)
            .expect("register the file table");
    }
    let provided = matches!(mode, Recv::Multishot).then(|| Provided::register(&ring));
    let mut f = Forwarder {
        ring,
        mode,
        conns: (0..MAX_CONNECTIONS).map(|_| None).collect(),
        free: (0..MAX_CONNECTIONS).rev().collect(),
        generations: 0,
        provided,
    };
    let listener = TcpListener::bind(listen).expect("bind");
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
    f.push(accept.clone().user_data(ACCEPT));
    loop {
        f.ring.submit_and_wait(1).expect("io_uring_enter");
        let done: Vec<(u64, i32, u32)> = f
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in done {
            if ud == ACCEPT {
                if !cqueue::more(flags) {
                    f.push(accept.clone().user_data(ACCEPT));
                }
                if res >= 0 {
                    f.open(res, upstream);
                }
            } else {
                f.complete(ud, res, flags);
            }
        }
    }
}

impl Forwarder {
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every buffer an entry names lives in a connection or `provided` until its
        // completion arrives.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit().expect("io_uring_enter");
        }
    }

    fn open(&mut self, client: RawFd, upstream: SocketAddr) {
        let Some(slot) = self.free.pop() else {
            // SAFETY: a socket the kernel just gave us and nothing else holds.
            unsafe { libc::close(client) };
            return;
        };
        let up = match TcpStream::connect(upstream) {
            Ok(s) => s,
            Err(_) => {
                self.free.push(slot);
                // SAFETY: as above.
                unsafe { libc::close(client) };
                return;
            }
        };
        let _ = up.set_nodelay(true);
        let up = up.into_raw_fd();
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and option value.
        unsafe {
            libc::setsockopt(
                client,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                4,
            );
        }
        if let Recv::Single { fixed: true } = self.mode {
            self.ring
                .submitter()
                .register_files_update(2 * slot as u32, &[client, up])
                .expect("register the connection's files");
        }
        self.generations = self.generations.wrapping_add(1);
        self.conns[slot] = Some(Conn {
            generation: self.generations,
            fds: [client, up],
            buf: vec![0; READ_BUFFER],
            len: 0,
            sent: 0,
            reading: 0,
            queued: [VecDeque::new(), VecDeque::new()],
        });
        match self.mode {
            Recv::Single { .. } => self.post_recv(slot, 0),
            Recv::Multishot => {
                self.arm_multishot(slot, 0);
                self.arm_multishot(slot, 1);
            }
        }
    }

    fn target(&self, slot: usize, side: usize) -> Result<Fixed, Fd> {
        match self.mode {
            Recv::Single { fixed: true } => Ok(Fixed((2 * slot + side) as u32)),
            _ => Err(Fd(self.conns[slot].as_ref().expect("open").fds[side])),
        }
    }

    fn post_recv(&mut self, slot: usize, side: usize) {
        let conn = self.conns[slot].as_mut().expect("open");
        conn.reading = side;
        let (ptr, len, generation) = (
            conn.buf.as_mut_ptr(),
            conn.buf.len() as u32,
            conn.generation,
        );
        let entry = match self.target(slot, side) {
            Ok(fixed) => opcode::Recv::new(fixed, ptr, len).build(),
            Err(fd) => opcode::Recv::new(fd, ptr, len).build(),
        };
        self.push(entry.user_data(user_data(generation, slot, RECV + side as u64)));
    }

    /// Sends the rest of what was read from `side` to the other side.
    fn post_send(&mut self, slot: usize, from: usize, ptr: *const u8, len: usize) {
        let generation = self.conns[slot].as_ref().expect("open").generation;
        let entry = match self.target(slot, 1 - from) {
            Ok(fixed) => opcode::Send::new(fixed, ptr, len as u32).build(),
            Err(fd) => opcode::Send::new(fd, ptr, len as u32).build(),
        };
        self.push(entry.user_data(user_data(generation, slot, SEND + from as u64)));
    }

    fn arm_multishot(&mut self, slot: usize, side: usize) {
        let conn = self.conns[slot].as_ref().expect("open");
        let entry = opcode::RecvMulti::new(Fd(conn.fds[side]), BUFFER_GROUP).build();
        self.push(entry.user_data(user_data(conn.generation, slot, RECV + side as u64)));
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            if let Recv::Single { fixed: true } = self.mode {
                let _ = self
                    .ring
                    .submitter()
                    .register_files_update(2 * slot as u32, &[-1, -1]);
            }
            for queue in &conn.queued {
                for &(id, _, _) in queue {
                    self.provided.as_mut().expect("multishot").give_back(id);
                }
            }
            // SAFETY: the connection's own sockets, closed once.
            unsafe {
                libc::close(conn.fds[0]);
                libc::close(conn.fds[1]);
            }
            self.free.push(slot);
        }
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (generation, slot, op) = (
            (ud >> 32) as u32,
            ((ud >> 8) & 0xff_ffff) as usize,
            ud & 0xff,
        );
        let live = self.conns[slot]
            .as_ref()
            .is_some_and(|c| c.generation == generation);
        let selected = cqueue::buffer_select(flags);
        if !live {
            if let (Some(id), Some(provided)) = (selected, self.provided.as_mut()) {
                provided.give_back(id);
            }
            return;
        }
        match (self.mode, op) {
            (Recv::Single { .. }, RECV | 1) => {
                if res <= 0 {
                    return self.close(slot);
                }
                let conn = self.conns[slot].as_mut().expect("open");
                (conn.len, conn.sent) = (res as usize, 0);
                let (from, ptr, len) = (conn.reading, conn.buf.as_ptr(), conn.len);
                self.post_send(slot, from, ptr, len);
            }
            (Recv::Single { .. }, _) => {
                if res <= 0 {
                    return self.close(slot);
                }
                let conn = self.conns[slot].as_mut().expect("open");
                conn.sent += res as usize;
                let (from, sent, len) = (conn.reading, conn.sent, conn.len);
                if sent < len {
                    // SAFETY: within the buffer.
                    let ptr = unsafe { conn.buf.as_ptr().add(sent) };
                    self.post_send(slot, from, ptr, len - sent);
                } else {
                    self.post_recv(slot, 1 - from);
                }
            }
            (Recv::Multishot, RECV | 1) => {
                let side = op as usize;
                if res == -libc::ENOBUFS {
                    return self.arm_multishot(slot, side);
                }
                let Some(id) = selected.filter(|_| res > 0) else {
                    return self.close(slot);
                };
                if !cqueue::more(flags) {
                    self.arm_multishot(slot, side);
                }
                let conn = self.conns[slot].as_mut().expect("open");
                conn.queued[side].push_back((id, res as usize, 0));
                if conn.queued[side].len() == 1 {
                    let ptr = self.provided.as_ref().expect("multishot").buffer(id);
                    self.post_send(slot, side, ptr, res as usize);
                }
            }
            (Recv::Multishot, _) => {
                let side = (op - SEND) as usize;
                if res <= 0 {
                    return self.close(slot);
                }
                let conn = self.conns[slot].as_mut().expect("open");
                let head = conn.queued[side].front_mut().expect("a send in flight");
                head.2 += res as usize;
                let provided = self.provided.as_mut().expect("multishot");
                if head.2 < head.1 {
                    let (id, len, sent) = *head;
                    // SAFETY: within the buffer.
                    let ptr = unsafe { provided.buffer(id).add(sent) };
                    return self.post_send(slot, side, ptr, len - sent);
                }
                let (id, _, _) = conn.queued[side].pop_front().expect("the head");
                provided.give_back(id);
                if let Some(&(next, len, _)) = conn.queued[side].front() {
                    let ptr = provided.buffer(next);
                    self.post_send(slot, side, ptr, len);
                }
            }
        }
    }
}

/// The single-shot modes' per-connection buffer.
const READ_BUFFER: usize = crate::READ_SIZE;
