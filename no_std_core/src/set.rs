//! A fixed-capacity set of states: a bitset of `W` 64-bit words.

use crate::chart::StateId;

/// A set of up to `64 * W` states. Constant-time insert, remove and membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StateSet<const W: usize> {
    words: [u64; W],
}

impl<const W: usize> Default for StateSet<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> StateSet<W> {
    /// The number of states the set can hold.
    pub const CAPACITY: usize = 64 * W;

    /// The empty set.
    pub const fn new() -> Self {
        Self { words: [0; W] }
    }
    /// Adds a state. States beyond the capacity are never passed in: machines check the chart's
    /// size when they are created.
    #[inline]
    pub fn insert(&mut self, s: StateId) {
        if let Some(w) = self.words.get_mut(s.index() / 64) {
            *w |= 1 << (s.index() % 64);
        }
    }
    /// Removes a state.
    #[inline]
    pub fn remove(&mut self, s: StateId) {
        if let Some(w) = self.words.get_mut(s.index() / 64) {
            *w &= !(1 << (s.index() % 64));
        }
    }
    /// Whether the state is in the set.
    #[inline]
    pub fn contains(&self, s: StateId) -> bool {
        self.words
            .get(s.index() / 64)
            .is_some_and(|w| w & (1 << (s.index() % 64)) != 0)
    }
    /// Removes every state.
    pub fn clear(&mut self) {
        self.words = [0; W];
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
    /// Whether the two sets share a state.
    pub fn intersects(&self, other: &Self) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .any(|(a, b)| a & b != 0)
    }
    /// Whether every state of `self` is in `other`.
    #[inline]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .all(|(a, b)| a & !b == 0)
    }
    /// Adds every state of `other`.
    pub fn union_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            *a |= b;
        }
    }
    /// Word `w` of the set restricted to `lo..=hi` (`lo <= hi < CAPACITY`).
    #[inline]
    fn masked(&self, w: usize, lo: usize, hi: usize) -> u64 {
        let mut mask = !0u64;
        if w == lo / 64 {
            mask &= !0 << (lo % 64);
        }
        if w == hi / 64 {
            mask &= !0 >> (63 - hi % 64);
        }
        self.words[w] & mask
    }
    /// Adds every state of `other` within `lo..=hi`.
    pub fn union_range(&mut self, other: &Self, lo: StateId, hi: StateId) {
        let (lo, hi) = (lo.index(), hi.index().min(Self::CAPACITY - 1));
        if lo > hi {
            return;
        }
        for w in lo / 64..=hi / 64 {
            self.words[w] |= other.masked(w, lo, hi);
        }
    }
    /// The lowest state of the set within `lo..=hi`.
    pub fn first_in(&self, lo: StateId, hi: StateId) -> Option<StateId> {
        let (lo, hi) = (lo.index(), hi.index().min(Self::CAPACITY - 1));
        if lo > hi {
            return None;
        }
        for w in lo / 64..=hi / 64 {
            let bits = self.masked(w, lo, hi);
            if bits != 0 {
                return Some(StateId((w * 64 + bits.trailing_zeros() as usize) as u16));
            }
        }
        None
    }
    /// Whether any state in `lo..=hi` is in the set.
    pub fn any_in(&self, lo: StateId, hi: StateId) -> bool {
        self.iter_range(lo, hi).next().is_some()
    }
    /// The highest state of the set.
    #[inline]
    pub fn last(&self) -> Option<StateId> {
        let mut w = W;
        while w > 0 {
            w -= 1;
            let bits = self.words[w];
            if bits != 0 {
                return Some(StateId(
                    (w * 64 + 63 - bits.leading_zeros() as usize) as u16,
                ));
            }
        }
        None
    }
    /// The states of the set in ascending (document) order.
    pub fn iter(&self) -> Iter<'_, W> {
        self.iter_range(StateId(0), StateId(u16::MAX))
    }
    /// The states of the set within `lo..=hi`, ascending.
    pub fn iter_range(&self, lo: StateId, hi: StateId) -> Iter<'_, W> {
        Iter {
            set: self,
            next: lo.index(),
            end: (hi.index() + 1).min(Self::CAPACITY),
        }
    }
    /// The states of the set, descending (reverse document order).
    pub fn iter_rev(&self) -> RevIter<'_, W> {
        self.iter_range_rev(StateId(0), StateId(u16::MAX))
    }
    /// The states of the set within `lo..=hi`, descending (reverse document order).
    pub fn iter_range_rev(&self, lo: StateId, hi: StateId) -> RevIter<'_, W> {
        RevIter {
            set: self,
            lo: lo.index(),
            next_end: (hi.index() + 1).min(Self::CAPACITY),
        }
    }
}

