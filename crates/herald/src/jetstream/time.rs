//! Timestamps as JetStream writes them: RFC 3339 in UTC with the fraction trimmed (Go's
//! `RFC3339Nano`, [`crate::time::rfc3339`]), and Go's zero time for "never".

use std::time::SystemTime;

/// What "never" is written as: Go's zero time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `at` as JetStream writes it, or the zero time for `None`.
pub fn rfc3339(at: Option<SystemTime>) -> String {
    match at {
        Some(at) => crate::time::rfc3339(at),
        None => ZERO_TIME.to_owned(),
    }
}

/// Reads a time a client sent: `Ok(None)` for the zero time (in any RFC 3339 spelling), an
/// error for anything that is not RFC 3339 or lies between the zero time and 1970.
pub fn parse(text: &str) -> Result<Option<SystemTime>, String> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let bad = || format!("{text:?} is not an RFC 3339 time");
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
    let zero = OffsetDateTime::parse(ZERO_TIME, &Rfc3339).map_err(|_| bad())?;
    if at == zero {
        return Ok(None);
    }
    crate::time::parse_rfc3339(text).map(Some).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn zero_time_both_ways() {
        assert_eq!(rfc3339(None), ZERO_TIME);
        assert_eq!(parse(ZERO_TIME), Ok(None));
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(rfc3339(Some(at)), "2023-11-14T22:13:20.25Z");
        assert_eq!(parse("2023-11-14T22:13:20.25Z"), Ok(Some(at)));
        assert!(parse("0001-01-01T00:00:00.5Z").is_err());
        assert_eq!(parse("0001-01-01T00:00:00.000Z"), Ok(None));
        assert_eq!(parse("0001-01-01T01:00:00+01:00"), Ok(None));
    }
}
