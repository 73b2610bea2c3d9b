//! The mapping of subjects to clusters: fixed by golden vectors (computed independently, with
//! Python's `xxhash` package, from the formula in `rendezvous`'s documentation), independent
//! of the order clusters are listed in, and moving as few subjects as possible when clusters
//! come and go.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::collections::BTreeMap;

use herald_client::rendezvous::Ring;
use proptest::prelude::*;

/// (subject, its cluster among eu/us/ap, among eu/us/ap/sa).
const GOLDEN: &[(&str, &str, &str)] = &[
    ("orders.42", "ap", "sa"),
    ("orders.43", "us", "us"),
    ("svc.price", "us", "us"),
    ("a", "ap", "sa"),
    ("metrics.cpu.host-1", "eu", "eu"),
    ("user.created", "ap", "ap"),
    ("x.y.z", "ap", "ap"),
    ("_INBOX.abc", "ap", "ap"),
];

#[test]
fn golden_vectors() {
    let three = Ring::new(["eu", "us", "ap"], None);
    let four = Ring::new(["eu", "us", "ap", "sa"], None);
    for (subject, of_three, of_four) in GOLDEN {
        assert_eq!(three.cluster_of(subject), Some(*of_three), "{subject}");
        assert_eq!(four.cluster_of(subject), Some(*of_four), "{subject}");
    }
}

fn subjects(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("tenant.{}.orders.{i}", i % 97))
        .collect()
}

fn mapping(ring: &Ring, subjects: &[String]) -> Vec<String> {
    subjects
        .iter()
        .map(|s| ring.cluster_of(s).unwrap().to_owned())
        .collect()
}

#[test]
fn the_order_clusters_are_listed_in_changes_nothing() {
    let subjects = subjects(10_000);
    let orders = [
        ["eu", "us", "ap"],
        ["eu", "ap", "us"],
        ["us", "eu", "ap"],
        ["us", "ap", "eu"],
        ["ap", "eu", "us"],
        ["ap", "us", "eu"],
    ];
    let first = mapping(&Ring::new(orders[0], None), &subjects);
    for order in &orders[1..] {
        assert_eq!(
            mapping(&Ring::new(*order, None), &subjects),
            first,
            "{order:?}"
        );
    }
    // And the three share the subjects about evenly.
    let mut counts = BTreeMap::new();
    for c in &first {
        *counts.entry(c.as_str()).or_insert(0) += 1;
    }
    for (cluster, n) in counts {
        assert!(
            (3_000..=3_700).contains(&n),
            "{cluster} holds {n} of 10,000"
        );
    }
}

#[test]
fn adding_a_fourth_moves_a_quarter_evenly_and_removing_one_moves_only_its_own() {
    let subjects = subjects(10_000);
    let three = mapping(&Ring::new(["eu", "us", "ap"], None), &subjects);
    // Inserted in the middle of the list, on purpose.
    let four = mapping(&Ring::new(["eu", "sa", "us", "ap"], None), &subjects);
    let mut moved_from: BTreeMap<&str, usize> = BTreeMap::new();
    for (before, after) in three.iter().zip(&four) {
        if before != after {
            assert_eq!(after, "sa", "a subject moved between old clusters");
            *moved_from.entry(before.as_str()).or_insert(0) += 1;
        }
    }
    let moved: usize = moved_from.values().sum();
    assert!(
        (2_300..=2_700).contains(&moved),
        "{moved} of 10,000 moved (25 % +- 2 %)"
    );
    for (from, n) in &moved_from {
        assert!(
            (moved / 3).abs_diff(*n) <= moved / 10,
            "{from} gave {n} of {moved}: {moved_from:?}"
        );
    }
    // Removing "us": only its subjects move.
    let two = mapping(&Ring::new(["eu", "ap"], None), &subjects);
    for (before, after) in three.iter().zip(&two) {
        if before != "us" {
            assert_eq!(before, after);
        }
    }
}

#[test]
fn partitioned_subjects_share_a_cluster() {
    let ring = Ring::new(["eu", "us", "ap"], Some(2));
    let home = ring.cluster_of("orders.eu").unwrap();
    for i in 0..1_000 {
        assert_eq!(ring.cluster_of(&format!("orders.eu.{i}.x")), Some(home));
    }
}

proptest! {
    #[test]
    fn any_clusters_any_subject(
        names in prop::collection::btree_set("[a-z0-9-]{1,12}", 2..8),
        subject in "[a-z]{1,8}(\\.[a-z0-9]{1,8}){0,4}",
        rotate in 0usize..8,
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let ring = Ring::new(names.clone(), None);
        let home = ring.cluster_of(&subject).unwrap().to_owned();
        // Order does not matter.
        let mut rotated = names.clone();
        rotated.rotate_left(rotate % names.len());
        let of = |names: Vec<String>| Ring::new(names, None).cluster_of(&subject).unwrap().to_owned();
        prop_assert_eq!(of(rotated), home.clone());
        // Removing another cluster leaves the subject where it is.
        let others: Vec<String> = names.iter().filter(|n| **n != home).cloned().collect();
        let mut fewer: Vec<String> = names.clone();
        fewer.retain(|n| *n != others[0]);
        prop_assert_eq!(of(fewer), home.clone());
        // Adding a cluster moves the subject to it or nowhere.
        let mut more = names.clone();
        more.push("zz-new".into());
        let now = of(more);
        prop_assert!(now == home || now == "zz-new");
    }
}
