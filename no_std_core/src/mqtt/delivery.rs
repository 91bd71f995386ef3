//! End-to-end acknowledgement across nodes: what travels in a node's inbox besides the
//! messages, and the two tables a bridge keeps so that a message to a remote machine counts
//! as delivered only once the remote receiver's node acknowledged it.
//!
//! The path of one message from `S` (bus A) to `W` (bus B):
//!
//! 1. A's bridge reads it from its port `W` *without* acknowledging it to `S`'s node, keeps
//!    it in its [`Awaiting`] table and publishes it ([`InboxMessage::Message`]) to B's inbox;
//! 2. B's bridge passes it to bus B from its port `S` under a sequence number of its own and
//!    keeps the pair of numbers in its [`Relayed`] table;
//! 3. when `W`'s node acknowledges it on bus B (cumulatively, per pair), B's bridge sends
//!    an [`InboxMessage::Ack`] with `S`'s own number to A's inbox, riding on the next publish
//!    there (`super::inbox`); a failure on bus B (no such machine, target gone, stopped,
//!    queue full) goes back as [`InboxMessage::Failed`] with bus B's reason;
//! 4. A's bridge then acknowledges to `S`'s node (for an Ack) or has the hub report the
//!    failure to it (`NodeFailure` from the receiver's owner, `docs/wire.md`), and
//!    acknowledges it past the report.
//!
//! A message A's bridge holds when B's node goes down (its last will) or that has no answer
//! within the bridge's bound fails with [`FailReason::NodeUnreachable`]. Both tables are
//! bounded: a full [`Awaiting`] makes the bridge stop reading its ports (the senders' own
//! buffers then fill: backpressure); a full [`Relayed`] fails the incoming message back to
//! its sender (`queue-full`). Nothing is dropped silently.
//!
//! Keys are generic: the platform uses small handles for a (sender, receiver) pair and for a
//! node, so the tables hold no strings.

use heapless::Deque;
use serde::{Deserialize, Serialize};

use super::bridge::Envelope;
use crate::wire::FailReason;
use crate::{Duration, Instant};

/// What a node's inbox topic (`P/N/in`) carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxMessage<'a> {
    /// A message for one of the node's machines, from node `origin`, where the answer goes.
    Message {
        /// The sending bridge's node name.
        origin: &'a str,
        /// The receiving node's connection it was sent to, as that node's status said
        /// ([`status_up`]); 0 when the sender did not know it. A receiving bridge drops a
        /// message for another of its connections and answers it failed: its sender gave it
        /// up, or will, when that connection ended (the will) or the new one began.
        incarnation: u64,
        /// The message.
        #[serde(borrow)]
        envelope: Envelope<'a>,
    },
    /// The receiving node's bus took every message from `from` to `to` up to `seq` (the
    /// sender's own numbers): cumulative, as acknowledgements on a bus are.
    Ack {
        /// The sender (a machine of the node this goes to).
        from: &'a str,
        /// The receiver.
        to: &'a str,
        /// The highest sequence number taken.
        seq: u64,
    },
    /// The message `seq` from `from` to `to` failed on the receiving node's bus.
    Failed {
        /// The sender.
        from: &'a str,
        /// The receiver.
        to: &'a str,
        /// Its sequence number.
        seq: u64,
        /// Why, as the receiving bus reported it.
        reason: FailReason,
        /// What that bus added (a stopped target's error), empty when nothing.
        detail: &'a str,
    },
}

/// The status payload of a connected bridge: `up:N`, `N` its connection's incarnation (a
/// number that differs for every connection of the node: the bridge uses the wall clock in
/// milliseconds at the CONNECT). A bare `up` (an older bridge) is incarnation 0.
pub fn status_up(incarnation: u64) -> heapless::String<24> {
    let mut s = heapless::String::new();
    // 3 + 20 digits fit.
    let _ = core::fmt::Write::write_fmt(&mut s, format_args!("up:{incarnation}"));
    s
}

/// A node's status payload read back: `None` for `down`, `Some(incarnation)` for up.
pub fn parse_status(payload: &[u8]) -> Option<u64> {
    if payload == super::bridge::STATUS_DOWN {
        return None;
    }
    let n = payload
        .strip_prefix(b"up:")
        .and_then(|d| core::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok());
    Some(n.unwrap_or(0))
}

/// Whether a message sent to incarnation `sent_to` of a node may be passed on by the node's
/// connection `current` (0 on either side: not known, accepted).
pub fn for_this_connection(sent_to: u64, current: u64) -> bool {
    sent_to == 0 || current == 0 || sent_to == current
}

