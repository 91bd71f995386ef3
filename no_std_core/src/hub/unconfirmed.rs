//! A link's failure reports not yet confirmed read, and the durable ids it has yet to send
//! again to: while either is held, some of its messages are not forwarded.

use heapless::Vec;

use crate::time::{Duration, Instant};
use crate::wire::FailReason;

/// How many (sender, target) pairs a link's unconfirmed failures are kept for one by one;
/// past that, every message from the link fails until the confirmation.
pub(super) const HELD_PAIRS: usize = 8;

/// A Ping asking a link to confirm its failure reports is sent again when it has gone
/// unanswered this long (the client may have had no room for its Pong).
const ASK_AGAIN: Duration = Duration::from_millis(1_000);

/// The failures reported on a link since the client last confirmed reading them (by
/// answering the hub's Ping queued after them). While a pair is held, its messages from the
/// link fail too: a message forwarded after an earlier one of its pair failed, whose report
/// is then lost with the link, would make the receiver take the earlier one, sent again after
/// the sender's reconnect, for a duplicate.
#[derive(Clone, Debug)]
pub(super) struct Unconfirmed {
    /// (hash of sender and target, reason of the first failure) of each held pair. Two pairs
    /// of one hash hold each other: more failures, never a message forwarded too early.
    pub(super) pairs: Vec<(u32, FailReason), HELD_PAIRS>,
    /// More pairs than `pairs` holds: every message from the link fails, with this reason.
    pub(super) all: Option<FailReason>,
    /// Failure reports queued on the link so far: the nonce of the Ping that confirms them.
    pub(super) reported: u64,
    /// The nonce of the last Ping asking for the confirmation, and when it was queued, while
    /// one is out.
    pub(super) pinged: Option<(u64, Instant)>,
    /// Durable ids (hashes) whose owner came back: the link's messages to them are dropped
    /// until it says it is resending ([`crate::wire::Frame::Resending`]) or confirms it read the
    /// registry entry (then it had nothing to send again).
    resend: Vec<u32, HELD_PAIRS>,
}

impl Unconfirmed {
    pub(super) const NONE: Unconfirmed = Unconfirmed {
        pairs: Vec::new(),
        all: None,
        reported: 0,
        pinged: None,
        resend: Vec::new(),
    };

    pub(super) fn is_held(&self) -> bool {
        self.all.is_some() || !self.pairs.is_empty() || !self.resend.is_empty()
    }

    /// When a Ping asking for the confirmation is (over)due: at once when none is out.
    pub(super) fn ask_at(&self) -> Option<Instant> {
        if !self.is_held() {
            return None;
        }
        Some(self.pinged.map_or(Instant::ZERO, |(_, at)| at + ASK_AGAIN))
    }

    /// The reason to fail a message of the pair with, while it is held.
    pub(super) fn holds(&self, from: &str, to: &str) -> Option<FailReason> {
        if self.all.is_some() || self.pairs.is_empty() {
            return self.all;
        }
        let h = pair_hash(from, to);
        self.pairs.iter().find(|p| p.0 == h).map(|p| p.1)
    }
}

/// FNV-1a of a sender and a target id.
pub(super) fn pair_hash(from: &str, to: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in from.bytes().chain([0xff]).chain(to.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Unconfirmed {
    /// Holds the link's messages to the target of hash `h` until it is resending to it (or
    /// confirms). False when the table is full.
    pub(super) fn hold_for_resend(&mut self, h: u32) -> bool {
        self.resend.contains(&h) || self.resend.push(h).is_ok()
    }

    /// Whether the link's messages to any target are dropped until it resends to it.
    pub(super) fn resending_to_any(&self) -> bool {
        !self.resend.is_empty()
    }

    /// Whether the link's messages to the target of hash `h` are dropped now.
    pub(super) fn drops_to(&self, h: u32) -> bool {
        self.resend.contains(&h)
    }

    /// The link is resending to the target of hash `h`: what follows is in order.
    pub(super) fn resending(&mut self, h: u32) {
        self.resend.retain(|&x| x != h);
    }

    /// The link read every report and entry queued before the Ping `nonce`.
    pub(super) fn clear(&mut self) {
        self.pairs.clear();
        self.all = None;
        self.pinged = None;
        self.resend.clear();
    }
}
