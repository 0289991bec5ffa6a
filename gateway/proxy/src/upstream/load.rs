//! What Kong's `least-connections` and `latency` algorithms weigh a target by: requests in
//! flight to it, and a moving average of its response time. Kept with the target's health,
//! so every worker shares it and a reload keeps it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kong's `DECAY_TIME`: how fast an old response time fades, seconds.
const DECAY_SECONDS: f64 = 10.0;

/// One target's load.
#[derive(Debug, Default)]
pub struct TargetLoad {
    /// Requests in flight to the target, counted while least-connections balances.
    active: AtomicU32,
    latency: Mutex<Ewma>,
}

/// An exponentially weighted moving average of response times, fading with time since its
/// last sample (Kong's `decay_ewma`).
#[derive(Debug, Default)]
struct Ewma {
    seconds: f64,
    touched: Option<Instant>,
}

impl Ewma {
    /// The average as of `now` with `sample` weighed in: the older the last sample, the more
    /// `sample` counts. Kong scores a target with a sample of 0, so an idle one fades back
    /// into use.
    fn at(&self, now: Instant, sample: f64) -> f64 {
        let Some(touched) = self.touched else {
            return sample;
        };
        let elapsed = now.saturating_duration_since(touched).as_secs_f64();
        let kept = (-elapsed / DECAY_SECONDS).exp();
        self.seconds * kept + sample * (1.0 - kept)
    }
}

impl TargetLoad {
    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Requests in flight.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// The target's latency score as of `now` (seconds; lower is better).
    pub fn latency(&self, now: Instant) -> f64 {
        self.ewma().at(now, 0.0)
    }

    /// Weighs in one response time.
    pub fn observe(&self, took: Duration, now: Instant) {
        let mut ewma = self.ewma();
        ewma.seconds = ewma.at(now, took.as_secs_f64());
        ewma.touched = Some(now);
    }

    fn ewma(&self) -> std::sync::MutexGuard<'_, Ewma> {
        self.latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request in flight to a target; ends when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<TargetLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_while_in_flight() {
        let load = Arc::new(TargetLoad::default());
        let (a, b) = (load.begin(), load.begin());
        assert_eq!(load.active(), 2);
        drop(a);
        assert_eq!(load.active(), 1);
        drop(b);
        assert_eq!(load.active(), 0);
    }

    #[test]
    fn the_first_sample_is_the_average_and_it_fades_as_kong_s() {
        let load = TargetLoad::default();
        let t0 = Instant::now();
        assert_eq!(load.latency(t0), 0.0, "no sample yet");
        load.observe(Duration::from_millis(200), t0);
        assert!((load.latency(t0) - 0.2).abs() < 1e-9);
        // Ten seconds on, Kong keeps e^-1 of it.
        let later = t0 + Duration::from_secs(10);
        assert!((load.latency(later) - 0.2 * (-1f64).exp()).abs() < 1e-9);
        // A sample right after the last barely moves the average.
        load.observe(Duration::from_millis(1000), t0 + Duration::from_millis(1));
        let moved = load.latency(t0 + Duration::from_millis(1));
        assert!(moved > 0.2 && moved < 0.21, "{moved}");
    }
}
