//! Property tests: the subscription index (trie + cache) against a naive matcher, over random
//! patterns, subjects and insert/remove/lookup sequences; and subject validation against a
//! direct reading of the rules.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use herald::Target;
use herald::index::{Entry, Index};
use herald::subject::{Kind, check};
use proptest::prelude::*;

struct Nop;
impl Target for Nop {
    fn deliver(&self, _: u64, _: &herald::Delivery<'_>) -> bool {
        true
    }
}

/// Token-by-token matching, written independently of the index.
fn naive_match(pattern: &str, subject: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    for (i, tok) in p.iter().enumerate() {
        if *tok == ">" {
            return s.len() > i;
        }
        match s.get(i) {
            Some(st) if *tok == "*" || tok == st => {}
            _ => return false,
        }
    }
    p.len() == s.len()
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "a*", "*", ">"]), 1..5).prop_map(
        |mut toks| {
            let last = toks.len() - 1;
            for t in &mut toks[..last] {
                if *t == ">" {
                    *t = "*";
                }
            }
            toks.join(".")
        },
    )
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "a*"]), 1..6)
        .prop_map(|t| t.join("."))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<u8>),
    Remove(usize),
    Lookup(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (pattern(), prop::option::of(0u8..2)).prop_map(|(p, q)| Op::Insert(p, q)),
        2 => any::<usize>().prop_map(Op::Remove),
        4 => subject().prop_map(Op::Lookup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn index_matches_like_the_naive_matcher(ops in prop::collection::vec(op(), 1..80), cache in prop::sample::select(vec![0usize, 2, 4096])) {
        let index = Index::with_cache_capacity(cache);
        let target: Arc<dyn Target> = Arc::new(Nop);
        let mut live: Vec<(u64, String, Option<u8>)> = Vec::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Insert(p, q) => {
                    next += 1;
                    let entry = Entry::new(next, &p, target.clone());
                    index.insert(Arc::new(match q {
                        Some(q) => entry.in_queue(&format!("q{q}")),
                        None => entry,
                    }));
                    live.push((next, p, q));
                }
                Op::Remove(i) if !live.is_empty() => {
                    let (id, p, _) = live.remove(i % live.len());
                    prop_assert!(index.remove(&p, id).is_some());
                    prop_assert!(index.remove(&p, id).is_none());
                }
                Op::Remove(_) => {}
                Op::Lookup(s) => {
                    let m = index.lookup(&s).unwrap();
                    prop_assert_eq!(m.subject.as_str(), s.as_str());
                    let got: BTreeSet<u64> = m.plain.iter().map(|e| e.id).collect();
                    let want: BTreeSet<u64> = live.iter().filter(|(_, p, q)| q.is_none() && naive_match(p, &s)).map(|e| e.0).collect();
                    prop_assert_eq!(got, want, "plain matches of {}", s);
                    let mut got_groups: Vec<BTreeSet<u64>> = m.groups.iter().map(|g| g.iter().map(|e| e.id).collect()).collect();
                    got_groups.sort();
                    let mut want_groups: Vec<BTreeSet<u64>> = (0..2u8)
                        .map(|q| live.iter().filter(|(_, p, lq)| *lq == Some(q) && naive_match(p, &s)).map(|e| e.0).collect::<BTreeSet<u64>>())
                        .filter(|g| !g.is_empty())
                        .collect();
                    want_groups.sort();
                    prop_assert_eq!(got_groups, want_groups, "queue groups of {}", s);
                }
            }
            prop_assert_eq!(index.len(), live.len());
        }
        for (id, p, _) in live.drain(..) {
            prop_assert!(index.remove(&p, id).is_some());
        }
        prop_assert_eq!(index.node_count(), 1, "an emptied index holds only its root");
    }

    #[test]
    fn validation_follows_the_rules(s in "[ab.*> \t]{0,8}") {
        let tokens: Vec<&str> = s.split('.').collect();
        let valid = !s.is_empty()
            && tokens.iter().all(|t| !t.is_empty() && !t.contains([' ', '\t']))
            && tokens.iter().take(tokens.len() - 1).all(|t| *t != ">");
        match check(&s) {
            Ok(kind) => {
                prop_assert!(valid, "{:?} accepted", s);
                let wild = tokens.iter().any(|t| *t == "*" || *t == ">");
                prop_assert_eq!(kind == Kind::Pattern, wild);
            }
            Err(e) => {
                prop_assert!(!valid, "{:?} rejected: {}", s, e);
                prop_assert!(e.to_string().contains(&format!("{s:?}")), "error names the subject: {}", e);
            }
        }
    }
}
