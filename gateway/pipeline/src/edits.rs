//! Changes plugins make to a message's headers, recorded as an overlay on the parsed head.
//!
//! The parsed head stays where it is (in the connection's input buffer); plugins record
//! removals and additions in one reusable arena, and the head writer applies them while it
//! copies headers out. Reads through the overlay see earlier plugins' changes, which is how a
//! request-transformer can hand key-auth a header that the client never sent.

use std::borrow::Cow;
use std::ops::Range;

mod query_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Remove,
    Add,
}

#[derive(Debug, Clone)]
struct Edit {
    op: Op,
    name: Range<u32>,
    value: Range<u32>,
    /// An addition that a later removal of its name took back.
    removed: bool,
}

/// Header removals and additions, applied in order. Reused across requests: no allocation
/// once the arena has grown to fit.
#[derive(Debug, Default, Clone)]
pub struct HeaderEdits {
    arena: Vec<u8>,
    edits: Vec<Edit>,
    /// [`name_bits`] of the names removed and added so far: the head writer asks about every
    /// header it copies, and most were never touched.
    removed_names: u128,
    added_names: u128,
}

/// Two bits of 128 for a header name, case-insensitively, from its length, its first byte
/// and its last eight: the writer asks about every header it copies, so this must cost a few
/// instructions, and the names one plugin sets (`RateLimit-Limit` and `RateLimit-Reset`,
/// which share length, first and last byte) should still take different bits. Two bits
/// rather than one: with the dozen names a rate-limited, authenticated request sets, one bit
/// matched an untouched name about one time in ten and sent the writer scanning the edits.
/// (`| 0x20` folds letters' case; that it also folds some punctuation only costs a false
/// match.)
#[inline]
const fn name_bits(name: &[u8]) -> u128 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let n = name.len();
    let tail = match name.last_chunk::<8>() {
        Some(last) => u64::from_le_bytes(*last),
        None => {
            let mut tail = 0;
            let mut i = 0;
            while i < n {
                tail = tail << 8 | name[i] as u64;
                i += 1;
            }
            tail
        }
    };
    let first = match name.first() {
        Some(&b) => b,
        None => 0,
    };
    let mix = (tail | FOLD) ^ ((n as u64) << 8 | (first | 0x20) as u64).rotate_right(16);
    let hash = mix.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    1 << (hash >> 57) | 1 << ((hash >> 50) & 127)
}

/// True when every bit of `bits` is in `set`.
#[inline]
fn may_hold(set: u128, bits: u128) -> bool {
    set & bits == bits
}

/// A header name written in gangway's own code (`X-RateLimit-Remaining-Minute`), checked
/// for CR, LF and NUL and hashed when the constant is built, so that setting it costs
/// neither on the request path. Names that come from config or data go as `&str` and are
/// checked and escaped each time.
#[derive(Debug, Clone, Copy)]
pub struct StaticName {
    text: &'static str,
    bits: u128,
}

impl StaticName {
    /// Panics (at compile time, in a `const`) on an empty name or one holding CR, LF or NUL.
    pub const fn new(text: &'static str) -> StaticName {
        let bytes = text.as_bytes();
        assert!(!bytes.is_empty(), "a header name is not empty");
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                !matches!(bytes[i], b'\r' | b'\n' | 0),
                "a header name holds no CR, LF or NUL"
            );
            i += 1;
        }
        StaticName {
            text,
            bits: name_bits(bytes),
        }
    }

    /// The name as written.
    pub const fn as_str(&self) -> &'static str {
        self.text
    }
}

/// The header name of an edit: from code ([`StaticName`]) or from config and data (`&str`).
#[derive(Debug, Clone, Copy)]
pub struct EditName<'a> {
    text: &'a [u8],
    bits: u128,
    /// Known to hold no CR, LF or NUL.
    clean: bool,
}

impl<'a> From<&'a [u8]> for EditName<'a> {
    #[inline]
    fn from(text: &'a [u8]) -> Self {
        EditName {
            text,
            bits: name_bits(text),
            clean: false,
        }
    }
}

impl<'a> From<&'a str> for EditName<'a> {
    #[inline]
    fn from(text: &'a str) -> Self {
        EditName::from(text.as_bytes())
    }
}

