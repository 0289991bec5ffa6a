//! The immutable snapshot the data plane reads.

/// The compiled, immutable configuration.
pub struct Snapshot {}
