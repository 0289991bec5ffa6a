//! correlation-id (priority 100001): gives each request an id in a header for the upstream,
//! and optionally echoes it to the client (kong-reference.md 4.7).

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::{AccessCtx, ConnFacts, ResponseCtx};
use gangway_pipeline::flow::Flow;

/// Kong's name.
pub const NAME: &str = "correlation-id";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 100001;

/// The generators Kong accepts for `config.generator` (default `uuid#counter`).
pub const GENERATORS: [&str; 3] = ["uuid", "uuid#counter", "tracker"];

/// Kong's config schema (`kong/plugins/correlation-id/schema.lua`).
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "header_name",
                Field::string()
                    .default(json!("Kong-Request-ID"))
                    .describe("The header that carries the id."),
            ),
            (
                "generator",
                Field::string()
                    .required()
                    .default(json!("uuid#counter"))
                    .one_of(&GENERATORS)
                    .describe("How ids are made: `uuid`, `uuid#counter` or `tracker`."),
            ),
            (
                "echo_downstream",
                Field::boolean()
                    .required()
                    .default(json!(false))
                    .describe("Also send the id back to the client."),
            ),
        ]),
    )
}

#[derive(Debug, Deserialize)]
struct Config {
    header_name: String,
    generator: String,
    echo_downstream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    header_name: String,
    lower_name: String,
    generator: Generator,
    echo_downstream: bool,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    Ok(Box::new(compile(config)?))
}

fn compile(config: &Value) -> Result<CorrelationId, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let generator = match conf.generator.as_str() {
        "uuid" => Generator::Uuid,
        "uuid#counter" => Generator::UuidCounter,
        "tracker" => Generator::Tracker,
        _ => {
            return Err(vec![(
                "generator".into(),
                format!("expected one of: {}", GENERATORS.join(", ")),
            )]);
        }
    };
    Ok(CorrelationId {
        lower_name: conf.header_name.to_ascii_lowercase(),
        header_name: conf.header_name,
        generator,
        echo_downstream: conf.echo_downstream,
    })
}

/// This process's uuid for `uuid#counter` (Kong draws one per worker).
fn worker_uuid() -> &'static str {
    static UUID: OnceLock<String> = OnceLock::new();
    UUID.get_or_init(|| uuid::Uuid::new_v4().hyphenated().to_string())
}

/// The counter of `uuid#counter`, shared by every instance as Kong's per-worker one is.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Seconds since the epoch with milliseconds, as nginx's cached `ngx.now()`.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

impl Generator {
    /// A new id, written to `out`.
    fn generate(self, conn: &ConnFacts, out: &mut String) {
        match self {
            Generator::Uuid => {
                let mut buf = uuid::Uuid::encode_buffer();
                out.push_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf));
            }
            Generator::UuidCounter => {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = write!(out, "{}#{n}", worker_uuid());
            }
            Generator::Tracker => {
                // `$server_addr-$server_port-pid-$connection-$connection_requests-now`.
                let _ = write!(
                    out,
                    "{}-{}-{}-{}-{}-{:.3}",
                    conn.server.ip(),
                    conn.server.port(),
                    std::process::id(),
                    conn.serial,
                    conn.requests,
                    now()
                );
            }
        }
    }
}

