//! Passive health checks: targets are judged by the traffic they carry.
//!
//! As in Kong, counters are consecutive: a success resets the failure counters. A target that
//! passive checks mark unhealthy gets no more traffic, so only active checks or an operator
//! (the Admin API's `.../healthy`) bring it back.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::config::model::PassiveHealthcheck;

/// Shared health state of one target.
#[derive(Debug)]
pub struct TargetHealth {
    healthy: AtomicBool,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    http_failures: AtomicU32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth {
            healthy: AtomicBool::new(true),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
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

impl TargetHealth {
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
    use crate::config::model::Healthchecks;

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
