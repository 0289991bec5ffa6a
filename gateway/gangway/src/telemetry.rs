//! Logging: `tracing` to stdout, filtered by Kong's `log_level` names.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use gangway_config::settings::{LogFormat, LogLevel};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log_level`. With
/// `log_spans`, the request spans (target `kong`, debug) are let through whatever the level,
/// and a line is written as each span closes.
pub fn init(level: LogLevel, format: LogFormat, log_spans: bool) {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.level_filter().to_string().to_lowercase()));
    let mut span_events = FmtSpan::NONE;
    if log_spans {
        filter = filter.add_directive("kong=debug".parse().expect("a valid directive"));
        span_events = FmtSpan::CLOSE;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    // A second init (tests calling into the library) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