impl<'a> From<&'a String> for EditName<'a> {
    #[inline]
    fn from(text: &'a String) -> Self {
        EditName::from(text.as_str())
    }
}

impl<'a> From<StaticName> for EditName<'a> {
    #[inline]
    fn from(name: StaticName) -> Self {
        EditName {
            text: name.text.as_bytes(),
            bits: name.bits,
            clean: true,
        }
    }
}

fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> Range<u32> {
    let start = arena.len() as u32;
    arena.extend_from_slice(bytes);
    start..arena.len() as u32
}

/// [`push`] of a header name or value that plugins took from config or data (a consumer's
/// username, an ACL group, a template): CR, LF and NUL go as `%0D`, `%0A` and `%00`, as
/// OpenResty escapes them in `ngx.req.set_header`, so no such value can end a header line
/// and start another (or a second request).
fn push_header_text(arena: &mut Vec<u8>, bytes: &[u8]) -> Range<u32> {
    if !holds_line_break(bytes) {
        return push(arena, bytes);
    }
    let start = arena.len() as u32;
    for &b in bytes {
        match b {
            b'\r' => arena.extend_from_slice(b"%0D"),
            b'\n' => arena.extend_from_slice(b"%0A"),
            0 => arena.extend_from_slice(b"%00"),
            _ => arena.push(b),
        }
    }
    start..arena.len() as u32
}

/// True when `bytes` holds CR, LF or NUL. Eight bytes at a time: every header a plugin sets
/// passes here (a rate-limited request sets seven), and a byte loop cost a nanosecond a byte.
fn holds_line_break(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Exact: non-zero if and only if some byte of `word` is zero.
    let zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if zero_byte(word) | zero_byte(word ^ (ONES * 0x0d)) | zero_byte(word ^ (ONES * 0x0a)) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

impl HeaderEdits {
    /// Forgets every edit (start of a request).
    pub fn clear(&mut self) {
        self.arena.clear();
        self.edits.clear();
        self.removed_names = 0;
        self.added_names = 0;
    }

    /// True when nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    fn bytes(&self, r: &Range<u32>) -> &[u8] {
        &self.arena[r.start as usize..r.end as usize]
    }

    /// Removes every value of `name`, original or added.
    pub fn remove<'n>(&mut self, name: impl Into<EditName<'n>>) {
        self.remove_returning_name(name.into());
    }

    /// [`HeaderEdits::remove`], returning where the name went in the arena.
    fn remove_returning_name(&mut self, name: EditName<'_>) -> Range<u32> {
        let text = name.text;
        if may_hold(self.added_names, name.bits) {
            let arena = &self.arena;
            for edit in &mut self.edits {
                let added = &arena[edit.name.start as usize..edit.name.end as usize];
                if edit.op == Op::Add && added.eq_ignore_ascii_case(text) {
                    edit.removed = true;
                }
            }
        }
        self.removed_names |= name.bits;
        let name_at = self.push_name(name);
        self.edits.push(Edit {
            op: Op::Remove,
            name: name_at.clone(),
            value: 0..0,
            removed: false,
        });
        name_at
    }

    fn push_name(&mut self, name: EditName<'_>) -> Range<u32> {
        if name.clean {
            push(&mut self.arena, name.text)
        } else {
            push_header_text(&mut self.arena, name.text)
        }
    }

    /// Adds one more value of `name` (an appended header line).
    pub fn add<'n>(&mut self, name: impl Into<EditName<'n>>, value: &[u8]) {
        let name = name.into();
        let name_at = self.push_name(name);
        self.add_at(name.bits, name_at, value);
    }

    /// [`HeaderEdits::add`] of a name already in the arena at `name_at`.
    fn add_at(&mut self, bits: u128, name_at: Range<u32>, value: &[u8]) {
        let value = push_header_text(&mut self.arena, value);
        self.push_added(bits, name_at, value);
    }

    fn push_added(&mut self, bits: u128, name_at: Range<u32>, value: Range<u32>) {
        self.added_names |= bits;
        self.edits.push(Edit {
            op: Op::Add,
            name: name_at,
            value,
            removed: false,
        });
    }

    /// Replaces every value of `name` with `value`.
    pub fn set<'n>(&mut self, name: impl Into<EditName<'n>>, value: &[u8]) {
        let name = name.into();
        let name_at = self.remove_returning_name(name);
        self.add_at(name.bits, name_at, value);
    }

    /// [`HeaderEdits::set`] of a decimal number, written straight into the arena (digits
    /// need no check for line breaks).
    pub fn set_number<'n>(&mut self, name: impl Into<EditName<'n>>, n: i64) {
        let name = name.into();
        let name_at = self.remove_returning_name(name);
        let value = push(&mut self.arena, itoa::Buffer::new().format(n).as_bytes());
        self.push_added(name.bits, name_at, value);
    }

    /// Index of the last removal of `name`, if any.
    fn last_removal(&self, name: EditName<'_>) -> Option<usize> {
        if !may_hold(self.removed_names, name.bits) {
            return None;
        }
        self.edits.iter().rposition(|e| {
            e.op == Op::Remove && self.bytes(&e.name).eq_ignore_ascii_case(name.text)
        })
    }

    /// True when the original values of `name` no longer apply. Asked of every header the
    /// writers copy: inlined, so that a name no edit touched costs a mask test.
    #[inline]
    pub fn removes_original<'n>(&self, name: impl Into<EditName<'n>>) -> bool {
        let name = name.into();
        may_hold(self.removed_names, name.bits) && self.last_removal(name).is_some()
    }

    /// The values of `name` after the edits: the originals (unless removed) then the added
    /// ones still standing.
    pub fn values<'s, I>(
        &'s self,
        name: impl Into<EditName<'s>>,
        originals: I,
    ) -> impl Iterator<Item = &'s [u8]>
    where
        I: Iterator<Item = &'s [u8]> + 's,
    {
        let name = name.into();
        let cut = self.last_removal(name);
        let originals = if cut.is_some() { None } else { Some(originals) };
        let from = cut.map_or(0, |i| i + 1);
        let added = if may_hold(self.added_names, name.bits) {
            &self.edits[from..]
        } else {
            &[]
        };
        originals.into_iter().flatten().chain(
            added
                .iter()
                .filter(move |e| {
                    e.op == Op::Add && self.bytes(&e.name).eq_ignore_ascii_case(name.text)
                })
                .map(|e| self.bytes(&e.value)),
        )
    }

    /// Added headers still standing, as `(name, value)` in the order they were added.
    pub fn added(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.edits
            .iter()
            .filter(|e| e.op == Op::Add && !e.removed)
            .map(|e| (self.bytes(&e.name), self.bytes(&e.value)))
    }

    /// The first `max` headers after the edits, in order: the `originals` the edits left
    /// standing, then the added ones. Kong's `get_headers()` table (`lua_max_req_headers`)
    /// holds these.
    pub fn table<'s>(
        &'s self,
        originals: impl Iterator<Item = (&'s [u8], &'s [u8])> + 's,
        max: u16,
    ) -> impl Iterator<Item = (&'s [u8], &'s [u8])> {
        originals
            .filter(|(n, _)| !self.removes_original(*n))
            .chain(self.added())
            .take(usize::from(max))
    }
}

