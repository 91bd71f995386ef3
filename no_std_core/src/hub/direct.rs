//! Direct peer rings, the hub's side: when two clients get a ring pair of their own, and
//! when it closes (the client's side is [`crate::bus::direct`]).
//!
//! The hub keeps the registry, admission and id ownership; a pair only changes which way the
//! messages between two processes go. Its rules:
//!
//! - **offer**: when the hub routes a message between two links that both run over shared
//!   memory, both said they take direct pairs ([`Frame::DirectAllow`]) and have room, hold no
//!   pair together yet, have no failure report unconfirmed, and no monitor is attached, it
//!   asks the platform to make the rings ([`HubIo::open_direct`]) and sends each side a
//!   [`Frame::DirectOffer`] naming the other's process (after the message that triggered it).
//! - **switch-over**: each side's [`Frame::DirectOpen`] is forwarded to the other, in order
//!   with what that side sent through the hub before it.
//! - **close**: the hub closes a pair, telling both sides ([`Frame::DirectClose`]), when
//!   either side's link closes (the other side also learns from the registry that its
//!   machines are gone, and fails what was not acknowledged), when either side closes it (that
//!   link gets no further offers), when a monitor attaches (monitors see copies of what
//!   crosses the hub: while one is attached every message crosses it). A link with a failure
//!   report it has not confirmed is offered no pair (the hub's hold on the failed pair's
//!   later messages only works on messages that cross it).
//!
//! A close the hub cannot queue on a link closes that link: a side that never learns of the
//! close would keep writing to a ring no one reads.

use super::{Hub, HubIo, LinkId, LinkState, LOCAL_LINK};
use crate::context::TransportKind;
use crate::topic::SubscriptionSlots;
use crate::wire::Frame;

/// How many direct pairs a hub keeps at once.
pub const HUB_DIRECT_PAIRS: usize = 32;

/// The most pairs one link may ask for ([`Frame::DirectAllow`] above it is capped).
const PAIRS_PER_LINK: u32 = 8;

#[derive(Clone, Copy, Debug)]
struct Pair {
    id: u32,
    a: LinkId,
    b: LinkId,
}

/// The hub's pairs.
#[derive(Clone, Debug)]
pub(super) struct DirectPairs {
    pairs: [Option<Pair>; HUB_DIRECT_PAIRS],
    next_id: u32,
}

impl DirectPairs {
    pub(super) const fn new() -> Self {
        DirectPairs {
            pairs: [None; HUB_DIRECT_PAIRS],
            next_id: 1,
        }
    }

