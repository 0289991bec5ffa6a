//! Configuration entities, the declarative `kong.yml` loader, and the compile step that turns a
//! validated [`model::Config`] into the immutable [`Snapshot`] the data plane reads.

pub mod compile;
pub mod declarative;
pub mod error;
pub mod model;
pub mod snapshot;

pub use error::{ConfigError, ConfigErrors};
pub use model::Config;
pub use snapshot::Snapshot;
