//! file-log (priority 9): appends each transaction, serialized as Kong's
//! `kong.log.serialize()` JSON, as one line to a file.
//!
//! The log phase only enqueues the line: a background thread owns the open files and does
//! the writes, so a slow disk never stalls a worker. Under load it writes the lines gathered
//! every few milliseconds (`GATHER`). Lines that find the queue full are dropped and
//! counted rather than queued without bound.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{error, warn};

use gangway_config::schema::{ALL_PROTOCOLS, Field, HTTP_PROTOCOLS, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::LogCtx;
#[cfg(test)]
use gangway_pipeline::{LazyEntry, LogFacts};

/// Kong's name.
pub const NAME: &str = "file-log";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 9;

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 64 * 1024;

/// Kong's rule for `path`: no leading or trailing blank, none of `*&%` or a backtick.
const PATH: &str = r"^[^\s*&%`][^*&%`]*[^\s*&%`]$";

/// Kong's config schema (`kong/plugins/file-log/schema.lua`).
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "path",
                Field::string()
                    .required()
                    .matches(PATH)
                    .err("not a valid filename")
                    .describe(
                        "The file path of the output log file. The plugin creates the log \
                         file if it doesn't exist yet.",
                    ),
            ),
            (
                "reopen",
                Field::boolean().required().default(json!(false)).describe(
                    "Determines whether the log file is closed and reopened on every \
                         request.",
                ),
            ),
            ("custom_fields_by_lua", lua_fields()),
        ]),
    )
    .protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS)
}

/// Kong's `typedefs.lua_code` field of the log plugins (`custom_fields_by_lua`).
pub(super) fn lua_fields() -> Field {
    Field::map(Field::string().len_min(1), Field::string().len_min(1)).describe(
        "Lua code as a key-value map. gangway runs no Lua: only an empty map is accepted.",
    )
}

/// Refuses a non-empty `custom_fields_by_lua`: gangway runs no Lua.
pub(super) fn refuse_lua<K, V>(
    fields: Option<&std::collections::BTreeMap<K, V>>,
) -> Result<(), Vec<ConfigProblem>> {
    match fields {
        Some(m) if !m.is_empty() => Err(vec![(
            "custom_fields_by_lua".into(),
            "gangway runs no Lua: remove custom_fields_by_lua".into(),
        )]),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct Config {
    path: String,
    reopen: bool,
    custom_fields_by_lua: Option<std::collections::BTreeMap<String, String>>,
}

struct FileLog {
    path: Arc<str>,
    reopen: bool,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    refuse_lua(conf.custom_fields_by_lua.as_ref())?;
    Ok(Box::new(FileLog {
        path: conf.path.into(),
        reopen: conf.reopen,
    }))
}

impl Plugin for FileLog {
    fn accesses(&self) -> bool {
        false
    }

    fn log(&self, ctx: &LogCtx<'_>) {
        let json = ctx.entry.json();
        let mut line = Vec::with_capacity(json.len() + 1);
        line.extend_from_slice(json);
        line.push(b'\n');
        enqueue(Job::Line {
            path: self.path.clone(),
            reopen: self.reopen,
            line,
        });
    }

    fn logs(&self) -> bool {
        true
    }
}

enum Job {
    Line {
        path: Arc<str>,
        reopen: bool,
        line: Vec<u8>,
    },
    Flush(mpsc::Sender<()>),
}

/// Lines dropped because the queue was full, since the process started.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

static QUEUE_TX: OnceLock<SyncSender<Job>> = OnceLock::new();

fn queue() -> &'static SyncSender<Job> {
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("file-log".into())
            .spawn(move || write_lines(rx))
            .expect("invariant: the file-log writer thread can be spawned");
        tx
    })
}

