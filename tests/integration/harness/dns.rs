//! A tiny authoritative DNS server on UDP loopback: answers A queries for one name with
//! addresses and a TTL the test can change, counts them, and answers everything else with no
//! records. Enough to watch gangway honour record TTLs.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The addresses served and their TTL; `None` for silence.
type Served = Option<(Vec<Ipv4Addr>, u32)>;

/// A running server; stops on drop.
pub struct DnsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A queries received for the served name.
    pub queries: Arc<AtomicUsize>,
    answer: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Serves `name` (lowercase, no trailing dot) as `ip` with `ttl` seconds.
    pub fn start(name: &str, ip: Ipv4Addr, ttl: u32) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let queries = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(Some((vec![ip], ttl))));
        let stop = Arc::new(AtomicBool::new(false));
        let wire_name = encode_name(name);
        let (q, a, s) = (queries.clone(), answer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let current = a.lock().expect("not poisoned").clone();
                if let Some(reply) = respond(&buf[..n], &wire_name, current, &q) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        DnsServer {
            addr,
            queries,
            answer,
            stop,
        }
    }

    /// From now on, answer with `ip` and `ttl`, or (`None`) not at all.
    pub fn set_answer(&self, answer: Option<(Ipv4Addr, u32)>) {
        *self.answer.lock().expect("not poisoned") = answer.map(|(ip, ttl)| (vec![ip], ttl));
    }

    /// From now on, answer with every address of `ips` (in that order) and `ttl`.
    pub fn set_answers(&self, ips: &[Ipv4Addr], ttl: u32) {
        *self.answer.lock().expect("not poisoned") = Some((ips.to_vec(), ttl));
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// The reply to one query; `None` (silence) for malformed packets or when told not to
/// answer.
fn respond(query: &[u8], served: &[u8], answer: Served, count: &AtomicUsize) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let name = query.get(12..=end)?.to_ascii_lowercase();
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    let question = query.get(12..end + 5)?;
    let ours = name == served && qtype == 1;
    if ours {
        count.fetch_add(1, Ordering::Relaxed);
    }
    let (ips, ttl) = match (ours, answer) {
        (true, None) => return None,
        (true, Some(a)) => a,
        (false, _) => (Vec::new(), 0),
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&header[..2]);
    // QR, RD copied, RA; NOERROR.
    out.extend_from_slice(&[0x81 | (header[2] & 0x01), 0x80]);
    out.extend_from_slice(&[0, 1, 0, ips.len() as u8, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in ips {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
