//! What an operator is shown of a target's health (the Admin API's `/upstreams/{u}/health`
//! and the prometheus plugin's `kong_upstream_target_health`): the addresses its name last
//! resolved to, each with its health, as Kong's balancer reports them.

use std::net::IpAddr;

use super::balancer::HealthRegistry;
use super::dns::Answer;
use gangway_config::model::split_target;

/// How a target's addresses are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The target is an IP literal.
    Literal,
    /// The name's last lookup answered.
    Answered,
    /// The name's last lookup failed or found nothing (Kong's `DNS_ERROR`).
    Failed,
    /// The name has not been looked up yet (no request or probe needed it).
    Pending,
}

/// One target's addresses and their health.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// The target's host (name or IP literal).
    pub host: String,
    /// The target's port.
    pub port: u16,
    /// How the addresses are known.
    pub resolution: Resolution,
    /// Each address, with whether it is healthy.
    pub addresses: Vec<(IpAddr, bool)>,
}

impl TargetStatus {
    /// Kong's `dns` field: the record type, or why there is no answer.
    pub fn dns(&self) -> &'static str {
        match self.resolution {
            Resolution::Failed => "dns server error",
            Resolution::Pending => "not resolved yet",
            _ if self.addresses.first().is_some_and(|(ip, _)| ip.is_ipv6()) => "AAAA",
            _ => "A",
        }
    }

    /// True when any address is healthy (a name not looked up yet counts as healthy, as
    /// the balancer tries it).
    pub fn any_healthy(&self) -> bool {
        self.resolution == Resolution::Pending || self.addresses.iter().any(|(_, ok)| *ok)
    }
}

impl HealthRegistry {
    /// The status of `target` (`host:port`) of upstream `upstream`.
    pub fn target_status(&self, upstream: &str, target: &str) -> TargetStatus {
        let (host, port) = split_target(target).unwrap_or_else(|| (target.to_owned(), 0));
        let health = self.get(upstream, target);
        let (resolution, ips) = match host.parse::<IpAddr>() {
            Ok(ip) => (Resolution::Literal, vec![ip]),
            Err(_) => match self.answers.get(&host) {
                Some(Answer::Addresses(ips)) => (Resolution::Answered, ips),
                Some(Answer::Failed) => (Resolution::Failed, Vec::new()),
                None => (Resolution::Pending, Vec::new()),
            },
        };
        let addresses = ips
            .into_iter()
            .map(|ip| (ip, health.is_address_healthy(ip)))
            .collect();
        TargetStatus {
            host,
            port,
            resolution,
            addresses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::health::{Observation, PassivePolicy};
    use gangway_config::model::Healthchecks;

    #[test]
    fn a_literal_is_its_own_address_and_a_name_waits_for_its_lookup() {
        let registry = HealthRegistry::default();
        let literal = registry.target_status("u", "10.0.0.1:80");
        assert_eq!(literal.resolution, Resolution::Literal);
        assert_eq!(literal.addresses, [(IpAddr::from([10, 0, 0, 1]), true)]);
        assert_eq!(literal.dns(), "A");

        let named = registry.target_status("u", "svc.internal:80");
        assert_eq!(named.resolution, Resolution::Pending);
        assert!(named.addresses.is_empty() && named.any_healthy());

        let mut passive = Healthchecks::default().passive;
        passive.unhealthy.tcp_failures = 1;
        let policy = PassivePolicy::from(&passive);
        registry.get("u", "10.0.0.1:80").observe(
            IpAddr::from([10, 0, 0, 1]),
            &policy,
            Observation::TcpFailure,
        );
        let down = registry.target_status("u", "10.0.0.1:80");
        assert_eq!(down.addresses, [(IpAddr::from([10, 0, 0, 1]), false)]);
        assert!(!down.any_healthy());
    }
}
