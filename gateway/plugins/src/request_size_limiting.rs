//! request-size-limiting (priority 951): rejects request bodies over a size
//! (kong-reference.md 4.7).
//!
//! The size comes from Content-Length when there is one, so such a body is never read here.
//! A chunked body has no announced size: like Kong, which reads it, the plugin asks the
//! chain (through [`Plugin::chunked_body_limit`]) to buffer it, but only up to the limit,
//! so that an oversized body costs at most the limit in memory.

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::Flow;

/// Kong's name.
pub const NAME: &str = "request-size-limiting";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 951;

/// The units of `config.size_unit`, Kong's default (`megabytes`) first.
pub const SIZE_UNITS: [&str; 3] = ["megabytes", "kilobytes", "bytes"];

const TOO_LARGE: &str = "Request size limit exceeded";

/// Kong's config schema (`kong/plugins/request-size-limiting/schema.lua`).
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "allowed_payload_size",
                Field::integer()
                    .default(json!(128))
                    .describe("The largest body allowed, in `size_unit`s."),
            ),
            (
                "size_unit",
                Field::string()
                    .required()
                    .default(json!(SIZE_UNITS[0]))
                    .one_of(&SIZE_UNITS)
                    .describe("`megabytes`, `kilobytes` or `bytes` (1024-based)."),
            ),
            (
                "require_content_length",
                Field::boolean()
                    .required()
                    .default(json!(false))
                    .describe("Refuse requests without a valid Content-Length (411)."),
            ),
        ]),
    )
}

#[derive(Debug, Deserialize)]
struct Config {
    allowed_payload_size: i64,
    size_unit: String,
    require_content_length: bool,
}

struct RequestSizeLimiting {
    /// The allowed body size in bytes; negative sizes reject every body, as in Kong.
    allowed: i128,
    require_content_length: bool,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    Ok(Box::new(compile(config)?))
}

fn compile(config: &Value) -> Result<RequestSizeLimiting, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let factor: i128 = match conf.size_unit.as_str() {
        "megabytes" => 1 << 20,
        "kilobytes" => 1 << 10,
        "bytes" => 1,
        _ => {
            return Err(vec![(
                "size_unit".into(),
                format!("expected one of: {}", SIZE_UNITS.join(", ")),
            )]);
        }
    };
    Ok(RequestSizeLimiting {
        allowed: i128::from(conf.allowed_payload_size) * factor,
        require_content_length: conf.require_content_length,
    })
}

/// What the request says about its body.
#[derive(Debug, Default)]
struct Facts<'a> {
    content_length: Option<&'a [u8]>,
    transfer_encoding: Option<&'a [u8]>,
    expect: Option<&'a [u8]>,
    /// The buffered body's length, when the chain read it.
    body_len: Option<usize>,
    /// The chain stopped reading a chunked body past the limit.
    over_limit: bool,
}

/// Lua's `tonumber` on a Content-Length nginx already checked: plain decimal digits.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl RequestSizeLimiting {
    fn reject(&self, expect: Option<&[u8]>) -> Flow {
        let continues =
            expect.is_some_and(|e| e.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        Flow::error(if continues { 417 } else { 413 }, TOO_LARGE)
    }

    fn check_size(&self, length: u64, expect: Option<&[u8]>) -> Flow {
        if i128::from(length) > self.allowed {
            self.reject(expect)
        } else {
            Flow::Continue
        }
    }

    fn decide(&self, f: &Facts<'_>) -> Flow {
        if let Some(cl) = f.content_length.and_then(parse_length) {
            return self.check_size(cl, f.expect);
        }
        if self.require_content_length && f.transfer_encoding != Some(b"chunked") {
            return Flow::error(411, "A valid Content-Length header is required");
        }
        if f.over_limit {
            return self.reject(f.expect);
        }
        self.check_size(f.body_len.unwrap_or(0) as u64, f.expect)
    }
}

impl Plugin for RequestSizeLimiting {
    fn chunked_body_limit(&self) -> Option<u64> {
        Some(u64::try_from(self.allowed.max(0)).unwrap_or(u64::MAX))
    }

    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let mut lengths = ctx.header_values("content-length");
        // Several Content-Length values are no number for Kong either.
        let content_length = match (lengths.next(), lengths.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        };
        let facts = Facts {
            content_length,
            transfer_encoding: ctx.header("transfer-encoding"),
            expect: ctx.header("expect"),
            body_len: ctx.body().map(<[u8]>::len),
            over_limit: ctx.state.body_over_limit,
        };
        self.decide(&facts)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plugin(size: i64, unit: &str, require: bool) -> RequestSizeLimiting {
        compile(&json!({
            "allowed_payload_size": size,
            "size_unit": unit,
            "require_content_length": require,
        }))
        .expect("valid config")
    }

