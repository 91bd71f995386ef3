//! What one publish on a node's inbox (`P/N/in`) carries, and when it leaves.
//!
//! A publish carries **several records** ([`InboxMessage`]s: messages, acknowledgements and
//! failures) for the same node, in the order they were written, so that an acknowledgement
//! rides on the data going the same way: a reply carries the acknowledgement of the request
//! it answers, and a node's next request the acknowledgement of the reply before it. On a
//! request/response exchange the broker then handles one publish per message, as two plain
//! MQTT clients ping-ponging, instead of a second one for each acknowledgement.
//!
//! The payload is [`RECORDS_TAG`] followed by the records back to back, each a postcard
//! [`InboxMessage`]. A payload that does not start with the tag is a single record (what a
//! bridge of the earlier version sends); a bridge of the earlier version refuses a payload
//! of records as malformed (the tag is an unknown variant to it), loudly, instead of reading
//! only its first record.
//!
//! [`Outgoing`] is the rule of one destination node's publish being gathered:
//!
//! - acknowledgements are **owed**, not written, while nothing else is written after them:
//!   an acknowledgement is cumulative per (sender, receiver) pair, so a later one of the
//!   same pair replaces an earlier one;
//! - before any other record (a message, a failure) is written, the owed acknowledgements
//!   are written ahead of it: no record overtakes an acknowledgement owed before it, so a
//!   reply never overtakes the acknowledgement of what it answers and a failure is never
//!   passed by a later acknowledgement of its pair (which would cover it);
//! - a publish holding a message leaves in the loop turn it was written in; one holding only
//!   answers leaves once [`ANSWER_BATCH`] are owed or written, or [`ANSWER_DELAY`] after the
//!   first (as the local bus's `AckTimer`), unless a message comes first and takes them;
//! - a publish holds at most [`PUBLISH_BYTES`] of records, unless a single message is larger
//!   (it then goes alone).

use crate::{Duration, Instant};

use super::delivery::InboxMessage;

/// The first byte of a payload of records: the next variant number of [`InboxMessage`].
pub const RECORDS_TAG: u8 = 3;

/// The most bytes of records gathered into one publish (a single larger message goes alone).
pub const PUBLISH_BYTES: usize = 16 * 1024;

/// Answers with nothing to ride on leave at the latest this long after the first was owed.
pub const ANSWER_DELAY: Duration = Duration::from_millis(2);

/// Or as soon as this many are owed or written.
pub const ANSWER_BATCH: usize = 256;

/// An upper bound of the bytes [`write_record`] needs for `msg`.
pub fn record_bound(msg: &InboxMessage<'_>) -> usize {
    // A varint of a u64 or a length takes at most 10 bytes; the tags, the reason, one each.
    const VARINT: usize = 10;
    match msg {
        InboxMessage::Message {
            origin, envelope, ..
        } => {
            2 + origin.len()
                + envelope.from.len()
                + envelope.to.len()
                + envelope.event.len()
                + envelope.payload.len()
                + 7 * VARINT
        }
        InboxMessage::Ack { from, to, .. } => 1 + from.len() + to.len() + 3 * VARINT,
        InboxMessage::Failed {
            from, to, detail, ..
        } => 2 + from.len() + to.len() + detail.len() + 4 * VARINT,
    }
}

/// Writes `msg` as one record at the start of `out`; returns its length (`None`: it does
/// not fit).
pub fn write_record(msg: &InboxMessage<'_>, out: &mut [u8]) -> Option<usize> {
    postcard::to_slice(msg, out).ok().map(|b| b.len())
}

/// The records of an inbox payload, in order. A record that does not decode ends the
/// iteration with `Err(())` (what came before it is good).
pub fn records(payload: &[u8]) -> Records<'_> {
    let rest = match payload.split_first() {
        Some((&RECORDS_TAG, rest)) => rest,
        _ => payload,
    };
    Records {
        rest,
        broken: false,
    }
}

/// An iterator over the records of a payload (see [`records`]).
pub struct Records<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<InboxMessage<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.broken {
            return None;
        }
        match postcard::take_from_bytes::<InboxMessage<'a>>(self.rest) {
            Ok((m, rest)) => {
                self.rest = rest;
                Some(Ok(m))
            }
            Err(_) => {
                self.broken = true;
                Some(Err(()))
            }
        }
    }
}

