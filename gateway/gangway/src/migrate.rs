//! `gangway migrations ...`: the schema steps of the Postgres store, run from the command line
//! with the node's own settings.

use std::path::Path;
use std::process::ExitCode;

use gangway_config::settings;
use gangway_store::migrations::{self, Outcome};

use crate::cli::MigrationStep;

/// Runs one migration step; prints what happened, or why it could not.
pub fn run(step: MigrationStep, conf: Option<&Path>) -> ExitCode {
    let settings = match settings::load(conf, settings::process_env()) {
        Ok((settings, _warnings)) => settings,
        Err(e) => {
            eprintln!("gangway: invalid settings: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let MigrationStep::Reset { yes: false } = step {
        eprintln!("gangway: 'migrations reset' drops every entity; pass --yes to confirm");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut client = gangway_store::connect::connect(&settings).await?;
        match step {
            MigrationStep::Status => {
                let status = migrations::status(&client).await?;
                println!("{}", status.to_json());
                Ok(None)
            }
            MigrationStep::Bootstrap => migrations::bootstrap(&mut client).await.map(Some),
            MigrationStep::Up => migrations::up(&mut client).await.map(Some),
            MigrationStep::Finish => migrations::finish(&mut client).await.map(Some),
            MigrationStep::Reset { .. } => migrations::reset(&mut client).await.map(Some),
        }
    });
    match result {
        Ok(Some(Outcome::Ran(names))) => {
            for name in &names {
                println!("migrating: {name} ... ok");
            }
            println!("{} migration(s) executed", names.len());
            ExitCode::SUCCESS
        }
        Ok(Some(Outcome::Nothing(why))) => {
            println!("{why}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gangway: {e}");
            ExitCode::FAILURE
        }
    }
}
