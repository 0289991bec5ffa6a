//! Candidate indexes, so matching cost does not grow with the number of plain routes.
//!
//! Every sub-route has a rank: its position in Kong's priority order. The index only narrows
//! which ranks are worth evaluating; the caller evaluates candidates in rank order, so the
//! first full match is the one Kong would pick.
//!
//! - Routes whose hosts are all exact names go into a per-host bucket (one per name).
//! - Inside a bucket, and in the global bucket for everything else, prefix-path routes go into
//!   a byte trie keyed by their paths; walking the request path through the trie yields
//!   exactly the routes whose prefix matches.
//! - The rest (regex paths, no paths) are kept as a rank-sorted list to scan.

use std::collections::HashMap;

/// A byte trie mapping path prefixes to the ranks of routes using them.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// Sorted by byte.
    edges: Vec<(u8, u32)>,
    ranks: Vec<u32>,
}

impl Trie {
    fn insert(&mut self, key: &[u8], rank: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0usize;
        for &b in key {
            let edges = &self.nodes[node].edges;
            node = match edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => edges[i].1 as usize,
                Err(i) => {
                    let next = u32::try_from(self.nodes.len()).expect("invariant: < 2^32 nodes");
                    self.nodes[node].edges.insert(i, (b, next));
                    self.nodes.push(TrieNode::default());
                    next as usize
                }
            };
        }
        self.nodes[node].ranks.push(rank);
    }

    /// Appends the ranks of every key that is a prefix of `path`.
    fn collect(&self, path: &[u8], out: &mut Vec<u32>) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        out.extend_from_slice(&root.ranks);
        let mut node = root;
        for &b in path {
            match node.edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => node = &self.nodes[node.edges[i].1 as usize],
                Err(_) => return,
            }
            out.extend_from_slice(&node.ranks);
        }
    }

    fn shrink(&mut self) {
        self.nodes.shrink_to_fit();
        for n in &mut self.nodes {
            n.edges.shrink_to_fit();
            n.ranks.shrink_to_fit();
        }
    }
}

/// Prefix routes in a trie plus the other routes as a rank-sorted list.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    prefixes: Trie,
    /// Sorted ascending (highest priority first).
    pub others: Vec<u32>,
}

impl Bucket {
    fn add(&mut self, prefixes: Option<&[Box<str>]>, rank: u32) {
        match prefixes {
            Some(ps) => {
                for p in ps {
                    self.prefixes.insert(p.as_bytes(), rank);
                }
            }
            None => self.others.push(rank),
        }
    }

    /// Appends the prefix routes matching `path` (unsorted, maybe repeated).
    pub(crate) fn collect_prefixes(&self, path: &[u8], out: &mut Vec<u32>) {
        self.prefixes.collect(path, out);
    }
}

/// The router's candidate index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_host: HashMap<Box<str>, Bucket>,
    /// Routes without an exact-hosts-only restriction.
    pub global: Bucket,
}

impl Index {
    /// Adds the route of `rank`. `exact_hosts` lists its host names when all are exact;
    /// `prefixes` its prefix paths when its paths are prefixes. Ranks must arrive ascending.
    pub(crate) fn add<'a>(
        &mut self,
        rank: u32,
        exact_hosts: Option<impl Iterator<Item = &'a str>>,
        prefixes: Option<&[Box<str>]>,
    ) {
        match exact_hosts {
            Some(hosts) => {
                let mut seen: Vec<&str> = Vec::new();
                for h in hosts {
                    if seen.contains(&h) {
                        continue;
                    }
                    seen.push(h);
                    self.by_host
                        .entry(h.into())
                        .or_default()
                        .add(prefixes, rank);
                }
            }
            None => self.global.add(prefixes, rank),
        }
    }

    pub(crate) fn finish(&mut self) {
        self.global.prefixes.shrink();
        for b in self.by_host.values_mut() {
            b.prefixes.shrink();
        }
        self.by_host.shrink_to_fit();
    }

    /// The bucket of an exact request host.
    pub(crate) fn host_bucket(&self, host: &str) -> Option<&Bucket> {
        self.by_host.get(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_collects_every_matching_prefix() {
        let mut t = Trie::default();
        t.insert(b"/", 0);
        t.insert(b"/foo", 1);
        t.insert(b"/foo/bar", 2);
        t.insert(b"/fob", 3);
        let mut out = Vec::new();
        t.collect(b"/foo/barbaz", &mut out);
        assert_eq!(out, vec![0, 1, 2]);
        out.clear();
        t.collect(b"/fo", &mut out);
        assert_eq!(out, vec![0]);
    }
}
