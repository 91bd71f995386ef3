//! Direct peer rings, the client's side: which pairs this process holds, which way each
//! message goes, and what a ring may carry.
//!
//! Two clients on one bus that both reach it over shared memory may get a ring pair of their
//! own, so that a message between them crosses no third process. The hub decides and sets it
//! up (see [`crate::hub`]'s `direct` rules); this table keeps the client's half of the
//! protocol:
//!
//! - **offer**: the hub's [`Frame::DirectOffer`] names the pair and the other process. The
//!   client takes it if it allows direct rings, has a free slot and holds no pair with that
//!   process yet ([`DirectPeers::may_take`]); the host maps the rings and the client answers
//!   [`Frame::DirectOpen`] on the hub's link, or [`Frame::DirectClose`] when it cannot.
//! - **switch-over, in order**: `DirectOpen` travels through the hub behind every message this
//!   process sent the other one that way. From then on the client writes the other process's
//!   machines' messages to the ring ([`DirectPeers::route`]). The other side reads the ring
//!   only once the `DirectOpen` reached it ([`DirectPeers::readable`]): no message through
//!   the hub is overtaken by the ring's first ones.
//! - **what a ring carries**: messages (`Deliver`) from the other process's machines to this
//!   process's, and acknowledgements. Anything else, a sender the registry does not show on
//!   the other process, an event of the reserved namespace, or a target this process does not
//!   host, closes the pair ([`DirectPeers::check`]): the sender then sends what was not
//!   acknowledged again through the hub, whose rules report it (nothing is failed from a
//!   ring).
//! - **close**: on the hub's [`Frame::DirectClose`] (the other process left, a monitor
//!   attached) the host first reads what the other side wrote to the ring before it (its
//!   last acknowledgements and messages), then hands the close in; on the client's own close
//!   the ring is dropped with whatever it still holds unread. Either way what was written to
//!   it and not acknowledged goes again through the hub, in order
//!   (the hub queues the close to the receiver before anything the sender sends after it);
//!   the receiver's duplicate filter drops what it had. On a lost hub link every pair closes
//!   (a reconnect sends everything unacknowledged again anyway).
//!
//! Monitors see copies of what crosses the hub; the hub opens no pair while a monitor is
//! attached and closes all of them when one attaches, so a monitor misses nothing.

use crate::wire::{is_reserved_event, Frame};

/// The most direct pairs a client holds at once (the outstanding buffer tells this many
/// rings apart: [`crate::bus::outstanding::DIRECT_SLOTS`]).
pub const MAX_DIRECT_PAIRS: usize = 4;

/// One pair this process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectPeer {
    /// The hub's number for the pair.
    pub pair: u32,
    /// The other process.
    pub peer_pid: u32,
    /// The other side's [`Frame::DirectOpen`] arrived: its ring may be read.
    pub readable: bool,
}

/// Why a frame read from a ring closes its pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingRefusal {
    /// Not a message or an acknowledgement.
    NotCarried,
    /// The registry does not show the sender (or the acknowledging machine) on the other
    /// process.
    NotThePeers,
    /// An event of the reserved `xstate.` namespace.
    Reserved,
    /// A message for a machine this process does not host.
    NotHere,
    /// Read before the other side's `DirectOpen` arrived through the hub.
    TooEarly,
}

impl core::fmt::Display for RingRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RingRefusal::NotCarried => "a frame a direct ring does not carry",
            RingRefusal::NotThePeers => "a sender that is not the other process's",
            RingRefusal::Reserved => "an event of the reserved xstate. namespace",
            RingRefusal::NotHere => "a message for a machine this process does not host",
            RingRefusal::TooEarly => "ring read before the pair opened",
        })
    }
}

/// The pairs one client holds, in fixed slots (a slot's number is how the outstanding buffer
/// remembers what went through its ring).
#[derive(Clone, Debug, Default)]
pub struct DirectPeers {
    /// How many pairs this process takes (0: none; set by the host).
    allow: u8,
    slots: [Option<DirectPeer>; MAX_DIRECT_PAIRS],
}

