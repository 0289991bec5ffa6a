use super::super::{Event, Events, Input, Parser, Stop};
use super::Scanner;

/// Every event of `text` from `events`, through the stream's end.
fn all(mut events: impl Events) -> Result<Vec<Event>, Stop> {
    let mut out = Vec::new();
    loop {
        let event = events.next()?;
        let end = event == Event::StreamEnd;
        out.push(event);
        if end {
            return Ok(out);
        }
    }
}

fn scanned(text: &str) -> Result<Vec<Event>, Stop> {
    all(Scanner::new(Input::Text(text.as_bytes())))
}

fn parsed(text: &str) -> Result<Vec<Event>, Stop> {
    all(Parser::new(Input::Text(text.as_bytes()))?)
}

/// The scanner either declines `text` or yields libyaml's events for it; true when it read it.
fn agrees(text: &str) -> bool {
    match scanned(text) {
        Ok(events) => {
            match parsed(text) {
                Ok(want) => assert_eq!(events, want, "for {text:?}"),
                Err(e) => panic!("the scanner read {text:?}, which libyaml refuses: {e:?}"),
            }
            true
        }
        Err(Stop::Unusual) => false,
        Err(e) => panic!("the scanner reports {e:?} for {text:?}: it only declines"),
    }
}

#[test]
fn usual_documents_scan_as_libyaml_parses_them() {
    for text in [
        "a: 1\n",
        "a: 1",
        "---\na: 1\n",
        "# head\n\na: 1 # trailing\n  # indented comment\nb:   two words  \n",
        "_format_version: \"3.0\"\nservices:\n  - name: api\n    url: http://127.0.0.1:9000\n    routes:\n      - name: r\n        paths: [\"/\"]\n        strip_path: false\n",
        "consumers:\n  - username: user-0\n    keyauth_credentials:\n      - key: abc\n    acls:\n      - group: gold\n    plugins:\n      - name: rate-limiting\n        config: {month: 10000, policy: local}\n  - username: user-1\n",
        "a:\nb: 2\n",
        "a:\n  b:\n    c:\nd:\n",
        "a:\n  - x\n  - y: 1\n    z:\n  - [1, 2]\n",
        "a:\n  - b:\n      c: 1\n  - d\n",
        "a:\n    -   x\n    -   k: v\n        w: 2\n",
        "'quoted key': \"value: with # signs\"\n\"k\": 'it''s'\n",
        "a: \"esc \\n \\t \\\" \\\\ \\/ \\x41 \\u00e9 \\U0001F600 \\N \\_ \\0\"\n",
        "a: {b: [1, 2, {c: d}], e: {}, f: [], \"g\":1, 'h': x y}\n",
        "a: {k: }\n",
        "a: [ a , b ,c]\n",
        "a: a,b [c] {d}\n",
        "a: x#y\n",
        "a: http://host:80/path?q=1#frag\n",
        "a: -1\nb: -x\nc: .inf\nd: ~\ne: 0x1F\n",
        "key with spaces : v\n",
        "a: ''\nb: \"\"\n",
        "services:\n- name: a\n  routes:\n  - name: r\n    paths:\n    - /\n  tags:\n  - x\nconsumers:\n- username: u\n",
        "a:\n- x\n-   y\nb: 1\n",
        "a:\n  b:\n  - x\nc:\n- y\n",
        "# caf\u{e9} \u{65e5}\u{672c}\na: Z\u{fc}rich\nb: \"\u{e9}t\u{e9}\"\nc: 'na\u{ef}ve'\n\u{e9}: [\u{e9}, {\u{e9}: \u{1f600}}]\n",
    ] {
        assert!(agrees(text), "the scanner should read {text:?}");
    }
}

#[test]
fn unusual_documents_are_declined() {
    for text in [
        "",
        "# only a comment\n",
        "- a\n",
        "scalar\n",
        "  a: 1\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\n...\n",
        "%YAML 1.2\n---\na: 1\n",
        "--- a: 1\n",
        "a:\t1\n",
        "a: 1\r\nb: 2\r\n",
        "# comment\rb: 2\n",
        "\u{feff}a: 1\n",
        "a: x\u{feff}\n",
        "a: x\u{85}y\n",
        "# x\u{2028}a: 1\n",
        "a: x\u{2029}\n",
        "a: \u{9f}\n",
        "a: \u{fffe}\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: |\n  text\n",
        "a: >\n  text\n",
        "a: one\n  two\n",
        "a: \"one\n  two\"\n",
        "a: [1,\n  2]\n",
        "a:\n  value\n",
        "? a\n: b\n",
        "a:\n  -\n    b: 1\n",
        "a:\n  - - x\n",
        "a: [a,]\n",
        "a: {a}\n",
        "a: {a:1}\n",
        "a: [a: b]\n",
        "a: [http://x]\n",
        "a: \"\\q\"\n",
        "a: \"\\ud800\"\n",
        "a: b: c\n",
        "a: 1\n b: 2\n",
        "a: 'x' y\n",
        "a: [x] y\n",
        "\"a\":b\n",
        "a: @x\n",
        "a: -\n",
        "a: - x\n",
    ] {
        assert!(
            matches!(scanned(text), Err(Stop::Unusual)),
            "the scanner should decline {text:?}"
        );
    }
    let long_key = format!("{}: 1\n", "k".repeat(1100));
    assert!(matches!(scanned(&long_key), Err(Stop::Unusual)));
    let deep = format!("a: {}{}\n", "[".repeat(80), "]".repeat(80));
    assert!(matches!(scanned(&deep), Err(Stop::Unusual)));
}

