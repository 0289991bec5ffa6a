//! Logging: `tracing` to `proxy_error_log` (stdout by default), filtered by Kong's
//! `log_level` names.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use gangway_config::settings::{AccessLog, LogFormat, LogLevel};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log_level`. With
/// `log_spans`, the request spans (target `kong`, debug) are let through whatever the level,
/// and a line is written as each span closes.
pub fn init(
    level: LogLevel,
    format: LogFormat,
    log_spans: bool,
    target: &AccessLog,
    prefix: &Path,
) -> std::io::Result<()> {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.level_filter().to_string().to_lowercase()));
    let mut span_events = FmtSpan::NONE;
    if log_spans {
        filter = filter.add_directive("kong=debug".parse().expect("a valid directive"));
        span_events = FmtSpan::CLOSE;
    }
    let (writer, ansi) = match target {
        AccessLog::Stdout | AccessLog::Off => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        AccessLog::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        AccessLog::File(path) => {
            let file = LogFile::open(prefix.join(path))?;
            let _ = LOG_FILE.set(file.clone());
            (BoxMakeWriter::new(file), false)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_target(false)
        .with_writer(writer)
        .with_ansi(ansi);
    // A second init (tests calling into the library) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// The log file, when `proxy_error_log` names one.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// Opens the log file again (nginx's SIGUSR1, after logrotate moved it); nothing for
/// stdout and stderr.
pub fn reopen() {
    if let Some(file) = LOG_FILE.get() {
        file.reopen();
    }
}

/// A log file appended to, that SIGUSR1 can open again.
#[derive(Clone)]
struct LogFile(Arc<(PathBuf, Mutex<File>)>);

impl LogFile {
    fn open(path: PathBuf) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = append_to(&path)?;
        Ok(LogFile(Arc::new((path, Mutex::new(file)))))
    }

    fn reopen(&self) {
        let (path, file) = &*self.0;
        match append_to(path) {
            Ok(reopened) => *file.lock().unwrap_or_else(PoisonError::into_inner) = reopened,
            // The old file stays in use rather than losing lines.
            Err(e) => tracing::error!(path = %path.display(), error = %e, "log file not reopened"),
        }
    }
}

fn append_to(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// One event's hold on the log file.
struct LogFileLock<'a>(MutexGuard<'a, File>);

impl Write for LogFileLock<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileLock<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileLock(self.0.1.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
