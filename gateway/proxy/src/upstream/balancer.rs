//! Load balancing over an upstream entity's targets: Kong's weighted round robin, consistent
//! hashing, least connections and latency, skipping targets that health checks marked
//! unhealthy.
//!
//! A [`Balancer`] is compiled into each snapshot. Target health lives outside the snapshot
//! (in [`HealthRegistry`]) so a config reload does not forget which targets are down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use super::health::{ActivePolicy, PassivePolicy, TargetHealth};
use super::load::InFlight;
use gangway_config::ConfigErrors;
use gangway_config::model::{Algorithm, HashOn, Id, Target, Upstream, split_target};

/// One target, ready to connect to.
#[derive(Debug)]
pub struct BalancedTarget {
    /// Host (name or IP literal).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight (0 = disabled).
    pub weight: u32,
    /// Shared health state.
    pub health: Arc<TargetHealth>,
}

/// What to hash on for consistent hashing, compiled from `hash_on*` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// Nothing: round robin.
    None,
    /// The authenticated consumer's id.
    Consumer,
    /// The client IP.
    Ip,
    /// A request header.
    Header(String),
    /// A cookie.
    Cookie(String),
    /// The request path.
    Path,
    /// A query argument.
    QueryArg(String),
    /// A named or numbered capture of the route's regex path.
    UriCapture(String),
}

/// How the balancer places one request.
#[derive(Debug, Default)]
pub struct RequestHash {
    /// Where the request lands on the ring, or `None` for round robin.
    pub hash: Option<u64>,
    /// A `Set-Cookie` value for the response, when the hash cookie was made up.
    pub set_cookie: Option<String>,
}

/// The request facts a hash can be computed from.
pub trait HashInput {
    /// The client IP, as text.
    fn client_ip(&self) -> String;
    /// The first value of a header (name lower-cased).
    fn header(&self, lower_name: &str) -> Option<&[u8]>;
    /// A cookie's value.
    fn cookie(&self, name: &str) -> Option<&[u8]>;
    /// The normalized request path.
    fn path(&self) -> &[u8];
    /// A query argument's value.
    fn query_arg(&self, name: &str) -> Option<&[u8]>;
    /// A route capture by name or number.
    fn uri_capture(&self, name: &str) -> Option<&[u8]>;
    /// The authenticated consumer id, if any.
    fn consumer(&self) -> Option<Id>;
}

/// A compiled upstream entity.
#[derive(Debug)]
pub struct Balancer {
    /// The upstream's name (what `service.host` refers to).
    pub name: String,
    /// Host header override for requests to its targets.
    pub host_header: Option<String>,
    algorithm: Algorithm,
    /// Targets in config order.
    pub targets: Vec<BalancedTarget>,
    /// Weighted round-robin schedule: target indexes, each repeated by its reduced weight,
    /// interleaved.
    schedule: Vec<usize>,
    next: AtomicUsize,
    /// Consistent-hashing ring: (point, target index), sorted by point.
    ring: Vec<(u64, usize)>,
    hash_on: HashKey,
    hash_fallback: HashKey,
    /// `hash_on_cookie_path`: the `Path` of a hash cookie made up for a client.
    cookie_path: String,
    /// Passive health thresholds.
    pub passive: PassivePolicy,
    /// Active probes, when enabled.
    pub active: Option<ActivePolicy>,
}

/// Most entries in a round-robin schedule: bounds its memory whatever the weights (Kong's
/// go up to 65,535 per target).
const MAX_SCHEDULE: u64 = 1 << 16;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn hash_of(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across processes, so every node maps a key to the same target.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's high bits barely move for short keys; the murmur3 finalizer spreads them over
    // the whole ring.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn hash_key(
    kind: HashOn,
    header: &Option<String>,
    cookie: &Option<String>,
    query: &Option<String>,
    capture: &Option<String>,
) -> HashKey {
    match kind {
        HashOn::None => HashKey::None,
        HashOn::Consumer => HashKey::Consumer,
        HashOn::Ip => HashKey::Ip,
        HashOn::Header => HashKey::Header(header.clone().unwrap_or_default().to_ascii_lowercase()),
        HashOn::Cookie => HashKey::Cookie(cookie.clone().unwrap_or_default()),
        HashOn::Path => HashKey::Path,
        HashOn::QueryArg => HashKey::QueryArg(query.clone().unwrap_or_default()),
        HashOn::UriCapture => HashKey::UriCapture(capture.clone().unwrap_or_default()),
    }
}

