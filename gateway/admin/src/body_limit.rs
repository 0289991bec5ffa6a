//! A write's body, read up to [`MAX_BODY`](crate::MAX_BODY) bytes.
//!
//! Past the limit the rest of the body is read and thrown away (for at most [`LINGER`] and
//! [`DRAIN_MAX`] bytes) before the 413 goes out, as nginx's lingering close does for Kong:
//! closing a socket with unread bytes makes the kernel answer with a reset, and a client still
//! sending its body then sees "connection reset" instead of Kong's 413. A client that asked
//! for `100-continue` gets the 413 at once and never sends the body.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures_util::StreamExt as _;

/// How long the rest of an oversized body is read and discarded (nginx's `lingering_time`
/// is 30 s; an Admin API client sending more than 10 MiB on loopback or a LAN is done well
/// within this).
const LINGER: Duration = Duration::from_secs(10);

/// How many bytes past the limit are read and discarded at most.
const DRAIN_MAX: usize = 256 * 1024 * 1024;

/// The body was over the limit (or could not be read).
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

/// Reads `body` whole if it is at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, TooLarge> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && declared.is_some_and(|n| n > limit as u64) {
        return Err(TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| TooLarge)?;
        if out.len() + chunk.len() > limit {
            let _ = tokio::time::timeout(LINGER, async {
                let mut drained = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_MAX {
                        break;
                    }
                }
            })
            .await;
            return Err(TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::HeaderValue;

    use super::*;

    /// A body of `chunks` chunks of `size` bytes that counts how many were read.
    fn counted(chunks: usize, size: usize) -> (Body, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&read);
        let stream = futures_util::stream::iter(0..chunks).map(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))
        });
        (Body::from_stream(stream), read)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let (body, _) = counted(4, 10);
        let bytes = read(&HeaderMap::new(), body, 40).await.expect("fits");
        assert_eq!(bytes.len(), 40);
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_refusal() {
        let (body, chunks) = counted(10, 10);
        assert_eq!(read(&HeaderMap::new(), body, 40).await, Err(TooLarge));
        assert_eq!(chunks.load(Ordering::Relaxed), 10, "the rest was drained");
    }

    #[tokio::test]
    async fn a_client_expecting_100_continue_is_refused_before_it_sends() {
        let (body, chunks) = counted(10, 10);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        assert_eq!(read(&headers, body, 40).await, Err(TooLarge));
        assert_eq!(chunks.load(Ordering::Relaxed), 0);
    }
}