/// A decoded query argument: `None` for a name without `=` (`?flag`, Lua `true` in Kong's
/// argument table, written back as `flag` alone).
pub type QueryArg = (String, Option<String>);

/// A decoded query argument, borrowed from the query where decoding changed nothing.
pub type QueryItem<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

/// Kong's `lua_max_uri_args` default: how many query arguments plugins read.
pub const DEFAULT_MAX_URI_ARGS: u16 = 100;

/// A query piece split at its first `=`: the name, and the value unless there is no `=`.
fn split_piece(piece: &[u8]) -> (&[u8], Option<&[u8]>) {
    match piece.iter().position(|&b| b == b'=') {
        Some(eq) => (&piece[..eq], Some(&piece[eq + 1..])),
        None => (piece, None),
    }
}

/// A query name or value decoded as a form decodes it: `+` is a space, `%XX` a byte, and
/// bytes that are not UTF-8 are replaced.
fn decode_text(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'+') {
        return percent_encoding::percent_decode(raw).decode_utf8_lossy();
    }
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Cow::Owned(
        percent_encoding::percent_decode(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Every argument of a raw query string (without `?`), decoded, in order, as a URL's search
/// parameters hold them (what Kong's `clear_query_arg` rewrites): a name without `=` has no
/// value, empty pieces (`a=1&&b=2`) are skipped, an empty name (`=x`) is kept.
fn search_params(raw: &[u8]) -> impl Iterator<Item = QueryItem<'_>> {
    raw.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = split_piece(piece);
            (decode_text(name), value.map(decode_text))
        })
}

