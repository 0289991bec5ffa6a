//! The command line: `gangway start | check | version`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gangway, a Kong-compatible API gateway.
#[derive(Debug, Parser)]
#[command(name = "gangway", version = crate::VERSION, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in the foreground; logs go to stdout; SIGTERM/SIGINT drain and exit,
    /// SIGHUP reloads the declarative config.
    Start {
        /// Settings file (TOML); see config/gangway.toml. Default: built-in defaults.
        #[arg(short = 'c', long = "conf")]
        conf: Option<PathBuf>,
    },
    /// Validate a declarative config file; prints every error with its entity path.
    Check {
        /// The kong.yml (YAML or JSON) to validate.
        file: PathBuf,
    },
    /// Print the version.
    Version,
}
