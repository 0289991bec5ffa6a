//! `cargo xtask gen-config`: writes a large declarative `kong.yml` (or JSON) for scale tests.
//!
//! One service and route guarded by key-auth and acl, then N consumers, each with one
//! key-auth credential and, every K-th, an ACL group. Keys are 32 alphanumeric characters from
//! a seeded generator, so the same flags always produce the same file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Output syntax.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

/// Where credentials and ACLs are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Under each consumer (`consumers[i].keyauth_credentials`).
    Nested,
    /// In top-level `keyauth_credentials` / `acls` lists naming the consumer.
    Flat,
}

struct Params {
    consumers: u64,
    acl_every: u64,
    custom_id_every: u64,
    format: Format,
    form: Form,
    seed: u64,
    out: PathBuf,
}

const USAGE: &str = "usage: cargo xtask gen-config --consumers N [--acl-every K (default 10, 0 = none)] \
[--custom-id-every M (default 0 = none)] [--format yaml|json (default: from --out, else yaml)] \
[--flat] [--seed S (default 1)] --out FILE";

impl Params {
    fn parse(args: &[String]) -> Result<Params> {
        let mut consumers = None;
        let mut out = None;
        let mut format = None;
        let mut p = Params {
            consumers: 0,
            acl_every: 10,
            custom_id_every: 0,
            format: Format::Yaml,
            form: Form::Nested,
            seed: 1,
            out: PathBuf::new(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--flat" {
                p.form = Form::Flat;
                continue;
            }
            let value = it
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || -> Result<u64> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: not a number"))
            };
            match flag.as_str() {
                "--consumers" => consumers = Some(number()?),
                "--acl-every" => p.acl_every = number()?,
                "--custom-id-every" => p.custom_id_every = number()?,
                "--seed" => p.seed = number()?,
                "--out" => out = Some(PathBuf::from(value)),
                "--format" => {
                    format = Some(match value.as_str() {
                        "yaml" | "yml" => Format::Yaml,
                        "json" => Format::Json,
                        _ => bail!("--format {value}: expected yaml or json"),
                    })
                }
                _ => bail!("unknown flag {flag}\n{USAGE}"),
            }
        }
        p.consumers = consumers.with_context(|| format!("--consumers is required\n{USAGE}"))?;
        p.out = out.with_context(|| format!("--out is required\n{USAGE}"))?;
        p.format = format.unwrap_or_else(|| {
            if p.out.extension().is_some_and(|e| e == "json") {
                Format::Json
            } else {
                Format::Yaml
            }
        });
        Ok(p)
    }
}

/// splitmix64: tiny, seedable, and stable across releases (unlike a library's generator).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 32 characters of `[A-Za-z0-9]`, as Kong generates keys.
    fn key(&mut self) -> [u8; 32] {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            let mut bits = self.next();
            for b in chunk {
                // 62 of 64 residues: the bias is irrelevant for test data.
                *b = ALPHABET[(bits % 62) as usize];
                bits /= 62;
            }
        }
        out
    }
}

const GROUPS: [&str; 3] = ["gold", "silver", "bronze"];

/// What one consumer gets.
struct Consumer {
    i: u64,
    custom_id: bool,
    key: [u8; 32],
    group: Option<&'static str>,
}

impl Params {
    fn consumer(&self, i: u64, rng: &mut Rng) -> Consumer {
        let every = |k: u64| i.checked_rem(k) == Some(0);
        Consumer {
            i,
            custom_id: every(self.custom_id_every),
            key: rng.key(),
            group: every(self.acl_every)
                .then(|| GROUPS[((i / self.acl_every.max(1)) % 3) as usize]),
        }
    }
}

fn key_str(key: &[u8; 32]) -> &str {
    std::str::from_utf8(key).expect("invariant: the key alphabet is ASCII")
}