impl DirectPeers {
    /// No pairs, none allowed.
    pub const fn new() -> Self {
        DirectPeers {
            allow: 0,
            slots: [None; MAX_DIRECT_PAIRS],
        }
    }

    /// How many pairs this process takes (capped at [`MAX_DIRECT_PAIRS`]).
    pub fn set_allowed(&mut self, pairs: usize) {
        self.allow = pairs.min(MAX_DIRECT_PAIRS) as u8;
    }

    /// How many pairs this process takes.
    pub fn allowed(&self) -> usize {
        self.allow as usize
    }

    /// Whether an offer of `pair` with `peer_pid` can be taken: allowed, a free slot, no pair
    /// with that process already, and not a pair held already.
    pub fn may_take(&self, pair: u32, peer_pid: u32) -> bool {
        let used = self.slots.iter().flatten().count();
        used < self.allowed()
            && !self
                .slots
                .iter()
                .flatten()
                .any(|p| p.peer_pid == peer_pid || p.pair == pair)
    }

    /// The host mapped the rings of `pair`: holds it in a free slot and returns the slot, or
    /// `None` when it may not be taken ([`DirectPeers::may_take`]).
    pub fn opened(&mut self, pair: u32, peer_pid: u32) -> Option<usize> {
        if !self.may_take(pair, peer_pid) {
            return None;
        }
        let k = self.slots.iter().position(Option::is_none)?;
        self.slots[k] = Some(DirectPeer {
            pair,
            peer_pid,
            readable: false,
        });
        Some(k)
    }

    /// The other side's `DirectOpen` of `pair` arrived through the hub: its ring may be read
    /// from now on. Returns the slot, or `None` for a pair not held (closed meanwhile).
    pub fn peer_opened(&mut self, pair: u32) -> Option<usize> {
        let k = self.slot_of(pair)?;
        if let Some(p) = self.slots[k].as_mut() {
            p.readable = true;
        }
        Some(k)
    }

    /// `pair` closed: frees its slot and returns it with what it held.
    pub fn closed(&mut self, pair: u32) -> Option<(usize, DirectPeer)> {
        let k = self.slot_of(pair)?;
        self.slots[k].take().map(|p| (k, p))
    }

    /// Closes every pair (the hub's link was lost), handing each to `each`.
    pub fn close_all(&mut self, each: &mut dyn FnMut(usize, DirectPeer)) {
        for (k, s) in self.slots.iter_mut().enumerate() {
            if let Some(p) = s.take() {
                each(k, p);
            }
        }
    }

