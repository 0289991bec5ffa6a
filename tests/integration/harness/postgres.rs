//! The shared Postgres server ([`gangway_test_support::postgres`]) and what the integration
//! tests do with it through the gangway binary built for them.

use std::process::{Command, Output};

pub use gangway_test_support::postgres::Postgres;

use super::Options;

/// gangway on a test's Postgres.
pub trait PostgresExt {
    /// Runs the gangway CLI (`gangway <args>`) against this database, with `settings` added
    /// to its environment (nothing else of ours is inherited).
    fn gangway(&self, args: &[&str], settings: &[(&str, &str)]) -> Output;

    /// `gangway migrations bootstrap`; panics with its output on failure.
    fn bootstrap(&self);

    /// Options for a gangway node on this database (no declarative config).
    fn node_options(&self) -> Options;
}

impl PostgresExt for Postgres {
    fn gangway(&self, args: &[&str], settings: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gangway"))
            .args(args)
            .env_clear()
            .envs(self.gangway_env())
            .envs(settings.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("run gangway {args:?}: {e}"))
    }

    fn bootstrap(&self) {
        let out = self.gangway(&["migrations", "bootstrap"], &[]);
        assert!(
            out.status.success(),
            "migrations bootstrap: {}",
            super::said(&out)
        );
    }

    fn node_options(&self) -> Options {
        let mut opts = Options::new("unused").without_declarative_config();
        for (k, v) in self.gangway_env() {
            opts = opts.env(&k, v);
        }
        opts
    }
}
