//! The order in which the active states became active: XState keeps its active states in a
//! JavaScript `Set`, in insertion order (a state that stays active keeps its place, an entered
//! one is appended, states entered in one microstep in document order). Its eventless
//! selection asks the atomic states in that order, which decides which of two conflicting
//! eventless transitions wins and in which order the transitions' actions run; and after a
//! history quirk left several children of a compound state active, its state value lists
//! them in that order, which decides the value and the order of event selection.
//!
//! Each state gets a stamp when it enters; the stamps of the active states are distinct and
//! grow with entry. A microstep after which the set of active states is what it was (and the
//! history too) keeps the old order: XState then keeps its previous snapshot, whose set was
//! not rebuilt. Only charts that need it keep the order ([`crate::chart::Chart::needs_entry_order`]).

use crate::chart::StateId;
use crate::set::StateSet;

/// One byte per state: the entry stamp of each state while it is active.
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryOrder<const W: usize> {
    stamps: [[u8; 64]; W],
    next: u8,
}

impl<const W: usize> Default for EntryOrder<W> {
    fn default() -> Self {
        EntryOrder {
            stamps: [[0; 64]; W],
            next: 0,
        }
    }
}

impl<const W: usize> EntryOrder<W> {
    /// The stamp of `s` (meaningful while `s` is active).
    #[inline]
    pub(super) fn of(&self, s: StateId) -> u8 {
        let i = s.index();
        self.stamps.get(i / 64).map_or(u8::MAX, |w| w[i % 64])
    }

    /// Stamps `s` as the latest; `config` holds the active states (with or without `s`).
    #[inline]
    pub(super) fn stamp(&mut self, s: StateId, config: &StateSet<W>) {
        if self.next == u8::MAX {
            self.renumber(config, s);
        }
        self.set(s, self.next);
        self.next = self.next.saturating_add(1);
    }

    fn set(&mut self, s: StateId, stamp: u8) {
        let i = s.index();
        if let Some(w) = self.stamps.get_mut(i / 64) {
            w[i % 64] = stamp;
        }
    }

    /// Renumbers the active states but `skip` 0, 1, ... in their order, so that stamps are
    /// free again above them. A configuration of more than 254 states (a chart of more than
    /// 254 states, most of them active at once) would use up the stamps again: its later
    /// states then share the last stamp and keep document order among themselves.
    #[cold]
    #[inline(never)]
    fn renumber(&mut self, config: &StateSet<W>, skip: StateId) {
        // The stamps in use, as a 256-bit set: a state's new stamp is the number of stamps in
        // use below its own (the active states' stamps are distinct).
        let mut used = [0u64; 4];
        for s in config.iter().filter(|&s| s != skip) {
            let t = self.of(s) as usize;
            used[t / 64] |= 1 << (t % 64);
        }
        let mut count = 0u32;
        for s in config.iter().filter(|&s| s != skip) {
            let t = self.of(s) as usize;
            let below = used[..t / 64].iter().map(|w| w.count_ones()).sum::<u32>()
                + (used[t / 64] & ((1u64 << (t % 64)) - 1)).count_ones();
            self.set(s, below.min(u8::MAX as u32 - 1) as u8);
            count += 1;
        }
        self.next = count.min(u8::MAX as u32 - 1) as u8;
    }
}