    /// The slot holding `pair`.
    pub fn slot_of(&self, pair: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.is_some_and(|p| p.pair == pair))
    }

    /// What slot `k` holds.
    pub fn get(&self, k: usize) -> Option<DirectPeer> {
        self.slots.get(k).copied().flatten()
    }

    /// Which way a message to a machine of process `owner_pid` goes: `Some(slot)` through
    /// that slot's ring, `None` through the hub.
    pub fn route(&self, owner_pid: Option<u32>) -> Option<usize> {
        let pid = owner_pid?;
        self.slots
            .iter()
            .position(|s| s.is_some_and(|p| p.peer_pid == pid))
    }

    /// Whether slot `k`'s ring may be read (the other side's `DirectOpen` arrived).
    pub fn readable(&self, k: usize) -> bool {
        self.get(k).is_some_and(|p| p.readable)
    }

    /// Whether any pair is held.
    pub fn any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Whether `frame`, read from slot `k`'s ring, is one a ring may carry: a message from a
    /// machine of the other process (`owner_pid(id)`: the process the registry shows `id`
    /// on) to one this process hosts (`hosts`), of no reserved event, or an acknowledgement
    /// from the other process's machine. Any other closes the pair.
    pub fn check(
        &self,
        k: usize,
        frame: &Frame<'_>,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        hosts: &dyn Fn(&str) -> bool,
    ) -> Result<(), RingRefusal> {
        let Some(peer) = self.get(k) else {
            return Err(RingRefusal::TooEarly);
        };
        if !peer.readable {
            return Err(RingRefusal::TooEarly);
        }
        let (sender, target) = match frame {
            Frame::Deliver(d) => {
                if is_reserved_event(d.event) {
                    return Err(RingRefusal::Reserved);
                }
                (d.from, d.to)
            }
            // An acknowledgement's `from` is the machine that received (the other
            // process's), `to` the sender (this one's).
            Frame::Ack { from, to, .. } => (*from, *to),
            _ => return Err(RingRefusal::NotCarried),
        };
        if owner_pid(sender) != Some(peer.peer_pid) {
            return Err(RingRefusal::NotThePeers);
        }
        if !hosts(target) {
            return Err(RingRefusal::NotHere);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Correlation, Deliver};

    fn deliver<'a>(from: &'a str, to: &'a str, event: &'a str) -> Frame<'a> {
        Frame::Deliver(Deliver {
            from,
            to,
            event,
            payload: &[],
            seq: 1,
            correlation: Correlation::None,
        })
    }

    #[test]
    fn offers_are_taken_within_the_allowance_once_per_peer_process() {
        let mut d = DirectPeers::new();
        assert!(!d.may_take(1, 10), "none allowed by default");
        d.set_allowed(2);
        assert_eq!(d.opened(1, 10), Some(0));
        assert!(!d.may_take(2, 10), "one pair per peer process");
        assert!(!d.may_take(1, 11), "a pair is held once");
        assert_eq!(d.opened(3, 11), Some(1));
        assert_eq!(d.opened(4, 12), None, "the allowance is used up");
        assert_eq!(d.closed(1).map(|(k, p)| (k, p.peer_pid)), Some((0, 10)));
        assert_eq!(
            d.opened(4, 12),
            Some(0),
            "a closed pair's slot is free again"
        );
    }

    #[test]
    fn messages_go_direct_only_to_a_held_peer_and_its_ring_is_read_only_after_its_open() {
        let mut d = DirectPeers::new();
        d.set_allowed(1);
        let k = d.opened(7, 10).unwrap();
        assert_eq!(d.route(Some(10)), Some(k));
        assert_eq!(d.route(Some(11)), None);
        assert_eq!(d.route(None), None);
        let owner = |id: &str| match id {
            "a" => Some(10),
            _ => Some(99),
        };
        let hosts = |id: &str| id == "b";
        assert!(!d.readable(k));
        assert_eq!(
            d.check(k, &deliver("a", "b", "E"), &owner, &hosts),
            Err(RingRefusal::TooEarly)
        );
        assert_eq!(d.peer_opened(7), Some(k));
        assert!(d.readable(k));
        assert_eq!(d.check(k, &deliver("a", "b", "E"), &owner, &hosts), Ok(()));
        assert_eq!(
            d.check(k, &deliver("x", "b", "E"), &owner, &hosts),
            Err(RingRefusal::NotThePeers)
        );
        assert_eq!(
            d.check(k, &deliver("a", "c", "E"), &owner, &hosts),
            Err(RingRefusal::NotHere)
        );
        assert_eq!(
            d.check(k, &deliver("a", "b", "xstate.done"), &owner, &hosts),
            Err(RingRefusal::Reserved)
        );
        let ack = Frame::Ack {
            from: "a",
            to: "b",
            seq: 3,
        };
        assert_eq!(d.check(k, &ack, &owner, &hosts), Ok(()));
        assert_eq!(
            d.check(k, &Frame::Ping { nonce: 1 }, &owner, &hosts),
            Err(RingRefusal::NotCarried)
        );
    }
}
