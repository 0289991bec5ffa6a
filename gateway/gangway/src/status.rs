//! Kong's Status API on `status_listen`: `/status`, `/status/ready` and `/metrics`, with TLS
//! on `ssl` listeners (`status_ssl_cert`) and an access log (`status_access_log`).
//!
//! `/status/ready` is the load balancer health check: 503 until a config is loaded and while
//! draining.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use gangway_admin::listen::{ListenError, Server, serve_app};
use gangway_config::store::ConfigStore;
use gangway_proxy::Gateway;
use gangway_proxy::gateway::Counters;
use gangway_proxy::node_status::status_body;

/// What the Status API reads about the node, and the one change it makes (draining).
pub trait NodeStatus: Send + Sync + 'static {
    /// Connection and request counters.
    fn counters(&self) -> &Counters;
    /// The rate-limiting counter stores.
    fn quotas(&self) -> &gangway_pipeline::quota::Quotas;
    /// The loaded config's version (0 before any loaded) and Kong's `configuration_hash`.
    fn config(&self) -> (u64, String);
    /// True once a drain started.
    fn is_draining(&self) -> bool;
    /// Starts draining: `/status/ready` answers 503 while traffic is still served.
    fn set_draining(&self);
    /// The kernel fast path (`ebpf`) and the accept-time refusals (`accept_refused`), as
    /// fields to add to `/status`. Default: none.
    fn connection_guard(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
    /// The Prometheus exposition; `None` when this node has no recorder. Default: none.
    fn metrics(&self, _datastore_reachable: bool) -> Option<String> {
        None
    }
    /// The config store, whose reachability `/metrics` reports. Default: none (DB-less).
    fn store(&self) -> Option<Arc<dyn ConfigStore>> {
        None
    }
}

/// The node as `gangway start` runs it: the gateway and its kernel fast path.
pub struct NodeView {
    /// The gateway.
    pub gateway: Arc<Gateway>,
    /// The eBPF programs, or why they are off.
    pub kernel: Arc<crate::kernel::Kernel>,
    /// The database store, when the node has one.
    pub store: Option<Arc<dyn ConfigStore>>,
}

impl NodeStatus for NodeView {
    fn counters(&self) -> &Counters {
        self.gateway.counters()
    }

    fn quotas(&self) -> &gangway_pipeline::quota::Quotas {
        NodeStatus::quotas(&*self.gateway)
    }

    fn config(&self) -> (u64, String) {
        NodeStatus::config(&*self.gateway)
    }

    fn is_draining(&self) -> bool {
        self.gateway.is_draining()
    }

    fn set_draining(&self) {
        self.gateway.set_draining();
    }

    fn metrics(&self, datastore_reachable: bool) -> Option<String> {
        crate::prometheus::scrape(&self.gateway, &self.kernel, datastore_reachable)
    }

    fn store(&self) -> Option<Arc<dyn ConfigStore>> {
        self.store.clone()
    }

    fn connection_guard(&self) -> Vec<(&'static str, serde_json::Value)> {
        let refused = self.gateway.accept_check.refused();
        vec![
            ("ebpf", self.kernel.status()),
            (
                "accept_refused",
                json!({
                    "denied": refused.denied,
                    "not_allowed": refused.not_allowed,
                    "connection_limit": refused.connection_limit,
                }),
            ),
        ]
    }
}

impl NodeStatus for Gateway {
    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn quotas(&self) -> &gangway_pipeline::quota::Quotas {
        self.shared.catalog.quotas()
    }

    fn config(&self) -> (u64, String) {
        let snapshot = self.snapshot();
        (snapshot.version, snapshot.hash.clone())
    }

    fn is_draining(&self) -> bool {
        Gateway::is_draining(self)
    }

    fn set_draining(&self) {
        Gateway::set_draining(self);
    }
}

type Node = Arc<dyn NodeStatus>;

/// Binds every `status_listen` address (TLS ones with `status_ssl_cert`) and serves the
/// Status API on the current runtime.
pub async fn serve(gateway: &Gateway, node: Node) -> Result<(), ListenError> {
    let settings = &gateway.settings;
    let server = Server {
        what: "status",
        cert_key: "status_ssl_cert",
        certs: &settings.status_ssl_cert,
        keys: &settings.status_ssl_cert_key,
        access_log_key: "status_access_log",
        access_log: &settings.status_access_log,
        gate: None,
    };
    serve_app(
        &settings.status_listen,
        settings,
        router(node),
        server,
        gateway,
    )
    .await
    .map(|_| ())
}

/// The Status API routes.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready).post(set_ready))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(node)
}

/// Kong's `/metrics`: the Prometheus text exposition.
async fn metrics_text(State(node): State<Node>) -> Response {
    let reachable = match node.store() {
        Some(store) => store.reachable().await,
        None => true,
    };
    match node.metrics(reachable) {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response()
}

#[derive(Deserialize)]
struct UnitQuery {
    unit: Option<String>,
}

async fn status(State(node): State<Node>, Query(q): Query<UnitQuery>) -> Response {
    let unit = q.unit.as_deref().unwrap_or("m");
    let hash = json!(node.config().1);
    match status_body(
        node.counters(),
        node.quotas(),
        unit,
        ("configuration_hash", hash),
    ) {
        Ok(mut body) => {
            if let Some(fields) = body.as_object_mut() {
                fields.extend(
                    node.connection_guard()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v)),
                );
            }
            Json(body).into_response()
        }
        Err(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
        }
    }
}

async fn ready(State(node): State<Node>) -> Response {
    if node.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "draining"})),
        )
            .into_response();
    }
    if node.config().0 == 0 {
        let msg = "no configuration available (empty configuration present)";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": msg})),
        )
            .into_response();
    }
    (StatusCode::OK, Json(json!({"message": "ready"}))).into_response()
}

#[derive(Deserialize)]
struct ReadyForm {
    status: Option<String>,
}

async fn set_ready(State(node): State<Node>, Form(f): Form<ReadyForm>) -> Response {
    match f.status.as_deref() {
        Some("draining") => {
            node.set_draining();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "status must be 'draining'"})),
        )
            .into_response(),
    }
}