impl Balancer {
    /// Compiles an upstream and its targets. Health state comes from `registry`, keyed by
    /// upstream name and target, so it survives reloads.
    pub fn build(
        upstream: &Upstream,
        targets: &[&Target],
        registry: &HealthRegistry,
        path: &str,
    ) -> Result<Balancer, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut compiled = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match split_target(&t.target) {
                Some((host, port)) => compiled.push(BalancedTarget {
                    health: registry.get(&upstream.name, &t.target),
                    host,
                    port,
                    weight: t.weight,
                }),
                None => errors.push(
                    format!("{path}.targets[{i}].target"),
                    format!("invalid target '{}'", t.target),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let g = compiled
            .iter()
            .map(|t| t.weight)
            .filter(|w| *w > 0)
            .fold(0, gcd)
            .max(1);
        let mut remaining: Vec<u32> = compiled.iter().map(|t| t.weight / g).collect();
        // Kong's wheel holds weight / gcd entries per target; past MAX_SCHEDULE in all, the
        // weights shrink in proportion (a target keeps at least one entry).
        let total: u64 = remaining.iter().map(|&w| u64::from(w)).sum();
        if total > MAX_SCHEDULE {
            for w in remaining.iter_mut().filter(|w| **w > 0) {
                *w = (u64::from(*w) * MAX_SCHEDULE / total).max(1) as u32;
            }
        }
        // Interleave so consecutive picks spread across targets.
        let mut schedule = Vec::new();
        while remaining.iter().any(|w| *w > 0) {
            for (i, w) in remaining.iter_mut().enumerate() {
                if *w > 0 {
                    schedule.push(i);
                    *w -= 1;
                }
            }
        }
        let slots = upstream.slots.max(10) as u64;
        let total_weight: u64 = compiled
            .iter()
            .map(|t| u64::from(t.weight))
            .sum::<u64>()
            .max(1);
        let mut ring = Vec::new();
        for (i, t) in compiled.iter().enumerate() {
            let points = (slots * u64::from(t.weight)).div_ceil(total_weight);
            for p in 0..points {
                let mut key = format!("{}:{}", t.host, t.port).into_bytes();
                key.extend_from_slice(&p.to_le_bytes());
                ring.push((hash_of(&key), i));
            }
        }
        ring.sort_unstable();
        let (algorithm_hash, u) = (upstream.algorithm == Algorithm::ConsistentHashing, upstream);
        let hash_on = if algorithm_hash {
            hash_key(
                u.hash_on,
                &u.hash_on_header,
                &u.hash_on_cookie,
                &u.hash_on_query_arg,
                &u.hash_on_uri_capture,
            )
        } else {
            HashKey::None
        };
        let hash_fallback = hash_key(
            u.hash_fallback,
            &u.hash_fallback_header,
            &u.hash_on_cookie,
            &u.hash_fallback_query_arg,
            &u.hash_fallback_uri_capture,
        );
        Ok(Balancer {
            name: upstream.name.clone(),
            host_header: upstream.host_header.clone(),
            algorithm: upstream.algorithm,
            targets: compiled,
            schedule,
            next: AtomicUsize::new(fastrand::usize(..1024)),
            ring,
            hash_on,
            hash_fallback,
            cookie_path: upstream.hash_on_cookie_path.clone(),
            passive: PassivePolicy::from(&upstream.healthchecks.passive),
            active: ActivePolicy::from_config(&upstream.healthchecks.active),
        })
    }

    fn usable(&self, i: usize, exclude: &[usize]) -> bool {
        let t = &self.targets[i];
        t.weight > 0 && t.health.is_healthy() && !exclude.contains(&i)
    }

    fn key_bytes<I: HashInput>(&self, key: &HashKey, input: &I) -> Option<Vec<u8>> {
        match key {
            HashKey::None => None,
            HashKey::Consumer => input.consumer().map(|id| id.as_bytes().to_vec()),
            HashKey::Ip => Some(input.client_ip().into_bytes()),
            HashKey::Header(h) => input.header(h).map(<[u8]>::to_vec),
            HashKey::Cookie(c) => input.cookie(c).map(<[u8]>::to_vec),
            HashKey::Path => Some(input.path().to_vec()),
            HashKey::QueryArg(q) => input.query_arg(q).map(<[u8]>::to_vec),
            HashKey::UriCapture(c) => input.uri_capture(c).map(<[u8]>::to_vec),
        }
    }

    /// The request's hash for consistent hashing (`hash_on`, then `hash_fallback`), or
    /// `None` for round robin. Computed once per request, before any retry.
    pub fn request_hash<I: HashInput>(&self, input: &I) -> RequestHash {
        if self.hash_on == HashKey::None {
            return RequestHash::default();
        }
        for key in [&self.hash_on, &self.hash_fallback] {
            if let Some(bytes) = self.key_bytes(key, input) {
                return RequestHash {
                    hash: Some(hash_of(&bytes)),
                    set_cookie: None,
                };
            }
            // As Kong: a client without the hash cookie gets one made up, and keeps it.
            if let HashKey::Cookie(name) = key {
                let value = uuid::Uuid::new_v4().hyphenated().to_string();
                let path = &self.cookie_path;
                return RequestHash {
                    hash: Some(hash_of(value.as_bytes())),
                    // Kong's attributes, "Same-Site" spelling included.
                    set_cookie: Some(format!(
                        "{name}={value}; Path={path}; Same-Site=Lax; HttpOnly"
                    )),
                };
            }
        }
        RequestHash::default()
    }

    /// Picks a healthy target, skipping `exclude` (targets that already failed this
    /// request). `None` means no healthy target: Kong's 503.
    pub fn pick(&self, hash: Option<u64>, exclude: &[usize]) -> Option<usize> {
        if let Some(h) = hash {
            if self.ring.is_empty() {
                return None;
            }
            let start = self.ring.partition_point(|(p, _)| *p < h);
            return (0..self.ring.len())
                .map(|k| self.ring[(start + k) % self.ring.len()].1)
                .find(|&i| self.usable(i, exclude));
        }
        match self.algorithm {
            Algorithm::LeastConnections => {
                // Kong's score: (connections + 1) / weight, lowest first.
                return self.lowest(exclude, |t| {
                    f64::from(t.health.load.active() + 1) / f64::from(t.weight)
                });
            }
            Algorithm::Latency => {
                let now = Instant::now();
                return self.lowest(exclude, |t| {
                    t.health.load.latency(now) / f64::from(t.weight)
                });
            }
            Algorithm::RoundRobin | Algorithm::ConsistentHashing => {}
        }
        if self.schedule.is_empty() {
            return None;
        }
        for _ in 0..self.schedule.len() {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let i = self.schedule[n % self.schedule.len()];
            if self.usable(i, exclude) {
                return Some(i);
            }
        }
        None
    }

    /// The usable target with the lowest `score`; ties go round, so that equal targets share
    /// the load rather than the first taking it all.
    fn lowest(&self, exclude: &[usize], score: impl Fn(&BalancedTarget) -> f64) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.usable(i, exclude))
            .map(|i| (i, score(&self.targets[i])))
            .reduce(|best, next| if next.1 < best.1 { next } else { best })
            .map(|(i, _)| i)
    }

    /// Counts a request in flight to target `i` while least-connections balances.
    pub fn begin(&self, i: usize) -> Option<InFlight> {
        (self.algorithm == Algorithm::LeastConnections).then(|| self.targets[i].health.load.begin())
    }

    /// Whether the latency algorithm wants response times.
    pub fn weighs_latency(&self) -> bool {
        self.algorithm == Algorithm::Latency
    }

    /// Weighs in how long target `i` took to answer, connect included.
    pub fn observe_latency(&self, i: usize, took: Duration) {
        if self.weighs_latency() {
            self.targets[i].health.load.observe(took, Instant::now());
        }
    }
}

