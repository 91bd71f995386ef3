//! The routing table (which link owns each machine id), with the links of the last ids
//! routed remembered beside it.
//!
//! Every message is routed by two lookups (the owner of its sender, the link of its
//! target), each an FNV hash of the id and a probe: about 115 instructions a lookup,
//! counted, where a conversation between a few machines asks for the same ids again and
//! again. The hints hold the last few ids found with their links, compared by length and
//! bytes before any hashing. Every change to the table forgets them all, so a hint is
//! always what the table says.

use heapless::{FnvIndexMap, IndexMapIter, String};

use super::{LinkId, Route, RouteKey, MAX_ID};

/// Ids remembered: a sender and its target each way of a conversation.
const HINTS: usize = 4;

/// The hints' debt (two for a miss, less one for a hit, at most [`DEBT_CAP`]) above which
/// a miss no longer copies its id into a hint (but for one in [`REFRESH_EVERY`]): a hub
/// routing among more ids in turn than there are hints (a publication's subscribers after
/// its publisher's hit, many clients) would copy an id on most lookups and find few, 58
/// instructions a miss more than the table alone (counted); resting, a miss costs the
/// comparisons of the four hints.
const REST_ABOVE: u32 = 16;
const DEBT_CAP: u32 = 64;
const REFRESH_EVERY: u32 = 64;

pub(super) struct RouteTable<const M: usize> {
    map: FnvIndexMap<RouteKey, Route, M>,
    /// Ids looked up by [`RouteTable::link_of`] with their links; an empty id is an unused
    /// hint (an empty id looked up never reads the hints).
    hints: [(String<MAX_ID>, LinkId); HINTS],
    /// The hint the next miss replaces.
    next_hint: usize,
    /// See [`REST_ABOVE`].
    debt: u32,
    /// Misses while resting (every [`REFRESH_EVERY`]th copies its id).
    rested: u32,
}

impl<const M: usize> RouteTable<M> {
    pub(super) fn new() -> Self {
        const UNUSED: (String<MAX_ID>, LinkId) = (String::new(), 0);
        RouteTable {
            map: FnvIndexMap::new(),
            hints: [UNUSED; HINTS],
            next_hint: 0,
            debt: 0,
            rested: 0,
        }
    }

    pub(super) fn get(&self, machine: &str) -> Option<&Route> {
        self.map.get(machine)
    }

    /// The link that owns `machine`, through the hints (the routing of every message).
    pub(super) fn link_of(&mut self, machine: &str) -> Option<LinkId> {
        // An empty id (which a client may send, though none is registered) would match an
        // unused hint: only the table answers for it.
        if machine.is_empty() {
            return self.map.get(machine).map(|r| r.link);
        }
        // Lengths and last bytes first: ids that differ (a conversation's other end,
        // numbered names) are told apart before a comparison of their bytes.
        for (id, link) in &self.hints {
            if id.len() == machine.len()
                && id.as_bytes().last() == machine.as_bytes().last()
                && id.as_str() == machine
            {
                self.debt = self.debt.saturating_sub(1);
                return Some(*link);
            }
        }
        let link = self.map.get(machine)?.link;
        self.debt = (self.debt + 2).min(DEBT_CAP);
        if self.debt > REST_ABOVE {
            self.rested = self.rested.wrapping_add(1);
            if self.rested % REFRESH_EVERY != 0 {
                return Some(link);
            }
        }
        // An id too long for a key is in no route either (so not here).
        let hint = &mut self.hints[self.next_hint];
        hint.0.clear();
        if hint.0.push_str(machine).is_ok() {
            hint.1 = link;
            self.next_hint = (self.next_hint + 1) % HINTS;
        }
        Some(link)
    }

    /// The route of `machine`, to change it: the hints are forgotten.
    pub(super) fn get_mut(&mut self, machine: &str) -> Option<&mut Route> {
        self.forget_hints();
        self.map.get_mut(machine)
    }

    pub(super) fn insert(&mut self, key: RouteKey, route: Route) -> Result<Option<Route>, ()> {
        self.forget_hints();
        self.map.insert(key, route).map_err(|_| ())
    }

