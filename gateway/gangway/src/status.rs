//! Kong's Status API on `status_listen`: `/status` and `/status/ready`.
//!
//! `/status/ready` is the load balancer health check: 503 until a config is loaded and while
//! draining.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use gangway_config::settings::ListenAddr;
use gangway_proxy::Gateway;
use gangway_proxy::gateway::Counters;

/// What the Status API reads about the node, and the one change it makes (draining).
pub trait NodeStatus: Send + Sync + 'static {
    /// Connection and request counters.
    fn counters(&self) -> &Counters;
    /// The loaded config's version (0 before any loaded) and Kong's `configuration_hash`.
    fn config(&self) -> (u64, String);
    /// True once a drain started.
    fn is_draining(&self) -> bool;
    /// Starts draining: `/status/ready` answers 503 while traffic is still served.
    fn set_draining(&self);
}

impl NodeStatus for Gateway {
    fn counters(&self) -> &Counters {
        &self.counters
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

/// Binds every `listen` address and serves the Status API on the current runtime.
pub async fn serve(listen: &[ListenAddr], node: Node) -> std::io::Result<()> {
    for spec in listen {
        let listener = tokio::net::TcpListener::bind(spec.addr).await?;
        info!(listen = %listener.local_addr()?, "status listener bound");
        let app = router(node.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    Ok(())
}

/// The Status API routes.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready).post(set_ready))
        .fallback(not_found)
        .with_state(node)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not found"}))).into_response()
}

#[derive(Deserialize)]
struct UnitQuery {
    unit: Option<String>,
}

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

fn format_size(bytes: u64, unit: &str) -> serde_json::Value {
    let (div, suffix) = match unit {
        "b" => return json!(bytes),
        "k" => (1024.0, "KiB"),
        "g" => (1024.0 * 1024.0 * 1024.0, "GiB"),
        _ => (1024.0 * 1024.0, "MiB"),
    };
    json!(format!("{:.2} {suffix}", bytes as f64 / div))
}

async fn status(State(node): State<Node>, Query(q): Query<UnitQuery>) -> Response {
    let unit = q.unit.as_deref().unwrap_or("m");
    if !matches!(unit, "b" | "k" | "m" | "g") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("invalid unit \"{unit}\" (expected b, k, m or g)")})),
        )
            .into_response();
    }
    let c = node.counters();
    let active = c.active.load(Ordering::Relaxed);
    let waiting = c.waiting.load(Ordering::Relaxed).min(active);
    let body = json!({
        "memory": {
            "lua_shared_dicts": {},
            "workers_lua_vms": [{"http_allocated_gc": format_size(rss_bytes(), unit), "pid": std::process::id()}],
        },
        "server": {
            "connections_active": active,
            "connections_reading": 0,
            "connections_writing": active - waiting,
            "connections_waiting": waiting,
            "connections_accepted": c.accepted.load(Ordering::Relaxed),
            "connections_handled": c.handled.load(Ordering::Relaxed),
            "total_requests": c.total_requests.load(Ordering::Relaxed),
        },
        "configuration_hash": node.config().1,
    });
    Json(body).into_response()
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
