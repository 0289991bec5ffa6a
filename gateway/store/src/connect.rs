//! Connections to Postgres from the `pg_*` settings: a pool for queries, and single
//! connections for `LISTEN` and migrations. TLS is rustls (Aurora requires TLS); with
//! `pg_ssl_verify` the server certificate is checked against `lua_ssl_trusted_certificate`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gangway_config::settings::Settings;
use gangway_net::tls::{RootSource, client_config};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// Connections the pool keeps when `pg_max_concurrent_queries` is 0 (unlimited in Kong).
const DEFAULT_POOL: usize = 16;

/// The connection settings of `settings`, as tokio-postgres takes them.
pub fn pg_config(settings: &Settings) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.pg_host)
        .port(settings.pg_port)
        .user(&settings.pg_user)
        .dbname(&settings.pg_database)
        .application_name("gangway")
        .connect_timeout(Duration::from_millis(settings.pg_timeout.max(1)))
        .ssl_mode(if settings.pg_ssl {
            SslMode::Require
        } else {
            SslMode::Disable
        });
    if let Some(password) = &settings.pg_password {
        config.password(password);
    }
    if let Some(schema) = &settings.pg_schema {
        config.options(format!("-c search_path={schema}"));
    }
    config
}

/// The TLS connector: verifying against the trusted CAs when `pg_ssl_verify`, else
/// accepting the server's certificate as Kong does by default.
pub fn tls(settings: &Settings) -> Result<MakeRustlsConnect, StoreError> {
    let pem_files = settings.trusted_certificate_files();
    let roots = RootSource::trusted(settings.trusts_system_roots(), &pem_files)
        .map_err(|e| StoreError::Config(format!("lua_ssl_trusted_certificate: {e}")))?;
    let shared = client_config(settings.pg_ssl_verify, None, &roots, None);
    let mut config = (*shared).clone();
    // Postgres negotiates TLS itself; an http/1.1 ALPN offer only confuses newer servers.
    config.alpn_protocols.clear();
    Ok(MakeRustlsConnect::new(config))
}

/// A pool of connections for queries.
pub fn pool(settings: &Settings) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        pg_config(settings),
        tls(settings)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let size = match settings.pg_max_concurrent_queries {
        0 => DEFAULT_POOL,
        n => n,
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_millis(settings.pg_timeout.max(1))))
        .create_timeout(Some(Duration::from_millis(settings.pg_timeout.max(1))))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(format!("postgres pool: {e}")))
}

/// One connection of its own (for `LISTEN` and migrations), its driver running on the
/// current runtime until the client is dropped.
pub async fn connect(settings: &Settings) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = pg_config(settings)
        .connect(tls(settings)?)
        .await
        .map_err(|e| StoreError::unreachable(settings, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %crate::explain(&e), "postgres connection closed");
        }
    });
    Ok(client)
}

/// A connection whose notifications (`LISTEN`) wake `notify`, but those on `direct` (a
/// channel name), whose payloads go to `on_direct` as they arrive; the returned task drives
/// it and ends when the connection does.
pub async fn connect_listening(
    settings: &Settings,
    notify: Arc<tokio::sync::Notify>,
    direct: &'static str,
    on_direct: impl Fn(&str) + Send + 'static,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), StoreError> {
    let (client, connection) = pg_config(settings)
        .connect(tls(settings)?)
        .await
        .map_err(|e| StoreError::unreachable(settings, &e))?;
    let driver = tokio::spawn(drive_listening(connection, notify, direct, on_direct));
    Ok((client, driver))
}

async fn drive_listening<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notify: Arc<tokio::sync::Notify>,
    direct: &'static str,
    on_direct: impl Fn(&str),
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) if n.channel() == direct => {
                on_direct(n.payload())
            }
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => notify.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %crate::explain(&e), "postgres listen connection failed");
                return;
            }
            None => return,
        }
    }
}
