//! Target health: passive checks judge targets by the traffic they carry, active checks
//! ([`super::active`]) by probes.
//!
//! As in Kong, counters are consecutive and shared by both kinds of check: a success resets
//! the failure counters, a failure the success counter. A target that passive checks mark
//! unhealthy gets no more traffic, so only active checks or an operator (the Admin API's
//! `.../healthy`) bring it back.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use std::time::Duration;

use gangway_config::model::{ActiveHealthcheck, PassiveHealthcheck};

/// Shared health state of one target.
#[derive(Debug)]
pub struct TargetHealth {
    healthy: AtomicBool,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    http_failures: AtomicU32,
    successes: AtomicU32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth {
            healthy: AtomicBool::new(true),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }
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
            timeout: Duration::from_secs_f64(a.timeout.max(0.001)),
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

impl TargetHealth {
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
                (limit > 0 && n >= limit && !self.healthy.swap(true, Ordering::Relaxed))
                    .then_some(true)
            }
            Observation::Status(_) => None,
        }
    }

    /// True unless a check marked the target down.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets health directly (Admin API, active checks, tests).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            self.reset();
        }
    }

    fn reset(&self) {
        self.successes.store(0, Ordering::Relaxed);
        self.tcp_failures.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
        self.http_failures.store(0, Ordering::Relaxed);
    }

    /// Records one observation; returns true if it turned the target unhealthy.
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

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::model::Healthchecks;

    fn policy(tcp: u32, http: u32) -> PassivePolicy {
        let mut p = Healthchecks::default().passive;
        p.unhealthy.tcp_failures = tcp;
        p.unhealthy.http_failures = http;
        PassivePolicy::from(&p)
    }

    #[test]
    fn consecutive_failures_turn_a_target_unhealthy() {
        let h = TargetHealth::default();
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
        let h = TargetHealth::default();
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

    #[test]
    fn active_checks_are_off_without_an_interval() {
        assert!(ActivePolicy::from_config(&Healthchecks::default().active).is_none());
    }

    #[test]
    fn zero_thresholds_disable_checks() {
        let h = TargetHealth::default();
        let p = policy(0, 0);
        for _ in 0..100 {
            h.observe(&p, Observation::TcpFailure);
            h.observe(&p, Observation::Status(500));
        }
        assert!(h.is_healthy());
    }
}
