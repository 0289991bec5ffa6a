//! Checks that a measurement had the machine to itself: contenders share the cores, so one
//! still busy (loading a million consumers, say) while another is measured slows the
//! measured one and makes the comparison a lie.

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::Contender;

/// The most CPU the idle contenders may use together while one is measured, as a share of
/// one core, for the round to count as undisturbed.
pub(super) const IDLE_SHARE: f64 = 0.01;

/// How long [`settle`] waits for every contender to go idle.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// The poll window of [`settle`].
const WINDOW: Duration = Duration::from_millis(500);

/// CPU seconds of each contender, in order.
pub(super) fn each_cpu(contenders: &[Contender]) -> Vec<f64> {
    contenders.iter().map(|c| c.proc_.cpu_seconds()).collect()
}

/// What the contenders other than `except` used between `before` and `after` ([`each_cpu`]
/// readings): their CPU seconds together, and the busiest of them with its own.
pub(super) fn others_used(
    contenders: &[Contender],
    before: &[f64],
    after: &[f64],
    except: usize,
) -> (f64, Option<(String, f64)>) {
    let used = || {
        (0..contenders.len())
            .filter(|&i| i != except)
            .map(|i| (i, after[i] - before[i]))
    };
    let busiest = used()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, cpu)| (contenders[i].name.clone(), cpu));
    (used().map(|(_, cpu)| cpu).sum(), busiest)
}

/// CPU seconds of all contenders together.
fn all_cpu(contenders: &[Contender]) -> f64 {
    each_cpu(contenders).iter().sum()
}

/// Waits until no load runs and all contenders together use less than [`IDLE_SHARE`] of a
/// core over one window. Ok(waited), or Err(the last window's share) after
/// [`SETTLE_LIMIT`].
pub(super) fn settle(contenders: &[Contender]) -> Result<Duration, f64> {
    let began = Instant::now();
    loop {
        let before = all_cpu(contenders);
        sleep(WINDOW);
        let share = (all_cpu(contenders) - before) / WINDOW.as_secs_f64();
        if share < IDLE_SHARE {
            return Ok(began.elapsed());
        }
        if began.elapsed() >= SETTLE_LIMIT {
            return Err(share);
        }
    }
}

/// The share of one core the other contenders used during a round of `seconds`.
pub(super) fn share(others_cpu_s: f64, seconds: u64) -> f64 {
    others_cpu_s / seconds.max(1) as f64
}
