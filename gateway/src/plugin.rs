//! Plugins: each declares its `config` schema as data ([`schema::Schema`]), validated and
//! rendered by one generic engine.

pub mod schema;