    fn status(flow: Flow) -> Option<(u16, String)> {
        match flow {
            Flow::Continue => None,
            Flow::Await(_) => panic!("request-size-limiting never waits"),
            Flow::Respond(r) => match r.body {
                gangway_pipeline::flow::ResponseBody::Error(m) => Some((r.status, m.into_owned())),
                other => panic!("unexpected body {other:?}"),
            },
        }
    }

    fn with_length(cl: &str) -> Facts<'_> {
        Facts {
            content_length: Some(cl.as_bytes()),
            ..Facts::default()
        }
    }

    #[test]
    fn content_length_decides_per_unit() {
        let mb = plugin(10, "megabytes", false);
        assert_eq!(status(mb.decide(&with_length("10485760"))), None);
        assert_eq!(
            status(mb.decide(&with_length("10485761"))),
            Some((413, TOO_LARGE.to_owned()))
        );
        let kb = plugin(10, "kilobytes", false);
        assert_eq!(status(kb.decide(&with_length("10240"))), None);
        assert!(status(kb.decide(&with_length("10241"))).is_some());
        let b = plugin(10, "bytes", false);
        assert_eq!(status(b.decide(&with_length("10"))), None);
        assert!(status(b.decide(&with_length("11"))).is_some());
        assert_eq!(b.chunked_body_limit(), Some(10));
        assert_eq!(mb.chunked_body_limit(), Some(10 << 20));
    }

    #[test]
    fn expect_continue_gets_417() {
        let p = plugin(10, "bytes", false);
        let f = Facts {
            content_length: Some(b"11"),
            expect: Some(b" 100-Continue "),
            ..Facts::default()
        };
        assert_eq!(status(p.decide(&f)), Some((417, TOO_LARGE.to_owned())));
        let f = Facts {
            transfer_encoding: Some(b"chunked"),
            expect: Some(b"100-continue"),
            over_limit: true,
            ..Facts::default()
        };
        assert_eq!(status(p.decide(&f)).map(|s| s.0), Some(417));
    }

    #[test]
    fn chunked_bodies_are_measured() {
        let p = plugin(10, "bytes", false);
        let chunked = |len: usize| Facts {
            transfer_encoding: Some(b"chunked"),
            body_len: Some(len),
            ..Facts::default()
        };
        assert_eq!(status(p.decide(&chunked(10))), None);
        assert_eq!(status(p.decide(&chunked(11))).map(|s| s.0), Some(413));
        let over = Facts {
            transfer_encoding: Some(b"chunked"),
            over_limit: true,
            ..Facts::default()
        };
        assert_eq!(status(p.decide(&over)).map(|s| s.0), Some(413));
    }

    #[test]
    fn require_content_length() {
        let p = plugin(10, "bytes", true);
        assert_eq!(
            status(p.decide(&Facts::default())),
            Some((411, "A valid Content-Length header is required".to_owned()))
        );
        assert_eq!(
            status(p.decide(&with_length("abc"))).map(|s| s.0),
            Some(411)
        );
        let chunked = Facts {
            transfer_encoding: Some(b"chunked"),
            body_len: Some(3),
            ..Facts::default()
        };
        assert_eq!(status(p.decide(&chunked)), None);
        assert_eq!(status(p.decide(&with_length("0"))), None);
        // Without the requirement, a body-less request passes.
        assert_eq!(
            status(plugin(10, "bytes", false).decide(&Facts::default())),
            None
        );
    }

    #[test]
    fn schema_defaults_to_128_megabytes() {
        let mut errors = gangway_config::ConfigErrors::default();
        let filled = schema().validate(None, "plugins[0].config", &mut errors);
        assert!(errors.0.is_empty());
        assert_eq!(
            filled,
            json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
        );
        let p = compile(&filled).expect("builds");
        assert_eq!(p.chunked_body_limit(), Some(128 << 20));
        schema().validate(
            Some(&json!({"size_unit": "gigabytes", "allowed_payload_size": 1.5})),
            "plugins[0].config",
            &mut errors,
        );
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "plugins[0].config.allowed_payload_size: expected an integer",
                "plugins[0].config.size_unit: expected one of: megabytes, kilobytes, bytes",
            ]
        );
    }

    #[test]
    fn rejects_unknown_units() {
        let err = compile(&json!({
            "allowed_payload_size": 1,
            "size_unit": "gigabytes",
            "require_content_length": false,
        }))
        .err()
        .expect("invalid");
        assert_eq!(err[0].1, "expected one of: megabytes, kilobytes, bytes");
        assert_eq!(plugin(-1, "bytes", false).chunked_body_limit(), Some(0));
        assert!(status(plugin(-1, "bytes", false).decide(&with_length("0"))).is_some());
    }
}