    pub(super) fn remove(&mut self, machine: &str) -> Option<Route> {
        self.forget_hints();
        self.map.remove(machine)
    }

    pub(super) fn iter(&self) -> IndexMapIter<'_, RouteKey, Route> {
        self.map.iter()
    }

    fn forget_hints(&mut self) {
        for hint in &mut self.hints {
            hint.0.clear();
        }
        self.debt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RouteKey {
        let mut k = String::new();
        k.push_str(s).unwrap();
        RouteKey(k)
    }

    fn route(link: LinkId) -> Route {
        Route {
            link,
            since_ms: 0,
            durable: false,
        }
    }

    /// Random registrations, changes of owner, removals and lookups: the hinted lookup
    /// answers what the table says every time.
    #[test]
    fn the_hinted_lookup_is_the_table_s_answer() {
        let ids = [
            "a",
            "b",
            "ab",
            "ba",
            "bench-a",
            "bench-b",
            "bench-echo",
            "x1",
            "x2",
            "x3",
            "y",
            "",
        ];
        for seed in 1..=16u64 {
            let mut t: RouteTable<16> = RouteTable::new();
            let mut next = crate::test_rng(seed);
            for step in 0..4_000 {
                let id = ids[(next() % ids.len() as u64) as usize];
                let link = (next() % 5) as LinkId;
                match next() % 10 {
                    0 => {
                        let _ = t.insert(key(id), route(link));
                    }
                    1 => {
                        t.remove(id);
                    }
                    2 => {
                        if let Some(r) = t.get_mut(id) {
                            r.link = link;
                        }
                    }
                    _ => {
                        let expected = t.get(id).map(|r| r.link);
                        assert_eq!(t.link_of(id), expected, "seed {seed} step {step} {id}");
                    }
                }
            }
        }
    }

    /// More ids in turn than hints, alone and after a hit each time (a publisher and its
    /// subscribers): the hints rest, and take ids again now and then; still the table's
    /// answers, and a conversation after them is remembered again.
    #[test]
    fn ids_in_turn_beyond_the_hints_are_answered_by_the_table() {
        let ids = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
        let mut t: RouteTable<16> = RouteTable::new();
        for (i, id) in ids.iter().enumerate() {
            t.insert(key(id), route(i as LinkId)).unwrap();
        }
        for round in 0..100 {
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(t.link_of(id), Some(i as LinkId), "round {round}");
                assert_eq!(t.link_of("s0"), Some(0), "round {round}");
            }
        }
        assert!(t.debt > REST_ABOVE);
        // A conversation of two: remembered after a refresh or two, and the debt repaid.
        for _ in 0..2 * REFRESH_EVERY {
            assert_eq!(t.link_of("s0"), Some(0));
            assert_eq!(t.link_of("s1"), Some(1));
        }
        assert_eq!(t.debt, 0);
        t.get_mut("s8").unwrap().link = 1;
        for _ in 0..10 {
            assert_eq!(t.link_of("s0"), Some(0));
            assert_eq!(t.link_of("s8"), Some(1));
        }
    }

    /// An unused hint holds an empty id: an empty id (a client may send one) is still
    /// nobody's, before any lookup, after others were remembered and after they were
    /// forgotten.
    #[test]
    fn an_empty_id_is_found_in_no_unused_hint() {
        let mut t: RouteTable<16> = RouteTable::new();
        assert_eq!(t.link_of(""), None);
        t.insert(key("a"), route(3)).unwrap();
        assert_eq!(t.link_of("a"), Some(3));
        assert_eq!(t.link_of(""), None);
        t.remove("a");
        assert_eq!(t.link_of(""), None);
    }

    #[test]
    fn an_id_longer_than_a_key_is_found_in_no_hint() {
        let mut t: RouteTable<16> = RouteTable::new();
        let bytes = [b'x'; MAX_ID + 1];
        let long = core::str::from_utf8(&bytes).unwrap();
        assert_eq!(t.link_of(long), None);
        t.insert(key("x"), route(3)).unwrap();
        assert_eq!(t.link_of("x"), Some(3));
        assert_eq!(t.link_of(long), None);
    }
}
