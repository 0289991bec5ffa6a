//! This node's identity, as Kong reports it (`node_id`, `hostname`, the Kong version).

use std::sync::OnceLock;

/// The Kong release whose APIs gangway speaks: what `GET /` reports as `version`, each
/// bundled plugin's `version`, and `kong_node_info`'s, so Kong's clients (decK, Kong
/// Manager, dashboards) pick their 3.x behaviour. gangway's own version is reported next to
/// it.
pub const KONG_VERSION: &str = "3.9.3";

/// A random id chosen when the process starts (Kong keeps one per node).
pub fn node_id() -> uuid::Uuid {
    static ID: OnceLock<uuid::Uuid> = OnceLock::new();
    *ID.get_or_init(uuid::Uuid::new_v4)
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
