//! The hub's watch table: which link watches which machine's state reports. Bounded: a
//! watch the table has no room for is refused. The hub asks a machine's owner to report
//! ([`crate::wire::Frame::Report`]) while the machine has at least one watcher, and tells it
//! to stop when the last one goes, so that an unwatched machine costs its node nothing.

use crate::topic::SubscriptionSlots;
use heapless::Vec;

use super::{
    truncated, valid_machine_id, Handled, Hub, HubIo, LinkId, LinkState, RouteKey, LOCAL_LINK,
};
use crate::wire::Frame;

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WatchesFull;

/// (watcher link, machine) pairs, at most `N`.
pub(super) struct Watches<const N: usize> {
    entries: Vec<(LinkId, RouteKey), N>,
}

impl<const N: usize> Watches<N> {
    pub(super) const fn new() -> Self {
        Watches {
            entries: Vec::new(),
        }
    }

    fn position(&self, watcher: LinkId, machine: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(w, m)| *w == watcher && m.0.as_str() == machine)
    }

    /// Whether `watcher` could watch `machine`: it already does, or there is room.
    pub(super) fn has_room_for(&self, watcher: LinkId, machine: &str) -> bool {
        !self.entries.is_full() || self.position(watcher, machine).is_some()
    }

    /// `watcher` watches `machine` (again: nothing changes).
    pub(super) fn add(&mut self, watcher: LinkId, machine: &str) -> Result<(), WatchesFull> {
        if self.position(watcher, machine).is_some() {
            return Ok(());
        }
        self.entries
            .push((watcher, RouteKey(truncated(machine))))
            .map_err(|_| WatchesFull)
    }

    /// `watcher` stops watching `machine`; whether it did.
    pub(super) fn remove(&mut self, watcher: LinkId, machine: &str) -> bool {
        match self.position(watcher, machine) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether anyone watches `machine`.
    pub(super) fn watched(&self, machine: &str) -> bool {
        self.entries.iter().any(|(_, m)| m.0.as_str() == machine)
    }

    /// The links watching `machine`.
    pub(super) fn watchers<'a>(&'a self, machine: &'a str) -> impl Iterator<Item = LinkId> + 'a {
        self.entries
            .iter()
            .filter(move |(_, m)| m.0.as_str() == machine)
            .map(|(w, _)| *w)
    }

    /// Every watch of `link` ends (it closed); `unwatched` is called for each machine that
    /// no one watches any more.
    pub(super) fn drop_link(&mut self, link: LinkId, unwatched: &mut dyn FnMut(&str)) {
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].0 == link {
                let (_, machine) = self.entries.swap_remove(i);
                if !self.watched(machine.0.as_str()) {
                    unwatched(machine.0.as_str());
                }
            } else {
                i += 1;
            }
        }
    }

    /// How many watches there are.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// A watch request from `link` (see [`Frame::Watch`]).
    pub(super) fn watch(
        &mut self,
        link: LinkId,
        machine: &str,
        on: bool,
        io: &mut dyn HubIo,
    ) -> Handled {
        let owner = self.lookup(machine).map(|r| r.link);
        if !on {
            if self.watches.remove(link, machine) && !self.watches.watched(machine) {
                if let Some(owner) = owner {
                    let _ = io.send(owner, &Frame::Report { machine, on: false });
                }
            }
            return Handled::Done;
        }
        if !valid_machine_id(machine) {
            io.log(link, "watch of an invalid machine id; ignored");
            return Handled::Done;
        }
        if !self.watches.has_room_for(link, machine) {
            self.stats.watches_refused += 1;
            io.log(link, "watch refused: the hub's watch table is full");
            return Handled::Done;
        }
        // Every watch (a repeated one too) asks the owner for a report now.
        if let Some(owner) = owner {
            if io
                .send(owner, &Frame::Report { machine, on: true })
                .is_err()
            {
                return Handled::Stalled(owner);
            }
        }
        let _ = self.watches.add(link, machine);
        Handled::Done
    }

    /// A state report from `link`: forwarded to the machine's watchers if `link` owns it.
    pub(super) fn state(
        &mut self,
        link: LinkId,
        machine: &str,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        if self.lookup(machine).is_none_or(|r| r.link != link) {
            self.stats.spoofed += 1;
            io.log(
                link,
                "state report for a machine id this link does not own; dropped",
            );
            return Handled::Done;
        }
        let mut dropped = 0;
        for w in self.watches.watchers(machine) {
            let ready = self
                .links
                .get(w as usize)
                .is_some_and(|l| l.state == LinkState::Ready);
            let fits = body.len() <= self.links[w as usize].max_frame as usize;
            if !ready || !fits || io.forward(w, body).is_err() {
                dropped += 1;
            }
        }
        self.stats.reports_dropped += dropped;
        Handled::Done
    }

    /// Forwards a state report of a machine of the hub's own process to its watchers.
    pub fn state_local(&mut self, machine: &str, body: &[u8], io: &mut dyn HubIo) {
        self.state(LOCAL_LINK, machine, body, io);
    }

    /// Whether anyone watches `machine`'s state.
    pub fn is_watched(&self, machine: &str) -> bool {
        self.watches.watched(machine)
    }

    /// How many watches the hub holds.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }
}
