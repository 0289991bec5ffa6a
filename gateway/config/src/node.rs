//! This node's identity, as Kong reports it (`node_id`, `hostname`, the Kong version).

use std::sync::OnceLock;

/// The Kong release whose APIs gangway speaks: what `GET /` reports as `version`, each
/// bundled plugin's `version`, and `kong_node_info`'s, so Kong's clients (decK, Kong
/// Manager, dashboards) pick their 3.x behaviour. gangway's own version is reported next to
/// it.
pub const KONG_VERSION: &str = "3.9.3";

static NODE_ID: OnceLock<uuid::Uuid> = OnceLock::new();

/// This node's id: the `node_id` setting given to [`set_node_id`], else a random one chosen
/// when first asked (Kong keeps one per node).
pub fn node_id() -> uuid::Uuid {
    *NODE_ID.get_or_init(uuid::Uuid::new_v4)
}

/// Fixes this node's id (Kong's `node_id` setting). Call before anything asks for it;
/// false when it was already chosen.
pub fn set_node_id(id: uuid::Uuid) -> bool {
    NODE_ID.set(id).is_ok()
}

/// The machine's host name; empty when it cannot be read.
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}