/// A table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// No answer yet.
    Pending,
    /// Answered (acknowledged or failed), not yet acknowledged to the local sender because an
    /// earlier message of its pair is still pending.
    Settled,
    /// Acknowledged to the local sender (or dropped): the slot frees once it reaches the front.
    Released,
}

#[derive(Clone, Copy, Debug)]
struct Waiting<P, D> {
    pair: P,
    node: D,
    seq: u64,
    sent_at: Instant,
    mark: Mark,
}

/// The sending side: messages published to another node and not yet answered, in the order
/// they were published. `P` names a (sender, receiver) pair, `D` a node.
pub struct Awaiting<P, D, const N: usize> {
    entries: Deque<Waiting<P, D>, N>,
    pending: usize,
}

impl<P: Copy + Eq, D: Copy + Eq, const N: usize> Default for Awaiting<P, D, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, D: Copy + Eq, const N: usize> Awaiting<P, D, N> {
    /// An empty table.
    pub const fn new() -> Self {
        Awaiting {
            entries: Deque::new(),
            pending: 0,
        }
    }

    /// Messages without an answer yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Slots taken (answered messages behind an unanswered one keep theirs).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no slot is taken.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many slots there are.
    pub fn capacity(&self) -> usize {
        N
    }

    /// Whether another message fits (slots free only in order, so an answered message
    /// behind an unanswered one still takes its slot).
    pub fn has_room(&self) -> bool {
        !self.entries.is_full()
    }

    /// Whether a pair has a message without an answer.
    pub fn pair_pending(&self, pair: P) -> bool {
        self.entries
            .iter()
            .any(|e| e.pair == pair && e.mark == Mark::Pending)
    }

    /// Whether any slot names `pair` (its handle cannot be reused yet).
    pub fn holds_pair(&self, pair: P) -> bool {
        self.entries.iter().any(|e| e.pair == pair)
    }

    /// A message of `pair` with sequence number `seq` went to `node` at `now`.
    pub fn push(&mut self, pair: P, node: D, seq: u64, now: Instant) -> Result<(), Full> {
        self.entries
            .push_back(Waiting {
                pair,
                node,
                seq,
                sent_at: now,
                mark: Mark::Pending,
            })
            .map_err(|_| Full)?;
        self.pending += 1;
        Ok(())
    }

    /// An [`InboxMessage::Ack`]: every pending message of `pair` up to `seq` is delivered.
    /// `release` is told the highest sequence number per pair that can now be acknowledged
    /// to the local sender (every earlier message of the pair answered).
    pub fn acked(&mut self, pair: P, seq: u64, release: &mut dyn FnMut(P, u64)) {
        let mut any = false;
        for e in self.entries.iter_mut() {
            if e.pair == pair && e.mark == Mark::Pending && e.seq <= seq {
                e.mark = Mark::Settled;
                self.pending -= 1;
                any = true;
            }
        }
        if any {
            self.release(pair, release);
        }
    }

