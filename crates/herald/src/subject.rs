//! Subjects and patterns (SPEC section 1).
//!
//! A subject is one or more tokens joined by `.`; a token is one or more characters other than
//! `.`, whitespace and NUL. A *pattern* may also use `*` as a whole token (exactly one token) and
//! `>` as the last token (one or more tokens). `*` or `>` inside a longer token is a literal
//! character, as in NATS. Publishing needs a *literal* subject: no wildcard tokens.
//!
//! The rules themselves are `herald_proto::subject`'s (shared with the multi-cluster client);
//! errors here name the subject and the first rule it broke.

use arcstr::ArcStr;
use std::fmt;

use crate::error::{Error, Result};

pub use herald_proto::subject::{Kind, MAX_SUBJECT_LEN};

/// Checks `s` against the rules of SPEC section 1 and says whether it is literal or a pattern.
///
/// # Examples
/// ```
/// use herald::subject::{check, Kind};
/// assert_eq!(check("orders.eu.42").unwrap(), Kind::Literal);
/// assert_eq!(check("orders.*.>").unwrap(), Kind::Pattern);
/// assert!(check("orders..42").is_err());
/// ```
pub fn check(s: &str) -> Result<Kind> {
    herald_proto::subject::validate(s).map_err(|reason| invalid(s, reason))
}

/// Checks that `s` is a valid subject to publish to (literal, no wildcards).
pub fn check_literal(s: &str) -> Result<()> {
    match check(s)? {
        Kind::Literal => Ok(()),
        Kind::Pattern => Err(invalid(s, "wildcards are not allowed in a publish subject")),
    }
}

/// Does literal `subject` match `pattern`? Both are assumed valid.
///
/// Used off the hot path (cache invalidation, tools); the index does the real matching.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether two valid patterns can match a common subject.
///
/// `*` matches any one token and `>` one or more trailing tokens, on either side: `a.*` and
/// `*.b` overlap (on `a.b`), `a.>` and `a` do not (`>` needs at least one token).
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Whether every subject valid pattern `narrow` matches is matched by `wide` too.
pub fn covers(wide: &str, narrow: &str) -> bool {
    let mut w = wide.split('.');
    let mut n = narrow.split('.');
    loop {
        match (w.next(), n.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn invalid(s: &str, reason: &'static str) -> Error {
    let subject = match s.char_indices().nth(256) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    };
    Error::InvalidSubject { subject, reason }
}

/// A validated literal subject, cheap to clone (shared, immutable).
///
/// One pointer wide (an [`ArcStr`]: the length lives with the text), so that a message, which
/// holds one, fits a 64-byte allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(ArcStr);

impl Subject {
    /// Validates `s` as a literal subject.
    pub fn new(s: &str) -> Result<Self> {
        check_literal(s)?;
        Ok(Subject(ArcStr::from(s)))
    }

    /// Wraps a subject the caller has already validated.
    pub(crate) fn from_valid(s: &str) -> Self {
        Subject(ArcStr::from(s))
    }

    /// The subject as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are handles of the same shared text.
    pub(crate) fn ptr_eq(&self, other: &Subject) -> bool {
        ArcStr::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Subject {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Subject {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> &'static str {
        match check(s) {
            Err(Error::InvalidSubject { reason, .. }) => reason,
            other => panic!("{s:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_spec_examples() {
        for s in [
            "user.created",
            "room:frontend",
            "orders.eu.42",
            "a-b_c/d",
            "a*",
            "b>",
            "a.>x",
        ] {
            assert_eq!(check(s).unwrap(), Kind::Literal, "{s}");
        }
        for s in ["a.*.c", "orders.>", "*", ">", "*.*", "a.*.>"] {
            assert_eq!(check(s).unwrap(), Kind::Pattern, "{s}");
        }
    }

    #[test]
    fn rejects_with_named_reason() {
        assert_eq!(reason(""), "empty subject");
        assert_eq!(reason(".a"), "leading dot");
        assert_eq!(reason("a."), "trailing dot");
        assert_eq!(reason("a..b"), "empty token");
        assert_eq!(reason("a.."), "trailing dot");
        assert_eq!(reason("a.>.b"), "'>' must be the last token");
        assert_eq!(reason("a b"), "whitespace or NUL in a token");
        assert_eq!(reason("a\tb"), "whitespace or NUL in a token");
        assert_eq!(reason("a\0b"), "whitespace or NUL in a token");
        assert_eq!(reason("a\u{3000}b"), "whitespace in a token");
        assert_eq!(reason(&"a".repeat(4097)), "longer than 4096 bytes");
        assert!(check(&"a".repeat(4096)).is_ok());
    }

    /// The rules as first written: split into tokens, then judge each.
    fn reference(s: &str) -> std::result::Result<Kind, &'static str> {
        if s.is_empty() {
            return Err("empty subject");
        }
        if s.len() > MAX_SUBJECT_LEN {
            return Err("longer than 4096 bytes");
        }
        let mut kind = Kind::Literal;
        let mut tokens = s.split('.').peekable();
        while let Some(token) = tokens.next() {
            match token {
                "" if s.starts_with('.') => return Err("leading dot"),
                "" if s.ends_with('.') => return Err("trailing dot"),
                "" => return Err("empty token"),
                "*" => kind = Kind::Pattern,
                ">" if tokens.peek().is_some() => return Err("'>' must be the last token"),
                ">" => kind = Kind::Pattern,
                _ if token.bytes().any(|b| b.is_ascii_whitespace() || b == 0) => {
                    return Err("whitespace or NUL in a token");
                }
                _ if token.chars().any(char::is_whitespace) => return Err("whitespace in a token"),
                _ => {}
            }
        }
        Ok(kind)
    }

    mod props {
        use super::{Error, check, reference};
        use proptest::prelude::*;

        fn subjects() -> impl Strategy<Value = String> {
            let parts = [
                "a", "bc", ".", "*", ">", " ", "\t", "\u{b}", "\0", "\u{3000}", "é", "\u{85}",
            ];
            prop::collection::vec(prop::sample::select(parts.to_vec()), 0..12)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn single_pass_agrees_with_the_token_rules(s in subjects()) {
                let got = check(&s).map_err(|e| match e {
                    Error::InvalidSubject { reason, .. } => reason,
                    _ => "other",
                });
                prop_assert_eq!(got, reference(&s), "{:?}", s);
            }
        }
    }

    #[test]
    fn error_names_subject_and_reason() {
        let err = check_literal("orders.*").unwrap_err().to_string();
        assert!(err.contains("orders.*"), "{err}");
        assert!(err.contains("wildcards"), "{err}");
    }

    #[test]
    fn matching_rules() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.b.c"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "a"));
        assert!(!matches("a*", "ab"));
        assert!(matches("a*", "a*"));
    }

    #[test]
    fn overlaps_truth_table() {
        let cases = [
            ("a.*", "a.b", true),
            ("a.>", "a", false),
            ("a.>", "a.b.c", true),
            ("*.b", "a.*", true),
            (">", "a", true),
            (">", "a.b.c", true),
            (">", "*.*", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*.c", "a.>", true),
            ("a.b", "a.b.c", false),
            ("*", "a.b", false),
            ("$JS.API.>", "$JS.>", true),
            ("$JS.API.>", "$KV.>", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(a, b), want, "{a} vs {b}");
            assert_eq!(overlaps(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn covers_means_every_match_of_the_narrow_one() {
        assert!(covers(">", "a.*"));
        assert!(covers("a.>", "a.b.>"));
        assert!(covers("a.*", "a.b"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.>", "a"));
    }
}
