//! key-auth (priority 1250): authenticates a consumer by an API key found in a header, the
//! query string or the body (kong-reference.md 4.1).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::request_body::{self, BodyArgs};
use gangway_config::schema::{Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::consumer_headers;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::{Flow, Response};
use gangway_pipeline::identity::{ConsumerRef, KeyLookup};

/// Kong's name.
pub const NAME: &str = "key-auth";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 1250;

/// Kong's `kong/plugins/key-auth/schema.lua`.
pub fn schema() -> Schema {
    let flag = |default: bool| Field::boolean().required().default(json!(default));
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "key_names",
                Field::array(Field::string().matches(HEADER_NAME))
                    .required()
                    .default(json!(["apikey"]))
                    .len_min(1)
                    .describe(
                        "Names of the headers, query arguments or body fields that hold the key.",
                    ),
            ),
            ("hide_credentials", flag(false)),
            (
                "anonymous",
                Field::string()
                    .describe("A consumer id or username used when authentication fails."),
            ),
            ("key_in_header", flag(true)),
            ("key_in_query", flag(true)),
            ("key_in_body", flag(false)),
            ("run_on_preflight", flag(true)),
            ("realm", Field::string()),
        ]),
    )
    .no_consumer()
}

/// Kong's `typedefs.header_name`: an RFC 7230 token.
const HEADER_NAME: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

#[derive(Debug, Deserialize)]
struct Config {
    key_names: Vec<String>,
    hide_credentials: bool,
    anonymous: Option<String>,
    key_in_header: bool,
    key_in_query: bool,
    key_in_body: bool,
    run_on_preflight: bool,
    realm: Option<String>,
}

struct KeyAuth {
    conf: Config,
    lower_names: Vec<String>,
    /// For a name with `_`, the same with `-`: Kong reads headers through
    /// `kong.request.get_headers()`, whose lookups treat `_` as `-`.
    hyphenated: Vec<Option<String>>,
    www_authenticate: String,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let www_authenticate = match &conf.realm {
        Some(realm) => format!("Key realm=\"{realm}\""),
        None => "Key".to_owned(),
    };
    let lower_names: Vec<String> = conf
        .key_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    Ok(Box::new(KeyAuth {
        hyphenated: lower_names
            .iter()
            .map(|n| n.contains('_').then(|| n.replace('_', "-")))
            .collect(),
        lower_names,
        conf,
        www_authenticate,
    }))
}

enum Found {
    Key(String),
    Duplicate,
    None,
}

impl KeyAuth {
    fn unauthorized(&self, message: &'static str) -> Flow {
        Flow::Respond(
            Response::error(401, message)
                .with_header("WWW-Authenticate", self.www_authenticate.clone()),
        )
    }

    /// The body's arguments, read as Kong's `get_body` reads them for key-auth: a body that
    /// does not parse is as good as an empty one (logged), not an error.
    fn read_body(key_in_body: bool, ctx: &AccessCtx<'_>) -> BodyArgs {
        if !key_in_body {
            return BodyArgs::None;
        }
        match ctx
            .body()
            .map(|b| request_body::parse(ctx.content_type(), b, ctx.state.limits.post_args))
        {
            Some(Ok(args)) => args,
            Some(Err(_)) => {
                tracing::debug!("key-auth: cannot process request body; looking no further in it");
                BodyArgs::None
            }
            None => BodyArgs::None,
        }
    }

