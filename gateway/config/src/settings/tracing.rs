//! Kong's `tracing_instrumentations` and `tracing_sampling_rate`: which request spans are
//! recorded, and what share of traces is exported.

use std::fmt;

/// The span sources Kong's `tracing_instrumentations` names, as a set. Default empty
/// (`off`): no span is recorded and the request path pays one branch per phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Instrumentations(u16);

/// Kong's names, in Kong's order, with gangway's one addition (`plugin_log`). `dns_query`,
/// `db_query` and `http_client` are accepted for Kong's configs; gangway makes no DNS query,
/// database query or Lua HTTP call on a request's path, so they record nothing.
const NAMES: [(&str, u16); 10] = [
    ("request", Instrumentations::REQUEST.0),
    ("router", Instrumentations::ROUTER.0),
    ("http_client", 1 << 2),
    ("balancer", Instrumentations::BALANCER.0),
    ("plugin_rewrite", Instrumentations::PLUGIN_REWRITE.0),
    ("plugin_access", Instrumentations::PLUGIN_ACCESS.0),
    (
        "plugin_header_filter",
        Instrumentations::PLUGIN_HEADER_FILTER.0,
    ),
    ("plugin_log", Instrumentations::PLUGIN_LOG.0),
    ("dns_query", 1 << 8),
    ("db_query", 1 << 9),
];

impl Instrumentations {
    /// The request's root span (`kong`).
    pub const REQUEST: Instrumentations = Instrumentations(1);
    /// `kong.router`.
    pub const ROUTER: Instrumentations = Instrumentations(1 << 1);
    /// `kong.balancer` per upstream try, with gangway's `kong.upstream.connect` and
    /// `kong.upstream.response` inside it.
    pub const BALANCER: Instrumentations = Instrumentations(1 << 3);
    /// `kong.rewrite.plugin.<name>`.
    pub const PLUGIN_REWRITE: Instrumentations = Instrumentations(1 << 4);
    /// `kong.access.plugin.<name>`.
    pub const PLUGIN_ACCESS: Instrumentations = Instrumentations(1 << 5);
    /// `kong.header_filter.plugin.<name>`.
    pub const PLUGIN_HEADER_FILTER: Instrumentations = Instrumentations(1 << 6);
    /// `kong.log.plugin.<name>` (gangway's; Kong has no log-phase spans).
    pub const PLUGIN_LOG: Instrumentations = Instrumentations(1 << 7);
    /// Every source (`all`).
    pub const ALL: Instrumentations = Instrumentations(0x3ff);

    /// True when no span is recorded.
    pub fn is_off(self) -> bool {
        self.0 == 0
    }

    /// True when every source in `other` is on.
    pub fn has(self, other: Instrumentations) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Parses Kong's comma list: `off`, `all`, or names from `request`, `router`,
    /// `http_client`, `balancer`, `plugin_rewrite`, `plugin_access`, `plugin_header_filter`,
    /// `dns_query`, `db_query` (and gangway's `plugin_log`). As in Kong, `off` and `all`
    /// stand alone.
    pub fn parse(v: &str) -> Result<Instrumentations, String> {
        let names: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        match names.as_slice() {
            [] | ["off"] => return Ok(Instrumentations::default()),
            ["all"] => return Ok(Instrumentations::ALL),
            _ => {}
        }
        let mut set = 0;
        for name in names {
            if name == "off" || name == "all" {
                return Err(format!(
                    "invalid tracing type: {name}, \"off\" and \"all\" cannot be combined with other types"
                ));
            }
            let Some(&(_, bit)) = NAMES.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "invalid tracing type: {name}, expected off, all or some of: {}",
                    known.join(", ")
                ));
            };
            set |= bit;
        }
        Ok(Instrumentations(set))
    }
}

impl fmt::Display for Instrumentations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return f.write_str("off");
        }
        if *self == Instrumentations::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(_, bit)| self.0 & bit != 0)
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// A share of traces from 0 to 1 (Kong's `tracing_sampling_rate`). Default 0.01.
#[derive(Clone, Copy, Debug)]
pub struct SamplingRate(f64);

impl SamplingRate {
    /// The share, from 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Parses a number from 0 to 1.
    pub fn parse(v: &str) -> Result<SamplingRate, String> {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .map(SamplingRate)
            .ok_or_else(|| format!("expected a number between 0 and 1, got '{v}'"))
    }
}

impl Default for SamplingRate {
    fn default() -> Self {
        SamplingRate(0.01)
    }
}

// Parsed rates are never NaN, so bitwise equality is equality.
impl PartialEq for SamplingRate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for SamplingRate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kongs_names_parse_and_show_back() {
        assert!(Instrumentations::parse("off").expect("off").is_off());
        assert_eq!(
            Instrumentations::parse("all").expect("all"),
            Instrumentations::ALL
        );
        let some = Instrumentations::parse("router, plugin_access").expect("list");
        assert!(some.has(Instrumentations::ROUTER));
        assert!(some.has(Instrumentations::PLUGIN_ACCESS));
        assert!(!some.has(Instrumentations::BALANCER));
        assert_eq!(some.to_string(), "router,plugin_access");
        assert_eq!(Instrumentations::ALL.to_string(), "all");
    }

    #[test]
    fn bad_lists_are_refused_with_kongs_words() {
        let err = Instrumentations::parse("all,router").expect_err("all with others");
        assert!(err.contains("cannot be combined"), "{err}");
        let err = Instrumentations::parse("routing").expect_err("unknown");
        assert!(err.starts_with("invalid tracing type: routing"), "{err}");
        assert!(SamplingRate::parse("1.5").is_err());
        assert!(SamplingRate::parse("x").is_err());
        assert_eq!(SamplingRate::parse("0.25").map(SamplingRate::get), Ok(0.25));
    }
}
