//! Sockets behind one owned-buffer seam ([`stream::Stream`]) with two backends: io_uring
//! (`uring`) and epoll (`epoll`, tokio). TLS (`tls`) wraps either backend's stream.

pub mod stream;
pub mod tls;