#[test]
fn the_bundled_configs_scan_as_libyaml_parses_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).expect("config/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            if agrees(&text) {
                read += 1;
            }
        }
    }
    assert!(read > 0, "the scanner read none of config/*.yml");
}

/// xorshift64*: reproducible documents without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Keys and values as written, then ones meant to trip the scanner up.
const KEYS: [&[&str]; 2] = [
    &[
        "a", "b", "name", "config", "key-2", "x y", "\"q k\"", "'s k'", "\"a:b\"", "1", "~",
    ],
    &[
        "k#",
        "-k",
        "?k",
        ":k",
        "[a]",
        "{b}",
        "&a",
        "*a",
        "!t",
        "a\tb",
        "a:b",
        "\"\\u00e9\"",
        "'it''s'",
        "a ",
        "\"\"",
        "-",
        "k #c",
    ],
];

const VALUES: [&[&str]; 2] = [
    &[
        "1",
        "-1",
        "0x1F",
        "true",
        "null",
        "~",
        ".inf",
        "1e3",
        "\"str\"",
        "'it''s'",
        "''",
        "\"\"",
        "[a, b]",
        "[]",
        "{}",
        "{a: 1, b: [x, y]}",
        "{\"a\":1}",
        "a b c",
        "a#b",
        "[a, [b, {c: d}]]",
        "{a: }",
        "http://x:1/#f",
        "-x",
        "a:b",
        "a, b",
        "{ a : 1 }",
    ],
    &[
        "\"esc \\n \\t \\\" \\x41 \\u00e9 \\U0001F600\"",
        "\"bad \\q\"",
        "\"\\ud800\"",
        "{'a':1}",
        "[a,]",
        "{a}",
        "{a:1}",
        "[a: b]",
        "a # c",
        "a: b",
        "- a",
        "-",
        "|",
        "> x",
        "&x a",
        "*x",
        "!!str a",
        "%x",
        "@x",
        "`x",
        "[a, b",
        "{a: 1",
        "[- a]",
        "[-1]",
        "[-]",
        "[a #c]",
        "'open",
        "\"open",
        "a\\b",
        "'a'b",
        "\"a\" b",
        "[\"a\" , 'b']",
        "{a: b c}",
        "[a:b]",
        "[http://x]",
        "caf\u{e9}",
        "a\tb",
        "a\rb",
        " ",
        "#",
        "---",
        "...",
        "[a]x",
        "{a: [}",
        "[{]}",
        "{a: 1, a: 2}",
        "[ ]",
        "{ }",
        "[,]",
        "- - a",
        "[a\t]",
        "{\"a\" :1}",
        "[\"a\":1]",
        "{a: b: c}",
        "'a''",
        "\"a\\\"",
    ],
];

/// Line templates (`K` a key, `V` a value), and by how much each moves the indentation
/// of the next line.
const LINES: [&[(&str, isize)]; 2] = [
    &[
        ("K: V", 0),
        ("K: V", 0),
        ("K:", 2),
        ("K:", 2),
        ("- V", 0),
        ("- K: V", 2),
        ("- K:", 4),
        ("# c", 0),
        ("", 0),
        ("K: V # c", 0),
        ("K:", -2),
        ("K:", 0),
        ("K: V", -2),
        ("- K: V", -2),
        ("K: V", -4),
    ],
    &[
        ("---", 0),
        ("V", 0),
        ("K: V#c", 0),
        ("-", 2),
        ("K : V", 0),
        ("? K", 0),
        (": V", 0),
        ("K:V", 0),
        ("- - V", 0),
        ("K: V: V", 0),
        ("  ", 0),
        ("...", 0),
        ("%TAG", 0),
        ("K:\tV", 0),
        ("K:", 1),
        ("K: V", 1),
        ("- K: V", 3),
    ],
];

impl Rng {
    /// Mostly from the first list, sometimes from the second.
    fn usual_or_not<T: Copy>(&mut self, lists: [&[T]; 2]) -> T {
        let list = lists[usize::from(self.below(8) == 0)];
        list[self.below(list.len())]
    }
}

fn document(rng: &mut Rng) -> String {
    let mut text = String::new();
    let mut indent: isize = 0;
    for _ in 0..1 + rng.below(12) {
        let (template, shift) = rng.usual_or_not(LINES);
        let mut line = " ".repeat(indent as usize);
        let mut rest = template;
        while let Some(i) = rest.find(['K', 'V']) {
            line.push_str(&rest[..i]);
            line.push_str(if rest.as_bytes()[i] == b'K' {
                rng.usual_or_not(KEYS)
            } else {
                rng.usual_or_not(VALUES)
            });
            rest = &rest[i + 1..];
        }
        line.push_str(rest);
        text.push_str(&line);
        if rng.below(30) > 0 {
            text.push('\n');
        }
        indent = (indent + shift).max(0);
    }
    text
}

#[test]
fn generated_documents_scan_as_libyaml_parses_them_or_are_declined() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut read, mut declined) = (0, 0);
    let rounds: usize = std::env::var("SCAN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    if let Some(seed) = std::env::var("SCAN_SEED").ok().and_then(|v| v.parse().ok()) {
        rng = Rng(seed);
    }
    for _ in 0..rounds {
        let text = document(&mut rng);
        if agrees(&text) {
            read += 1;
        } else {
            declined += 1;
        }
    }
    // Both outcomes must be common, or the comparison proves little.
    eprintln!("read {read}, declined {declined}");
    assert!(
        read > 1_000 && declined > 1_000,
        "read {read}, declined {declined}"
    );
}
