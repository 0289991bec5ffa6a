//! Target health: passive checks judge a target's addresses by the traffic they carry,
//! active checks ([`super::active`]) by probes.
//!
//! As in Kong, health is kept per address: a target named by a host name has one state for
//! each address the name resolved to, and the target is healthy while any of them is (an IP
//! literal is its only address). Counters are consecutive and shared by both kinds of check:
//! a success resets the failure counters, a failure the success counter. An address that
//! passive checks mark unhealthy gets no more traffic, so only active checks or an operator
//! (the Admin API's `.../healthy`) bring it back.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::load::TargetLoad;
use gangway_config::model::{ActiveHealthcheck, PassiveHealthcheck};

/// How many addresses a target remembers. A name whose answers keep changing (a cloud load
/// balancer's) would otherwise grow the list for ever; past this, the oldest is forgotten.
const MAX_ADDRESSES: usize = 64;

/// Health of one address of a target.
#[derive(Debug)]
pub struct AddressHealth {
    /// The address.
    pub ip: IpAddr,
    healthy: AtomicBool,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    http_failures: AtomicU32,
    successes: AtomicU32,
}

/// Health of one target: its addresses' states, and whether any of them is healthy; and its
/// load.
#[derive(Debug)]
pub struct TargetHealth {
    addresses: ArcSwap<Vec<Arc<AddressHealth>>>,
    /// Held while the address list or `any_healthy` changes (rare: a new address, or an
    /// address changing state), so the last writer always sees every address's state.
    changing: Mutex<()>,
    any_healthy: AtomicBool,
    /// For a name: told when its last healthy address goes down, so the health checker
    /// looks its name up again (the balancer no longer picks it, so no request would).
    all_down: Option<Arc<Notify>>,
    /// What the least-connections and latency algorithms weigh the target by.
    pub load: Arc<TargetLoad>,
}

/// What happened on one attempt to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Connection refused, reset, or unusable.
    TcpFailure,
    /// Connect or read timed out.
    Timeout,
    /// A response with this status.
    Status(u16),
}

/// Passive thresholds (0 disables a counter).
#[derive(Debug, Clone, Default)]
pub struct PassivePolicy {
    unhealthy_statuses: Vec<u16>,
    tcp_failures: u32,
    timeouts: u32,
    http_failures: u32,
}

impl From<&PassiveHealthcheck> for PassivePolicy {
    fn from(p: &PassiveHealthcheck) -> Self {
        PassivePolicy {
            unhealthy_statuses: p.unhealthy.http_statuses.clone(),
            tcp_failures: p.unhealthy.tcp_failures,
            timeouts: p.unhealthy.timeouts,
            http_failures: p.unhealthy.http_failures,
        }
    }
}

/// How active probes are made and judged (Kong's `healthchecks.active`).
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    /// `tcp` (connect only), `http` or `https` (a GET of `http_path`).
    pub kind: ProbeKind,
    /// Per probe.
    pub timeout: Duration,
    /// Probes in flight at once for this upstream.
    pub concurrency: usize,
    /// The path probed.
    pub http_path: String,
    /// Verify the target's certificate on `https` probes.
    pub verify_certificate: bool,
    /// SNI for `https` probes (default: the target's host).
    pub sni: Option<String>,
    /// Extra probe headers.
    pub headers: Vec<(String, String)>,
    /// How often healthy targets are probed; `None` = not probed.
    pub healthy_interval: Option<Duration>,
    /// How often unhealthy targets are probed; `None` = not probed.
    pub unhealthy_interval: Option<Duration>,
    healthy_statuses: Vec<u16>,
    successes: u32,
    unhealthy_statuses: Vec<u16>,
    tcp_failures: u32,
    timeouts: u32,
    http_failures: u32,
}

/// The kind of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP GET.
    Http,
    /// An HTTP GET over TLS.
    Https,
}

