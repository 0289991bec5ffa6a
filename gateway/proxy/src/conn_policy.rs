//! The connection policy a config and the settings call for (see
//! [`gangway_net::conn_policy`]): what the kernel's IP guard enforces, or the accept loop
//! without it.
//!
//! - A global `ip-restriction` instance (no route, service or consumer; enabled) guards
//!   every proxy port with its deny and allow lists. A source it refuses then sees its
//!   packets dropped rather than Kong's 403: the point is to spend nothing on it. The plugin
//!   still runs in the request phases, so the answer is the same wherever the guard is not.
//! - `max_connections_per_ip` caps each proxy port.
//! - `admin_allow_cidrs` is an allow list on every Admin API port, and
//!   `cluster_allow_cidrs` on every `cluster_listen` port of a control plane.
//!
//! A listener with `proxy_protocol` is left out, and so are the proxy ports' lists when
//! `trusted_ips` is set: there the peer is a load balancer, and the client address the
//! plugin judges is not known until the PROXY header or a forwarded header is read.

use gangway_config::Config;
use gangway_config::settings::{ListenAddr, Settings};
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
    allow_only(
        &mut policy,
        &settings.admin_listen,
        &settings.admin_allow_cidrs,
    );
    allow_only(
        &mut policy,
        settings.cluster_listeners(),
        &settings.cluster_allow_cidrs,
    );
    policy
}

/// Puts `allow` on the ports of `listeners` (none on a `proxy_protocol` one). The guard
/// judges by port: a port an earlier kind of listener holds too keeps that one's rules, so
/// its clients never meet this list (settings refuse such a port when `allow` is not
/// empty).
fn allow_only(policy: &mut ConnectionPolicy, listeners: &[ListenAddr], allow: &[IpNet]) {
    for listen in listeners {
        let allow = if listen.proxy_protocol {
            Vec::new()
        } else {
            allow.to_vec()
        }
        .into();
        policy
            .ports
            .entry(listen.addr.port())
            .or_insert(PortPolicy {
                allow,
                ..PortPolicy::default()
            });
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::settings::Role;
    use gangway_net::conn_policy::Refusal;

    fn listen(spec: &str) -> Vec<ListenAddr> {
        gangway_config::settings::listen::parse_list(spec).expect("test literal")
    }

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("test literal")
    }

    fn settings(role: Role) -> Settings {
        Settings {
            role,
            proxy_listen: listen("0.0.0.0:8000"),
            admin_listen: listen("0.0.0.0:8001"),
            cluster_listen: listen("0.0.0.0:8005, [::]:8006 proxy_protocol"),
            cluster_allow_cidrs: vec!["10.0.0.0/8".parse().expect("test literal")],
            ..Settings::default()
        }
    }

    #[test]
    fn a_control_plane_guards_its_cluster_ports_with_their_allow_list() {
        let policy = connection_policy(&Config::default(), &settings(Role::ControlPlane));
        let cluster = &policy.ports[&8005];
        assert_eq!(cluster.check_lists(ip("10.1.2.3")), Ok(()));
        assert_eq!(
            cluster.check_lists(ip("192.0.2.1")),
            Err(Refusal::NotAllowed)
        );
        // Behind a load balancer the peer is not the client: no list.
        assert!(policy.ports[&8006].is_open());
        // The other ports keep their own (empty) lists.
        assert!(policy.ports[&8000].is_open());
        assert!(policy.ports[&8001].is_open());
    }

    #[test]
    fn a_cluster_port_shared_with_the_proxy_keeps_the_proxy_s_rules() {
        let settings = Settings {
            cluster_listen: listen("0.0.0.0:8000"),
            ..settings(Role::ControlPlane)
        };
        let policy = connection_policy(&Config::default(), &settings);
        assert!(policy.ports[&8000].is_open());
    }

    #[test]
    fn an_open_admin_port_shared_with_the_proxy_keeps_the_proxy_s_cap() {
        let settings = Settings {
            admin_listen: listen("10.0.0.1:8000"),
            max_connections_per_ip: 2,
            ..settings(Role::Traditional)
        };
        let policy = connection_policy(&Config::default(), &settings);
        assert_eq!(policy.ports[&8000].max_conn_per_ip, 2);
    }

    #[test]
    fn other_roles_leave_the_cluster_ports_alone() {
        for role in [Role::Traditional, Role::DataPlane] {
            let policy = connection_policy(&Config::default(), &settings(role));
            assert!(!policy.ports.contains_key(&8005), "{role:?}");
            assert!(!policy.ports.contains_key(&8006), "{role:?}");
        }
    }
}