fn write_yaml(p: &Params, w: &mut impl Write) -> Result<()> {
    writeln!(
        w,
        "_format_version: \"3.0\"\n_comment: generated by cargo xtask gen-config --consumers {}\n\
services:\n  - name: api\n    url: http://127.0.0.1:9000\n    routes:\n      - name: api\n        \
paths: [\"/\"]\n        plugins:\n          - name: key-auth\n            config:\n              \
key_names: [apikey]\n          - name: acl\n            config:\n              \
allow: [gold, silver]\nconsumers:",
        p.consumers
    )?;
    let mut rng = Rng(p.seed);
    let mut flat = Vec::new();
    for i in 0..p.consumers {
        let c = p.consumer(i, &mut rng);
        writeln!(w, "  - username: user-{i}")?;
        if c.custom_id {
            writeln!(w, "    custom_id: cust-{i}")?;
        }
        match p.form {
            Form::Nested => {
                writeln!(
                    w,
                    "    keyauth_credentials:\n      - key: {}",
                    key_str(&c.key)
                )?;
                if let Some(g) = c.group {
                    writeln!(w, "    acls:\n      - group: {g}")?;
                }
            }
            Form::Flat => flat.push(c),
        }
    }
    if p.form == Form::Flat {
        writeln!(w, "keyauth_credentials:")?;
        for c in &flat {
            writeln!(
                w,
                "  - consumer: user-{}\n    key: {}",
                c.i,
                key_str(&c.key)
            )?;
        }
        writeln!(w, "acls:")?;
        for c in &flat {
            if let Some(g) = c.group {
                writeln!(w, "  - consumer: user-{}\n    group: {g}", c.i)?;
            }
        }
    }
    Ok(())
}

fn write_json(p: &Params, w: &mut impl Write) -> Result<()> {
    write!(
        w,
        "{{\"_format_version\":\"3.0\",\"_comment\":\"generated by cargo xtask gen-config --consumers {}\",\
\"services\":[{{\"name\":\"api\",\"url\":\"http://127.0.0.1:9000\",\"routes\":[{{\"name\":\"api\",\
\"paths\":[\"/\"],\"plugins\":[{{\"name\":\"key-auth\",\"config\":{{\"key_names\":[\"apikey\"]}}}},\
{{\"name\":\"acl\",\"config\":{{\"allow\":[\"gold\",\"silver\"]}}}}]}}]}}],\n\"consumers\":[",
        p.consumers
    )?;
    let mut rng = Rng(p.seed);
    let mut flat = Vec::new();
    for i in 0..p.consumers {
        let c = p.consumer(i, &mut rng);
        let sep = if i == 0 { "\n" } else { ",\n" };
        write!(w, "{sep}{{\"username\":\"user-{i}\"")?;
        if c.custom_id {
            write!(w, ",\"custom_id\":\"cust-{i}\"")?;
        }
        match p.form {
            Form::Nested => {
                write!(
                    w,
                    ",\"keyauth_credentials\":[{{\"key\":\"{}\"}}]",
                    key_str(&c.key)
                )?;
                if let Some(g) = c.group {
                    write!(w, ",\"acls\":[{{\"group\":\"{g}\"}}]")?;
                }
            }
            Form::Flat => flat.push(c),
        }
        write!(w, "}}")?;
    }
    write!(w, "]")?;
    if p.form == Form::Flat {
        write!(w, ",\n\"keyauth_credentials\":[")?;
        for (n, c) in flat.iter().enumerate() {
            let sep = if n == 0 { "\n" } else { ",\n" };
            write!(
                w,
                "{sep}{{\"consumer\":\"user-{}\",\"key\":\"{}\"}}",
                c.i,
                key_str(&c.key)
            )?;
        }
        write!(w, "],\n\"acls\":[")?;
        let mut first = true;
        for c in &flat {
            if let Some(g) = c.group {
                let sep = if first { "\n" } else { ",\n" };
                first = false;
                write!(
                    w,
                    "{sep}{{\"consumer\":\"user-{}\",\"group\":\"{g}\"}}",
                    c.i
                )?;
            }
        }
        write!(w, "]")?;
    }
    writeln!(w, "}}")?;
    Ok(())
}

/// Runs `cargo xtask gen-config ...`.
pub fn run(args: &[String]) -> Result<()> {
    let p = Params::parse(args)?;
    let file = File::create(&p.out).with_context(|| format!("creating {}", p.out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    match p.format {
        Format::Yaml => write_yaml(&p, &mut w)?,
        Format::Json => write_json(&p, &mut w)?,
    }
    w.flush()
        .with_context(|| format!("writing {}", p.out.display()))?;
    eprintln!(
        "gen-config: wrote {} consumers to {}",
        p.consumers,
        p.out.display()
    );
    Ok(())
}
