//! The proxy's access log (Kong's `proxy_access_log`), one line per request in Kong's
//! `kong_log_format`:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" kong_request_id: "$kong_request_id"
//! ```
//!
//! A worker formats each line into a batch of its own and hands full batches (and, every
//! quarter second, partial ones) to the writer thread through a bounded channel. When the
//! channel is full the batch is dropped and its lines counted: a slow sink loses lines and
//! never stalls a worker.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use gangway_config::settings::AccessLog;

/// A worker hands its batch over once it holds this many bytes.
const BATCH_BYTES: usize = 16 * 1024;
/// Batches queued for the writer before new ones are dropped (1 MiB of lines).
const QUEUED_BATCHES: usize = 64;

/// A batch of lines, or the request to flush and answer (at shutdown).
enum Message {
    Lines(Vec<u8>),
    Flush(SyncSender<()>),
    /// Open the file again (nginx's SIGUSR1), after logrotate moved it.
    Reopen,
}

/// The writer's end held by the process: where workers send their batches.
pub struct AccessLogSink {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
}

impl AccessLogSink {
    /// Starts the writer thread for `target` (`prefix` resolves a relative path); `None`
    /// for `off`. A file that cannot be opened is an error.
    pub fn start(target: &AccessLog, prefix: &std::path::Path) -> std::io::Result<Option<Self>> {
        let (out, file): (Box<dyn Write + Send>, _) = match target {
            AccessLog::Off => return Ok(None),
            AccessLog::Stdout => (Box::new(std::io::stdout()), None),
            AccessLog::Stderr => (Box::new(std::io::stderr()), None),
            AccessLog::File(path) => {
                let path = prefix.join(path);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                (Box::new(open_for_append(&path)?), Some(path))
            }
        };
        let (tx, rx) = sync_channel(QUEUED_BATCHES);
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let counted = written.clone();
        std::thread::Builder::new()
            .name("gangway-access-log".into())
            .spawn(move || write_batches(rx, out, file, &counted))?;
        Ok(Some(AccessLogSink {
            tx,
            dropped: AtomicU64::new(0),
            written,
        }))
    }

    /// Lines lost to a full queue since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written since start.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for every batch queued so far to be written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        if self.tx.send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(timeout).is_ok()
    }

    /// Opens the log file again (a file moved away by logrotate is left to it); lines
    /// queued before go to the old file.
    pub fn reopen(&self) {
        let _ = self.tx.send(Message::Reopen);
    }

    /// Writes one line in nginx's `combined` format (the logs of the Admin API, Kong Manager
    /// and the Status API, whose requests are too few to batch).
    pub fn write_combined(&self, note: &AccessNote, status: u16, body_bytes: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut line = Vec::with_capacity(160);
        push_combined(
            &mut line,
            note,
            &gangway_http::clf::clf_time(now),
            status,
            body_bytes,
        );
        line.push(b'\n');
        self.hand_over(line, 1);
    }

    fn hand_over(&self, batch: Vec<u8>, lines: u64) {
        match self.tx.try_send(Message::Lines(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(lines, Ordering::Relaxed);
            }
        }
    }
}

fn open_for_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_batches(
    rx: Receiver<Message>,
    mut out: Box<dyn Write + Send>,
    file: Option<std::path::PathBuf>,
    written: &AtomicU64,
) {
    for message in rx {
        match message {
            Message::Lines(batch) => {
                let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
                if out.write_all(&batch).is_ok() {
                    written.fetch_add(lines, Ordering::Relaxed);
                }
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
            Message::Reopen => {
                let Some(path) = &file else { continue };
                let _ = out.flush();
                match open_for_append(path) {
                    Ok(reopened) => out = Box::new(reopened),
                    // The old file stays in use rather than losing lines.
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "access log not reopened")
                    }
                }
            }
        }
    }
}

/// What a line needs of the request, captured before its body is read.
#[derive(Debug, Default)]
pub struct AccessNote {
    /// `$request`: the request line.
    pub request_line: Vec<u8>,
    /// `$http_referer`, empty when absent.
    pub referer: Vec<u8>,
    /// `$http_user_agent`, empty when absent.
    pub user_agent: Vec<u8>,
    /// `$remote_addr`, after `real_ip`.
    pub client_ip: Option<IpAddr>,
    /// `$kong_request_id`.
    pub request_id: [u8; 32],
}

/// One worker's batch, and its clock for `$time_local` (formatted once a second).
#[derive(Debug, Default)]
pub struct WorkerAccessLog {
    batch: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    /// Notified when a line enters an empty batch: the worker's flush timer runs only while
    /// lines wait, so an idle worker is not woken for an empty batch.
    waiting: tokio::sync::Notify,
    clock: RefCell<(u64, String)>,
}

impl WorkerAccessLog {
    /// Adds the line of a finished request, handing the batch over when it is full.
    pub fn append(&self, sink: &AccessLogSink, note: &AccessNote, status: u16, body_bytes: u64) {
        let mut batch = self.batch.borrow_mut();
        if batch.is_empty() {
            self.waiting.notify_one();
        }
        push_combined(&mut batch, note, &self.time_local(), status, body_bytes);
        batch.extend_from_slice(b" kong_request_id: \"");
        batch.extend_from_slice(&note.request_id);
        batch.extend_from_slice(b"\"\n");
        self.lines.set(self.lines.get() + 1);
        if batch.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut *batch, Vec::with_capacity(BATCH_BYTES * 2));
            sink.hand_over(full, self.lines.replace(0));
        }
    }

    /// Returns once the batch holds a line (at once if one came since the last flush).
    pub async fn lines_waiting(&self) {
        self.waiting.notified().await;
    }

    /// Hands over what the batch holds (the worker's timer calls this).
    pub fn flush(&self, sink: &AccessLogSink) {
        let mut batch = self.batch.borrow_mut();
        if batch.is_empty() {
            return;
        }
        let partial = std::mem::take(&mut *batch);
        sink.hand_over(partial, self.lines.replace(0));
    }

    fn time_local(&self) -> std::cell::Ref<'_, str> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.clock.borrow().0 != now || self.clock.borrow().1.is_empty() {
            *self.clock.borrow_mut() = (now, gangway_http::clf::clf_time(now));
        }
        std::cell::Ref::map(self.clock.borrow(), |(_, text)| text.as_str())
    }
}

/// nginx's `combined` format, without its line end: what Kong's `kong_log_format` starts
/// with and the access logs of the servers beside the proxy (`admin_access_log`, ...) hold.
fn push_combined(
    out: &mut Vec<u8>,
    note: &AccessNote,
    time_local: &str,
    status: u16,
    body_bytes: u64,
) {
    match note.client_ip {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(time_local.as_bytes());
    out.extend_from_slice(b"] \"");
    escape_into(out, &note.request_line);
    let _ = write!(out, "\" {status} {body_bytes} \"");
    quoted_or_dash(out, &note.referer);
    out.extend_from_slice(b"\" \"");
    quoted_or_dash(out, &note.user_agent);
    out.push(b'"');
}

fn quoted_or_dash(out: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        out.push(b'-');
    } else {
        escape_into(out, value);
    }
}

/// nginx's escaping of logged variables: `"`, `\` and bytes outside printable ASCII as
/// `\xHH`.
fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_control_bytes_are_escaped_as_nginx_does() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\"b\\c\x01");
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01");
    }
}
