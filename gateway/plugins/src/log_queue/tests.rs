//! The queue against a real log server on a socket: which entries a full queue keeps, the
//! kept-alive connection, and Kong's retry schedule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use super::*;

#[test]
fn old_defaults_of_the_deprecated_fields_leave_the_queue_settings() {
    assert_eq!(deprecated(Some(1), 1), None);
    assert_eq!(deprecated(Some(2.0), 2.0), None);
    assert_eq!(deprecated(Some(5), 1), Some(5));
    assert_eq!(deprecated(None, 1), None);
}

/// What a log server received: (connection number, body) per request, in order.
type Posts = mpsc::Receiver<(usize, Vec<u8>)>;

/// A keep-alive log server that answers each request with the next status of `script`
/// (200 after it).
fn log_server(script: Vec<u16>) -> (u16, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    std::thread::spawn(move || {
        for (conn, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let (tx, script) = (tx.clone(), script.clone());
            std::thread::spawn(move || answer_posts(stream, conn, &tx, &script));
        }
    });
    (port, rx)
}

fn answer_posts(
    stream: TcpStream,
    conn: usize,
    posts: &mpsc::Sender<(usize, Vec<u8>)>,
    script: &Mutex<VecDeque<u16>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if !matches!(reader.read_line(&mut line), Ok(1..)) {
                return;
            }
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("a length");
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = script
            .lock()
            .expect("not poisoned")
            .pop_front()
            .unwrap_or(200);
        let _ = posts.send((conn, body));
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 4\r\n\r\nnope");
        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn settings(port: u16, max_entries: usize, retry_delay: f64) -> Settings {
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/logs")).expect("a url");
    let config = QueueConfig {
        max_batch_size: 1,
        max_coalescing_delay: 0.0,
        max_entries,
        max_bytes: None,
        max_retry_time: 60.0,
        initial_retry_delay: retry_delay,
        max_retry_delay: 60.0,
    };
    Settings {
        content_type: "text/plain".into(),
        ..config.settings("queue-test", endpoint, None, None)
    }
}

fn batch_as_is(_: &Settings, batch: &[Vec<u8>]) -> Vec<u8> {
    batch.concat()
}

fn next(posts: &Posts) -> (usize, String) {
    let (conn, body) = posts
        .recv_timeout(Duration::from_secs(5))
        .expect("a post within 5 s");
    (conn, String::from_utf8(body).expect("text"))
}

#[test]
fn a_full_queue_drops_its_oldest_entries_and_posts_share_a_connection() {
    let (port, posts) = log_server(vec![500]);
    let queue = Queue::shared(settings(port, 2, 0.5), batch_as_is);
    queue.push(b"1".to_vec());
    // The sender holds entry 1 and waits half a second to retry it; meanwhile four more
    // arrive in a queue of two.
    assert_eq!(next(&posts), (0, "1".into()));
    for entry in ["2", "3", "4", "5"] {
        queue.push(entry.as_bytes().to_vec());
    }
    assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
    let rest: Vec<(usize, String)> = (0..3).map(|_| next(&posts)).collect();
    assert_eq!(
        rest,
        [(0, "1".into()), (0, "4".into()), (0, "5".into())],
        "the retry, then the newest entries, all on the first connection"
    );
    assert!(flush(Duration::from_secs(5)), "nothing is left pending");
}

#[test]
fn an_entry_over_max_bytes_is_refused_and_older_ones_make_room() {
    let (port, posts) = log_server(vec![500]);
    let queue = Queue::shared(
        Settings {
            max_bytes: Some(4),
            ..settings(port, 100, 0.5)
        },
        batch_as_is,
    );
    queue.push(b"0".to_vec());
    assert_eq!(next(&posts), (0, "0".into()));
    queue.push(b"toolong".to_vec());
    for entry in ["aa", "bb", "cc"] {
        queue.push(entry.as_bytes().to_vec());
    }
    assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
    let rest: Vec<String> = (0..3).map(|_| next(&posts).1).collect();
    assert_eq!(rest, ["0", "bb", "cc"]);
}

#[test]
fn a_failing_batch_is_retried_until_max_retry_time_has_passed() {
    // Kong retries while less than max_retry_time has passed since the first attempt, so
    // the last attempt comes after it: with a delay of 0.1 s doubling and a limit of 0.25 s,
    // attempts at 0, 0.1 and 0.3 s, then none.
    let (port, posts) = log_server(vec![500; 10]);
    let queue = Queue::shared(
        Settings {
            max_retry_time: Duration::from_millis(250),
            ..settings(port, 100, 0.1)
        },
        batch_as_is,
    );
    let started = Instant::now();
    queue.push(b"x".to_vec());
    for _ in 0..3 {
        next(&posts);
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        posts.recv_timeout(Duration::from_millis(600)).is_err(),
        "no fourth attempt"
    );
}
