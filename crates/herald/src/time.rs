//! Timestamps as text: RFC 3339 in UTC (`2026-12-06T10:00:00.123456789Z`), one style for the
//! library, the server and the command line. Formatting and parsing are the `time` crate's;
//! herald only picks the shape: UTC, `Z`, and the fraction written with the digits it needs
//! (none for a whole second), as Go's `time.RFC3339Nano` does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `at` as RFC 3339 in UTC, with trailing zeros of the fraction trimmed.
pub fn rfc3339(at: SystemTime) -> String {
    let mut text = String::with_capacity(32);
    push_rfc3339(&mut text, at);
    text
}

/// Appends [`rfc3339`]`(at)` to `out`, with no allocation of its own.
pub(crate) fn push_rfc3339(out: &mut String, at: SystemTime) {
    // The longest: a four-digit year, nine fractional digits, `Z` (30 bytes).
    let mut buf = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if utc(at).format_into(&mut cursor, &Rfc3339).is_err() {
        return;
    }
    let len = cursor.position() as usize;
    let Ok(text) = std::str::from_utf8(&buf[..len]) else {
        return;
    };
    // `time` writes the fraction's nine digits, or none for a whole second.
    match text.find('.') {
        Some(dot) => {
            let end = text.len() - 1; // the `Z`
            let digits = text[dot + 1..end].trim_end_matches('0').len();
            let cut = if digits == 0 { dot } else { dot + 1 + digits };
            out.push_str(&text[..cut]);
            out.push('Z');
        }
        None => out.push_str(text),
    }
}

/// `at` in UTC, held to the years RFC 3339 can write (0000 to 9999): `time`'s own conversion
/// from a `SystemTime` panics outside them.
fn utc(at: SystemTime) -> OffsetDateTime {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        let edge = if nanos < 0 {
            time::PrimitiveDateTime::MIN
        } else {
            time::PrimitiveDateTime::MAX
        };
        edge.assume_utc()
    })
}

/// Reads an RFC 3339 time (`Z` or an offset, 0 to 9 fractional digits); `None` when it is
/// malformed or before the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let since = at - OffsetDateTime::UNIX_EPOCH;
    let nanos = u64::try_from(since.whole_nanoseconds()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Nanoseconds since the Unix epoch of `at` (0 before it, saturating after year 2554).
pub(crate) fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The time `nanos` after the Unix epoch.
pub(crate) fn from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

/// Serde for `SystemTime` as an RFC 3339 string ([`rfc3339`]).
pub(crate) mod serde_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

/// Serde for an optional `SystemTime` as an RFC 3339 string (absent or `null`: `None`).
pub(crate) mod serde_rfc3339_option {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::rfc3339(*at)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}"))),
        }
    }
}

/// Serde for a list of durations as humantime strings (`["1s", "5s"]`).
pub(crate) mod serde_durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            list.iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| humantime::parse_duration(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339_nano() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_700_000_000, 0)), "2023-11-14T22:13:20Z");
        assert_eq!(
            rfc3339(at(1_700_000_000, 500_000_000)),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(
            rfc3339(at(1_700_000_000, 123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(at(1_700_000_000, 1_000)),
            "2023-11-14T22:13:20.000001Z"
        );
    }

    #[test]
    fn pushing_appends_to_what_is_there() {
        let mut header = String::from("Nats-Time-Stamp: ");
        push_rfc3339(
            &mut header,
            UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000),
        );
        assert_eq!(header, "Nats-Time-Stamp: 2023-11-14T22:13:20.12Z");
        // Times past what RFC 3339 writes are held to its last instant (they panicked in
        // the `time` crate's conversion).
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn parses_offsets_and_round_trips() {
        for nanos in [0u64, 1, 999_999_999, 1_700_000_000_123_456_789] {
            let at = from_unix_nanos(nanos);
            assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at), "{nanos}");
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            parse_rfc3339("2023-11-14T22:13:20Z")
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