    /// Looks for the key under each configured name: header, then query, then body. As in
    /// Kong, the body is read only when a name is found in neither of the others, or to
    /// hide the key from it.
    fn find_key(&self, ctx: &mut AccessCtx<'_>) -> Result<Found, Flow> {
        let in_body = self.conf.key_in_body;
        let mut read: Option<BodyArgs> = None;
        let names = self.conf.key_names.iter().zip(&self.lower_names);
        for ((name, lower), hyphenated) in names.zip(&self.hyphenated) {
            if self.conf.key_in_header {
                let lookups = std::iter::once(lower.as_str()).chain(hyphenated.as_deref());
                for lookup in lookups {
                    let found = {
                        let mut values = ctx.table_header_values(lookup);
                        match (values.next(), values.next()) {
                            (Some(_), Some(_)) => return Ok(Found::Duplicate),
                            (Some(first), None) => {
                                Some(String::from_utf8_lossy(first).into_owned())
                            }
                            _ => None,
                        }
                    };
                    if let Some(key) = found {
                        if self.conf.hide_credentials {
                            let body = read.get_or_insert_with(|| Self::read_body(in_body, ctx));
                            self.hide(ctx, name, hyphenated.as_deref(), body);
                        }
                        return Ok(Found::Key(key));
                    }
                }
            }
            if self.conf.key_in_query {
                let values = ctx.query_values(name);
                if values.len() > 1 {
                    return Ok(Found::Duplicate);
                }
                if let Some(v) = values.into_iter().next() {
                    let key = v.into_owned();
                    if self.conf.hide_credentials {
                        let body = read.get_or_insert_with(|| Self::read_body(in_body, ctx));
                        self.hide(ctx, name, hyphenated.as_deref(), body);
                    }
                    return Ok(Found::Key(key));
                }
            }
            let args = read.get_or_insert_with(|| Self::read_body(in_body, ctx));
            match args.get(name) {
                Some(Value::String(s)) => {
                    let key = s.clone();
                    if self.conf.hide_credentials {
                        self.hide(ctx, name, hyphenated.as_deref(), args);
                    }
                    return Ok(Found::Key(key));
                }
                Some(Value::Array(_)) => return Ok(Found::Duplicate),
                _ => {}
            }
        }
        Ok(Found::None)
    }

    /// `hide_credentials`: the key leaves the header, the query and (if read) the body.
    /// Kong's `hide_credentials`: the key leaves the headers (under either spelling), the
    /// query (`clear_query_arg`: the other arguments keep their order) and the body.
    fn hide(&self, ctx: &mut AccessCtx<'_>, name: &str, hyphenated: Option<&str>, body: &BodyArgs) {
        ctx.state.headers.remove(name);
        if let Some(other) = hyphenated {
            ctx.state.headers.remove(other);
        }
        let raw = ctx.head.query(ctx.buf);
        ctx.state.query.remove_arg(raw, name);
        if self.conf.key_in_body {
            if let Some(new_body) = body.without(name) {
                ctx.state.body = Some(new_body);
            }
        }
    }

    fn anonymous(&self, ctx: &mut AccessCtx<'_>, reference: &str) -> Flow {
        let identities = &ctx.identities;
        match identities.consumer_by_id_or_username(reference) {
            Some(c) => {
                set_consumer(ctx, c, None);
                ctx.state.headers.set("X-Anonymous-Consumer", b"true");
                Flow::Continue
            }
            None => Flow::error(
                500,
                format!("anonymous consumer {reference} is configured but doesn't exist"),
            ),
        }
    }
}

/// Records the authenticated consumer and sets Kong's `X-Consumer-*` headers.
fn set_consumer(ctx: &mut AccessCtx<'_>, consumer: ConsumerRef, credential: Option<u32>) {
    ctx.state.consumer = Some(consumer);
    ctx.state.credential = credential;
    consumer_headers(&mut ctx.state.headers, ctx.identities, consumer, credential);
}

impl Plugin for KeyAuth {
    fn needs_body(&self) -> bool {
        self.conf.key_in_body
    }

    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        if !self.conf.run_on_preflight && ctx.method() == b"OPTIONS" {
            return Flow::Continue;
        }
        if self.conf.anonymous.is_some() && ctx.state.credential.is_some() {
            // An earlier authentication plugin already identified the client.
            return Flow::Continue;
        }
        let failure = match self.find_key(ctx) {
            Err(flow) => return flow,
            Ok(Found::Duplicate) => self.unauthorized("Duplicate API key found"),
            Ok(Found::None) => self.unauthorized("No API key found in request"),
            Ok(Found::Key(key)) if key.is_empty() => {
                self.unauthorized("No API key found in request")
            }
            Ok(Found::Key(key)) => {
                let now = gangway_pipeline::now_secs();
                match ctx.identities.find_key(key.as_bytes(), now) {
                    KeyLookup::Found(cred, consumer) => {
                        set_consumer(ctx, consumer, Some(cred));
                        ctx.state.headers.remove("X-Anonymous-Consumer");
                        return Flow::Continue;
                    }
                    KeyLookup::Expired | KeyLookup::Unknown => self.unauthorized("Unauthorized"),
                }
            }
        };
        match &self.conf.anonymous {
            Some(reference) => self.anonymous(ctx, reference),
            None => failure,
        }
    }
}