fn enqueue(job: Job) {
    match queue().try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            // One warning per 1024 drops keeps a stuck disk from flooding the log too.
            if DROPPED.fetch_add(1, Ordering::Relaxed) % 1024 == 0 {
                warn!(
                    dropped = DROPPED.load(Ordering::Relaxed),
                    "file-log: queue full, dropping log lines"
                );
            }
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Waits (up to `timeout`) until every line enqueued so far is written: called on
/// shutdown so that the last requests' lines are not lost. Returns false on timeout.
pub fn flush(timeout: Duration) -> bool {
    let Some(queue) = QUEUE_TX.get() else {
        return true;
    };
    let (tx, rx) = mpsc::channel();
    if queue.send(Job::Flush(tx)).is_err() {
        return false;
    }
    rx.recv_timeout(timeout).is_ok()
}

/// After a failed open, lines for that path are dropped (and counted) for this long before
/// the next attempt, so a missing directory costs one error a second, not one per request.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// While lines keep coming, the writer gathers them this long between writes. The workers
/// then find it busy rather than parked, so a line costs them no wake-up (a futex call and a
/// thread switch each, about a tenth of a worker's time at 30k lines a second), and a file
/// takes several lines a write. An idle writer blocks, and the first line wakes it.
const GATHER: Duration = Duration::from_millis(2);

/// The most bytes one write carries, unless a single line is longer: a write to a pipe
/// (`/dev/stdout` under a container runtime) is atomic up to `PIPE_BUF`, so no write of
/// ours splits another writer's line or has its lines split.
const WRITE_MAX: usize = 4096;

/// The writer thread: owns one open file per path.
fn write_lines(rx: Receiver<Job>) {
    let mut files = Files::default();
    while let Ok(job) = rx.recv() {
        files.take(job);
        loop {
            let mut more = false;
            for job in rx.try_iter() {
                more = true;
                files.take(job);
            }
            files.write_gathered();
            if !more {
                break;
            }
            std::thread::sleep(GATHER);
        }
    }
}

/// The writer thread's files, and the lines gathered for them since the last write.
#[derive(Default)]
struct Files {
    open: HashMap<Arc<str>, File>,
    /// Paths that failed to open: when, and lines dropped since.
    failing: HashMap<Arc<str>, (Instant, u64)>,
    /// Per path, in the order first seen: the lines (their ends in `text`) and whether any
    /// asked for the file to be reopened.
    gathered: Vec<Gathered>,
}

struct Gathered {
    path: Arc<str>,
    reopen: bool,
    text: Vec<u8>,
    line_ends: Vec<usize>,
}

impl Files {
    fn take(&mut self, job: Job) {
        match job {
            Job::Line { path, reopen, line } => {
                let at = match self.gathered.iter().position(|g| g.path == path) {
                    Some(at) => at,
                    None => {
                        self.gathered.push(Gathered {
                            path,
                            reopen: false,
                            text: Vec::new(),
                            line_ends: Vec::new(),
                        });
                        self.gathered.len() - 1
                    }
                };
                let g = &mut self.gathered[at];
                g.reopen |= reopen;
                g.text.extend_from_slice(&line);
                g.line_ends.push(g.text.len());
            }
            Job::Flush(done) => {
                // Every line enqueued before the flush is written before it is answered.
                self.write_gathered();
                let _ = done.send(());
            }
        }
    }

    /// Writes what was gathered, reopening a file first when a line asked to (Kong's
    /// `reopen`: once per batch here, so a rotated file is left within a few milliseconds).
    fn write_gathered(&mut self) {
        for g in std::mem::take(&mut self.gathered) {
            if g.reopen {
                self.open.remove(&g.path);
            }
            let Some(file) = self.file(&g.path, g.line_ends.len() as u64) else {
                continue;
            };
            if let Err(e) = write_whole_lines(file, &g.text, &g.line_ends) {
                error!(path = %g.path, error = %e, "file-log: failed to write");
                self.open.remove(&g.path);
            }
        }
    }

    /// The open file for `path`, opened now if it is not; `None` (the `lines` counted as
    /// dropped) while it fails to open.
    fn file(&mut self, path: &Arc<str>, lines: u64) -> Option<&mut File> {
        if !self.open.contains_key(path) {
            if let Some((at, dropped)) = self.failing.get_mut(path) {
                if at.elapsed() < REOPEN_AFTER {
                    *dropped += lines;
                    return None;
                }
            }
            match OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(&**path)
            {
                Ok(f) => {
                    if let Some((_, dropped)) = self.failing.remove(path) {
                        warn!(path = %path, dropped, "file-log: the file opens again");
                    }
                    self.open.insert(path.clone(), f);
                }
                Err(e) => {
                    let dropped = self.failing.get(path).map_or(0, |f| f.1) + lines;
                    error!(path = %path, error = %e, dropped, "file-log: failed to open the file");
                    self.failing.insert(path.clone(), (Instant::now(), dropped));
                    return None;
                }
            }
        }
        self.open.get_mut(path)
    }
}

/// Writes `text` in writes of whole lines, each at most [`WRITE_MAX`] bytes unless one line
/// is longer.
fn write_whole_lines(
    file: &mut impl std::io::Write,
    text: &[u8],
    line_ends: &[usize],
) -> std::io::Result<()> {
    let mut start = 0;
    let mut end = 0;
    for &line_end in line_ends {
        if line_end - start > WRITE_MAX && end > start {
            file.write_all(&text[start..end])?;
            start = end;
        }
        end = line_end;
    }
    if end > start {
        file.write_all(&text[start..end])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::ConfigErrors;

    fn validate(config: Value) -> Vec<String> {
        let mut errors = ConfigErrors::default();
        schema().validate(Some(&config), "plugins[0].config", &mut errors);
        errors.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn path_is_required_and_must_be_a_filename() {
        assert_eq!(
            validate(json!({})),
            ["plugins[0].config.path: required field missing"]
        );
        assert_eq!(
            validate(json!({"path": " /tmp/x.log"})),
            ["plugins[0].config.path: not a valid filename"]
        );
        assert_eq!(
            validate(json!({"path": "/tmp/a&b.log"})),
            ["plugins[0].config.path: not a valid filename"]
        );
        assert!(validate(json!({"path": "/tmp/ok.log"})).is_empty());
    }

    #[test]
    fn lua_fields_are_refused() {
        let err = build(&json!({"path": "/tmp/x", "reopen": false,
            "custom_fields_by_lua": {"a": "return 1"}}))
        .err()
        .expect("refused");
        assert_eq!(err[0].0, "custom_fields_by_lua");
        assert!(err[0].1.contains("no Lua"), "{}", err[0].1);
        assert!(
            build(&json!({"path": "/tmp/x", "reopen": false, "custom_fields_by_lua": {}})).is_ok()
        );
    }

    #[test]
    fn an_unopenable_path_drops_lines_without_stopping_others() {
        let dir = std::env::temp_dir().join(format!(
            "gangway-file-log-missing-{}-{}",
            std::process::id(),
            gangway_pipeline::now_secs()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let state = gangway_pipeline::RequestState::default();
        let broken = FileLog {
            path: dir
                .join("no-such-dir/x.log")
                .to_string_lossy()
                .as_ref()
                .into(),
            reopen: false,
        };
        let entry = json!({"n": 1});
        let ctx = LogCtx {
            facts: &LogFacts::default(),
            entry: &LazyEntry::built(entry.clone()),
            state: &state,
            step: 0,
        };
        for _ in 0..100 {
            broken.log(&ctx);
        }
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = FileLog {
            path: dir.join("ok.log").to_string_lossy().as_ref().into(),
            reopen: false,
        };
        good.log(&ctx);
        assert!(flush(Duration::from_secs(5)), "writer flushed");
        assert_eq!(
            std::fs::read_to_string(dir.join("ok.log")).expect("written"),
            "{\"n\":1}\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_is_written_in_whole_lines_of_at_most_pipe_buf_bytes() {
        /// Records each write it is given, taking it whole.
        #[derive(Default)]
        struct Writes(Vec<Vec<u8>>);
        impl std::io::Write for Writes {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines: Vec<Vec<u8>> = [1500, 1500, 1500, 5000, 10, 4095]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut line = vec![b'a' + i as u8; len - 1];
                line.push(b'\n');
                line
            })
            .collect();
        let (mut text, mut ends) = (Vec::new(), Vec::new());
        for line in &lines {
            text.extend_from_slice(line);
            ends.push(text.len());
        }
        let mut writes = Writes::default();
        write_whole_lines(&mut writes, &text, &ends).expect("written");
        let sizes: Vec<usize> = writes.0.iter().map(Vec::len).collect();
        // Two 1.5 KB lines fit a write, the third starts the next; the 5 KB line goes
        // alone; the last two would make 4105 bytes, so they go apart.
        assert_eq!(sizes, [3000, 1500, 5000, 10, 4095]);
        assert_eq!(writes.0.concat(), text, "every byte, in order");
    }

    #[test]
    fn lines_are_appended_in_order_and_reopen_follows_a_moved_file() {
        let dir = std::env::temp_dir().join(format!(
            "gangway-file-log-{}-{}",
            std::process::id(),
            gangway_pipeline::now_secs()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("access.log");
        let plugin = FileLog {
            path: path.to_string_lossy().as_ref().into(),
            reopen: true,
        };
        let state = gangway_pipeline::RequestState::default();
        for n in 0..3 {
            let entry = json!({"n": n});
            plugin.log(&LogCtx {
                facts: &LogFacts::default(),
                entry: &LazyEntry::built(entry.clone()),
                state: &state,
                step: 0,
            });
        }
        assert!(flush(Duration::from_secs(5)), "writer flushed");
        let text = std::fs::read_to_string(&path).expect("log file");
        assert_eq!(text, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");

        // With reopen, a rotated-away file is not written to any more.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        let entry = json!({"n": 3});
        plugin.log(&LogCtx {
            facts: &LogFacts::default(),
            entry: &LazyEntry::built(entry.clone()),
            state: &state,
            step: 0,
        });
        assert!(flush(Duration::from_secs(5)), "writer flushed");
        assert_eq!(
            std::fs::read_to_string(&path).expect("new file"),
            "{\"n\":3}\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
