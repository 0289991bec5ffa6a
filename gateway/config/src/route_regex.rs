//! The regexes of routes (`~` paths, `~*` header values), as the router compiles them.
//!
//! They are checked where a route is parsed, as Kong's schema dry-runs each with the router's
//! options: a route the router cannot compile must be refused at the write, not stored, or
//! every node would fail to build its router from then on and stop taking changes.

use regex::Regex;

/// A `~` path as a Rust regex: `(?<n>` becomes `(?P<n>` the way Kong rewrites it (a plain
/// text replacement), anchored with a leading `^`.
pub fn path_source(path: &str) -> String {
    format!("^{}", path.get(1..).unwrap_or("").replace("?<", "?P<"))
}

/// A `~*` header value's regex: header values are matched lower-cased.
pub fn header_source(pattern: &str) -> String {
    pattern.to_ascii_lowercase()
}

/// Compiles `source`; the error on one line.
pub fn compile(source: &str) -> Result<Regex, String> {
    Regex::new(source).map_err(|e| {
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_groups_take_the_rust_spelling_and_paths_are_anchored() {
        assert_eq!(path_source("~/u/(?<id>\\d+)"), "^/u/(?P<id>\\d+)");
    }

    #[test]
    fn an_unbalanced_group_is_an_error_on_one_line() {
        let e = compile(&path_source("~/a(")).expect_err("unclosed group");
        assert!(!e.contains('\n') && e.contains("unclosed group"), "{e}");
    }
}
