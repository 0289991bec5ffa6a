//! The command line: `gangway start | check | version | config | migrations | ebpf`.

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
    /// Declarative files and the database, as `kong config` does.
    Config {
        /// What to do.
        #[command(subcommand)]
        step: ConfigStep,
        /// Settings file (TOML); the `pg_*` keys (or `KONG_PG_*` variables) name the database.
        #[arg(short = 'c', long = "conf", global = true)]
        conf: Option<PathBuf>,
    },
    /// The kernel fast path on this host.
    Ebpf {
        /// What to do.
        #[command(subcommand)]
        step: EbpfStep,
    },
    /// Manage the Postgres schema (`database = postgres`), as `kong migrations` does.
    Migrations {
        /// What to do.
        #[command(subcommand)]
        step: MigrationStep,
        /// Settings file (TOML); the `pg_*` keys (or `KONG_PG_*` variables) name the database.
        #[arg(short = 'c', long = "conf", global = true)]
        conf: Option<PathBuf>,
    },
}

/// `gangway config` steps.
#[derive(Debug, Subcommand)]
pub enum ConfigStep {
    /// Validate a declarative file, as `start` would load it.
    Parse {
        /// The kong.yml (YAML or JSON).
        file: PathBuf,
    },
    /// Upsert a declarative file's entities into the database in one transaction: all of
    /// them, or none. Nothing already there is deleted.
    #[command(name = "db_import")]
    DbImport {
        /// The kong.yml (YAML or JSON).
        file: PathBuf,
    },
    /// Write every entity in the database as a declarative file; it refuses to overwrite
    /// one. Default: standard output.
    #[command(name = "db_export")]
    DbExport {
        /// Where to write.
        file: Option<PathBuf>,
    },
}

/// `gangway ebpf` steps.
#[derive(Debug, Subcommand)]
pub enum EbpfStep {
    /// Print the maps of every gangway IP guard loaded on this host (as root): guarded
    /// ports with their lists and caps, drops by reason, live connections per source.
    Status,
}

/// `gangway migrations` steps.
#[derive(Debug, Subcommand)]
pub enum MigrationStep {
    /// Create the schema on an empty database; does nothing on a bootstrapped one.
    Bootstrap,
    /// Run the migrations not run yet.
    Up,
    /// Run pending teardown steps (gangway's migrations have none).
    Finish,
    /// Print where the schema stands, as JSON.
    Status,
    /// Drop everything gangway created.
    Reset {
        /// Confirm: every entity is lost.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

/// The settings a command runs under, those `start` would use (the environment, and `conf`
/// when given); the exit code after saying why when they are invalid.
pub fn command_settings(
    conf: Option<&std::path::Path>,
) -> Result<gangway_config::settings::Settings, std::process::ExitCode> {
    use gangway_config::settings;
    match settings::load(conf, settings::process_env()) {
        Ok((settings, _warnings)) => Ok(settings),
        Err(e) => {
            eprintln!("gangway: invalid settings: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}
