//! This node's identity, as Kong reports it (`node_id`, `hostname`).

use std::sync::OnceLock;

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