impl ActivePolicy {
    /// The policy of `a`, or `None` when neither interval is set (Kong's default: active
    /// checks off). gRPC probes are made as HTTP ones.
    pub fn from_config(a: &ActiveHealthcheck) -> Option<ActivePolicy> {
        let every = |s: Option<u32>| s.filter(|&s| s > 0).map(|s| Duration::from_secs(s.into()));
        let (healthy_interval, unhealthy_interval) =
            (every(a.healthy.interval), every(a.unhealthy.interval));
        if healthy_interval.is_none() && unhealthy_interval.is_none() {
            return None;
        }
        let kind = match a.kind.as_str() {
            "tcp" => ProbeKind::Tcp,
            "https" | "grpcs" => ProbeKind::Https,
            _ => ProbeKind::Http,
        };
        Some(ActivePolicy {
            kind,
            // Kong's schema sets no upper bound; a Duration past its range panics.
            timeout: Duration::from_secs_f64(a.timeout.clamp(0.001, 3_600.0)),
            concurrency: (a.concurrency as usize).max(1),
            http_path: a.http_path.clone(),
            verify_certificate: a.https_verify_certificate,
            sni: a.https_sni.clone(),
            headers: a
                .headers
                .iter()
                .flatten()
                .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                .collect(),
            healthy_interval,
            unhealthy_interval,
            healthy_statuses: a.healthy.http_statuses.clone(),
            successes: a.healthy.successes,
            unhealthy_statuses: a.unhealthy.http_statuses.clone(),
            tcp_failures: a.unhealthy.tcp_failures,
            timeouts: a.unhealthy.timeouts,
            http_failures: a.unhealthy.http_failures,
        })
    }
}

impl AddressHealth {
    fn new(ip: IpAddr) -> AddressHealth {
        AddressHealth {
            ip,
            healthy: AtomicBool::new(true),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }

    /// Records an active probe's result; returns the new health when it changed.
    pub fn observe_active(&self, policy: &ActivePolicy, what: Observation) -> Option<bool> {
        let failure = |counter: &AtomicU32, limit: u32| {
            self.successes.store(0, Ordering::Relaxed);
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            (limit > 0 && n >= limit && self.healthy.swap(false, Ordering::Relaxed))
                .then_some(false)
        };
        match what {
            Observation::TcpFailure => failure(&self.tcp_failures, policy.tcp_failures),
            Observation::Timeout => failure(&self.timeouts, policy.timeouts),
            Observation::Status(s) if policy.unhealthy_statuses.contains(&s) => {
                failure(&self.http_failures, policy.http_failures)
            }
            Observation::Status(s)
                if policy.kind == ProbeKind::Tcp || policy.healthy_statuses.contains(&s) =>
            {
                self.tcp_failures.store(0, Ordering::Relaxed);
                self.timeouts.store(0, Ordering::Relaxed);
                self.http_failures.store(0, Ordering::Relaxed);
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                let limit = policy.successes;
                if limit == 0 || n < limit {
                    return None;
                }
                // A run counts once: the next time down, coming back takes a full run again.
                self.successes.store(0, Ordering::Relaxed);
                (!self.healthy.swap(true, Ordering::Relaxed)).then_some(true)
            }
            Observation::Status(_) => None,
        }
    }

    /// True unless a check marked the address down.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets health directly (Admin API, active checks, tests).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.reset();
    }

