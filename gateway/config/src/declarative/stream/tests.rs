use serde_json::{Map, Value};

use super::super::node::Node;
use super::{Input, Reader, Sink, Stop, read};

/// Streams `consumers` and `acls`, collecting their elements.
#[derive(Default)]
struct Collect {
    lists: Vec<(String, Vec<Value>)>,
}

impl Sink for Collect {
    fn streams(&self, key: &str) -> bool {
        matches!(key, "consumers" | "acls")
    }

    fn element(&mut self, key: &str, index: usize, node: Node) {
        let list = self
            .lists
            .iter_mut()
            .find(|(k, _)| k == key)
            .expect("list_seen first");
        assert_eq!(list.1.len(), index);
        list.1.push(node.into_value());
    }

    fn list_seen(&mut self, key: &str) {
        self.lists.push((key.to_string(), Vec::new()));
    }
}

/// The document as the loader streams it: the scanner first, libyaml when it declines.
fn streamed(text: &str) -> Result<Value, Stop> {
    match streamed_by(text, Reader::Scanner) {
        Err(Stop::Unusual) => streamed_by(text, Reader::Libyaml),
        read => read,
    }
}

fn streamed_by(text: &str, reader: Reader) -> Result<Value, Stop> {
    let mut sink = Collect::default();
    let mut top: Map<String, Value> = read(Input::Text(text.as_bytes()), reader, &mut sink)?;
    for (k, v) in sink.lists {
        top.insert(k, Value::Array(v));
    }
    Ok(Value::Object(top))
}

fn generic(text: &str) -> Value {
    serde_norway::from_str(text).expect("generic parse")
}

#[test]
fn scalars_resolve_as_the_generic_loader_resolves_them() {
    let text = r#"
_format_version: "3.0"
ints: [0, 7, +5, -3, 0x1F, -0x1f, 0o17, -0o17, 0b101, -0b101, 18446744073709551615, -9223372036854775808, -0]
not_ints: [007, -007, +0123, 0x, 0x+5, +-5, 1_000, 0b2, "12", '13']
floats: [1.5, -2.25, 1e3, 1.5E-3, .5, 5., .inf, -.Inf, +.INF, .nan, 1e400, 00.5]
nulls: [~, null, Null, NULL, ]
bools: [true, True, TRUE, false, False, FALSE, yes, no, on, off, tRUE]
strings: ["true", 'null', plain words here, "esc\t\u00e9\"", 12:30:00, 1.2.3, "", '']
block: |
  line one
  line two
folded: >
  folded
  text
multi: plain
  continued
empty:
flow: {a: 1, b: [x, {c: d}]}
1: number key
null: null key
true: bool key
"quoted key": v
dup: {k: 1, j: 2, k: 3}
consumers:
  - username: a
    tags: [x, 2]
  - {username: b, created_at: 0x10}
  - 42
acls: []
"#;
    assert_eq!(streamed(text).expect("usual"), generic(text));
}

#[test]
fn json_documents_stream_too() {
    let text = r#"{"_format_version": "3.0", "consumers": [{"username": "a", "n": 1.0, "m": -0, "u": "\u00e9"}], "x": {"y": [true, null]}}"#;
    assert_eq!(streamed(text).expect("usual"), generic(text));
}

#[test]
fn anything_it_does_not_reproduce_is_left_to_the_generic_loader() {
    for text in [
        "",
        "# only a comment\n",
        "- a\n- b\n",
        "scalar\n",
        "a: 1\n---\nb: 2\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: !custom x\n",
        "consumers:\n  - !!map {username: a}\n",
        "a: 1\na: 2\n",
        "consumers: []\nconsumers: []\n",
        "a: 18446744073709551616\n",
        "a: -9223372036854775809\n",
        "[a]: 1\n",
        "a: {[x]: 1}\n",
    ] {
        assert!(streamed(text).is_err(), "{text:?} should be unusual");
    }
    let deep = format!("a: {}{}\n", "[".repeat(120), "]".repeat(120));
    assert!(streamed(&deep).is_err(), "deep nesting");
}

#[test]
fn files_stream_in_chunks() {
    let dir = std::env::temp_dir().join(format!("gangway-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("big.yml");
    let mut text = String::from("_format_version: \"3.0\"\nconsumers:\n");
    for i in 0..5000 {
        text.push_str(&format!("  - username: user-{i}\n    tags: [a, \"b\"]\n"));
    }
    std::fs::write(&path, &text).expect("write");
    for reader in [Reader::Scanner, Reader::Libyaml] {
        let mut sink = Collect::default();
        let file = std::fs::File::open(&path).expect("open");
        let hashed = file.try_clone().expect("clone");
        let mut top = read(Input::File(file), reader, &mut sink).expect("usual");
        // Hashed after the parse moved the shared offset to the end: positioned reads.
        assert_eq!(
            super::file_md5(&hashed).expect("md5"),
            super::md5_hex(text.as_bytes()),
            "{reader:?}: the file's md5, as Kong hashes a declarative file"
        );
        for (k, v) in sink.lists {
            top.insert(k, Value::Array(v));
        }
        assert_eq!(Value::Object(top), generic(&text), "{reader:?}");
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn syntax_errors_carry_serde_norways_message() {
    for text in [
        "a: [1, 2\n",
        "a: b: c\n",
        "a:\n  - x\n  y: 1\n",
        "a: \"unterminated\n",
        "a: 'x\n",
        "{a: 1\n",
        "a: 1\n b: 2\n",
        "a: 1\n]\n",
        "consumers:\n  - username: a\n  - username: [\n",
        "a: @x\n",
        "\ta: 1\n",
        "key: \"\\q\"\n",
    ] {
        let want = serde_norway::from_str::<Value>(text)
            .expect_err("invalid YAML")
            .to_string();
        match streamed(text) {
            Err(Stop::Syntax(got)) => assert_eq!(got, want, "for {text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // After the first document a syntax error is serde_norway's "more than one document".
    assert!(matches!(streamed("a: 1\n...\n]\n"), Err(Stop::Unusual)));
    assert!(matches!(streamed("a: 1\n---\n]\n"), Err(Stop::Unusual)));
}
