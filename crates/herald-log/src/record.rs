//! One record: its byte layout, encoding and checked decoding.
//!
//! ```text
//! offset  size  field
//!  0      4     len        bytes after this field (crc .. end of payload), little-endian
//!  4      4     crc32c     of bytes 8 .. 4 + len
//!  8      8     seq
//! 16      8     timestamp  nanoseconds since the Unix epoch
//! 24      2     subject length
//! 26      4     headers length
//! 30      ...   subject, headers (a NATS/1.0 block or empty), payload
//! ```
//!
//! Decoding never trusts a length: a record is accepted only if it fits in the bytes at hand,
//! its lengths add up, and its checksum matches.

use crate::error::Corruption;

/// Bytes before the subject.
pub const HEADER: usize = 30;

/// A message as appended: borrowed parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The subject it was published on.
    pub subject: &'a str,
    /// The `NATS/1.0` header block, or empty.
    pub headers: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// Nanoseconds since the Unix epoch.
    pub timestamp: u64,
}

/// A record read back: its sequence and owned parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its sequence number in the log.
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// The subject.
    pub subject: String,
    /// The header block, or empty.
    pub headers: Vec<u8>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The encoded size of `entry`.
pub fn size(entry: &Entry<'_>) -> usize {
    HEADER + entry.subject.len() + entry.headers.len() + entry.payload.len()
}

/// Appends the record for `entry` at `seq` to `out`. The caller has checked the subject fits
/// in a u16 and the headers in a u32.
pub fn encode(out: &mut Vec<u8>, seq: u64, entry: &Entry<'_>) {
    let start = out.len();
    let len = (size(entry) - 4) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&entry.timestamp.to_le_bytes());
    out.extend_from_slice(&(entry.subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entry.headers.len() as u32).to_le_bytes());
    out.extend_from_slice(entry.subject.as_bytes());
    out.extend_from_slice(entry.headers);
    out.extend_from_slice(entry.payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record decoded in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View<'a> {
    /// Its sequence.
    pub seq: u64,
    /// Its parts.
    pub entry: Entry<'a>,
    /// Its encoded size.
    pub size: usize,
}

impl View<'_> {
    /// An owned copy.
    pub fn to_stored(&self) -> Stored {
        Stored {
            seq: self.seq,
            timestamp: self.entry.timestamp,
            subject: self.entry.subject.to_owned(),
            headers: self.entry.headers.to_vec(),
            payload: self.entry.payload.to_vec(),
        }
    }
}

/// Decodes the record at the start of `buf`. `Ok(None)` when `buf` is empty; an error says
/// why the bytes are not a whole, intact record (a torn write at the end of a file reads as
/// [`Corruption::Torn`]).
pub fn decode(buf: &[u8], max_record: usize) -> Result<Option<View<'_>>, Corruption> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() < HEADER {
        return Err(Corruption::Torn);
    }
    let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let len = u32_at(0) as usize;
    let size = len + 4;
    if size < HEADER || size > max_record {
        return Err(Corruption::BadLength(len as u64));
    }
    if buf.len() < size {
        return Err(Corruption::Torn);
    }
    let crc = u32_at(4);
    if crc32c::crc32c(&buf[8..size]) != crc {
        return Err(Corruption::Checksum);
    }
    let subject_len = u16::from_le_bytes([buf[24], buf[25]]) as usize;
    let headers_len = u32_at(26) as usize;
    if HEADER + subject_len + headers_len > size {
        return Err(Corruption::BadLength(len as u64));
    }
    let subject = std::str::from_utf8(&buf[HEADER..HEADER + subject_len])
        .map_err(|_| Corruption::BadSubject)?;
    let headers = &buf[HEADER + subject_len..HEADER + subject_len + headers_len];
    let payload = &buf[HEADER + subject_len + headers_len..size];
    Ok(Some(View {
        seq: u64_at(8),
        entry: Entry {
            subject,
            headers,
            payload,
            timestamp: u64_at(16),
        },
        size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_is_caught() {
        let entry = Entry {
            subject: "orders.eu",
            headers: b"NATS/1.0\r\nK: v\r\n\r\n",
            payload: b"hello",
            timestamp: 42,
        };
        let mut buf = Vec::new();
        encode(&mut buf, 7, &entry);
        assert_eq!(buf.len(), size(&entry));
        let view = decode(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!((view.seq, view.entry, view.size), (7, entry, buf.len()));
        for cut in 1..buf.len() {
            assert!(decode(&buf[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(&bad, 1 << 20).map(|v| v.map(|v| v.to_stored()))
                        != Ok(Some(view.to_stored())),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
        assert!(matches!(decode(&buf, 10), Err(Corruption::BadLength(_))));
    }
}
