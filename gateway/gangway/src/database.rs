//! The database commands: `gangway migrations ...` (the store's schema) and
//! `gangway config db_import | db_export`, run from the command line with the node's own
//! settings.

use std::path::Path;
use std::process::ExitCode;

use gangway_config::settings::Settings;
use gangway_store::StoreError;
use gangway_store::migrations::{self, Outcome};

use crate::cli::{ConfigStep, MigrationStep};

/// The settings and a runtime for one command, or the exit code of why not.
fn prepare(conf: Option<&Path>) -> Result<(Settings, tokio::runtime::Runtime), ExitCode> {
    let settings = crate::cli::command_settings(conf)?;
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok((settings, rt)),
        Err(e) => {
            eprintln!("gangway: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Runs `gangway config db_import` or `db_export`.
pub fn config(step: ConfigStep, conf: Option<&Path>) -> ExitCode {
    let (settings, runtime) = match prepare(conf) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let result: Result<(), String> = runtime.block_on(async {
        match step {
            ConfigStep::DbImport { file } => {
                let catalog = crate::runtime::catalog_for(&settings);
                let config = gangway_config::declarative::load_file(&file, &catalog)
                    .map_err(|e| format!("{}: invalid declarative config:\n{e}", file.display()))?;
                let mut client = connected(&settings).await?;
                let counts = gangway_store::import::import(&mut client, &config)
                    .await
                    .map_err(|e| format!("import failed, nothing was written: {e}"))?;
                for (kind, n) in counts.iter().filter(|(_, n)| *n > 0) {
                    println!("{kind}: {n}");
                }
                println!("{} imported into the database", file.display());
                Ok(())
            }
            ConfigStep::DbExport { file } => {
                if let Some(path) = &file {
                    if path.exists() {
                        return Err(format!(
                            "{} already exists; not overwriting it",
                            path.display()
                        ));
                    }
                }
                let mut client = connected(&settings).await?;
                let doc = gangway_store::import::export(&mut client)
                    .await
                    .map_err(|e| e.to_string())?;
                let yaml = serde_norway::to_string(&doc).map_err(|e| e.to_string())?;
                match file {
                    Some(path) => {
                        std::fs::write(&path, yaml)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        eprintln!("exported to {}", path.display());
                    }
                    None => print!("{yaml}"),
                }
                Ok(())
            }
            ConfigStep::Parse { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gangway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A connection to a bootstrapped, current database.
async fn connected(settings: &Settings) -> Result<tokio_postgres::Client, String> {
    let client = gangway_store::connect::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    let status = migrations::status(&client)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_current() {
        return Err(StoreError::NotBootstrapped.to_string());
    }
    Ok(client)
}

/// Runs one migration step; prints what happened, or why it could not.
pub fn migrations(step: MigrationStep, conf: Option<&Path>) -> ExitCode {
    if let MigrationStep::Reset { yes: false } = step {
        eprintln!("gangway: 'migrations reset' drops every entity; pass --yes to confirm");
        return ExitCode::FAILURE;
    }
    let (settings, runtime) = match prepare(conf) {
        Ok(pair) => pair,
        Err(code) => return code,
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
