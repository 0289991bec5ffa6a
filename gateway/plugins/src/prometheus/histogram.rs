//! Kong's latency histograms as fixed bucket counters. Kong's buckets never change, so a
//! sample is one bucket increment and a sum, both relaxed atomics: no sample storage to
//! fold later (the `metrics` exporter's histograms keep every sample until a scrape or an
//! upkeep, a few percent of a request's CPU at 100k requests a second). The plugin records
//! through `metrics::Histogram` handles backed by these; the binary renders them beside
//! the recorder's output ([`series`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use metrics::{Histogram, HistogramFn};

/// One series: a count per bucket (not cumulative; the last counts samples above every
/// bound) and the sum of the samples. Kong's latencies are whole milliseconds, so the sum is
/// an integer: one atomic add, where an f64 sum takes a compare-and-swap loop.
#[derive(Debug)]
pub struct BucketHistogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl BucketHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        BucketHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// The cumulative count at or below each bound, then the total (`+Inf`), and the sum.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            running += count.load(Relaxed);
            buckets.push((*bound, running));
        }
        let total = running + self.counts[self.bounds.len()].load(Relaxed);
        (buckets, total, self.sum.load(Relaxed) as f64)
    }
}

impl HistogramFn for BucketHistogram {
    fn record(&self, value: f64) {
        // Prometheus buckets are "less than or equal": the first bound >= value.
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Relaxed);
        // Whole milliseconds; a negative or fractional sample (none is recorded) is rounded.
        self.sum.fetch_add(value.max(0.0).round() as u64, Relaxed);
    }
}

/// A series' identity: the metric's name and its labels in order.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Every series registered, process-wide: Kong's metrics are the node's, whichever plugin
/// instance records them.
static SERIES: Mutex<BTreeMap<SeriesKey, Arc<BucketHistogram>>> = Mutex::new(BTreeMap::new());

/// The handle of series (`name`, `labels`), registering it with `bounds` on first use.
pub fn histogram(
    name: &'static str,
    bounds: &'static [f64],
    labels: Vec<(&'static str, String)>,
) -> Histogram {
    let mut series = SERIES.lock().unwrap_or_else(|e| e.into_inner());
    let found = series
        .entry((name, labels))
        .or_insert_with(|| Arc::new(BucketHistogram::new(bounds)))
        .clone();
    Histogram::from_arc(found)
}

/// Every registered series, ordered by name then labels (each metric's series together).
pub fn series() -> Vec<(SeriesKey, Arc<BucketHistogram>)> {
    let series = SERIES.lock().unwrap_or_else(|e| e.into_inner());
    series.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The `le` labels Kong writes for `bounds`: every bound with the same number of digits
/// before and after the point (the most any bound needs, at least one each), zero-padded,
/// so that a histogram's bucket lines sort as numbers. Among bounds up to 6000, 1 is
/// `0001.0`. Alerts and recording rules written against Kong match these strings.
pub fn kong_bucket_labels(bounds: &[f64]) -> Vec<String> {
    let (mut whole, mut fraction) = (1, 1);
    for bound in bounds {
        let shortest = bound.to_string();
        let (int, frac) = shortest.split_once('.').unwrap_or((&shortest, ""));
        whole = whole.max(int.len());
        fraction = fraction.max(frac.len());
    }
    let width = whole + fraction + 1;
    bounds
        .iter()
        .map(|bound| format!("{bound:0width$.fraction$}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static BOUNDS: [f64; 3] = [1.0, 5.0, 10.0];

    #[test]
    fn samples_land_in_prometheus_buckets() {
        let h = BucketHistogram::new(&BOUNDS);
        for v in [0.0, 1.0, 1.5, 5.0, 10.0, 11.0, 1e9] {
            h.record(v);
        }
        let (buckets, total, sum) = h.snapshot();
        assert_eq!(buckets, vec![(1.0, 2), (5.0, 4), (10.0, 5)]);
        assert_eq!(total, 7);
        assert_eq!(sum, 0.0 + 1.0 + 2.0 + 5.0 + 10.0 + 11.0 + 1e9);
    }

    #[test]
    fn bucket_labels_are_padded_to_one_width_as_kongs() {
        assert_eq!(
            kong_bucket_labels(&[1.0, 75.0, 6000.0]),
            ["0001.0", "0075.0", "6000.0"]
        );
        assert_eq!(kong_bucket_labels(&[25.0, 60000.0]), ["00025.0", "60000.0"]);
        assert_eq!(
            kong_bucket_labels(&[0.005, 2.5, 10.0]),
            ["00.005", "02.500", "10.000"]
        );
        let mut sorted = kong_bucket_labels(&crate::prometheus::KONG_LATENCY_BUCKETS);
        let before = sorted.clone();
        sorted.sort();
        assert_eq!(sorted, before, "lexical order is numeric order");
    }

    #[test]
    fn one_series_per_name_and_labels() {
        let labels = || vec![("route", "r-one-series".to_owned())];
        histogram("test_one_series_ms", &BOUNDS, labels()).record(3.0);
        histogram("test_one_series_ms", &BOUNDS, labels()).record(30.0);
        histogram(
            "test_one_series_ms",
            &BOUNDS,
            vec![("route", "other".into())],
        )
        .record(3.0);
        let mine: Vec<_> = series()
            .into_iter()
            .filter(|((name, _), _)| *name == "test_one_series_ms")
            .collect();
        assert_eq!(mine.len(), 2);
        let (_, h) = mine
            .iter()
            .find(|((_, l), _)| l[0].1 == "r-one-series")
            .expect("series");
        assert_eq!(h.snapshot().1, 2);
    }
}
