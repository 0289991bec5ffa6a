//! Kong's fixed windows: UTC periods from a second to a calendar year, their start in epoch
//! milliseconds (Kong's `period_date`) and their length (Kong's `EXPIRATION`).

use gangway_pipeline::edits::StaticName;
use gangway_pipeline::quota::calendar::{civil_from_days, days_from_civil};

/// A rate-limiting period, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    /// One second.
    Second,
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A UTC day.
    Day,
    /// A calendar month, UTC (its window length is Kong's 30 days).
    Month,
    /// A calendar year, UTC (its window length is Kong's 365 days).
    Year,
}

impl Period {
    /// Every period, shortest first (Kong's `ORDERED_PERIODS`).
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// Kong's config field and key suffix.
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// Kong's `EXPIRATION[period]`, in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => 86_400,
            Period::Month => 2_592_000,
            Period::Year => 31_536_000,
        }
    }

    /// `X-RateLimit-Limit-<Period>`.
    pub fn limit_header(self) -> StaticName {
        const NAMES: [StaticName; 6] = [
            StaticName::new("X-RateLimit-Limit-Second"),
            StaticName::new("X-RateLimit-Limit-Minute"),
            StaticName::new("X-RateLimit-Limit-Hour"),
            StaticName::new("X-RateLimit-Limit-Day"),
            StaticName::new("X-RateLimit-Limit-Month"),
            StaticName::new("X-RateLimit-Limit-Year"),
        ];
        NAMES[self as usize]
    }

    /// `X-RateLimit-Remaining-<Period>`.
    pub fn remaining_header(self) -> StaticName {
        const NAMES: [StaticName; 6] = [
            StaticName::new("X-RateLimit-Remaining-Second"),
            StaticName::new("X-RateLimit-Remaining-Minute"),
            StaticName::new("X-RateLimit-Remaining-Hour"),
            StaticName::new("X-RateLimit-Remaining-Day"),
            StaticName::new("X-RateLimit-Remaining-Month"),
            StaticName::new("X-RateLimit-Remaining-Year"),
        ];
        NAMES[self as usize]
    }

    /// The start of the period that holds `now_ms`, in epoch milliseconds, UTC. Like Kong,
    /// the time is first cut to the whole second.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let secs = now_ms.div_euclid(1000);
        let floor = |unit: i64| secs - secs.rem_euclid(unit);
        let start = match self {
            Period::Second => secs,
            Period::Minute => floor(60),
            Period::Hour => floor(3_600),
            Period::Day => floor(86_400),
            Period::Month | Period::Year => {
                let (year, month, _) = civil_from_days(secs.div_euclid(86_400));
                let month = if self == Period::Month { month } else { 1 };
                days_from_civil(year, month, 1) * 86_400
            }
        };
        start * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-31T23:59:59.999Z and the next millisecond.
    const NEW_YEARS_EVE_MS: i64 = 1_798_761_599_999;

    #[test]
    fn windows_cut_at_whole_utc_periods() {
        let now = NEW_YEARS_EVE_MS;
        assert_eq!(Period::Second.start_ms(now), 1_798_761_599_000);
        assert_eq!(Period::Minute.start_ms(now), 1_798_761_540_000);
        assert_eq!(Period::Hour.start_ms(now), 1_798_758_000_000);
        assert_eq!(Period::Day.start_ms(now), 1_798_675_200_000, "2026-12-31");
        assert_eq!(Period::Month.start_ms(now), 1_796_083_200_000, "2026-12-01");
        assert_eq!(Period::Year.start_ms(now), 1_767_225_600_000, "2026-01-01");
        let next = now + 1;
        for period in Period::ALL {
            assert_eq!(period.start_ms(next), 1_798_761_600_000, "{period:?}");
        }
    }

    #[test]
    fn months_roll_over_on_the_first_whatever_their_length() {
        // 2028-02-29T12:00Z (a leap day) and 2028-03-01T00:00Z.
        let leap_day = days_from_civil(2028, 2, 29) * 86_400_000 + 43_200_000;
        assert_eq!(
            Period::Month.start_ms(leap_day),
            days_from_civil(2028, 2, 1) * 86_400_000
        );
        let march = days_from_civil(2028, 3, 1) * 86_400_000;
        assert_eq!(Period::Month.start_ms(march), march);
        assert_eq!(
            Period::Month.start_ms(march - 1),
            days_from_civil(2028, 2, 1) * 86_400_000
        );
    }

    /// Every window ends where the next begins: on the first of the month after a 31-day
    /// month, where Kong's 30-day length would end it a day early.
    #[test]
    fn windows_end_where_the_next_begins() {
        let moments = [
            NEW_YEARS_EVE_MS,
            days_from_civil(2027, 1, 31) * 86_400_000 + 3_600_000,
            days_from_civil(2028, 2, 29) * 86_400_000,
            days_from_civil(2028, 12, 31) * 86_400_000 + 1,
        ];
        for now in moments {
            for period in Period::ALL {
                let window = gangway_pipeline::quota::Window {
                    scope: "ratelimit:r:s:".into(),
                    identifier: "c".into(),
                    period: period.name(),
                    start_ms: period.start_ms(now),
                    seconds: period.seconds(),
                };
                let end = window.end_ms();
                assert!(end > now, "{period:?} at {now} ends at {end}");
                assert_eq!(
                    period.start_ms(end),
                    end,
                    "{period:?}: the next starts at {end}"
                );
                assert_eq!(period.start_ms(end - 1), window.start_ms, "{period:?}");
            }
        }
    }
}
