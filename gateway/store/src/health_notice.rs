//! Target health set through one node's Admin API reaches every node on the database, as
//! Kong broadcasts `balancer:post_health` to its cluster: a `NOTIFY gangway_health` that each
//! node's change follower applies. Like Kong's cluster events, a node that is disconnected
//! when the notice goes out does not get it.

use std::net::IpAddr;

use gangway_proxy::Gateway;
use serde::Deserialize;
use tracing::{info, warn};

/// The channel the notices travel on.
pub const CHANNEL: &str = "gangway_health";

/// One health change: every address of the target (`ip` absent) or one address.
#[derive(Debug, Deserialize, PartialEq)]
pub struct HealthNotice {
    /// The upstream's name.
    pub upstream: String,
    /// The target, `host:port`.
    pub target: String,
    /// One address of the target, or all of them.
    pub ip: Option<IpAddr>,
    /// The health set.
    pub healthy: bool,
}

/// The notice's payload.
pub fn payload(upstream: &str, target: &str, ip: Option<IpAddr>, healthy: bool) -> String {
    serde_json::json!({"upstream": upstream, "target": target, "ip": ip, "healthy": healthy})
        .to_string()
}

/// Applies a notice's payload to this node's health registry.
pub fn apply(gateway: &Gateway, payload: &str) {
    match serde_json::from_str::<HealthNotice>(payload) {
        Ok(n) => {
            gateway
                .shared
                .health
                .get(&n.upstream, &n.target)
                .set_healthy(n.ip, n.healthy);
            info!(upstream = %n.upstream, target = %n.target, address = ?n.ip, healthy = n.healthy, "target health set by another node");
        }
        Err(e) => warn!(error = %e, %payload, "ignoring a malformed health notice"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_as_json() {
        let ip = Some(IpAddr::from([10, 0, 0, 3]));
        let text = payload("pool", "svc.internal:80", ip, false);
        assert_eq!(
            serde_json::from_str::<HealthNotice>(&text).expect("parses"),
            HealthNotice {
                upstream: "pool".into(),
                target: "svc.internal:80".into(),
                ip,
                healthy: false,
            }
        );
    }
}
