//! Where each subject's messages are: for every subject, the sequences of its kept messages
//! in order (8 bytes a message). Built from the records when first needed (a per-subject
//! limit, a query by subject) and kept up to date from then on; a log nobody asks by subject
//! never pays for it.
//!
//! Messages deleted one by one leave their subject's list at once. Those deleted from the
//! front (limits, purges, expiry) are left in place and skipped by every query (they are
//! below the log's first sequence), and swept out when they are as many as the live ones.

use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub(crate) struct Subjects {
    map: HashMap<Box<str>, VecDeque<u64>>,
    /// Sequences held over all lists, live or below the first.
    entries: usize,
}

impl Subjects {
    pub(crate) fn insert(&mut self, subject: &str, seq: u64) {
        match self.map.get_mut(subject) {
            Some(seqs) => seqs.push_back(seq),
            None => {
                self.map.insert(subject.into(), VecDeque::from([seq]));
            }
        }
        self.entries += 1;
    }

    /// Takes `seq` out of `subject`'s list.
    pub(crate) fn remove(&mut self, subject: &str, seq: u64) {
        let Some(seqs) = self.map.get_mut(subject) else {
            return;
        };
        if let Ok(at) = seqs.binary_search(&seq) {
            seqs.remove(at);
            self.entries -= 1;
            if seqs.is_empty() {
                self.map.remove(subject);
            }
        }
    }

    /// The live sequences of `subject` (from `first` on), oldest first.
    pub(crate) fn of(
        &self,
        subject: &str,
        first: u64,
    ) -> impl DoubleEndedIterator<Item = u64> + '_ {
        let seqs = self.map.get(subject);
        let from = seqs.map_or(0, |s| s.partition_point(|&q| q < first));
        seqs.into_iter().flat_map(move |s| s.range(from..).copied())
    }

    /// How many live messages `subject` has.
    pub(crate) fn count(&self, subject: &str, first: u64) -> u64 {
        self.map
            .get(subject)
            .map_or(0, |s| (s.len() - s.partition_point(|&q| q < first)) as u64)
    }

    /// Every subject with live messages, and its list, from `first` on.
    pub(crate) fn all(&self, first: u64) -> impl Iterator<Item = (&str, &VecDeque<u64>, usize)> {
        self.map.iter().filter_map(move |(subject, seqs)| {
            let from = seqs.partition_point(|&q| q < first);
            (from < seqs.len()).then_some((&**subject, seqs, from))
        })
    }

    /// Drops what lies below `first` once that is about half of what is held.
    pub(crate) fn sweep(&mut self, first: u64, live: u64) {
        if (self.entries as u64) < 2 * live + 1024 {
            return;
        }
        let mut entries = 0;
        self.map.retain(|_, seqs| {
            let below = seqs.partition_point(|&q| q < first);
            seqs.drain(..below);
            entries += seqs.len();
            !seqs.is_empty()
        });
        self.entries = entries;
    }
}

/// Which subjects a per-subject query takes.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    /// Every subject.
    All,
    /// One subject, exactly.
    Subject(&'a str),
    /// The subjects this accepts (a wildcard pattern's matcher).
    Matching(&'a dyn Fn(&str) -> bool),
}

impl Filter<'_> {
    fn accepts(&self, subject: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Subject(s) => *s == subject,
            Filter::Matching(f) => f(subject),
        }
    }
}

/// Kept messages of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectState {
    /// The subject.
    pub subject: String,
    /// How many.
    pub messages: u64,
    /// The oldest one's sequence.
    pub first: u64,
    /// The newest one's sequence.
    pub last: u64,
}

impl crate::Log {
    /// Builds the per-subject index now (reading every kept record) if it is not there;
    /// every query by subject does it first.
    pub fn track_subjects(&mut self) -> crate::Result<()> {
        if self.subjects.is_some() {
            return Ok(());
        }
        let mut subjects = Subjects::default();
        self.scan(self.first, |view| {
            subjects.insert(view.entry.subject, view.seq);
            true
        })?;
        self.subjects = Some(subjects);
        Ok(())
    }

