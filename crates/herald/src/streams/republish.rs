//! Republish: a stored message is also published again on another subject, with where it was
//! stored in its headers (`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`,
//! `Nats-Time-Stamp`, `Nats-Last-Sequence`; with `headers_only`, `Nats-Msg-Size` instead of
//! the payload).
//!
//! The destination maps the source's wildcards as NATS subject mappings do: a `*` or `>`
//! token takes the next wildcard's value in order, `{{wildcard(n)}}` or `$n` the n-th one.

use super::config::Republish;
use crate::subject;

/// The subject `subject` (which `rule.source` matches) is republished on, or `None` when the
/// source does not match it.
pub(crate) fn destination(rule: &Republish, subject_in: &str) -> Option<String> {
    if !subject::matches(&rule.source, subject_in) {
        return None;
    }
    // The values of the source's wildcards, in order.
    let mut values: Vec<String> = Vec::new();
    let tokens: Vec<&str> = subject_in.split('.').collect();
    for (i, token) in rule.source.split('.').enumerate() {
        match token {
            "*" => values.push(tokens[i].to_owned()),
            ">" => values.push(tokens[i..].join(".")),
            _ => {}
        }
    }
    let mut next = 0;
    let mut out: Vec<String> = Vec::new();
    for token in rule.destination.split('.') {
        let value = match token {
            "*" | ">" => {
                next += 1;
                values.get(next - 1)?.clone()
            }
            _ => match wildcard_index(token) {
                Some(n) => values.get(n.checked_sub(1)?)?.clone(),
                None => token.to_owned(),
            },
        };
        out.push(value);
    }
    Some(out.join("."))
}

/// `n` of a `{{wildcard(n)}}` or `$n` token.
fn wildcard_index(token: &str) -> Option<usize> {
    let inner = token
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .map(str::trim)
        .and_then(|t| t.strip_prefix("wildcard("))
        .and_then(|t| t.strip_suffix(')'))
        .or_else(|| token.strip_prefix('$'))?;
    inner.trim().parse().ok()
}

/// Checks a rule against its stream's subjects: a valid source inside them, a destination
/// that cannot feed the stream again.
pub(crate) fn check(rule: &Republish, stream_subjects: &[String]) -> Result<(), String> {
    if subject::check(&rule.source).is_err() {
        return Err(format!("invalid republish source {:?}", rule.source));
    }
    if !stream_subjects
        .iter()
        .any(|s| subject::covers(s, &rule.source))
    {
        return Err("stream republish source must be a subset of the stream subjects".into());
    }
    let sample: String = rule
        .destination
        .split('.')
        .map(|t| if wildcard_index(t).is_some() { "*" } else { t })
        .collect::<Vec<_>>()
        .join(".");
    if subject::check(&sample).is_err() {
        return Err(format!(
            "invalid republish destination {:?}",
            rule.destination
        ));
    }
    if stream_subjects
        .iter()
        .any(|s| subject::overlaps(s, &sample))
    {
        return Err("stream republish destination can not match stream subjects".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(source: &str, destination: &str) -> Republish {
        Republish {
            source: source.into(),
            destination: destination.into(),
            headers_only: false,
        }
    }

    #[test]
    fn destinations_map_wildcards() {
        let r = rule("orders.*.>", "copy.*.>");
        assert_eq!(
            destination(&r, "orders.eu.1.2").as_deref(),
            Some("copy.eu.1.2")
        );
        let r = rule("orders.*.*", "by.{{wildcard(2)}}.$1");
        assert_eq!(destination(&r, "orders.eu.7").as_deref(), Some("by.7.eu"));
        let r = rule("orders.>", "all");
        assert_eq!(destination(&r, "orders.x").as_deref(), Some("all"));
        assert_eq!(destination(&r, "other.x"), None);
        let r = rule("orders.*", "x.$3");
        assert_eq!(destination(&r, "orders.a"), None, "no third wildcard");
    }

    #[test]
    fn rules_that_loop_or_leave_the_stream_are_refused() {
        let subjects = vec!["orders.>".to_owned()];
        assert!(check(&rule("orders.*", "copy.*"), &subjects).is_ok());
        assert!(check(&rule("other.*", "copy.*"), &subjects).is_err());
        assert!(check(&rule("orders.*", "orders.copy.*"), &subjects).is_err());
        assert!(check(&rule("orders..x", "copy"), &subjects).is_err());
    }
}
