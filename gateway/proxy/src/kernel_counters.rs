//! `log_kernel_counters`: the client connection's kernel counters, read once per request
//! after its answer is written, and the request's share of them for the log phase.
//!
//! A request's share is what the counters moved since the previous request's reading on the
//! same connection (the first request's includes the TLS handshake). On the receiving side
//! that is what gangway took from the socket: bytes still waiting in it (`FIONREAD`), such as
//! the next request sent the moment this answer reached the client, count toward a later
//! request. Bytes a read took ahead (a pipelined request) count toward the request they
//! arrived with, and a body no one read (a plugin answered first) toward the request read
//! after it, if any.

use std::os::fd::RawFd;

use serde_json::{Value, json};
use tracing::debug;

use gangway_net::tcp_info::{self, TcpCounters};

/// One request's reading.
#[derive(Debug, Clone, Copy)]
pub struct KernelReading {
    /// The socket cookie (the eBPF connection tracker's key for the connection).
    pub cookie: u64,
    /// The connection's counters since it was accepted.
    pub counters: TcpCounters,
    /// Bytes received since the previous request's reading.
    pub request_bytes: u64,
    /// Bytes written since the previous request's reading.
    pub response_bytes: u64,
    /// `log_kernel_counters = sizes`: these shares stand for the request and response sizes.
    pub as_sizes: bool,
}

impl KernelReading {
    /// The serialized log's `kernel` object.
    pub fn log_object(&self) -> Value {
        let c = &self.counters;
        json!({
            "connection": self.cookie,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "bytes_received": c.bytes_received,
            "bytes_sent": c.bytes_sent,
            "bytes_acked": c.bytes_acked,
            "bytes_retransmitted": c.bytes_retrans,
            "segments_in": c.segs_in,
            "segments_out": c.segs_out,
            "retransmits": c.retransmits,
            "rtt_us": c.rtt_us,
        })
    }
}

/// Per connection: where the previous request's share ended.
#[derive(Debug, Default)]
pub struct KernelMarks {
    cookie: Option<u64>,
    received: u64,
    written: u64,
    as_sizes: bool,
}

impl KernelMarks {
    /// Marks for a new connection; `as_sizes` under `log_kernel_counters = sizes`.
    pub fn new(as_sizes: bool) -> KernelMarks {
        KernelMarks {
            as_sizes,
            ..KernelMarks::default()
        }
    }

    /// Reads the client socket `fd` at the end of a request. `None` when the kernel refuses
    /// (the log then carries no `kernel` object and the HTTP sizes).
    pub fn read(&mut self, fd: RawFd) -> Option<KernelReading> {
        let counters = match tcp_info::read(fd) {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "log_kernel_counters: TCP_INFO failed");
                return None;
            }
        };
        let cookie = match self.cookie {
            Some(c) => c,
            None => {
                let c = tcp_info::cookie(fd).unwrap_or(0);
                self.cookie = Some(c);
                c
            }
        };
        let written = counters.bytes_written();
        let received = counters
            .bytes_received
            .saturating_sub(tcp_info::unread(fd).unwrap_or(0));
        let reading = KernelReading {
            cookie,
            counters,
            request_bytes: received.saturating_sub(self.received),
            response_bytes: written.saturating_sub(self.written),
            as_sizes: self.as_sizes,
        };
        self.received = received.max(self.received);
        self.written = written;
        Some(reading)
    }
}
