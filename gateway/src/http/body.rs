//! Body framing (TEMPORARY lean version).
use super::HttpError;

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    /// No body.
    #[default]
    None,
    /// Content-Length.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Progress of one advance.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes of the input that belong to the body.
    pub consumed: usize,
    /// The body ended within them.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { value: u64, digits: u8 },
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Tracks a body passing through.
#[derive(Debug, Clone)]
pub struct BodyTracker {
    framing: BodyFraming,
    remaining: u64,
    chunk: Chunk,
    total: u64,
    max: u64,
}

impl BodyTracker {
    /// A tracker; `max` 0 = unlimited.
    pub fn new(framing: BodyFraming, max: u64) -> Self {
        let remaining = if let BodyFraming::Length(n) = framing {
            n
        } else {
            0
        };
        BodyTracker {
            framing,
            remaining,
            chunk: Chunk::Size {
                value: 0,
                digits: 0,
            },
            total: 0,
            max,
        }
    }

    /// Feeds bytes.
    pub fn advance(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        match self.framing {
            BodyFraming::None => Ok(Progress {
                consumed: 0,
                done: true,
            }),
            BodyFraming::UntilClose => Ok(Progress {
                consumed: data.len(),
                done: false,
            }),
            BodyFraming::Length(n) => {
                if self.max > 0 && n > self.max {
                    return Err(HttpError::PayloadTooLarge);
                }
                let take = (data.len() as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                Ok(Progress {
                    consumed: take,
                    done: self.remaining == 0,
                })
            }
            BodyFraming::Chunked => self.chunked(data),
        }
    }

    fn chunked(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.chunk = match self.chunk {
                Chunk::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if digits >= 15 {
                            return Err(HttpError::BadRequest);
                        }
                        Chunk::Size {
                            value: value * 16 + d,
                            digits: digits + 1,
                        }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => {
                        self.remaining = value;
                        Chunk::Ext
                    }
                    b'\r' if digits > 0 => {
                        self.remaining = value;
                        Chunk::SizeLf
                    }
                    _ => return Err(HttpError::BadRequest),
                },
                Chunk::Ext => {
                    if b == b'\r' {
                        Chunk::SizeLf
                    } else {
                        Chunk::Ext
                    }
                }
                Chunk::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadRequest);
                    }
                    self.total += self.remaining;
                    if self.max > 0 && self.total > self.max {
                        return Err(HttpError::PayloadTooLarge);
                    }
                    if self.remaining == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data(self.remaining)
                    }
                }
                Chunk::Data(left) => {
                    let take = ((data.len() - i) as u64).min(left) as usize;
                    i += take;
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    };
                    continue;
                }
                Chunk::DataCr => {
                    if b == b'\r' {
                        Chunk::DataLf
                    } else {
                        return Err(HttpError::BadRequest);
                    }
                }
                Chunk::DataLf => {
                    if b == b'\n' {
                        Chunk::Size {
                            value: 0,
                            digits: 0,
                        }
                    } else {
                        return Err(HttpError::BadRequest);
                    }
                }
                Chunk::TrailerStart => {
                    if b == b'\r' {
                        Chunk::FinalLf
                    } else {
                        Chunk::TrailerLine
                    }
                }
                Chunk::TrailerLine => {
                    if b == b'\r' {
                        Chunk::TrailerLf
                    } else {
                        Chunk::TrailerLine
                    }
                }
                Chunk::TrailerLf => {
                    if b == b'\n' {
                        Chunk::TrailerStart
                    } else {
                        return Err(HttpError::BadRequest);
                    }
                }
                Chunk::FinalLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadRequest);
                    }
                    self.chunk = Chunk::Done;
                    return Ok(Progress {
                        consumed: i + 1,
                        done: true,
                    });
                }
                Chunk::Done => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    });
                }
            };
            i += 1;
        }
        Ok(Progress {
            consumed: data.len(),
            done: self.chunk == Chunk::Done,
        })
    }
}
