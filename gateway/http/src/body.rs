//! Streaming body framing for pass-through proxying: finds where a message body ends and
//! validates chunked framing incrementally, across any split of the input, without copying.
//!
//! The proxy forwards body bytes verbatim; [`BodyTracker::advance`] only says how many of the
//! bytes at hand belong to the body and whether it has ended. Chunked parsing is deliberately
//! stricter than nginx's: bare LF line ends, control bytes in chunk extensions and obs-folded
//! trailers are rejected, because lenient chunk parsers are the usual smuggling lever.

use super::error::HttpError;

#[cfg(test)]
mod tests;

/// How a message body is delimited (RFC 9112 §6). Default: [`BodyFraming::None`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (request without length, HEAD/1xx/204/304 responses).
    #[default]
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the peer closes the connection (responses only).
    UntilClose,
}

impl BodyFraming {
    /// Whether any body bytes can follow the head.
    pub const fn has_body(self) -> bool {
        !matches!(self, BodyFraming::None | BodyFraming::Length(0))
    }
}

/// Outcome of one [`BodyTracker::advance`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// How many leading bytes of the input belong to this body (framing included).
    pub consumed: usize,
    /// Whether the body has ended; input past `consumed` belongs to the next message.
    pub done: bool,
    /// The trailer fields among the consumed bytes, `(start, end)`: a proxy drops them, as
    /// nginx does, and forwards the rest (the last chunk and the final CRLF stay). Trailers
    /// would otherwise carry headers past every plugin that edits or strips headers.
    pub trailer: Option<(usize, usize)>,
}

