use std::process::ExitCode;

use clap::Parser;
use gangway::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gangway {}", gangway::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check { file } => match gangway::runtime::check_config(&file) {
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
        },
        Command::Migrations { step, conf } => migrations(step, conf.as_deref()),
        Command::Start { conf } => match gangway::runtime::start(conf.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gangway: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(feature = "store")]
fn migrations(step: gangway::cli::MigrationStep, conf: Option<&std::path::Path>) -> ExitCode {
    gangway::migrate::run(step, conf)
}

#[cfg(not(feature = "store"))]
fn migrations(_step: gangway::cli::MigrationStep, _conf: Option<&std::path::Path>) -> ExitCode {
    eprintln!("gangway: this build has no Postgres store (feature \"store\")");
    ExitCode::FAILURE
}
