//! Subjects and patterns: one token or more joined by `.`; a token is one character or more
//! other than `.`, whitespace and NUL. A *pattern* may also use `*` as a whole token (exactly
//! one token) and `>` as the last token (one or more tokens). `*` or `>` inside a longer token
//! is a literal character, as in NATS. Publishing needs a *literal* subject.
//!
//! The rules live here, below both the library and the multi-cluster client, so that every
//! part of herald refuses the same subjects. Validation is a single pass over the bytes with
//! no allocation.

/// Longest subject or pattern accepted, in bytes (the NATS control-line limit).
pub const MAX_SUBJECT_LEN: usize = 4096;

/// What a subject string is, once it is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No wildcard tokens: can be published to.
    Literal,
    /// Holds a `*` or `>` token: can only be subscribed to.
    Pattern,
}

const PLAIN: u8 = 0;
const DOT: u8 = 1;
/// ASCII whitespace or NUL: refused.
const BAD: u8 = 2;
/// A vertical tab (Unicode whitespace, not ASCII whitespace) or a byte of a non-ASCII
/// character: the token is looked at as characters.
const WIDE: u8 = 3;

/// What each byte is to [`validate`]: one table lookup per byte on the common path.
static CLASS: [u8; 256] = {
    let mut class = [PLAIN; 256];
    class[b'.' as usize] = DOT;
    let bad = [b' ', b'\t', b'\n', b'\r', 0x0c, 0];
    let mut i = 0;
    while i < bad.len() {
        class[bad[i] as usize] = BAD;
        i += 1;
    }
    class[0x0b] = WIDE;
    let mut b = 0x80;
    while b < 256 {
        class[b] = WIDE;
        b += 1;
    }
    class
};

/// Checks `s` against the rules of herald's subjects and says whether it is literal or a
/// pattern; the error is the first rule it broke.
///
/// # Examples
/// ```
/// use herald_proto::subject::{validate, Kind};
/// assert_eq!(validate("orders.eu.42"), Ok(Kind::Literal));
/// assert_eq!(validate("orders.*.>"), Ok(Kind::Pattern));
/// assert_eq!(validate("orders..42"), Err("empty token"));
/// ```
pub fn validate(s: &str) -> Result<Kind, &'static str> {
    let fail = |reason| Err(reason);
    if s.is_empty() {
        return fail("empty subject");
    }
    if s.len() > MAX_SUBJECT_LEN {
        return fail("longer than 4096 bytes");
    }
    let bytes = s.as_bytes();
    let mut kind = Kind::Literal;
    let mut start = 0;
    // Whether the current token holds a non-ASCII character or a vertical tab: then it is
    // looked at again for Unicode whitespace (other ASCII bytes are judged one by one).
    let mut wide = false;
    let mut token_end = |start: usize, end: usize, wide: bool| -> Result<(), &'static str> {
        match &bytes[start..end] {
            [] => Err(if start == 0 {
                "leading dot"
            } else if bytes.ends_with(b".") {
                "trailing dot"
            } else {
                "empty token"
            }),
            b"*" => {
                kind = Kind::Pattern;
                Ok(())
            }
            b">" if end < bytes.len() => Err("'>' must be the last token"),
            b">" => {
                kind = Kind::Pattern;
                Ok(())
            }
            _ if wide && s[start..end].chars().any(char::is_whitespace) => {
                Err("whitespace in a token")
            }
            _ => Ok(()),
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        match CLASS[b as usize] {
            PLAIN => {}
            DOT => {
                token_end(start, i, wide)?;
                start = i + 1;
                wide = false;
            }
            BAD => return fail("whitespace or NUL in a token"),
            _ => wide = true,
        }
    }
    token_end(start, bytes.len(), wide)?;
    Ok(kind)
}