/// Longest chunk-size line (size, whitespace and extensions) accepted.
const MAX_SIZE_LINE: u32 = 4096;
/// Most trailer-section bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: u32 = 32 * 1024;
/// Largest chunk size, as nginx (an `off_t`).
const MAX_CHUNK: u64 = i64::MAX as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length,
    UntilClose,
    /// Reading hex digits of a chunk size; `digits` says whether any was seen.
    Size {
        digits: bool,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// Tracks one message body as its bytes stream past. Reusable: build a new one per message
/// (it is a few words, no heap).
#[derive(Clone, Debug)]
pub struct BodyTracker {
    state: State,
    /// Bytes left in the Content-Length body or in the current chunk's data.
    remaining: u64,
    /// Chunk size being parsed.
    size: u64,
    /// Payload (decoded) bytes seen so far.
    payload: u64,
    /// `client_max_body_size` in bytes; 0 = unlimited.
    max: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: u32,
}

impl BodyTracker {
    /// A tracker for a body framed as `framing`, with no size limit.
    pub fn new(framing: BodyFraming) -> Self {
        let (state, remaining) = match framing {
            BodyFraming::None | BodyFraming::Length(0) => (State::Done, 0),
            BodyFraming::Length(n) => (State::Length, n),
            BodyFraming::Chunked => (State::Size { digits: false }, 0),
            BodyFraming::UntilClose => (State::UntilClose, 0),
        };
        BodyTracker {
            state,
            remaining,
            size: 0,
            payload: 0,
            max: 0,
            line: 0,
        }
    }

    /// Applies `client_max_body_size` (`max` bytes, 0 = unlimited, Kong's default). A declared
    /// `Content-Length` over the limit fails at once, as nginx does before reading the body
    /// (and before sending `100 Continue`).
    pub fn with_max_size(mut self, max: u64) -> Result<Self, HttpError> {
        self.max = max;
        if max != 0 && self.state == State::Length && self.remaining > max {
            return Err(HttpError::BodyTooLarge);
        }
        Ok(self)
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded payload bytes seen so far (chunk framing excluded).
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Feeds the next bytes of the stream. See [`Progress`]. After an error the tracker must
    /// not be used again.
    #[inline]
    pub fn advance(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        self.advance_with(data, |_| {})
    }

    /// Like [`BodyTracker::advance`], also handing each run of decoded payload bytes to
    /// `on_payload` (for plugins that buffer the body, e.g. aws-lambda).
    pub fn advance_with(
        &mut self,
        data: &[u8],
        mut on_payload: impl FnMut(&[u8]),
    ) -> Result<Progress, HttpError> {
        let mut i = 0;
        let mut trailer = None;
        while i < data.len() {
            match self.state {
                State::Done => break,
                State::UntilClose => {
                    self.add_payload((data.len() - i) as u64)?;
                    on_payload(&data[i..]);
                    i = data.len();
                }
                State::Length | State::Data => {
                    let take = self.remaining.min((data.len() - i) as u64) as usize;
                    on_payload(&data[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.state == State::Length {
                        self.payload += take as u64;
                        if self.remaining == 0 {
                            self.state = State::Done;
                        }
                    } else if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let in_trailer = match self.state {
                        State::TrailerStart => data[i] != b'\r',
                        State::TrailerName | State::TrailerValue | State::TrailerLf => true,
                        _ => false,
                    };
                    self.step(data[i])?;
                    if in_trailer {
                        trailer = Some((trailer.map_or(i, |(start, _)| start), i + 1));
                    }
                    i += 1;
                }
            }
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
            trailer,
        })
    }

    /// Reports the peer's EOF: fine for an until-close body or a finished one, otherwise the
    /// body was cut short.
    pub fn finish_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }

    fn add_payload(&mut self, n: u64) -> Result<(), HttpError> {
        self.payload = self.payload.saturating_add(n);
        if self.max != 0 && self.payload > self.max {
            return Err(HttpError::BodyTooLarge);
        }
        Ok(())
    }

    /// One byte of chunk framing.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        let bad = HttpError::InvalidChunk;
        match self.state {
            State::Size { digits } => {
                self.size_line_byte()?;
                if let Some(d) = hex(b) {
                    if self.size > MAX_CHUNK >> 4 {
                        return Err(bad("chunk size overflows"));
                    }
                    self.size = (self.size << 4) | u64::from(d);
                    self.state = State::Size { digits: true };
                } else if !digits {
                    return Err(bad("chunk size is not hex"));
                } else {
                    self.after_size(b)?;
                }
            }
            State::SizeWs => {
                self.size_line_byte()?;
                self.after_size(b)?;
            }
            State::Ext => {
                self.size_line_byte()?;
                match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' => {}
                    c if c < 0x20 || c == 0x7f => return Err(bad("control byte in extension")),
                    _ => {}
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(bad("chunk size line not ended by CRLF"));
                }
                self.line = 0;
                if self.size == 0 {
                    self.state = State::TrailerStart;
                } else {
                    self.add_payload(self.size)?;
                    self.remaining = self.size;
                    self.size = 0;
                    self.state = State::Data;
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(bad("chunk data longer than its size"));
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(bad("chunk data not ended by CRLF"));
                }
                self.state = State::Size { digits: false };
            }
            State::TrailerStart => {
                self.trailer_byte()?;
                if b == b'\r' {
                    self.state = State::EndLf;
                } else if is_tchar(b) {
                    self.state = State::TrailerName;
                } else {
                    return Err(bad("invalid trailer line"));
                }
            }
            State::TrailerName => {
                self.trailer_byte()?;
                if b == b':' {
                    self.state = State::TrailerValue;
                } else if !is_tchar(b) {
                    return Err(bad("invalid trailer name"));
                }
            }
            State::TrailerValue => {
                self.trailer_byte()?;
                match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\t' => {}
                    c if c < 0x20 || c == 0x7f => return Err(bad("control byte in trailer")),
                    _ => {}
                }
            }
            State::TrailerLf => {
                self.trailer_byte()?;
                if b != b'\n' {
                    return Err(bad("trailer line not ended by CRLF"));
                }
                self.state = State::TrailerStart;
            }
            State::EndLf => {
                if b != b'\n' {
                    return Err(bad("last chunk not ended by CRLF"));
                }
                self.state = State::Done;
            }
            State::Length | State::Data | State::UntilClose | State::Done => {
                // advance_with handles these in bulk and never calls step for them.
            }
        }
        Ok(())
    }

    /// What may follow the chunk size: whitespace, `;` extensions, or CR.
    fn after_size(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match b {
            b' ' | b'\t' => State::SizeWs,
            b';' => State::Ext,
            b'\r' => State::SizeLf,
            _ => return Err(HttpError::InvalidChunk("invalid byte after chunk size")),
        };
        Ok(())
    }

    fn size_line_byte(&mut self) -> Result<(), HttpError> {
        self.line += 1;
        if self.line > MAX_SIZE_LINE {
            return Err(HttpError::InvalidChunk("chunk size line too long"));
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), HttpError> {
        self.line += 1;
        if self.line > MAX_TRAILER_BYTES {
            return Err(HttpError::InvalidChunk("trailer section too large"));
        }
        Ok(())
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 `tchar`, the bytes of a header (and trailer) field name.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