/// Health state of every target ever configured, keyed by (upstream name, target), and the
/// addresses the targets' names resolved to.
#[derive(Default)]
pub struct HealthRegistry {
    map: Mutex<HashMap<(String, String), Arc<TargetHealth>>>,
    /// Every worker's DNS lookups, as they land (see `DnsCache::sharing_answers`).
    pub answers: Arc<super::dns::Answers>,
    /// Told when a named target's last healthy address goes down (the health checker then
    /// looks such names up again, for addresses they may have moved to).
    pub all_down: Arc<tokio::sync::Notify>,
}

impl HealthRegistry {
    /// Forgets every target's state but those of `in_use` (the new snapshot's targets).
    pub fn keep_only<'a>(&self, in_use: impl Iterator<Item = &'a Arc<TargetHealth>>) {
        let in_use: std::collections::HashSet<*const TargetHealth> =
            in_use.map(Arc::as_ptr).collect();
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, health| in_use.contains(&Arc::as_ptr(health)));
    }

    /// Targets with a state kept.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no target's state is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state for a target, created healthy on first sight (with its one address when
    /// it is an IP literal).
    pub fn get(&self, upstream: &str, target: &str) -> Arc<TargetHealth> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry((upstream.to_string(), target.to_string()))
            .or_insert_with(|| {
                let literal = split_target(target).and_then(|(host, _)| host.parse().ok());
                Arc::new(match literal {
                    Some(ip) => TargetHealth::literal(ip),
                    None => TargetHealth::named(self.all_down.clone()),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::model::{ForeignKey, Healthchecks};

    fn upstream(algorithm: Algorithm, hash_on: HashOn) -> Upstream {
        Upstream {
            id: Id::nil(),
            name: "u".into(),
            algorithm,
            hash_on,
            hash_fallback: HashOn::None,
            hash_on_header: Some("X-Key".into()),
            hash_fallback_header: None,
            hash_on_cookie: None,
            hash_on_cookie_path: "/".into(),
            hash_on_query_arg: None,
            hash_fallback_query_arg: None,
            hash_on_uri_capture: None,
            hash_fallback_uri_capture: None,
            slots: 1000,
            healthchecks: Healthchecks::default(),
            host_header: None,
            client_certificate: None,
            use_srv_name: false,
            tags: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn target(t: &str, weight: u32) -> Target {
        Target {
            id: Id::nil(),
            upstream: ForeignKey { id: Id::nil() },
            target: t.into(),
            weight,
            tags: None,
            created_at: 0.0,
            updated_at: 0.0,
        }
    }

    struct Req(Option<&'static [u8]>);
    impl HashInput for Req {
        fn client_ip(&self) -> String {
            "10.0.0.1".into()
        }
        fn header(&self, _: &str) -> Option<&[u8]> {
            self.0
        }
        fn cookie(&self, _: &str) -> Option<&[u8]> {
            None
        }
        fn path(&self) -> &[u8] {
            b"/"
        }
        fn query_arg(&self, _: &str) -> Option<&[u8]> {
            None
        }
        fn uri_capture(&self, _: &str) -> Option<&[u8]> {
            None
        }
        fn consumer(&self) -> Option<Id> {
            None
        }
    }

    fn built(algorithm: Algorithm, ts: &[Target]) -> Balancer {
        let refs: Vec<&Target> = ts.iter().collect();
        let registry = HealthRegistry::default();
        Balancer::build(&upstream(algorithm, HashOn::None), &refs, &registry, "u").expect("build")
    }

    #[test]
    fn least_connections_picks_the_fewest_in_flight_per_weight() {
        let ts = [target("a:1", 100), target("b:2", 200), target("c:3", 0)];
        let b = built(Algorithm::LeastConnections, &ts);
        let mut held = Vec::new();
        let mut picked = [0usize; 3];
        // (active + 1) / weight: b takes two for each of a's.
        for _ in 0..30 {
            let i = b.pick(None, &[]).expect("pick");
            picked[i] += 1;
            held.push(b.begin(i).expect("counted"));
        }
        assert_eq!(picked, [10, 20, 0]);
        assert_eq!(b.targets[1].health.load.active(), 20);
        held.clear();
        assert_eq!(b.targets[1].health.load.active(), 0, "released");
        // Idle and equal, they take turns rather than the first taking all.
        let equal = built(
            Algorithm::LeastConnections,
            &[target("a:1", 5), target("b:2", 5)],
        );
        let one_at_a_time: Vec<usize> = (0..4)
            .map(|_| equal.pick(None, &[]).expect("pick"))
            .collect();
        assert!(
            one_at_a_time.contains(&0) && one_at_a_time.contains(&1),
            "{one_at_a_time:?}"
        );
        assert_eq!(b.pick(None, &[1]), Some(0), "a failed target is skipped");
        assert!(
            built(Algorithm::RoundRobin, &ts).begin(0).is_none(),
            "not counted"
        );
    }

    #[test]
    fn latency_picks_the_fastest_per_weight_and_tries_the_unmeasured() {
        let ts = [target("a:1", 100), target("b:2", 100)];
        let b = built(Algorithm::Latency, &ts);
        b.observe_latency(0, Duration::from_millis(50));
        assert_eq!(b.pick(None, &[]), Some(1), "b has no time yet");
        b.observe_latency(1, Duration::from_millis(5));
        assert!((0..10).all(|_| b.pick(None, &[]) == Some(1)), "b is faster");
        assert_eq!(b.pick(None, &[1]), Some(0), "unless it failed");
        let heavy = [target("a:1", 1000), target("b:2", 10)];
        let b = built(Algorithm::Latency, &heavy);
        b.observe_latency(0, Duration::from_millis(50));
        b.observe_latency(1, Duration::from_millis(5));
        assert_eq!(b.pick(None, &[]), Some(0), "50 ms / 1000 beats 5 ms / 10");
    }

    #[test]
    fn weighted_round_robin_follows_weights_and_skips_disabled() {
        let ts = [target("a:1", 300), target("b:2", 100), target("c:3", 0)];
        let refs: Vec<&Target> = ts.iter().collect();
        let b = Balancer::build(
            &upstream(Algorithm::RoundRobin, HashOn::None),
            &refs,
            &HealthRegistry::default(),
            "upstreams[0]",
        )
        .expect("build");
        let mut counts = [0usize; 3];
        for _ in 0..400 {
            counts[b.pick(b.request_hash(&Req(None)).hash, &[]).expect("pick")] += 1;
        }
        assert_eq!(counts, [300, 100, 0]);
    }

    #[test]
    fn round_robin_keeps_weights_above_a_thousand_in_proportion() {
        let b = built(
            Algorithm::RoundRobin,
            &[target("a:1", 5000), target("b:2", 1)],
        );
        let mut counts = [0usize; 2];
        for _ in 0..5001 {
            counts[b.pick(None, &[]).expect("pick")] += 1;
        }
        assert_eq!(counts, [5000, 1], "weights were capped at 1000");
        let heavy: Vec<Target> = (0..4)
            .map(|i| target(&format!("h{i}:1"), 65_535 - i))
            .collect();
        let b = built(Algorithm::RoundRobin, &heavy);
        assert!(
            b.schedule.len() as u64 <= MAX_SCHEDULE + 4,
            "{}",
            b.schedule.len()
        );
        let mut counts = [0usize; 4];
        for _ in 0..b.schedule.len() {
            counts[b.pick(None, &[]).expect("pick")] += 1;
        }
        assert!(
            counts.iter().all(|&n| n.abs_diff(counts[0]) <= 1),
            "{counts:?}"
        );
    }

    #[test]
    fn unhealthy_targets_are_skipped_and_none_healthy_is_none() {
        let ts = [target("10.0.0.1:1", 100), target("10.0.0.2:2", 100)];
        let refs: Vec<&Target> = ts.iter().collect();
        let reg = HealthRegistry::default();
        let b = Balancer::build(
            &upstream(Algorithm::RoundRobin, HashOn::None),
            &refs,
            &reg,
            "u",
        )
        .expect("build");
        reg.get("u", "10.0.0.1:1").set_healthy(None, false);
        assert!((0..10).all(|_| b.pick(b.request_hash(&Req(None)).hash, &[]) == Some(1)));
        assert_eq!(
            b.pick(None, &[1]),
            None,
            "excluded + unhealthy leaves nothing"
        );
        reg.get("u", "10.0.0.2:2").set_healthy(None, false);
        assert_eq!(b.pick(b.request_hash(&Req(None)).hash, &[]), None);
    }

    #[test]
    fn consistent_hashing_is_sticky_per_key() {
        let ts = [target("a:1", 100), target("b:2", 100), target("c:3", 100)];
        let refs: Vec<&Target> = ts.iter().collect();
        let b = Balancer::build(
            &upstream(Algorithm::ConsistentHashing, HashOn::Header),
            &refs,
            &HealthRegistry::default(),
            "u",
        )
        .expect("build");
        let first = b.pick(b.request_hash(&Req(Some(b"user-42"))).hash, &[]);
        for _ in 0..20 {
            assert_eq!(
                b.pick(b.request_hash(&Req(Some(b"user-42"))).hash, &[]),
                first
            );
        }
        let spread: std::collections::HashSet<_> = [
            &b"k1"[..],
            b"k2",
            b"k3",
            b"k4",
            b"k5",
            b"k6",
            b"k7",
            b"k8",
            b"k9",
            b"k10",
        ]
        .iter()
        .map(|k| {
            let key: &'static [u8] = k;
            b.pick(b.request_hash(&Req(Some(key))).hash, &[])
        })
        .collect();
        assert!(spread.len() > 1, "keys spread over targets");
    }
}