/// The set of one state.
#[cfg(debug_assertions)]
pub(crate) fn one<const W: usize>(s: StateId) -> StateSet<W> {
    let mut set = StateSet::new();
    set.insert(s);
    set
}

/// Ascending iterator over a [`StateSet`].
pub struct Iter<'s, const W: usize> {
    set: &'s StateSet<W>,
    next: usize,
    end: usize,
}

impl<const W: usize> Iterator for Iter<'_, W> {
    type Item = StateId;
    #[inline]
    fn next(&mut self) -> Option<StateId> {
        while self.next < self.end {
            let w = self.next / 64;
            let &word = self.set.words.get(w)?;
            let bits = word >> (self.next % 64);
            if bits == 0 {
                self.next = (w + 1) * 64;
                continue;
            }
            let i = self.next + bits.trailing_zeros() as usize;
            if i >= self.end {
                self.next = self.end;
                return None;
            }
            self.next = i + 1;
            return Some(StateId(i as u16));
        }
        None
    }
}

/// Descending iterator over a [`StateSet`].
pub struct RevIter<'s, const W: usize> {
    set: &'s StateSet<W>,
    lo: usize,
    /// One past the next candidate.
    next_end: usize,
}

impl<const W: usize> Iterator for RevIter<'_, W> {
    type Item = StateId;
    #[inline]
    fn next(&mut self) -> Option<StateId> {
        while self.next_end > self.lo {
            let top = self.next_end - 1;
            let w = top / 64;
            let shift = 63 - (top % 64);
            let &word = self.set.words.get(w)?;
            let bits = word << shift;
            if bits == 0 {
                self.next_end = w * 64;
                continue;
            }
            let i = top - bits.leading_zeros() as usize;
            if i < self.lo {
                self.next_end = self.lo;
                return None;
            }
            self.next_end = i;
            return Some(StateId(i as u16));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<const W: usize>(states: &[u16]) -> StateSet<W> {
        let mut s = StateSet::new();
        for &x in states {
            s.insert(StateId(x));
        }
        s
    }

    #[test]
    fn last_is_the_highest_state() {
        assert_eq!(StateSet::<2>::new().last(), None);
        assert_eq!(set::<2>(&[0]).last(), Some(StateId(0)));
        assert_eq!(set::<2>(&[3, 63]).last(), Some(StateId(63)));
        assert_eq!(set::<2>(&[3, 64, 127]).last(), Some(StateId(127)));
        assert_eq!(set::<2>(&[5, 70]).last(), Some(StateId(70)));
    }

    #[test]
    fn union_range_adds_only_the_range() {
        let from = set::<3>(&[0, 1, 5, 63, 64, 65, 100, 127, 128, 190, 191]);
        for (lo, hi) in [
            (0, 191),
            (1, 1),
            (2, 4),
            (1, 64),
            (63, 128),
            (64, 127),
            (65, 191),
            (100, 100),
            (6, 5),
            (191, 191),
            (150, 400),
        ] {
            let mut got = set::<3>(&[2, 130]);
            got.union_range(&from, StateId(lo), StateId(hi));
            let mut want = set::<3>(&[2, 130]);
            for s in from.iter_range(StateId(lo), StateId(hi)) {
                want.insert(s);
            }
            assert_eq!(got, want, "range {lo}..={hi}");
        }
    }

    #[test]
    fn first_in_range() {
        let from = set::<3>(&[0, 1, 5, 63, 64, 65, 100, 127, 128, 190, 191]);
        for lo in (0..192).step_by(7).chain([63, 64, 127, 128, 191]) {
            for hi in (0..200).step_by(5).chain([63, 64, 127, 128, 191]) {
                let (l, h) = (StateId(lo), StateId(hi));
                assert_eq!(from.first_in(l, h), from.iter_range(l, h).next());
            }
        }
    }

    #[test]
    fn iter_rev_is_descending() {
        let s = set::<2>(&[0, 9, 64, 127]);
        let v: heapless::Vec<StateId, 8> = s.iter_rev().collect();
        assert_eq!(v, [StateId(127), StateId(64), StateId(9), StateId(0)]);
    }
}