impl Plugin for CorrelationId {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let existing = ctx
            .header(&self.lower_name)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec);
        let id = match existing {
            Some(id) => id,
            None => {
                let mut id = String::with_capacity(48);
                self.generator.generate(&ctx.state.conn, &mut id);
                ctx.state.headers.set(&self.header_name, id.as_bytes());
                id.into_bytes()
            }
        };
        ctx.state
            .log_values
            .push(("correlation_id", String::from_utf8_lossy(&id).into_owned()));
        if self.echo_downstream {
            ctx.save(&id);
        }
        Flow::Continue
    }

    fn filters_headers(&self) -> bool {
        self.echo_downstream
    }

    fn header_filter(&self, ctx: &mut ResponseCtx<'_>) {
        if !self.echo_downstream {
            return;
        }
        // Kong: the id access saved, else the request's header (access did not run: no
        // route matched), else a fresh one.
        let mut id = ctx.saved().to_vec();
        if id.is_empty() {
            id = ctx
                .request_header(&self.lower_name)
                .unwrap_or_default()
                .to_vec();
        }
        if id.is_empty() {
            let mut fresh = String::new();
            self.generator.generate(&ctx.state.conn, &mut fresh);
            id = fresh.into_bytes();
        }
        ctx.state.response_headers.set(&self.header_name, &id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(generator: &str) -> Value {
        json!({"header_name": "Kong-Request-ID", "generator": generator, "echo_downstream": false})
    }

    fn generate(g: Generator, conn: &ConnFacts) -> String {
        let mut s = String::new();
        g.generate(conn, &mut s);
        s
    }

    fn is_uuid(s: &str) -> bool {
        uuid::Uuid::parse_str(s).is_ok() && s.len() == 36 && s == s.to_ascii_lowercase()
    }

    #[test]
    fn uuid_counter_shares_the_worker_uuid_and_counts_up() {
        let conn = ConnFacts::default();
        let a = generate(Generator::UuidCounter, &conn);
        let b = generate(Generator::UuidCounter, &conn);
        let (ua, na) = a.split_once('#').expect("uuid#counter");
        let (ub, nb) = b.split_once('#').expect("uuid#counter");
        assert!(is_uuid(ua), "{a}");
        assert_eq!(ua, ub);
        let (na, nb): (u64, u64) = (na.parse().expect("n"), nb.parse().expect("n"));
        assert!(nb > na);
    }

    #[test]
    fn uuid_is_fresh_each_time() {
        let conn = ConnFacts::default();
        let a = generate(Generator::Uuid, &conn);
        assert!(is_uuid(&a), "{a}");
        assert_ne!(a, generate(Generator::Uuid, &conn));
    }

    #[test]
    fn tracker_has_nginx_fields() {
        let conn = ConnFacts {
            server: "127.0.0.1:8000".parse().expect("addr"),
            serial: 7,
            requests: 3,
        };
        let t = generate(Generator::Tracker, &conn);
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 6, "{t}");
        assert_eq!(&parts[..2], ["127.0.0.1", "8000"]);
        assert_eq!(parts[2], std::process::id().to_string());
        assert_eq!(&parts[3..5], ["7", "3"]);
        let (secs, millis) = parts[5].split_once('.').expect("now");
        assert_eq!(secs.len(), 10);
        assert_eq!(millis.len(), 3);
    }

    #[test]
    fn schema_defaults_and_generator_check() {
        let mut errors = gangway_config::ConfigErrors::default();
        let filled = schema().validate(None, "plugins[0].config", &mut errors);
        assert!(errors.0.is_empty());
        assert_eq!(
            filled,
            json!({"header_name": "Kong-Request-ID", "generator": "uuid#counter", "echo_downstream": false})
        );
        let c = compile(&filled).expect("builds");
        assert_eq!(c.generator, Generator::UuidCounter);
        schema().validate(
            Some(&json!({"generator": "foo"})),
            "plugins[0].config",
            &mut errors,
        );
        assert_eq!(
            errors.0[0].to_string(),
            "plugins[0].config.generator: expected one of: uuid, uuid#counter, tracker"
        );
    }

    #[test]
    fn config_checks_the_generator() {
        for g in GENERATORS {
            assert!(compile(&config(g)).is_ok());
        }
        let err = compile(&config("foo")).err().expect("invalid");
        assert_eq!(
            err,
            vec![(
                "generator".to_owned(),
                "expected one of: uuid, uuid#counter, tracker".to_owned()
            )]
        );
        let c = compile(&config("uuid")).expect("valid");
        assert_eq!(c.lower_name, "kong-request-id");
        assert!(!c.filters_headers());
    }
}