    /// An [`InboxMessage::Failed`] for message `seq` of `pair`: returns whether it was pending
    /// (the caller reports it to the sender, once; then acknowledges past it through
    /// `release`). An answer for a message already answered is ignored.
    pub fn failed(&mut self, pair: P, seq: u64, release: &mut dyn FnMut(P, u64)) -> bool {
        let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.pair == pair && e.seq == seq && e.mark == Mark::Pending)
        else {
            return false;
        };
        e.mark = Mark::Settled;
        self.pending -= 1;
        self.release(pair, release);
        true
    }

    /// Node `node` is unreachable: every message pending for it fails. `report` is told
    /// each (pair, seq), in order, before `release` acknowledges past them.
    pub fn node_unreachable(
        &mut self,
        node: D,
        report: &mut dyn FnMut(P, u64),
        release: &mut dyn FnMut(P, u64),
    ) -> usize {
        self.fail_where(&mut |e| e.node == node, report, release)
    }

    /// Every message pending since `bound` or longer fails (the node did not answer in
    /// time), as [`node_unreachable`](Self::node_unreachable) reports them.
    pub fn expire(
        &mut self,
        now: Instant,
        bound: Duration,
        report: &mut dyn FnMut(P, u64),
        release: &mut dyn FnMut(P, u64),
    ) -> usize {
        self.fail_where(&mut |e| e.sent_at + bound <= now, report, release)
    }

    /// When the oldest pending message times out after `bound` (`None`: none pending).
    pub fn next_deadline(&self, bound: Duration) -> Option<Instant> {
        self.entries
            .iter()
            .find(|e| e.mark == Mark::Pending)
            .map(|e| e.sent_at + bound)
    }

    /// The receiver of `pair` left (its port closed): its messages are forgotten (the
    /// senders' nodes report them as for any receiver that leaves the bus).
    pub fn forget_pair(&mut self, pair: P) {
        for e in self.entries.iter_mut() {
            if e.pair == pair && e.mark != Mark::Released {
                if e.mark == Mark::Pending {
                    self.pending -= 1;
                }
                e.mark = Mark::Released;
            }
        }
        self.pop_released();
    }

    fn fail_where(
        &mut self,
        which: &mut dyn FnMut(&Waiting<P, D>) -> bool,
        report: &mut dyn FnMut(P, u64),
        release: &mut dyn FnMut(P, u64),
    ) -> usize {
        let mut n = 0;
        for e in self.entries.iter_mut() {
            if e.mark == Mark::Pending && which(e) {
                e.mark = Mark::Settled;
                self.pending -= 1;
                report(e.pair, e.seq);
                n += 1;
            }
        }
        if n > 0 {
            self.release_all(release);
        }
        n
    }

    /// Releases the answered prefix of `pair`'s messages.
    fn release(&mut self, pair: P, release: &mut dyn FnMut(P, u64)) {
        let mut last = None;
        for e in self.entries.iter_mut().filter(|e| e.pair == pair) {
            match e.mark {
                Mark::Pending => break,
                Mark::Settled => {
                    e.mark = Mark::Released;
                    last = Some(e.seq);
                }
                Mark::Released => {}
            }
        }
        if let Some(seq) = last {
            release(pair, seq);
        }
        self.pop_released();
    }

    fn release_all(&mut self, release: &mut dyn FnMut(P, u64)) {
        while let Some(pair) = self.first_releasable() {
            self.release(pair, release);
        }
        self.pop_released();
    }

    /// A pair whose first unreleased message is answered.
    fn first_releasable(&self) -> Option<P> {
        self.entries.iter().enumerate().find_map(|(i, e)| {
            let first = e.mark == Mark::Settled
                && !self
                    .entries
                    .iter()
                    .take(i)
                    .any(|x| x.pair == e.pair && x.mark == Mark::Pending);
            first.then_some(e.pair)
        })
    }

    fn pop_released(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.mark == Mark::Released)
        {
            self.entries.pop_front();
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Relay<P, D> {
    pair: P,
    origin: D,
    local: u64,
    remote: u64,
    done: bool,
}

/// The receiving side: messages from other nodes passed to this bus and not yet
/// acknowledged there, with the sender's own number (`remote`) beside the one this bus
/// knows them by (`local`, the bridge's port's).
pub struct Relayed<P, D, const N: usize> {
    entries: Deque<Relay<P, D>, N>,
}

impl<P: Copy + Eq, D: Copy + Eq, const N: usize> Default for Relayed<P, D, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, D: Copy + Eq, const N: usize> Relayed<P, D, N> {
    /// An empty table.
    pub const fn new() -> Self {
        Relayed {
            entries: Deque::new(),
        }
    }

    /// Whether another message fits. A full table fails the next message back to its
    /// sender instead of passing it on.
    pub fn has_room(&self) -> bool {
        !self.entries.is_full()
    }

    /// Messages passed on and not answered yet.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| !e.done).count()
    }

    /// Whether no message waits for an answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any slot names `pair`.
    pub fn holds_pair(&self, pair: P) -> bool {
        self.entries.iter().any(|e| e.pair == pair)
    }

    /// Message `remote` of `pair` from node `origin` went to this bus as `local`.
    pub fn push(&mut self, pair: P, origin: D, local: u64, remote: u64) -> Result<(), Full> {
        self.entries
            .push_back(Relay {
                pair,
                origin,
                local,
                remote,
                done: false,
            })
            .map_err(|_| Full)
    }

    /// This bus acknowledged `pair`'s messages up to `local`: the node to tell and the
    /// highest sender's number now taken (`None`: nothing of ours).
    pub fn acked(&mut self, pair: P, local: u64) -> Option<(D, u64)> {
        let mut answer = None;
        for e in self.entries.iter_mut() {
            if e.pair == pair && !e.done && e.local <= local {
                e.done = true;
                answer = Some((e.origin, e.remote));
            }
        }
        self.pop_done();
        answer
    }

    /// This bus reported `pair`'s message `local` failed: the node to tell and the sender's
    /// number (`None`: not ours, or answered already).
    pub fn failed(&mut self, pair: P, local: u64) -> Option<(D, u64)> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.pair == pair && !e.done && e.local == local)?;
        e.done = true;
        let answer = (e.origin, e.remote);
        self.pop_done();
        Some(answer)
    }

    fn pop_done(&mut self) {
        while self.entries.front().is_some_and(|e| e.done) {
            self.entries.pop_front();
        }
    }
}
