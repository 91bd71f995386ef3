//! The hub's next deadline, kept without a scan of every link slot per loop turn.
//!
//! A host asks [`Hub::poll_timeout`] on every loop turn (to know how long it may wait), so it
//! must be cheap; taking it exactly means a look at every link (hello, idle and confirmation
//! times) and every held durable id. Instead the hub keeps a floor: a time no later than the
//! earliest timeout.
//!
//! - Whatever makes a timeout earlier lowers the floor to it: a link opened (its hello time),
//!   a hello accepted (its idle time), a failure report held or a confirmation asked (the
//!   time to ask again, or at once when the Ping found no room), a durable id held (its
//!   release).
//! - Whatever makes one later (a frame read, a link stalled, closed, confirmed, an id
//!   released) leaves the floor where it is: it is early, never late.
//! - [`Hub::handle_timeout`] does what is due and takes the floor again, exactly; so does
//!   a link's close (rare, and it may leave nothing to wait for: then there is no deadline).
//!
//! So a host that calls `handle_timeout` once `poll_timeout` has come (as it must) runs every
//! timeout at the same turn as with an exact deadline; the floor costs at most a turn that
//! finds nothing due (a link heard from since), after which the floor is exact again. In
//! debug builds every `poll_timeout` checks the floor against the scan.

use super::{Hub, Link, LinkId, LinkState};
use crate::time::Instant;
use crate::topic::SubscriptionSlots;

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// When [`handle_timeout`](Self::handle_timeout) next may have work: never later than
    /// the earliest timeout of a link or a held durable id. It can be earlier (a link was
    /// heard from since): `handle_timeout` then finds nothing due and takes it again exactly.
    pub fn poll_timeout(&self) -> Option<Instant> {
        debug_assert!(
            self.scan_deadline()
                .is_none_or(|exact| self.deadline.is_some_and(|d| d <= exact)),
            "the hub's kept deadline {:?} is later than its earliest timeout {:?}",
            self.deadline,
            self.scan_deadline()
        );
        self.deadline
    }

    /// The earliest timeout, taken from every link slot and held id (a scan of all `L`).
    pub(super) fn scan_deadline(&self) -> Option<Instant> {
        let held = self.held.iter().map(|h| h.1).min();
        self.links
            .iter()
            .skip(1)
            .filter_map(|l| self.timeout_of(l))
            .chain(held)
            .min()
    }

    /// A link's earliest timeout: its hello time, or its idle time and the time to ask
    /// again for the confirmation of its failure reports.
    fn timeout_of(&self, l: &Link) -> Option<Instant> {
        match l.state {
            LinkState::Free => None,
            LinkState::AwaitHello => Some(l.opened_at + self.config.hello_timeout),
            LinkState::Ready => {
                let idle = l.last_rx + self.config.idle_timeout;
                Some(l.unconfirmed.ask_at().map_or(idle, |at| at.min(idle)))
            }
        }
    }

    /// Something is due at `at`: the floor comes down to it if it is later.
    pub(super) fn lower_deadline(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// `link`'s timeouts may have become earlier (opened, ready, a report held or a
    /// confirmation asked): the floor comes down to its earliest.
    pub(super) fn link_deadline_changed(&mut self, link: LinkId) {
        if link == super::LOCAL_LINK {
            return;
        }
        if let Some(at) = self
            .links
            .get(link as usize)
            .and_then(|l| self.timeout_of(l))
        {
            self.lower_deadline(at);
        }
    }
}