    fn subject_index(&mut self) -> crate::Result<&Subjects> {
        self.track_subjects()?;
        Ok(self.subjects.as_ref().expect("just built"))
    }

    /// Calls `f` with each subject the filter takes that has kept messages, and its
    /// sequences from the first kept on.
    fn each_subject(
        &mut self,
        filter: Filter<'_>,
        mut f: impl FnMut(&str, &mut dyn DoubleEndedIterator<Item = u64>),
    ) -> crate::Result<()> {
        let first = self.first;
        let index = self.subject_index()?;
        match filter {
            Filter::Subject(subject) => {
                if index.count(subject, first) > 0 {
                    f(subject, &mut index.of(subject, first));
                }
            }
            _ => {
                for (subject, seqs, from) in index.all(first) {
                    if filter.accepts(subject) {
                        f(subject, &mut seqs.range(from..).copied());
                    }
                }
            }
        }
        Ok(())
    }

    /// The newest kept message on a subject the filter takes.
    pub fn last_seq_of(&mut self, filter: Filter<'_>) -> crate::Result<Option<u64>> {
        let mut last = None;
        self.each_subject(filter, |_, seqs| last = last.max(seqs.next_back()))?;
        Ok(last)
    }

    /// The oldest kept message at or after `from` on a subject the filter takes.
    pub fn next_seq_of(&mut self, filter: Filter<'_>, from: u64) -> crate::Result<Option<u64>> {
        let mut next: Option<u64> = None;
        self.each_subject(filter, |_, seqs| {
            for seq in seqs {
                if seq >= from {
                    next = Some(next.map_or(seq, |n| n.min(seq)));
                    break;
                }
            }
        })?;
        Ok(next)
    }

    /// How many kept messages at or after `from` are on subjects the filter takes.
    pub fn count_from(&mut self, filter: Filter<'_>, from: u64) -> crate::Result<u64> {
        if matches!(filter, Filter::All) && from <= self.first {
            return Ok(self.count);
        }
        let mut n = 0;
        self.each_subject(filter, |_, seqs| {
            n += seqs.rev().take_while(|&q| q >= from).count() as u64;
        })?;
        Ok(n)
    }

    /// The newest message of each subject the filter takes, in sequence order.
    pub fn last_of_each(&mut self, filter: Filter<'_>) -> crate::Result<Vec<u64>> {
        let mut lasts = Vec::new();
        self.each_subject(filter, |_, seqs| lasts.extend(seqs.next_back()))?;
        lasts.sort_unstable();
        Ok(lasts)
    }

    /// Each subject the filter takes, with its count and first and last sequences.
    pub fn subjects_state(&mut self, filter: Filter<'_>) -> crate::Result<Vec<SubjectState>> {
        let mut states = Vec::new();
        self.each_subject(filter, |subject, seqs| {
            let first = seqs.next();
            let (mut messages, mut last) = (u64::from(first.is_some()), first);
            for seq in seqs {
                messages += 1;
                last = Some(seq);
            }
            if let (Some(first), Some(last)) = (first, last) {
                states.push(SubjectState {
                    subject: subject.to_owned(),
                    messages,
                    first,
                    last,
                });
            }
        })?;
        states.sort_by(|a, b| a.subject.cmp(&b.subject));
        Ok(states)
    }

    /// Deletes the kept messages on subjects the filter takes: those below `up_to` if given,
    /// all but the newest `keep` of each subject if given. Returns how many.
    pub fn purge_subjects(
        &mut self,
        filter: Filter<'_>,
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> crate::Result<u64> {
        let mut doomed: Vec<(String, u64)> = Vec::new();
        self.each_subject(filter, |subject, seqs| {
            let all: Vec<u64> = seqs.collect();
            let cut = keep.map_or(all.len(), |k| all.len().saturating_sub(k as usize));
            for &seq in &all[..cut] {
                if up_to.is_none_or(|u| seq < u) {
                    doomed.push((subject.to_owned(), seq));
                }
            }
        })?;
        let mut n = 0;
        for (subject, seq) in doomed {
            n += u64::from(self.remove(seq, Some(&subject), false)?);
        }
        Ok(n)
    }
}
