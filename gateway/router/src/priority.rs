//! Route ordering: Kong's sub-route splitting and its `traditional_compatible` priority.
//!
//! Kong folds the priority into a u64 (`transform.lua get_priority`); we keep the same fields
//! as a tuple compared lexicographically, which is the order the bit layout encodes:
//! match weight, plain-hosts-only, header-name count, regex-vs-prefix, regex_priority, prefix
//! length. Equal priorities fall back to the (sub-)route UUID, larger first, as atc-router's
//! reverse iteration over `(priority, uuid)` does.
//!
//! This is the order Kong documents and intends, not always the one it computes:
//! `get_priority`'s `lshift_uint64` rebinds its `uint64_t` cdata to the plain Lua number it
//! is given, so the match weight, header count and regex_priority are shifted with LuaJIT's
//! 32-bit ops (`w << 61` becomes `w << 29`). Checked with luajit: a route with a plain
//! host or a regex path (the two true 64-bit bits) then outranks routes with more matching
//! fields, and a weight of 4 or more yields a negative number whose conversion to the
//! router's `uint64_t` depends on the CPU (x86 and ARM differ). Reproducing that would make
//! routing differ between Graviton and x86 hosts, so gangway keeps the documented order;
//! Kong's router specs agree with it. The same goes for a negative `regex_priority`: shifted
//! into Kong's u64 it sets every bit above 19 and outranks every route, the opposite of
//! "a lower number loses" that Kong documents and its 2.x router did; gangway compares it
//! as a signed number (no Kong spec covers a negative value).

use uuid::Uuid;

use gangway_config::model::Route;

/// Namespace Kong uses (`uuid.factory_v5`) to derive ids of split sub-routes.
const SPLIT_NAMESPACE: Uuid = Uuid::from_u128(0x7f145bf9_0dce_4f91_98eb_debbce4b9f6b);

/// Kong caps the header-name count at 255 when sorting.
const MAX_HEADER_COUNT: usize = 255;

/// Kong masks the prefix length to its 19 priority bits.
const PREFIX_LEN_MASK: usize = 0x7FFFF;

/// The sortable priority of one (sub-)route; larger sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Priority {
    match_weight: u8,
    plain_host_only: bool,
    header_count: u8,
    regex_url: bool,
    regex_priority: i64,
    prefix_len: u32,
}

/// True when Kong treats a path as a regex (`is_regex_magic`).
pub(crate) fn is_regex_path(p: &str) -> bool {
    p.starts_with('~')
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

/// The priority of `route` restricted to `paths` (one group after splitting).
pub(crate) fn priority(route: &Route, paths: &[&str]) -> Priority {
    let header_count = route.headers.as_ref().map_or(0, |h| h.len());
    let weight = [
        non_empty(&route.sources),
        non_empty(&route.destinations),
        non_empty(&route.methods),
        non_empty(&route.hosts),
        header_count > 0,
        non_empty(&route.snis),
        !paths.is_empty(),
    ]
    .into_iter()
    .filter(|&b| b)
    .count();
    // Kong tests `type(hosts) == "table"`, so an explicitly empty list counts as plain.
    let plain_host_only = route
        .hosts
        .as_ref()
        .is_some_and(|hosts| hosts.iter().all(|h| !h.contains('*')));
    let regex_url = paths.first().is_some_and(|p| is_regex_path(p));
    let prefix_len = match paths.first() {
        Some(p) if !regex_url => p.len() & PREFIX_LEN_MASK,
        _ => 0,
    };
    Priority {
        match_weight: u8::try_from(weight).expect("invariant: at most 7 fields"),
        plain_host_only,
        header_count: u8::try_from(header_count.min(MAX_HEADER_COUNT))
            .expect("invariant: capped at 255"),
        regex_url,
        regex_priority: if regex_url { route.regex_priority } else { 0 },
        prefix_len: u32::try_from(prefix_len).expect("invariant: masked to 19 bits"),
    }
}

/// One group of a route's paths: all regexes, or all prefixes of one length.
#[derive(Debug)]
pub(crate) struct PathGroup<'r> {
    /// Paths in their configured order, with their index in `route.paths`.
    pub paths: Vec<(usize, &'r str)>,
    /// The id Kong gives this group: the route id, or a uuid5 when the route was split.
    pub id: Uuid,
}

/// Splits a route's paths as Kong does before building the ATC router: regex paths form one
/// group and prefix paths one group per byte length, in order of first appearance. A route
/// with no paths yields a single empty group.
pub(crate) fn split_paths(route: &Route) -> Vec<PathGroup<'_>> {
    let paths = route.paths.as_deref().unwrap_or(&[]);
    let mut groups: Vec<(Option<usize>, PathGroup<'_>)> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = if is_regex_path(p) {
            None
        } else {
            Some(p.len())
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.paths.push((i, p.as_str())),
            None => groups.push((
                key,
                PathGroup {
                    paths: vec![(i, p.as_str())],
                    id: route.id,
                },
            )),
        }
    }
    if groups.is_empty() {
        return vec![PathGroup {
            paths: Vec::new(),
            id: route.id,
        }];
    }
    if groups.len() > 1 {
        let base = route.id.hyphenated().to_string();
        for (n, (_, g)) in groups.iter_mut().enumerate() {
            let name = format!("{base}#{}", n + 1);
            g.id = Uuid::new_v5(&SPLIT_NAMESPACE, name.as_bytes());
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::route;

    #[test]
    fn splits_by_kind_and_length_in_first_appearance_order() {
        let mut r = route(1);
        r.paths = Some(
            ["~/regex.*$", "/long-path", "/one", "/two", "/three", "~/.*"]
                .map(String::from)
                .to_vec(),
        );
        let groups = split_paths(&r);
        let shapes: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.paths.iter().map(|(_, p)| *p).collect())
            .collect();
        assert_eq!(
            shapes,
            vec![
                vec!["~/regex.*$", "~/.*"],
                vec!["/long-path"],
                vec!["/one", "/two"],
                vec!["/three"]
            ]
        );
        // Split groups get distinct derived ids, none equal to the route id.
        assert!(groups.iter().all(|g| g.id != r.id));
        assert_ne!(groups[0].id, groups[1].id);
        assert_eq!(groups[0].id.get_version_num(), 5);
    }

    #[test]
    fn single_group_keeps_the_route_id() {
        let mut r = route(1);
        r.paths = Some(vec!["/a".into(), "/b".into()]);
        let groups = split_paths(&r);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].id, r.id);
    }

    #[test]
    fn order_of_significance() {
        let mut host = route(1);
        host.hosts = Some(vec!["a.com".into()]);
        let mut wildcard = route(2);
        wildcard.hosts = Some(vec!["*.a.com".into()]);
        assert!(priority(&host, &[]) > priority(&wildcard, &[]));

        let mut regex = route(3);
        regex.regex_priority = 1;
        let mut longer_prefix = route(4);
        longer_prefix.regex_priority = 9;
        assert!(priority(&regex, &["~/a"]) > priority(&longer_prefix, &["/aaaaaaaaa"]));
        // regex_priority is ignored for prefix routes.
        assert_eq!(
            priority(&longer_prefix, &["/ab"]),
            priority(&route(5), &["/cd"])
        );

        let mut two = route(6);
        two.methods = Some(vec!["GET".into()]);
        assert!(priority(&two, &["/a"]) > priority(&regex, &["~/a"]));
    }
}
