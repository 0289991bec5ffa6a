//! The senders' name resolver.
//!
//! ureq resolves the endpoint before it looks in its pool of kept-alive connections, and
//! with a resolve timeout (`connect_timeout`) its default resolver does so on a thread it
//! spawns: every post cost a thread. This one answers an IP address without a lookup, and
//! keeps a name's addresses for [`RESOLVED_FOR`], far less than a kept-alive connection
//! stays on the address it was opened to; a lookup itself still goes through ureq's
//! resolver, under the timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a name's addresses are used before the next lookup.
const RESOLVED_FOR: Duration = Duration::from_secs(1);

/// A sender's resolver: one endpoint, so one remembered answer.
#[derive(Debug, Default)]
pub(super) struct EndpointResolver {
    last: Mutex<Option<Resolved>>,
}

#[derive(Debug)]
struct Resolved {
    authority: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

impl Resolver for EndpointResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal_address(uri) {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        let authority = uri.authority().map_or("", |a| a.as_str());
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = last
            .as_ref()
            .filter(|r| r.authority == authority && r.at.elapsed() < RESOLVED_FOR)
        {
            return Ok(known.addrs.clone());
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        *last = Some(Resolved {
            authority: authority.to_string(),
            at: Instant::now(),
            addrs: addrs.clone(),
        });
        Ok(addrs)
    }
}

/// The address of a URI whose host is an IP address (`http://10.0.0.5:8080`,
/// `https://[::1]`), with the scheme's port when it names none.
fn literal_address(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        (None, _) => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &EndpointResolver, uri: &str) -> Vec<SocketAddr> {
        let uri: Uri = uri.parse().expect("uri");
        let config = ureq::config::Config::default();
        r.resolve(&uri, &config, NextTimeout::default())
            .expect("resolved")
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn an_ip_address_is_its_own_answer() {
        let r = EndpointResolver::default();
        assert_eq!(
            resolve(&r, "http://10.1.2.3:9000/log"),
            ["10.1.2.3:9000".parse::<SocketAddr>().expect("address")]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/log"),
            ["[::1]:443".parse::<SocketAddr>().expect("address")]
        );
        assert_eq!(
            resolve(&r, "http://127.0.0.1/"),
            ["127.0.0.1:80".parse::<SocketAddr>().expect("address")]
        );
        assert!(r.last.lock().expect("lock").is_none(), "no lookup was made");
    }

    #[test]
    fn a_name_is_looked_up_once_a_second_at_most() {
        let r = EndpointResolver::default();
        let first = resolve(&r, "http://localhost:8080/");
        assert!(
            first
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{first:?}"
        );
        let at = r
            .last
            .lock()
            .expect("lock")
            .as_ref()
            .expect("remembered")
            .at;
        assert_eq!(resolve(&r, "http://localhost:8080/"), first);
        assert_eq!(
            r.last
                .lock()
                .expect("lock")
                .as_ref()
                .expect("remembered")
                .at,
            at,
            "the second call used the remembered answer"
        );
        // Another port is another authority: looked up, not mixed up.
        let other = resolve(&r, "http://localhost:9090/");
        assert!(other.iter().all(|a| a.port() == 9090), "{other:?}");
    }
}
