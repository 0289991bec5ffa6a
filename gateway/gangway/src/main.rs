use std::process::ExitCode;

use clap::Parser;
use gangway::cli::{Cli, Command, ConfigStep};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gangway {}", gangway::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check { file } => check(&file, None),
        Command::Migrations { step, conf } => migrations(step, conf.as_deref()),
        Command::Ebpf { step } => gangway::kernel::command(step),
        Command::Config {
            step: ConfigStep::Parse { file },
            conf,
        } => check(&file, conf.as_deref()),
        Command::Config { step, conf } => database_config(step, conf.as_deref()),
        Command::Start { conf } => match gangway::runtime::start(conf.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gangway: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `gangway check` and `gangway config parse`: validates a declarative file under the
/// settings `start` would use (the environment, and `conf` when given).
fn check(file: &std::path::Path, conf: Option<&std::path::Path>) -> ExitCode {
    let settings = match gangway::cli::command_settings(conf) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match gangway::runtime::check_config(file, &settings) {
        Ok(snapshot) => {
            println!(
                "{}: ok ({} services, {} routes, {} consumers, {} plugins)",
                file.display(),
                snapshot.config.services.len(),
                snapshot.config.routes.len(),
                snapshot.identities.consumer_count(),
                snapshot.config.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "store")]
fn migrations(step: gangway::cli::MigrationStep, conf: Option<&std::path::Path>) -> ExitCode {
    gangway::database::migrations(step, conf)
}

#[cfg(feature = "store")]
fn database_config(step: ConfigStep, conf: Option<&std::path::Path>) -> ExitCode {
    gangway::database::config(step, conf)
}

#[cfg(not(feature = "store"))]
fn database_config(_step: ConfigStep, _conf: Option<&std::path::Path>) -> ExitCode {
    eprintln!("gangway: this build has no Postgres store (feature \"store\")");
    ExitCode::FAILURE
}

#[cfg(not(feature = "store"))]
fn migrations(_step: gangway::cli::MigrationStep, _conf: Option<&std::path::Path>) -> ExitCode {
    eprintln!("gangway: this build has no Postgres store (feature \"store\")");
    ExitCode::FAILURE
}
