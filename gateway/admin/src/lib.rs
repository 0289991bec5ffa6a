//! Kong's Admin API for gangway (kong-reference.md section 1), on axum.
//!
//! It owns the HTTP surface Kong's tools speak to: request decoding ([`args`]), Kong's error
//! shapes ([`reply`]), the paths Kong generates from the entity schemas ([`paths`]), the
//! generic entity endpoints with addressing, pagination and tag filters ([`crud`]), the node
//! endpoints ([`info`]) and DB-less mode's `/config` ([`dbless`]). It must not know how
//! config is stored: every entity operation goes through a
//! [`gangway_config::store::ConfigStore`]; DB-less mode's is [`memory::MemoryStore`], over
//! the snapshot the proxy serves.

pub mod args;
mod body_limit;
pub mod crud;
pub mod dbless;
mod flatten;
pub mod gui;
pub mod health;
pub mod info;
pub mod listen;
pub mod memory;
pub mod paths;
mod proxy_cache;
pub mod reply;
pub mod schemas;
pub mod shorthands;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use gangway_config::settings::HeaderToken;
use gangway_config::store::{Address, ConfigStore};
use gangway_proxy::Gateway;
use serde_json::{Map, Value};

use crate::paths::Endpoint;

/// Largest request body the Admin API reads: Kong's `nginx_admin_client_max_body_size`
/// default, 10 MiB.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// What every Admin API request needs.
pub struct AdminState {
    /// The process-wide gateway: settings, the plugin catalog, the current snapshot.
    pub gateway: Arc<Gateway>,
    /// Where entities are read and written.
    pub store: Arc<dyn ConfigStore>,
    /// Renders the Prometheus exposition, given whether the datastore answers; `None`
    /// (no recorder in this process) makes `/metrics` a 404.
    pub metrics: Option<MetricsHook>,
}

/// The binary's Prometheus exposition (`kong_datastore_reachable` set from the argument).
pub type MetricsHook = Arc<dyn Fn(bool) -> Option<String> + Send + Sync>;

impl AdminState {
    /// True when the store answers (always without a database).
    pub async fn store_reachable(&self) -> bool {
        self.store.reachable().await
    }
}

/// The Admin API's routes: one dispatcher, since Kong's paths are generated from the entity
/// kinds rather than listed.
pub fn router(state: Arc<AdminState>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    let started = Instant::now();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = answer(&state, request).await;
    decorate(&state, &mut response, origin, started);
    response
}

/// The path's segments, percent-decoded; empty ones (a trailing `/`) are dropped, as Kong
/// tolerates them.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

async fn answer(state: &AdminState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let segments = segments(parts.uri.path());
    let borrowed: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some(endpoint) = paths::resolve(&borrowed) else {
        return reply::not_found();
    };
    let method = &parts.method;
    if *method == Method::OPTIONS {
        return options(&endpoint, &parts.headers);
    }
    let allowed = endpoint.methods();
    let as_get = *method == Method::HEAD && allowed.contains(&Method::GET);
    if !as_get && !allowed.contains(method) {
        return reply::method_not_allowed();
    }
    let query = parts.uri.query();
    let needs_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    let Body {
        value: decoded,
        raw,
        form,
    } = if needs_body {
        match read_body(&endpoint, &parts.headers, body).await {
            Ok(read) => read,
            Err(response) => return response,
        }
    } else {
        Body::default()
    };
    match endpoint {
        Endpoint::Root => info::root(state),
        Endpoint::Status => {
            let unit = crud_arg(query, "unit");
            info::status(state, unit.as_deref()).await
        }
        Endpoint::Endpoints => info::endpoints(),
        Endpoint::Metrics => info::metrics(state).await,
        Endpoint::PluginsEnabled => info::plugins_enabled(state),
        Endpoint::Config if *method == Method::POST => {
            let mut params = match query_params(query, method) {
                Ok(params) => params,
                Err(e) => return reply::json_text(e.status(), &e.body()),
            };
            if let Value::Object(body) = decoded {
                params.extend(body);
            }
            dbless::post(state, params, &raw).await
        }
        Endpoint::Config => dbless::get(state),
        Endpoint::PluginSchema(name) => schemas::plugin(state, &name),
        Endpoint::PluginConfigSchema(name) => schemas::plugin_config(state, &name),
        Endpoint::ValidatePlugin => schemas::validate_plugin(state, decoded, form),
        Endpoint::Schema(name) => schemas::entity(&name),
        Endpoint::ValidateEntity(name) => schemas::validate_entity(state, &name, decoded),
        Endpoint::UpstreamHealth(key) => {
            let balancer = crud_arg(query, "balancer_health").is_some_and(|v| v == "1");
            health::upstream_health(state, &key, balancer, query).await
        }
        Endpoint::TargetHealth {
            upstream,
            target,
            address,
            healthy,
        } => {
            health::set_target_health(state, &upstream, &target, address.as_deref(), healthy).await
        }
        Endpoint::Tags(tag) => crud::tags(state.store.as_ref(), tag.as_deref(), query).await,
        Endpoint::ProxyCache { plugin, key } => {
            proxy_cache::answer(state, method, plugin.as_deref(), key.as_deref())
        }
        entity => {
            let mut body = decoded;
            if form {
                coerce_form(state, &entity, &mut body).await;
            }
            let call = crud::Call {
                method: if as_get { &Method::GET } else { method },
                args: crud::ListArgs::parse(query),
                body,
            };
            crud::handle(state.store.as_ref(), &entity, call).await
        }
    }
}

