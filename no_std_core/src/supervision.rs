//! Children asked of a supervisor: the rules of the exchange between a node and the
//! supervisor that runs the processes the node's machines invoke, on the supervisor's side,
//! sans-IO. The host (the platform's supervisor) moves the messages and runs the processes;
//! [`AskedChildren`] decides which request answers which and what a departure does:
//!
//! - a start (`interstate.child.start`) names its requester (the asking port), the
//!   requester's reference for it, and the parent machine; it is admitted unless a child of
//!   the same requester and reference is live (a repeat: ignored, no second child) or the
//!   table holds its capacity of live children (refused: the host answers at once with an
//!   exit that never ran, so the parent gets its error event);
//! - a stop (`interstate.child.stop`) stops only the live child of its own requester and
//!   reference: another requester's reference stops nothing;
//! - a child's end is answered once (`interstate.child.exit` to its requester, with its
//!   reference); after that its entry is free for the next start (its host key too: a
//!   supervisor reuses the slot), so the table never holds more than its live children;
//! - a child whose requester or parent machine left the bus is an orphan: no state is left
//!   to stop it, so the host stops it (its exit is then answered to nobody who listens, as
//!   any message to a departed id).
//!
//! Each child is known by the host's key for it (the supervisor's slot). Nothing here
//! allocates: the table is fixed-size, its ids bounded by [`MAX_MACHINE_ID`].

use heapless::{String, Vec};

use crate::machine::MAX_MACHINE_ID;

/// Why a start is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A live child has this requester and reference already: the start is a repeat.
    Repeated,
    /// The table holds `capacity` live children: answer the start with an exit at once.
    Full {
        /// The most children live at once.
        capacity: usize,
    },
    /// The requester's or the parent's id is longer than [`MAX_MACHINE_ID`].
    IdTooLong,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Repeated => write!(f, "a child of this reference runs already"),
            Refusal::Full { capacity } => write!(
                f,
                "the supervisor runs {capacity} asked-for children already, its most"
            ),
            Refusal::IdTooLong => write!(f, "an id is longer than {MAX_MACHINE_ID} bytes"),
        }
    }
}

/// Whom an exit answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// The port that asked.
    pub requester: &'a str,
    /// Its reference for the child.
    pub reference: u64,
}

#[derive(Debug)]
struct Entry {
    key: u32,
    requester: String<MAX_MACHINE_ID>,
    parent: String<MAX_MACHINE_ID>,
    reference: u64,
    /// Its exit was answered: the entry (and its key) is free.
    answered: bool,
}

/// The supervisor's table of asked-for children: at most `N` entries, live or answered.
#[derive(Debug)]
pub struct AskedChildren<const N: usize> {
    entries: Vec<Entry, N>,
    capacity: usize,
}

impl<const N: usize> Default for AskedChildren<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AskedChildren<N> {
    /// An empty table admitting up to `N` live children.
    pub fn new() -> Self {
        AskedChildren {
            entries: Vec::new(),
            capacity: N,
        }
    }

    /// Admits at most `capacity` live children (at most `N`).
    pub fn with_capacity(capacity: usize) -> Self {
        AskedChildren {
            entries: Vec::new(),
            capacity: capacity.min(N),
        }
    }

    fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.answered)
    }

    /// The live children.
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// Whether a start from `requester` with `reference`, for the machine `parent`, would be
    /// admitted.
    pub fn admit(&self, requester: &str, reference: u64, parent: &str) -> Result<(), Refusal> {
        if requester.len() > MAX_MACHINE_ID || parent.len() > MAX_MACHINE_ID {
            return Err(Refusal::IdTooLong);
        }
        if self
            .live()
            .any(|e| e.requester == requester && e.reference == reference)
        {
            return Err(Refusal::Repeated);
        }
        if self.live_count() >= self.capacity {
            return Err(Refusal::Full {
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// The key of a child whose exit was answered: the next start may take it (a host reuses
    /// the slot), so that keys stay as few as the children live at once.
    pub fn free_key(&self) -> Option<u32> {
        self.entries.iter().find(|e| e.answered).map(|e| e.key)
    }

    /// Admits a start (see [`admit`](Self::admit)) as the child the host knows by `key`: a
    /// free key of [`free_key`](Self::free_key), or a new one.
    pub fn start(
        &mut self,
        key: u32,
        requester: &str,
        reference: u64,
        parent: &str,
    ) -> Result<(), Refusal> {
        self.admit(requester, reference, parent)?;
        let mut entry = Entry {
            key,
            requester: String::new(),
            parent: String::new(),
            reference,
            answered: false,
        };
        entry
            .requester
            .push_str(requester)
            .map_err(|_| Refusal::IdTooLong)?;
        entry
            .parent
            .push_str(parent)
            .map_err(|_| Refusal::IdTooLong)?;
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            *e = entry;
            return Ok(());
        }
        if let Some(i) = self.entries.iter().position(|e| e.answered) {
            // A new key: the free entry is taken (its key is not reused by this host).
            self.entries[i] = entry;
            return Ok(());
        }
        self.entries.push(entry).map_err(|_| Refusal::Full {
            capacity: self.capacity,
        })
    }

    /// The child a stop from `requester` for `reference` stops: only its own live child.
    pub fn stop(&self, requester: &str, reference: u64) -> Option<u32> {
        self.live()
            .find(|e| e.requester == requester && e.reference == reference)
            .map(|e| e.key)
    }

    /// Child `key` ended (or could not start): whom its exit answers, once. `None` for a key
    /// not asked for, or answered already.
    pub fn ended(&mut self, key: u32) -> Option<Answer<'_>> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.key == key && !e.answered)?;
        e.answered = true;
        Some(Answer {
            requester: e.requester.as_str(),
            reference: e.reference,
        })
    }

    /// Whether `key` is a child asked for whose exit is not answered yet.
    pub fn is_live(&self, key: u32) -> bool {
        self.live().any(|e| e.key == key)
    }

    /// Whether `key` is an answered child's (free, no longer listed).
    pub fn is_answered(&self, key: u32) -> bool {
        self.entries.iter().any(|e| e.key == key && e.answered)
    }

    /// The live children whose requester or parent left the bus (`registered` says who is
    /// on it): the host stops them.
    pub fn orphans<'a>(
        &'a self,
        registered: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = u32> + 'a {
        self.live()
            .filter(move |e| !registered(&e.requester) || !registered(&e.parent))
            .map(|e| e.key)
    }

    /// The requester and parent of live child `key`.
    pub fn asked_by(&self, key: u32) -> Option<(&str, &str)> {
        self.live()
            .find(|e| e.key == key)
            .map(|e| (e.requester.as_str(), e.parent.as_str()))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_start_is_answered_once_and_frees_its_entry() {
        let mut t = AskedChildren::<2>::new();
        t.start(5, "asker", 1, "p").unwrap();
        assert_eq!(t.free_key(), None);
        assert_eq!(
            t.ended(5),
            Some(Answer {
                requester: "asker",
                reference: 1
            })
        );
        assert_eq!(t.ended(5), None, "answered once");
        assert_eq!(t.free_key(), Some(5));
        assert!(t.is_answered(5) && !t.is_live(5));
        t.start(5, "asker", 2, "p").unwrap();
        assert!(t.is_live(5));
        assert_eq!(t.live_count(), 1);
    }

    #[test]
    fn repeats_and_a_full_table_are_refused_and_stops_match_their_requester() {
        let mut t = AskedChildren::<4>::with_capacity(2);
        t.start(0, "a", 1, "p").unwrap();
        assert_eq!(t.start(1, "a", 1, "p"), Err(Refusal::Repeated));
        t.start(1, "b", 1, "q").unwrap();
        assert_eq!(t.start(2, "a", 2, "p"), Err(Refusal::Full { capacity: 2 }));
        assert_eq!(t.stop("b", 1), Some(1));
        assert_eq!(t.stop("c", 1), None, "another requester's reference");
        let long = "x".repeat(MAX_MACHINE_ID + 1).to_string();
        t.ended(1);
        assert_eq!(t.start(2, &long, 3, "p"), Err(Refusal::IdTooLong));
        let orphans: std::vec::Vec<u32> = t.orphans(|id| id != "p").collect();
        assert_eq!(orphans, [0]);
    }
}