    fn reset(&self) {
        // Loads first: a success is the common case and its counters are already zero, so
        // the workers do not all write this cache line on every response.
        for counter in [
            &self.successes,
            &self.tcp_failures,
            &self.timeouts,
            &self.http_failures,
        ] {
            if counter.load(Ordering::Relaxed) != 0 {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Records one observation; returns true if it turned the address unhealthy.
    pub fn observe(&self, policy: &PassivePolicy, what: Observation) -> bool {
        let (counter, limit) = match what {
            Observation::TcpFailure => (&self.tcp_failures, policy.tcp_failures),
            Observation::Timeout => (&self.timeouts, policy.timeouts),
            Observation::Status(s) if policy.unhealthy_statuses.contains(&s) => {
                (&self.http_failures, policy.http_failures)
            }
            Observation::Status(_) => {
                self.reset();
                return false;
            }
        };
        // A failure breaks a run of successes, as an active probe's does.
        if self.successes.load(Ordering::Relaxed) != 0 {
            self.successes.store(0, Ordering::Relaxed);
        }
        if limit == 0 {
            return false;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit && self.healthy.swap(false, Ordering::Relaxed) {
            return true;
        }
        false
    }
}

impl TargetHealth {
    /// A target named by an IP literal: that is its only address.
    pub fn literal(ip: IpAddr) -> TargetHealth {
        TargetHealth::with(vec![Arc::new(AddressHealth::new(ip))], None)
    }

    /// A target named by a host name: its addresses join as the name resolves to them.
    /// `all_down` is told when the last healthy one goes down.
    pub fn named(all_down: Arc<Notify>) -> TargetHealth {
        TargetHealth::with(Vec::new(), Some(all_down))
    }

    fn with(addresses: Vec<Arc<AddressHealth>>, all_down: Option<Arc<Notify>>) -> TargetHealth {
        TargetHealth {
            addresses: ArcSwap::from_pointee(addresses),
            changing: Mutex::new(()),
            any_healthy: AtomicBool::new(true),
            all_down,
            load: Arc::default(),
        }
    }

    /// True for a target named by a host name.
    pub fn is_named(&self) -> bool {
        self.all_down.is_some()
    }

    /// True while any address is healthy, or none is known yet (a name not resolved yet
    /// must be tried to learn its addresses).
    pub fn is_healthy(&self) -> bool {
        self.any_healthy.load(Ordering::Relaxed)
    }

    /// The addresses known so far, oldest first.
    pub fn addresses(&self) -> Arc<Vec<Arc<AddressHealth>>> {
        self.addresses.load_full()
    }

    /// The state of `ip`, if it is a known address.
    pub fn find(&self, ip: IpAddr) -> Option<Arc<AddressHealth>> {
        self.addresses.load().iter().find(|a| a.ip == ip).cloned()
    }

    /// True unless `ip` is known and marked down (an address the name only now resolved
    /// to starts healthy).
    pub fn is_address_healthy(&self, ip: IpAddr) -> bool {
        self.addresses
            .load()
            .iter()
            .find(|a| a.ip == ip)
            .is_none_or(|a| a.is_healthy())
    }

    /// The state of `ip`, added (healthy) when the name resolved to a new address.
    pub fn address(&self, ip: IpAddr) -> Arc<AddressHealth> {
        if let Some(known) = self.find(ip) {
            return known;
        }
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.addresses.load_full();
        if let Some(known) = current.iter().find(|a| a.ip == ip) {
            return known.clone();
        }
        let added = Arc::new(AddressHealth::new(ip));
        let mut next: Vec<_> = current.iter().cloned().collect();
        if next.len() >= MAX_ADDRESSES {
            next.remove(0);
        }
        next.push(added.clone());
        self.addresses.store(Arc::new(next));
        self.any_healthy.store(true, Ordering::Relaxed);
        added
    }

    /// After an address changed state: whether any address is healthy now.
    fn recount(&self) {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let addresses = self.addresses.load();
        let any = addresses.is_empty() || addresses.iter().any(|a| a.is_healthy());
        let was = self.any_healthy.swap(any, Ordering::Relaxed);
        if let (true, false, Some(all_down)) = (was, any, &self.all_down) {
            all_down.notify_one();
        }
    }

    /// Records a proxied request's outcome at `ip`; returns true if it turned that address
    /// unhealthy.
    pub fn observe(&self, ip: IpAddr, policy: &PassivePolicy, what: Observation) -> bool {
        let turned = self.address(ip).observe(policy, what);
        if turned {
            self.recount();
        }
        turned
    }

    /// Records an active probe of `ip`; returns that address's new health when it changed.
    pub fn observe_active(
        &self,
        ip: IpAddr,
        policy: &ActivePolicy,
        what: Observation,
    ) -> Option<bool> {
        let changed = self.address(ip).observe_active(policy, what);
        if changed.is_some() {
            self.recount();
        }
        changed
    }

    /// Sets `ip`'s health, or every known address's with `None` (the Admin API).
    pub fn set_healthy(&self, ip: Option<IpAddr>, healthy: bool) {
        match ip {
            Some(ip) => self.address(ip).set_healthy(healthy),
            None => self
                .addresses
                .load()
                .iter()
                .for_each(|a| a.set_healthy(healthy)),
        }
        self.recount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::model::Healthchecks;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn policy(tcp: u32, http: u32) -> PassivePolicy {
        let mut p = Healthchecks::default().passive;
        p.unhealthy.tcp_failures = tcp;
        p.unhealthy.http_failures = http;
        PassivePolicy::from(&p)
    }

    #[test]
    fn consecutive_failures_turn_a_target_unhealthy() {
        let h = AddressHealth::new(LOCAL);
        let p = policy(2, 3);
        assert!(!h.observe(&p, Observation::TcpFailure));
        assert!(h.observe(&p, Observation::TcpFailure));
        assert!(!h.is_healthy());
        h.set_healthy(true);
        assert!(!h.observe(&p, Observation::Status(500)));
        assert!(
            !h.observe(&p, Observation::Status(200)),
            "success resets the count"
        );
        assert!(!h.observe(&p, Observation::Status(500)));
        assert!(!h.observe(&p, Observation::Status(503)));
        assert!(h.observe(&p, Observation::Status(429)));
    }

    fn active(successes: u32, http_failures: u32) -> ActivePolicy {
        let mut a = Healthchecks::default().active;
        a.healthy.interval = Some(1);
        a.healthy.successes = successes;
        a.unhealthy.http_failures = http_failures;
        a.unhealthy.tcp_failures = 2;
        ActivePolicy::from_config(&a).expect("enabled")
    }

    #[test]
    fn active_probes_take_targets_down_and_bring_them_back() {
        let h = AddressHealth::new(LOCAL);
        let p = active(2, 2);
        assert_eq!(h.observe_active(&p, Observation::Status(500)), None);
        assert_eq!(h.observe_active(&p, Observation::Status(500)), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.observe_active(&p, Observation::Status(200)), None);
        assert_eq!(h.observe_active(&p, Observation::Status(200)), Some(true));
        assert!(h.is_healthy());
        // A failure between successes starts the count again.
        h.observe_active(&p, Observation::TcpFailure);
        assert_eq!(h.observe_active(&p, Observation::TcpFailure), Some(false));
        h.observe_active(&p, Observation::Status(200));
        h.observe_active(&p, Observation::TcpFailure);
        assert_eq!(h.observe_active(&p, Observation::Status(200)), None);
        assert_eq!(h.observe_active(&p, Observation::Status(200)), Some(true));
    }

    /// Probes brought the address back; later, traffic takes it down. Coming back again
    /// takes `successes` probes in a row, not the one after the last run's.
    #[test]
    fn coming_back_after_passive_failures_takes_a_full_run_of_probes() {
        let h = AddressHealth::new(LOCAL);
        let probes = active(3, 1);
        let traffic = policy(1, 0);
        assert_eq!(
            h.observe_active(&probes, Observation::Status(500)),
            Some(false)
        );
        for _ in 0..2 {
            assert_eq!(h.observe_active(&probes, Observation::Status(200)), None);
        }
        assert_eq!(
            h.observe_active(&probes, Observation::Status(200)),
            Some(true)
        );
        assert!(
            h.observe(&traffic, Observation::TcpFailure),
            "down by traffic"
        );
        for _ in 0..2 {
            assert_eq!(h.observe_active(&probes, Observation::Status(200)), None);
        }
        assert_eq!(
            h.observe_active(&probes, Observation::Status(200)),
            Some(true)
        );
        // So it is after an Admin API `unhealthy`, whatever probes passed before it.
        assert_eq!(h.observe_active(&probes, Observation::Status(200)), None);
        h.set_healthy(false);
        for _ in 0..2 {
            assert_eq!(h.observe_active(&probes, Observation::Status(200)), None);
        }
        assert_eq!(
            h.observe_active(&probes, Observation::Status(200)),
            Some(true)
        );
    }

    #[test]
    fn active_checks_are_off_without_an_interval() {
        assert!(ActivePolicy::from_config(&Healthchecks::default().active).is_none());
    }

    #[test]
    fn zero_thresholds_disable_checks() {
        let h = AddressHealth::new(LOCAL);
        let p = policy(0, 0);
        for _ in 0..100 {
            h.observe(&p, Observation::TcpFailure);
            h.observe(&p, Observation::Status(500));
        }
        assert!(h.is_healthy());
    }

    #[test]
    fn a_target_is_healthy_while_any_of_its_addresses_is() {
        let all_down = Arc::new(Notify::new());
        let t = TargetHealth::named(all_down.clone());
        assert!(t.is_healthy(), "a name not resolved yet is tried");
        let p = policy(1, 0);
        t.address(ip(1));
        t.address(ip(2));
        assert!(t.observe(ip(1), &p, Observation::TcpFailure));
        assert!(!t.is_address_healthy(ip(1)));
        assert!(t.is_address_healthy(ip(2)));
        assert!(t.is_healthy(), "the other address still serves");
        assert!(t.observe(ip(2), &p, Observation::TcpFailure));
        assert!(!t.is_healthy(), "every address is down");
        let told = futures_lite_poll(all_down.notified());
        assert!(told, "the health checker is told to look the name up again");
        assert!(
            t.is_address_healthy(ip(3)),
            "an unknown address is not down"
        );
        t.address(ip(3));
        assert!(t.is_healthy(), "the name now resolves to a new address");

        t.set_healthy(None, false);
        assert!(!t.is_healthy());
        t.set_healthy(Some(ip(2)), true);
        assert!(t.is_healthy());
        assert_eq!(
            t.addresses()
                .iter()
                .map(|a| (a.ip, a.is_healthy()))
                .collect::<Vec<_>>(),
            [(ip(1), false), (ip(2), true), (ip(3), false)]
        );
    }

    #[test]
    fn a_literal_target_is_its_only_address() {
        let t = TargetHealth::literal(LOCAL);
        let p = policy(2, 0);
        assert!(!t.observe(LOCAL, &p, Observation::TcpFailure));
        assert!(t.observe(LOCAL, &p, Observation::TcpFailure));
        assert!(!t.is_healthy());
        let a = active(1, 1);
        assert_eq!(
            t.observe_active(LOCAL, &a, Observation::Status(200)),
            Some(true)
        );
        assert!(t.is_healthy());
        assert_eq!(t.addresses().len(), 1);
    }

    #[test]
    fn a_target_forgets_its_oldest_address_past_the_cap() {
        let t = TargetHealth::named(Arc::new(Notify::new()));
        for n in 0..=MAX_ADDRESSES {
            t.address(IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]));
        }
        let known = t.addresses();
        assert_eq!(known.len(), MAX_ADDRESSES);
        assert_eq!(known[0].ip, IpAddr::from([10, 0, 0, 1]));
    }

    /// Polls `future` once: true when it is ready at once (a stored `Notify` permit).
    fn futures_lite_poll(future: impl std::future::Future<Output = ()>) -> bool {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx).is_ready()
    }
}