    fn between(&self, a: LinkId, b: LinkId) -> bool {
        self.pairs
            .iter()
            .flatten()
            .any(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a))
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.is_some_and(|p| p.id == id))
    }

    /// How many pairs are open.
    pub(super) fn count(&self) -> usize {
        self.pairs.iter().flatten().count()
    }
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// The pairs open now.
    pub fn direct_pairs(&self) -> impl Iterator<Item = (u32, LinkId, LinkId)> + '_ {
        self.direct.pairs.iter().flatten().map(|p| (p.id, p.a, p.b))
    }

    /// A direct-ring frame from `link`.
    pub(super) fn direct_frame(&mut self, link: LinkId, frame: &Frame<'_>, io: &mut dyn HubIo) {
        match *frame {
            Frame::DirectAllow { pairs } => self.direct_allow(link, pairs),
            Frame::DirectOpen { pair } => self.direct_open(link, pair, io),
            Frame::DirectClose { pair } => self.direct_close(link, pair, io),
            _ => {}
        }
    }

    /// `link` takes up to `pairs` direct pairs.
    fn direct_allow(&mut self, link: LinkId, pairs: u32) {
        if let Some(l) = self.links.get_mut(link as usize) {
            l.direct_allow = pairs.min(PAIRS_PER_LINK) as u8;
        }
    }

    fn may_pair(&self, link: LinkId) -> bool {
        let Some(l) = self.links.get(link as usize) else {
            return false;
        };
        link != LOCAL_LINK
            && l.state == LinkState::Ready
            && l.transport == TransportKind::SharedMemory
            && l.direct_held < l.direct_allow
            && !l.unconfirmed.is_held()
    }

    /// The hub routed a message from `from` to `to`: offers them a pair if the rules allow.
    pub(super) fn consider_direct(&mut self, from: LinkId, to: LinkId, io: &mut dyn HubIo) {
        if from == to
            || self.monitors > 0
            || !self.may_pair(from)
            || !self.may_pair(to)
            || self.direct.between(from, to)
        {
            return;
        }
        let Some(slot) = self.direct.pairs.iter().position(Option::is_none) else {
            return;
        };
        let id = self.direct.next_id;
        self.direct.next_id = self.direct.next_id.wrapping_add(1).max(1);
        if !io.open_direct(id, from, to) {
            // The platform cannot make rings (out of memory, descriptors): no more tries for
            // these two links.
            self.links[from as usize].direct_allow = 0;
            self.links[to as usize].direct_allow = 0;
            io.log(
                from,
                "direct ring pair could not be set up; staying on the hub",
            );
            return;
        }
        self.direct.pairs[slot] = Some(Pair { id, a: from, b: to });
        self.stats.direct_pairs_opened += 1;
        self.links[from as usize].direct_held += 1;
        self.links[to as usize].direct_held += 1;
        let (pid_from, pid_to) = (
            self.links[from as usize].peer.pid,
            self.links[to as usize].peer.pid,
        );
        let offered_from = io
            .send(
                from,
                &Frame::DirectOffer {
                    pair: id,
                    peer_pid: pid_to,
                },
            )
            .is_ok();
        let offered_to = io
            .send(
                to,
                &Frame::DirectOffer {
                    pair: id,
                    peer_pid: pid_from,
                },
            )
            .is_ok();
        if !(offered_from && offered_to) {
            self.close_direct_at(slot, io);
        }
    }

    /// `link` switched over to the ring of `pair`: its DirectOpen goes to the other side.
    fn direct_open(&mut self, link: LinkId, pair: u32, io: &mut dyn HubIo) {
        let Some(p) = self.direct.find(pair).and_then(|i| self.direct.pairs[i]) else {
            // Closed meanwhile: both sides have been told.
            return;
        };
        let other = if p.a == link {
            p.b
        } else if p.b == link {
            p.a
        } else {
            io.log(link, "direct-open for a pair this link is not in; ignored");
            return;
        };
        if io.send(other, &Frame::DirectOpen { pair }).is_err() {
            if let Some(i) = self.direct.find(pair) {
                self.close_direct_at(i, io);
            }
        }
    }

    /// `link` closed `pair` itself: both sides are told, and the link gets no more offers.
    fn direct_close(&mut self, link: LinkId, pair: u32, io: &mut dyn HubIo) {
        if let Some(l) = self.links.get_mut(link as usize) {
            l.direct_allow = 0;
        }
        let Some(i) = self.direct.find(pair) else {
            return;
        };
        if self.direct.pairs[i].is_some_and(|p| p.a == link || p.b == link) {
            self.close_direct_at(i, io);
        }
    }

    /// Closes every pair `link` is in (it closed).
    pub(super) fn close_direct_of(&mut self, link: LinkId, io: &mut dyn HubIo) {
        for i in 0..HUB_DIRECT_PAIRS {
            if self.direct.pairs[i].is_some_and(|p| p.a == link || p.b == link) {
                self.close_direct_at(i, io);
            }
        }
    }

    /// Closes every pair (a monitor attached).
    pub(super) fn close_all_direct(&mut self, io: &mut dyn HubIo) {
        for i in 0..HUB_DIRECT_PAIRS {
            if self.direct.pairs[i].is_some() {
                self.close_direct_at(i, io);
            }
        }
    }

    fn close_direct_at(&mut self, i: usize, io: &mut dyn HubIo) {
        let Some(p) = self.direct.pairs[i].take() else {
            return;
        };
        self.stats.direct_pairs_closed += 1;
        io.close_direct(p.id);
        for link in [p.a, p.b] {
            let Some(l) = self.links.get_mut(link as usize) else {
                continue;
            };
            l.direct_held = l.direct_held.saturating_sub(1);
            if l.state != LinkState::Ready {
                continue;
            }
            if io.send(link, &Frame::DirectClose { pair: p.id }).is_err() {
                io.log(
                    link,
                    "direct-close does not fit the link's queue; closing it",
                );
                io.close(link, "direct-close does not fit the link's queue");
            }
        }
    }
}
