//! The request facts consistent hashing reads (`hash_on` header, cookie, query arg, ...).

use crate::upstream::balancer::HashInput;

/// The request as consistent hashing sees it.
pub(super) struct RequestFacts<'a> {
    pub(super) head: &'a gangway_http::RequestHead,
    pub(super) buf: &'a [u8],
    pub(super) scratch: &'a gangway_router::MatchScratch,
    pub(super) peer: std::net::SocketAddr,
    /// The authenticated consumer's id, else the credential's (Kong's `hash_on: consumer`).
    pub(super) consumer: Option<gangway_config::model::Id>,
}

fn query_value<'q>(query: &'q [u8], name: &str) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (k == name.as_bytes()).then_some(v)
    })
}

impl HashInput for RequestFacts<'_> {
    fn client_ip(&self) -> String {
        self.peer.ip().to_string()
    }
    fn header(&self, lower_name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, lower_name)
    }
    fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.head
            .header_values(self.buf, "cookie")
            .find_map(|line| {
                line.split(|&b| b == b';').find_map(|c| {
                    let c = c.trim_ascii();
                    let i = c.iter().position(|&b| b == b'=')?;
                    (&c[..i] == name.as_bytes()).then_some(&c[i + 1..])
                })
            })
    }
    fn path(&self) -> &[u8] {
        self.scratch.normalized_path().as_bytes()
    }
    fn query_arg(&self, name: &str) -> Option<&[u8]> {
        let target = self.head.target(self.buf);
        let q = target
            .iter()
            .position(|&b| b == b'?')
            .map(|i| &target[i + 1..])?;
        query_value(q, name)
    }
    fn uri_capture(&self, name: &str) -> Option<&[u8]> {
        let found = match name.parse::<usize>() {
            Ok(i) => self.scratch.capture(i),
            Err(_) => self.scratch.named_capture(name),
        };
        found.map(str::as_bytes)
    }
    fn consumer(&self) -> Option<gangway_config::model::Id> {
        self.consumer
    }
}
