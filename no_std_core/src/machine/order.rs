//! The order in which the active atomic states became active: XState keeps its active states
//! in a JavaScript `Set`, in insertion order (a state that stays active keeps its place, an
//! entered one is appended, states entered in one microstep in document order), and its
//! eventless selection asks the atomic states in that order. The order decides which of two
//! conflicting eventless transitions wins and in which order the transitions' actions run.
//!
//! Each atomic state gets a stamp when it enters; the stamps of the active atomic states are
//! distinct and grow with entry. A microstep after which the set of active states is what it
//! was (and the history too) keeps the old order: XState then keeps its previous snapshot,
//! whose set was not rebuilt.

use crate::chart::{Chart, StateId};
use crate::set::StateSet;

/// One byte per state: the entry stamp of each atomic state while it is active.
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
    /// The stamp of `s` (meaningful while `s` is an active atomic state).
    #[inline]
    pub(super) fn of(&self, s: StateId) -> u8 {
        let i = s.index();
        self.stamps.get(i / 64).map_or(u8::MAX, |w| w[i % 64])
    }

    /// Stamps the atomic state `s` as the latest; `config` holds the active states (with or
    /// without `s`).
    #[inline]
    pub(super) fn stamp(&mut self, s: StateId, chart: &Chart<'_>, config: &StateSet<W>) {
        if self.next == u8::MAX {
            self.renumber(chart, config, s);
        }
        let i = s.index();
        if let Some(w) = self.stamps.get_mut(i / 64) {
            w[i % 64] = self.next;
        }
        self.next = self.next.saturating_add(1);
    }

    /// Renumbers the active atomic states but `skip` 0, 1, ... in their order, so that stamps
    /// are free again above them. [`Chart::new`] bounds the active atomic states by
    /// [`crate::chart::MAX_ACTIVE_LEAVES`] (64), far below the 255 stamps a byte gives.
    #[cold]
    #[inline(never)]
    fn renumber(&mut self, chart: &Chart<'_>, config: &StateSet<W>, skip: StateId) {
        // The stamps in use, as a 256-bit set: a state's new stamp is the number of stamps in
        // use below its own (the active atomic states' stamps are distinct).
        let mut used = [0u64; 4];
        for s in config
            .iter()
            .filter(|&s| s != skip && chart.kind(s).is_atomic())
        {
            let t = self.of(s) as usize;
            used[t / 64] |= 1 << (t % 64);
        }
        let mut count = 0u32;
        for s in config
            .iter()
            .filter(|&s| s != skip && chart.kind(s).is_atomic())
        {
            let t = self.of(s) as usize;
            let below = used[..t / 64].iter().map(|w| w.count_ones()).sum::<u32>()
                + (used[t / 64] & ((1u64 << (t % 64)) - 1)).count_ones();
            let i = s.index();
            self.stamps[i / 64][i % 64] = below as u8;
            count += 1;
        }
        self.next = count.min(u8::MAX as u32) as u8;
    }
}