/// Coerces a form's strings to the types of the entity being written, as Kong does for
/// forms: its schema's, with a plugin's `config` from the plugin named in the body (or, for
/// a PATCH that names none, the stored plugin's), and a key's `ttl` an integer.
async fn coerce_form(state: &AdminState, endpoint: &Endpoint, body: &mut Value) {
    let kind = match endpoint {
        Endpoint::Collection(kind) | Endpoint::Entity(kind, _) => *kind,
        Endpoint::Children { child, .. } | Endpoint::Child { child, .. } => *child,
        Endpoint::Foreign(_, _, fk) => match gangway_config::dao::kind_named(fk.kind) {
            Some(parent) => parent,
            None => return,
        },
        _ => return,
    };
    let Some(schema) = gangway_config::schema::entities::entity_schema_json(kind.name) else {
        return;
    };
    let mut expect = args::Expect::from_kong_schema(&schema);
    if kind.ttl {
        expect = expect.with_field("ttl", args::Expect::Integer);
    }
    if kind.name == "plugins" {
        let stored_name = match (body["name"].as_str(), endpoint) {
            (None, Endpoint::Entity(_, key) | Endpoint::Child { child_key: key, .. }) => state
                .store
                .select(kind, &Address::parse(key))
                .await
                .ok()
                .flatten()
                .and_then(|stored| stored["name"].as_str().map(str::to_owned)),
            _ => None,
        };
        let plugin = body["name"]
            .as_str()
            .or(stored_name.as_deref())
            .and_then(|name| state.gateway.shared.catalog.find(name));
        if let Some(spec) = plugin {
            expect = expect.with_field("config", args::Expect::from(&(spec.schema)().config));
        }
    }
    args::coerce(body, &expect);
}

/// One query argument.
fn crud_arg(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The query arguments as Kong's nested params (a bare `?flag` is `true`).
fn query_params(
    query: Option<&str>,
    method: &Method,
) -> Result<Map<String, Value>, args::BodyError> {
    let brackets = args::Brackets::for_method(method);
    match args::decode_query(query.unwrap_or("").as_bytes(), brackets)? {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

/// Kong's OPTIONS answer: 204 listing the endpoint's methods.
fn options(endpoint: &Endpoint, headers: &HeaderMap) -> Response {
    let mut response = reply::empty(204);
    let allow = endpoint.allow();
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        out.insert(header::ALLOW, value.clone());
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type"));
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    response
}

/// A write's body.
struct Body {
    /// The decoded structure (`{}` for none, and for YAML, which only `/config` reads).
    value: Value,
    /// The bytes as sent.
    raw: Vec<u8>,
    /// It came as a form (urlencoded or multipart): its values are strings until coerced to
    /// the schema's types, as Kong coerces forms but never JSON.
    form: bool,
}

impl Default for Body {
    fn default() -> Body {
        Body {
            value: Value::Object(Map::new()),
            raw: Vec::new(),
            form: false,
        }
    }
}

/// Reads and decodes a write's body under Kong's rules: one Content-Type, one of the
/// accepted media types (YAML too on `/config`), at most [`MAX_BODY`] bytes.
async fn read_body(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Body, Response> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().and_then(|v| v.to_str().ok());
    if types.next().is_some() {
        return Err(reply::message(
            400,
            "Multiple Content-Type headers not allowed",
        ));
    }
    let Ok(bytes) = body_limit::read(headers, body, MAX_BODY).await else {
        return Err(reply::message(413, "Request size limit exceeded"));
    };
    // Kong compares the media type's prefix case-sensitively.
    let yaml = content_type
        .is_some_and(|t| t.starts_with("application/yaml") || t.starts_with("text/yaml"));
    if yaml {
        if *endpoint != Endpoint::Config {
            return Err(reply::empty(415));
        }
        return Ok(Body {
            raw: bytes.to_vec(),
            ..Body::default()
        });
    }
    let form = content_type.is_some_and(|t| {
        t.starts_with("application/x-www-form-urlencoded") || t.starts_with("multipart/form-data")
    });
    match args::decode_body(content_type, bytes.clone()).await {
        Ok(value) => Ok(Body {
            value,
            raw: bytes.to_vec(),
            form,
        }),
        // Kong's Admin API serves even its bare-text and empty error bodies as JSON.
        Err(e) => Err(reply::json_text(e.status(), &e.body())),
    }
}

/// Kong's headers on every Admin API answer: CORS (`admin_gui_origin`, else the request's
/// Origin, else `*`), `Server`, and `X-Kong-Admin-Latency`.
fn decorate(
    state: &AdminState,
    response: &mut Response,
    origin: Option<HeaderValue>,
    started: Instant,
) {
    let settings = &state.gateway.settings;
    let allowed = &settings.admin_gui_origin;
    let origin = if allowed.is_empty() {
        origin.unwrap_or(HeaderValue::from_static("*"))
    } else {
        let asked = origin.as_ref().and_then(|o| o.to_str().ok());
        let pick = allowed
            .iter()
            .find(|a| Some(a.as_str()) == asked)
            .unwrap_or(&allowed[0]);
        HeaderValue::from_str(pick).unwrap_or(HeaderValue::from_static("*"))
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if settings.headers.contains(HeaderToken::Server) {
        headers.insert(
            header::SERVER,
            HeaderValue::from_static(gangway_proxy::PRODUCT),
        );
    }
    if settings.headers.contains(HeaderToken::AdminLatency) {
        let ms = started.elapsed().as_millis().to_string();
        if let Ok(value) = HeaderValue::from_str(&ms) {
            headers.insert("X-Kong-Admin-Latency", value);
        }
    }
}
