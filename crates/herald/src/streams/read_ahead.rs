//! What a consumer's pump reads from its stream's log: a message's parts sharing one buffer
//! ([`Record`]), and runs of consecutive messages read at once ([`ReadAhead`]).

use bytes::Bytes;

use super::stream::Stream;

/// A message to deliver, its parts sharing one buffer.
pub(super) struct Record {
    pub(super) timestamp: u64,
    /// The subject's bytes, checked UTF-8 when decoded.
    pub(super) subject: Bytes,
    pub(super) headers: Bytes,
    pub(super) payload: Bytes,
}

impl Record {
    pub(super) fn subject(&self) -> &str {
        std::str::from_utf8(&self.subject).unwrap_or_default()
    }
}

impl From<herald_log::Stored> for Record {
    fn from(stored: herald_log::Stored) -> Self {
        Record {
            timestamp: stored.timestamp,
            subject: Bytes::from(stored.subject.into_bytes()),
            headers: Bytes::from(stored.headers),
            payload: Bytes::from(stored.payload),
        }
    }
}

/// Records read ahead for one pump: a run of consecutive sequences read from the log at once
/// (one lock of the log, one read), handed out without copying.
#[derive(Default)]
pub(super) struct ReadAhead {
    buf: Bytes,
    /// The sequence of the record at the start of `buf`.
    seq: u64,
}

impl ReadAhead {
    /// Most bytes read at once.
    const MAX_BYTES: usize = 1 << 20;

    /// Message `seq`, reading it and up to `wanted - 1` following ones when it is not at hand.
    pub(super) fn next(
        &mut self,
        stream: &Stream,
        seq: u64,
        wanted: usize,
    ) -> herald_log::Result<Option<Record>> {
        if self.buf.is_empty() || self.seq != seq {
            let mut buf = Vec::new();
            let n =
                stream
                    .writer
                    .log()
                    .read_batch(seq, wanted.max(1), Self::MAX_BYTES, &mut buf)?;
            if n == 0 {
                self.buf = Bytes::new();
                return Ok(None);
            }
            self.buf = Bytes::from(buf);
            self.seq = seq;
        }
        let view = match herald_log::record::decode(&self.buf, self.buf.len()) {
            Ok(Some(view)) if view.seq == seq => view,
            _ => {
                self.buf = Bytes::new();
                return Err(herald_log::Error::Io {
                    path: stream.writer.log().dir().to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("record {seq} changed on disk"),
                    ),
                });
            }
        };
        let record = Record {
            timestamp: view.entry.timestamp,
            subject: self.buf.slice_ref(view.entry.subject.as_bytes()),
            headers: self.buf.slice_ref(view.entry.headers),
            payload: self.buf.slice_ref(view.entry.payload),
        };
        let size = view.size;
        self.buf = self.buf.slice(size..);
        self.seq += 1;
        Ok(Some(record))
    }
}
