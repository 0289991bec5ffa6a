//! The connection policy a config and the settings call for (see
//! [`gangway_net::conn_policy`]): what the kernel's IP guard enforces, or the accept loop
//! without it.
//!
//! - A global `ip-restriction` instance (no route, service or consumer; enabled) guards
//!   every proxy port with its deny and allow lists. A source it refuses then sees its
//!   packets dropped rather than Kong's 403: the point is to spend nothing on it. The plugin
//!   still runs in the request phases, so the answer is the same wherever the guard is not.
//! - `max_connections_per_ip` caps each proxy port.
//! - `admin_allow_cidrs` is an allow list on every Admin API port.
//!
//! A listener with `proxy_protocol` is left out, and so are the proxy ports' lists when
//! `trusted_ips` is set: there the peer is a load balancer, and the client address the
//! plugin judges is not known until the PROXY header or a forwarded header is read.

use gangway_config::Config;
use gangway_config::settings::Settings;
use gangway_net::conn_policy::{ConnectionPolicy, PortPolicy, parse_ip_or_cidr};
use gangway_net::ip_set::IpSet;
use ipnet::IpNet;
use serde_json::Value;

/// The policy for `config` under `settings`.
pub fn connection_policy(config: &Config, settings: &Settings) -> ConnectionPolicy {
    let (deny, allow) = if settings.trusted_ips.is_empty() {
        global_ip_restriction(config)
    } else {
        (Vec::new(), Vec::new())
    };
    let (deny, allow): (IpSet, IpSet) = (deny.into(), allow.into());
    // Every listener port is in the policy, open ones too: the kernel's connection tracker
    // counts the connections of the ports it lists.
    let mut policy = ConnectionPolicy::default();
    for listen in &settings.proxy_listen {
        let rules = if listen.proxy_protocol {
            PortPolicy::default()
        } else {
            PortPolicy {
                deny: deny.clone(),
                allow: allow.clone(),
                max_conn_per_ip: settings.max_connections_per_ip,
            }
        };
        policy.ports.insert(listen.addr.port(), rules);
    }
    for listen in &settings.admin_listen {
        let allow = if listen.proxy_protocol {
            Vec::new()
        } else {
            settings.admin_allow_cidrs.clone()
        }
        .into();
        policy.ports.insert(
            listen.addr.port(),
            PortPolicy {
                allow,
                ..PortPolicy::default()
            },
        );
    }
    policy
}

/// The deny and allow lists of the enabled global ip-restriction instance, if any.
fn global_ip_restriction(config: &Config) -> (Vec<IpNet>, Vec<IpNet>) {
    let global = config.plugins.iter().find(|p| {
        p.name == "ip-restriction"
            && p.enabled
            && p.route.is_none()
            && p.service.is_none()
            && p.consumer.is_none()
    });
    let Some(plugin) = global else {
        return (Vec::new(), Vec::new());
    };
    let list = |field: &str| -> Vec<IpNet> {
        match plugin.config.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(parse_ip_or_cidr)
                .collect(),
            _ => Vec::new(),
        }
    };
    (list("deny"), list("allow"))
}
