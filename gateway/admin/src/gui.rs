//! Kong Manager, served as Kong serves it (`kong/templates/nginx_kong_gui_include.lua`): the
//! build in `admin_gui_dir` under `admin_gui_path`, a generated `kconfig.js` that tells the
//! app where the Admin API is, the `/__km_base__/` placeholder rewritten to the GUI's path,
//! and `index.html` for every path that is not a file (the app routes itself).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use gangway_config::settings::Settings;
use tracing::info;

/// What the GUI server needs: the build, where it lives, what `kconfig.js` says.
pub struct Gui {
    dir: PathBuf,
    /// `admin_gui_path` without its trailing slash (`""` for `/`).
    prefix: String,
    /// What `/__km_base__/` becomes in served files.
    base: String,
    kconfig: String,
}

impl Gui {
    /// The GUI of `settings`, or `None` without an `admin_gui_dir`.
    pub fn from_settings(settings: &Settings) -> Option<Gui> {
        let dir = settings.admin_gui_dir.clone()?;
        let prefix = settings.admin_gui_path.trim_end_matches('/').to_owned();
        let base = format!("{prefix}/");
        Some(Gui {
            dir,
            prefix,
            base,
            kconfig: kconfig(settings),
        })
    }
}

/// Kong's `kconfig.js`: the GUI path, the Admin API URL, and the first plain and TLS Admin
/// API ports.
pub fn kconfig(settings: &Settings) -> String {
    let port = |ssl: bool| {
        settings
            .admin_listen
            .iter()
            .find(|l| l.ssl == ssl)
            .map(|l| l.addr.port().to_string())
            .unwrap_or_default()
    };
    let entries = [
        ("ADMIN_GUI_PATH", settings.admin_gui_path.clone()),
        (
            "ADMIN_API_URL",
            settings.admin_gui_api_url.clone().unwrap_or_default(),
        ),
        ("ADMIN_API_PORT", port(false)),
        ("ADMIN_API_SSL_PORT", port(true)),
        ("ANONYMOUS_REPORTS", "false".to_owned()),
    ];
    let lines: Vec<String> = entries
        .iter()
        .map(|(k, v)| {
            format!(
                "  '{k}': '{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect();
    format!("window.K_CONFIG = {{\n{}\n}}\n", lines.join(",\n"))
}

/// The GUI's routes.
pub fn router(gui: Arc<Gui>) -> axum::Router {
    axum::Router::new().fallback(serve_file).with_state(gui)
}

/// Binds `admin_gui_listen` (TLS ones with `admin_gui_ssl_cert`) and serves the GUI on the
/// current runtime.
pub async fn serve(
    settings: &Settings,
    gateway: &gangway_proxy::Gateway,
) -> Result<(), crate::listen::ListenError> {
    let Some(gui) = Gui::from_settings(settings) else {
        return Ok(());
    };
    let gui = Arc::new(gui);
    info!(dir = %gui.dir.display(), path = %settings.admin_gui_path, "serving Kong Manager");
    let server = crate::listen::Server {
        what: "Kong Manager",
        cert_key: "admin_gui_ssl_cert",
        certs: &settings.admin_gui_ssl_cert,
        keys: &settings.admin_gui_ssl_cert_key,
        access_log_key: "admin_gui_access_log",
        access_log: &settings.admin_gui_access_log,
        gate: None,
    };
    crate::listen::serve_app(
        &settings.admin_gui_listen,
        settings,
        router(gui),
        server,
        gateway,
    )
    .await
    .map(|_| ())
}

/// A file of the build, safely: no `..`, nothing outside the directory.
fn file_in(dir: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = dir.to_path_buf();
    for part in Path::new(relative.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    path.is_file().then_some(path)
}

/// Kong's asset extensions: long-cached, never the index fallback.
fn is_asset(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [
        ".jpg", ".jpeg", ".png", ".gif", ".svg", ".ico", ".css", ".ttf", ".js",
    ]
    .iter()
    .any(|ext| lower.ends_with(ext))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "application/javascript",
        "css" => "text/css",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "ttf" => "font/ttf",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn reply(status: StatusCode, kind: &'static str, body: Vec<u8>, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert("X-Frame-Options", HeaderValue::from_static("sameorigin"));
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn serve_file(State(gui): State<Arc<Gui>>, request: Request) -> Response {
    let path = request.uri().path();
    let Some(inner) = path
        .strip_prefix(&gui.prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/') || gui.prefix.is_empty())
    else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"Not Found".to_vec(),
            "no-store",
        );
    };
    let inner = if inner.is_empty() { "/" } else { inner };
    match inner {
        "/robots.txt" => {
            return reply(
                StatusCode::OK,
                "text/plain",
                b"User-agent: *\nDisallow: /".to_vec(),
                "no-store",
            );
        }
        "/kconfig.js" => {
            return reply(
                StatusCode::OK,
                "application/javascript",
                gui.kconfig.clone().into_bytes(),
                "no-store",
            );
        }
        _ => {}
    }
    let found = file_in(&gui.dir, inner);
    let (file, cache) = match (found, is_asset(inner)) {
        (Some(file), true) => (file, "public, max-age=7776000"),
        (None, true) => {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"Not Found".to_vec(),
                "no-store",
            );
        }
        // The app routes itself: any other path gets its page.
        (found, false) => match found.or_else(|| file_in(&gui.dir, "index.html")) {
            Some(file) => (
                file,
                "no-store, no-cache, must-revalidate, proxy-revalidate, max-age=0",
            ),
            None => {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    b"Not Found".to_vec(),
                    "no-store",
                );
            }
        },
    };
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"Not Found".to_vec(),
            "no-store",
        );
    };
    let kind = content_type(&file);
    let body = if kind.starts_with("text/") || kind == "application/javascript" {
        String::from_utf8_lossy(&bytes)
            .replace("/__km_base__/", &gui.base)
            .into_bytes()
    } else {
        bytes
    };
    reply(StatusCode::OK, kind, body, cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_names_the_gui_path_and_the_admin_api_ports() {
        let settings = Settings {
            admin_gui_path: "/manager".into(),
            ..Settings::default()
        };
        let js = kconfig(&settings);
        assert!(js.starts_with("window.K_CONFIG = {\n"), "{js}");
        assert!(js.contains("'ADMIN_GUI_PATH': '/manager'"), "{js}");
        assert!(js.contains("'ADMIN_API_PORT': '8001'"), "{js}");
        assert!(js.contains("'ADMIN_API_SSL_PORT': '8444'"), "{js}");
        assert!(js.contains("'ADMIN_API_URL': ''"), "{js}");
    }

    #[test]
    fn files_stay_inside_the_build() {
        let dir = std::env::temp_dir().join(format!("gangway-gui-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).expect("dir");
        std::fs::write(dir.join("assets/app.js"), "x").expect("write");
        assert!(file_in(&dir, "/assets/app.js").is_some());
        assert!(file_in(&dir, "/../etc/passwd").is_none());
        assert!(file_in(&dir, "/assets/../../x").is_none());
        assert!(
            file_in(&dir, "/assets").is_none(),
            "directories are not files"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