/// The pieces `ngx.req.get_uri_args(max)` reads from a raw query string (without `?`), not
/// yet decoded: the first `max` (empty pieces count), each split at its first `=`, those
/// with an empty name left out.
pub fn uri_arg_pieces(raw: &[u8], max: u16) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    raw.split(|&b| b == b'&')
        .take(usize::from(max))
        .map(split_piece)
        .filter(|(name, _)| !name.is_empty())
}

/// The arguments plugins read from a raw query string, as Kong's `kong.request.get_query`
/// gives them: [`uri_arg_pieces`] with `+` and `%XX` decoded.
pub fn uri_args(raw: &[u8], max: u16) -> impl Iterator<Item = QueryItem<'_>> {
    uri_arg_pieces(raw, max).map(|(name, value)| (decode_text(name), value.map(decode_text)))
}

/// The query string after plugin edits: untouched, or rebuilt from decoded pairs.
#[derive(Debug, Clone)]
pub struct QueryEdits {
    /// `Some` once a plugin changed the query: decoded arguments in order.
    pairs: Option<Vec<QueryArg>>,
    /// The pairs are written sorted by name (Kong's `set_query`, which request-transformer
    /// uses); only argument removals (`clear_query_arg`) keep the client's order.
    sorted: bool,
    /// `lua_max_uri_args`: how many arguments [`Self::args`] reads; kept across requests.
    max_args: u16,
}

impl Default for QueryEdits {
    fn default() -> Self {
        QueryEdits {
            pairs: None,
            sorted: false,
            max_args: DEFAULT_MAX_URI_ARGS,
        }
    }
}

impl QueryEdits {
    /// Forgets the edits.
    pub fn clear(&mut self) {
        self.pairs = None;
        self.sorted = false;
    }

    /// Sets how many arguments plugins read (`lua_max_uri_args`, at least 1).
    pub fn set_max_args(&mut self, max: u16) {
        self.max_args = max.max(1);
    }

    /// How many arguments plugins read (`lua_max_uri_args`).
    pub fn max_args(&self) -> u16 {
        self.max_args
    }

    /// The arguments as Kong's `kong.request.get_query()` returns them to a plugin: the
    /// current query (after earlier plugins' edits) through [`uri_args`].
    pub fn args<'a>(&'a self, original: Option<&'a [u8]>) -> impl Iterator<Item = QueryItem<'a>> {
        let max = self.max_args;
        let (edited, raw) = match &self.pairs {
            Some(pairs) => (Some(pairs.iter().take(usize::from(max))), None),
            None => (None, Some(uri_args(original.unwrap_or_default(), max))),
        };
        let edited = edited
            .into_iter()
            .flatten()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, value)| {
                (
                    Cow::Borrowed(name.as_str()),
                    value.as_deref().map(Cow::Borrowed),
                )
            });
        edited.chain(raw.into_iter().flatten())
    }

    /// Every decoded value of argument `name` in [`Self::args`] (a flag's is empty).
    pub fn values<'a>(
        &'a self,
        original: Option<&'a [u8]>,
        name: &'a str,
    ) -> impl Iterator<Item = Cow<'a, str>> {
        self.args(original)
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// Kong's `kong.service.request.clear_query_arg`: removes every `name` argument of the
    /// whole query (not only the arguments plugins read) and keeps the others in the
    /// client's order. Returns whether one was removed; the query is left untouched
    /// otherwise.
    pub fn remove_arg(&mut self, original: Option<&[u8]>, name: &str) -> bool {
        if self.pairs.is_none() {
            let raw = original.unwrap_or_default();
            if !search_params(raw).any(|(k, _)| k == name) {
                return false;
            }
            self.pairs = Some(search_params(raw).map(owned).collect());
        }
        let pairs = self.pairs.get_or_insert_default();
        let before = pairs.len();
        pairs.retain(|(k, _)| k != name);
        before != pairs.len()
    }

    /// True when the original query still applies.
    pub fn is_untouched(&self) -> bool {
        self.pairs.is_none()
    }

    /// Kong's `set_query` after `get_query`: the arguments plugins read ([`Self::args`]),
    /// owned, to be edited and written back sorted. Arguments past `lua_max_uri_args` and
    /// those with an empty name are dropped from the upstream query, as in Kong.
    pub fn pairs_mut(&mut self, original: Option<&[u8]>) -> &mut Vec<QueryArg> {
        self.sorted = true;
        let max = self.max_args;
        if let Some(pairs) = &mut self.pairs {
            pairs.truncate(usize::from(max));
            pairs.retain(|(name, _)| !name.is_empty());
        }
        self.pairs.get_or_insert_with(|| {
            uri_args(original.unwrap_or_default(), max)
                .map(owned)
                .collect()
        })
    }

    /// The edited pairs, if any edit happened.
    pub fn pairs(&self) -> Option<&[QueryArg]> {
        self.pairs.as_deref()
    }

    /// Writes `?query` for the upstream: the original bytes when untouched, else the pairs
    /// encoded as Kong writes them: sorted as `set_query` does, or in order when arguments
    /// were only removed (`clear_query_arg`).
    pub fn write(&self, original: Option<&[u8]>, out: &mut Vec<u8>) {
        match &self.pairs {
            None => {
                if let Some(q) = original {
                    out.push(b'?');
                    out.extend_from_slice(q);
                }
            }
            Some(pairs) if pairs.is_empty() => {}
            Some(pairs) => {
                out.push(b'?');
                if self.sorted {
                    query_text::write_sorted(out, pairs);
                } else {
                    query_text::write_in_order(out, pairs);
                }
            }
        }
    }
}

