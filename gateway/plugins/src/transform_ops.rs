//! The five operation lists of Kong's transformer plugins (`remove`, `rename`, `replace`,
//! `add`, `append`), for headers, query, body and JSON alike.

/// One part's operations, in Kong's order of application.
#[derive(Debug)]
pub struct Ops<R, P> {
    /// Names to remove (anything after a `:` is ignored, as in Kong).
    pub remove: Vec<String>,
    /// `old:new` renames.
    pub rename: Vec<R>,
    /// Replace existing entries only.
    pub replace: Vec<P>,
    /// Add entries that are absent.
    pub add: Vec<P>,
    /// Add another entry, even when one exists.
    pub append: Vec<P>,
}

impl<R, P> Default for Ops<R, P> {
    fn default() -> Self {
        Ops {
            remove: Vec::new(),
            rename: Vec::new(),
            replace: Vec::new(),
            add: Vec::new(),
            append: Vec::new(),
        }
    }
}

impl<R, P> Ops<R, P> {
    /// True when no operation is configured.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}