/// The owed acknowledgements' list is full: write them (see [`Outgoing::take_owed`]) and
/// owe the new one again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwedFull;

/// One destination node's publish being gathered (see the module docs). `P` names a
/// (sender, receiver) pair; `A` bounds the pairs with an acknowledgement owed at once.
/// The bytes themselves are the caller's: it writes a record with [`write_record`] after
/// asking where ([`Outgoing::fits`]) and tells the rule what it wrote.
#[derive(Clone, Debug)]
pub struct Outgoing<P, const A: usize> {
    owed: heapless::Vec<(P, u64), A>,
    /// When the answers owed or written must leave.
    due: Option<Instant>,
    answers: usize,
    messages: usize,
    bytes: usize,
}

impl<P: Copy + Eq, const A: usize> Default for Outgoing<P, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, const A: usize> Outgoing<P, A> {
    /// Nothing gathered.
    pub const fn new() -> Self {
        Outgoing {
            owed: heapless::Vec::new(),
            due: None,
            answers: 0,
            messages: 0,
            bytes: 0,
        }
    }

    /// Owes the acknowledgement of `pair`'s messages up to `seq` (the sender's numbers),
    /// replacing an owed one of the same pair. `Err`: [`A`](Outgoing) pairs are owed
    /// already; write them first.
    pub fn owe_ack(&mut self, now: Instant, pair: P, seq: u64) -> Result<(), OwedFull> {
        self.due.get_or_insert(now + ANSWER_DELAY);
        if let Some(e) = self.owed.iter_mut().find(|(p, _)| *p == pair) {
            e.1 = e.1.max(seq);
            return Ok(());
        }
        self.owed.push((pair, seq)).map_err(|_| OwedFull)
    }

    /// Whether acknowledgements are owed (they must be written, with
    /// [`take_owed`](Self::take_owed), before any other record).
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Whether an acknowledgement of `pair` is owed.
    pub fn owes_pair(&self, pair: P) -> bool {
        self.owed.iter().any(|(p, _)| *p == pair)
    }

    /// The next owed acknowledgement to write, in the order they were first owed. The caller
    /// writes it and reports it with [`wrote_answer`](Self::wrote_answer).
    pub fn take_owed(&mut self) -> Option<(P, u64)> {
        if self.owed.is_empty() {
            None
        } else {
            Some(self.owed.remove(0))
        }
    }

    /// Whether a record of `len` bytes goes into this publish of at most `max` bytes
    /// ([`PUBLISH_BYTES`], or less for a small session store); `false`: publish what was
    /// written first. The first record always goes: a large message goes alone.
    pub fn fits(&self, len: usize, max: usize) -> bool {
        self.bytes == 0 || self.bytes + len <= max.min(PUBLISH_BYTES)
    }

    /// Bytes written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// An answer record (an acknowledgement or a failure) of `len` bytes was written.
    pub fn wrote_answer(&mut self, now: Instant, len: usize) {
        self.due.get_or_insert(now + ANSWER_DELAY);
        self.answers += 1;
        self.bytes += len;
    }

    /// A message record of `len` bytes was written: the publish leaves in this loop turn.
    pub fn wrote_message(&mut self, len: usize) {
        self.messages += 1;
        self.bytes += len;
    }

    /// Whether the publish must leave now: it holds a message, or enough answers, or its
    /// answers' delay has passed. (Owed acknowledgements are written first.)
    pub fn due(&self, now: Instant) -> bool {
        if self.messages > 0 {
            return true;
        }
        let answers = self.answers + self.owed.len();
        answers > 0 && (answers >= ANSWER_BATCH || self.due.is_some_and(|d| d <= now))
    }

    /// When answers must leave at the latest (`None`: none owed or written).
    pub fn deadline(&self) -> Option<Instant> {
        if self.answers + self.owed.len() == 0 {
            return None;
        }
        self.due
    }

    /// Whether nothing is owed or written.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && self.owed.is_empty()
    }

    /// What was written left (or was handed on to leave): the next publish starts. Owed
    /// acknowledgements stay owed.
    pub fn published(&mut self) {
        self.answers = 0;
        self.messages = 0;
        self.bytes = 0;
        self.due = if self.owed.is_empty() { None } else { self.due };
    }

    /// Forgets everything (the node is gone: nothing will be answered to it).
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}