fn owned((name, value): QueryItem<'_>) -> QueryArg {
    (name.into_owned(), value.map(Cow::into_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<'a>(e: &'a HeaderEdits, name: &'a str, orig: &'a [&'a [u8]]) -> Vec<&'a [u8]> {
        e.values(name, orig.iter().copied()).collect()
    }

    #[test]
    fn reads_see_earlier_edits() {
        let mut e = HeaderEdits::default();
        let orig: &[&[u8]] = &[b"a1"];
        assert_eq!(collect(&e, "x", orig), vec![b"a1" as &[u8]]);
        e.add("X", b"a2");
        assert_eq!(collect(&e, "x", orig), vec![b"a1" as &[u8], b"a2"]);
        e.set("x", b"b");
        assert_eq!(collect(&e, "x", orig), vec![b"b" as &[u8]]);
        assert!(e.removes_original("X"));
        e.remove("x");
        assert!(collect(&e, "x", orig).is_empty());
        assert_eq!(e.added().count(), 0);
    }

    /// A name's bits do not depend on its case or on whether it came from code or data, and
    /// the names one plugin sets with the same length, first and last byte differ.
    #[test]
    fn names_hash_alike_whatever_their_case_and_source() {
        const RESET: StaticName = StaticName::new("RateLimit-Reset");
        for name in ["RateLimit-Reset", "ratelimit-reset", "RATELIMIT-RESET"] {
            assert_eq!(EditName::from(name).bits, RESET.bits, "{name}");
        }
        assert_ne!(name_bits(b"RateLimit-Limit"), RESET.bits);
        for short in ["", "a", "Via", "x-ab", "Date"] {
            assert_ne!(name_bits(short.as_bytes()), 0, "{short:?}");
            assert_eq!(
                name_bits(short.as_bytes()),
                name_bits(short.to_uppercase().as_bytes())
            );
        }
        let mut e = HeaderEdits::default();
        e.set(RESET, b"1");
        assert!(e.removes_original("ratelimit-reset"));
        assert!(!e.removes_original("RateLimit-Limit"));
        assert_eq!(collect(&e, "RATELIMIT-RESET", &[b"0"]), vec![b"1" as &[u8]]);
    }

    #[test]
    fn a_number_is_set_as_its_digits() {
        let mut e = HeaderEdits::default();
        e.add("Retry-After", b"9");
        e.set_number(StaticName::new("Retry-After"), -42);
        e.set_number("X-N", 0);
        let added: Vec<_> = e.added().collect();
        assert_eq!(
            added,
            vec![(b"Retry-After" as &[u8], b"-42" as &[u8]), (b"X-N", b"0")]
        );
    }

    #[test]
    fn line_breaks_are_found_at_every_offset() {
        for len in 0..40 {
            let clean: Vec<u8> = (0..len).map(|i| b'!' + (i % 90) as u8).collect();
            assert!(!holds_line_break(&clean), "{len}");
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    let mut dirty = clean.clone();
                    dirty[at] = bad;
                    assert!(holds_line_break(&dirty), "{len} {at} {bad}");
                }
                let mut near = clean.clone();
                near[at] = [0x0b, 0x0c, 0x0e, 0x8d, 0x8a, 0x80, 0xff, b'\t'][at % 8];
                assert!(!holds_line_break(&near), "{len} {at}");
            }
        }
    }

    #[test]
    fn values_and_names_from_data_cannot_start_a_header_line() {
        let mut e = HeaderEdits::default();
        e.set("X-Consumer-Username", b"eve\r\nX-Admin: 1");
        e.add("X-Evil\r\nA", b"v\0");
        let added: Vec<_> = e.added().collect();
        assert_eq!(
            added,
            vec![
                (
                    b"X-Consumer-Username" as &[u8],
                    b"eve%0D%0AX-Admin: 1" as &[u8]
                ),
                (b"X-Evil%0D%0AA", b"v%00"),
            ]
        );
    }

    #[test]
    fn added_skips_headers_removed_later() {
        let mut e = HeaderEdits::default();
        e.add("a", b"1");
        e.add("b", b"2");
        e.remove("A");
        e.add("a", b"3");
        let added: Vec<_> = e.added().collect();
        assert_eq!(added, vec![(b"b" as &[u8], b"2" as &[u8]), (b"a", b"3")]);
        e.clear();
        assert!(e.is_empty());
    }

    #[test]
    fn the_header_table_holds_the_first_max_after_the_edits() {
        let originals: [(&[u8], &[u8]); 4] = [
            (b"Host", b"h"),
            (b"X-A", b"1"),
            (b"X-B", b"2"),
            (b"X-C", b"3"),
        ];
        let mut e = HeaderEdits::default();
        e.remove("x-a");
        e.add("X-New", b"n");
        fn names<'s>(
            e: &'s HeaderEdits,
            originals: &'s [(&'s [u8], &'s [u8])],
            max: u16,
        ) -> Vec<&'s [u8]> {
            e.table(originals.iter().copied(), max)
                .map(|(n, _)| n)
                .collect()
        }
        // The removed header leaves room; the added one comes after the originals.
        assert_eq!(names(&e, &originals, 3), [b"Host" as &[u8], b"X-B", b"X-C"]);
        assert_eq!(
            names(&e, &originals, 4),
            [b"Host" as &[u8], b"X-B", b"X-C", b"X-New"]
        );
        assert_eq!(names(&e, &originals, 100).len(), 4);
        assert_eq!(names(&e, &originals, 1), [b"Host" as &[u8]]);
    }

    #[test]
    fn removing_an_argument_keeps_the_clients_order() {
        // Kong's spec: "removes apikey in encoded query and preserves order".
        let raw: &[u8] = b"c=valu%651&b=value2&api%6B%65%79=kong&a=valu%653";
        let mut q = QueryEdits::default();
        assert!(!q.remove_arg(Some(raw), "missing"));
        assert!(q.is_untouched(), "nothing removed, nothing rewritten");
        assert!(q.remove_arg(Some(raw), "apikey"));
        let mut out = Vec::new();
        q.write(Some(raw), &mut out);
        assert_eq!(out, b"?c=value1&b=value2&a=value3");
        // A later set_query-style edit sorts, as Kong's encode_args does.
        q.pairs_mut(Some(raw)).push(("0".into(), Some("z".into())));
        out.clear();
        q.write(Some(raw), &mut out);
        assert_eq!(out, b"?0=z&a=value3&b=value2&c=value1");
    }

    #[test]
    fn query_edits_reencode_sorted() {
        let mut q = QueryEdits::default();
        let mut out = Vec::new();
        q.write(Some(b"b=1&a=%20x"), &mut out);
        assert_eq!(out, b"?b=1&a=%20x");
        q.pairs_mut(Some(b"b=1&a=%20x"))
            .retain(|(k, _)| k != "missing");
        out.clear();
        q.write(Some(b"ignored"), &mut out);
        // ngx.encode_args writes a space as %20.
        assert_eq!(out, b"?a=%20x&b=1");
        q.pairs_mut(None).clear();
        out.clear();
        q.write(None, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_flag_stays_a_flag_through_an_edit() {
        // Kong's `?flag` is `true` in the argument table and `flag` alone when written back;
        // `e=` is the empty string and keeps its `=`.
        let raw: &[u8] = b"flag&e=&b=1";
        let mut q = QueryEdits::default();
        let pairs = q.pairs_mut(Some(raw));
        assert_eq!(
            pairs,
            &vec![
                ("flag".into(), None),
                ("e".into(), Some(String::new())),
                ("b".into(), Some("1".into()))
            ]
        );
        pairs.push(("c d".into(), Some("x y".into())));
        let mut out = Vec::new();
        q.write(Some(raw), &mut out);
        assert_eq!(out, b"?b=1&c%20d=x%20y&e=&flag");
    }

    #[test]
    fn plugins_read_the_arguments_as_get_uri_args_parses_them() {
        let q = QueryEdits::default();
        let raw: &[u8] = b"apikey=a%2Fb&x=1&&=skipped&flag&apikey=c&s=a+b%zz";
        let args: Vec<_> = q.args(Some(raw)).collect();
        assert_eq!(
            args,
            vec![
                ("apikey".into(), Some("a/b".into())),
                ("x".into(), Some("1".into())),
                ("flag".into(), None),
                ("apikey".into(), Some("c".into())),
                ("s".into(), Some("a b%zz".into())),
            ]
        );
        let values: Vec<_> = q.values(Some(raw), "apikey").collect();
        assert_eq!(values, vec!["a/b", "c"]);
        assert_eq!(q.values(Some(raw), "flag").collect::<Vec<_>>(), vec![""]);
        assert_eq!(q.args(None).count(), 0);
    }

    #[test]
    fn plugins_read_at_most_lua_max_uri_args_pieces_empty_ones_counted() {
        // lua-nginx-module counts every `&`-ended piece, an empty one too, towards the limit.
        let mut q = QueryEdits::default();
        q.set_max_args(3);
        let names = |q: &QueryEdits, raw: &'static [u8]| -> Vec<String> {
            q.args(Some(raw)).map(|(k, _)| k.into_owned()).collect()
        };
        assert_eq!(names(&q, b"a&b&c&d"), ["a", "b", "c"]);
        assert_eq!(names(&q, b"a&&=x&d"), ["a"]);
        let hundred_and_one: Vec<String> = (0..101).map(|i| format!("k{i}=v")).collect();
        let raw = hundred_and_one.join("&");
        let q = QueryEdits::default();
        assert_eq!(q.args(Some(raw.as_bytes())).count(), 100);
        assert_eq!(q.values(Some(raw.as_bytes()), "k100").count(), 0);
    }

    #[test]
    fn set_query_drops_what_plugins_cannot_read_and_clear_query_arg_keeps_it() {
        let mut many: Vec<String> = vec!["=e".into()];
        many.extend((0..100).map(|i| format!("k{i:03}=v")));
        let raw = many.join("&");
        let mut removed = QueryEdits::default();
        assert!(removed.remove_arg(Some(raw.as_bytes()), "k050"));
        let mut out = Vec::new();
        removed.write(Some(raw.as_bytes()), &mut out);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("?=e&k000=v&"), "{text}");
        assert!(
            text.ends_with("&k099=v") && !text.contains("k050"),
            "{text}"
        );
        // Reading after the removal sees the rewritten query: still 100 pieces, `=e` counted.
        assert_eq!(removed.args(Some(raw.as_bytes())).count(), 99);

        let mut set = QueryEdits::default();
        let pairs = set.pairs_mut(Some(raw.as_bytes()));
        assert_eq!(
            pairs.len(),
            99,
            "`=e` is left out and k099 is the 101st piece"
        );
        assert_eq!(pairs.last().map(|(k, _)| k.as_str()), Some("k098"));
        // A set_query after a removal reads the rewritten query as get_uri_args would.
        let removed_then_set = removed.pairs_mut(None);
        assert_eq!(
            removed_then_set.len(),
            99,
            "100 pieces are left, `=e` among them"
        );
        assert_eq!(removed_then_set[0].0, "k000");
        assert_eq!(removed_then_set[98].0, "k099");
    }
}
