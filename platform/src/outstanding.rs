//! The sender's side of end-to-end delivery: every message sent to another process stays in a
//! bounded buffer until its receiver acknowledges it, so that a hub restart loses nothing
//! (the client sends again what is unacknowledged) and a receiver that dies has every message
//! it never confirmed reported back as failed.
//!
//! The receiver's side ([`Received`]) drops duplicates by per-sender sequence number and
//! acknowledges cumulatively, once per loop iteration.
//!
//! Entries are `[state: u8][len: u32 LE][seq: u64 LE][from: u16 offset, u16 len][to: u16
//! offset, u16 len][Deliver frame body]`, appended at the tail and released from the head;
//! the buffer is allocated once. The header lets acknowledgements be matched without decoding.

use rustc_hash::FxHashMap as HashMap;

use interstate_core::hub::LinkFull;
use interstate_core::wire::Frame;

const UNSENT: u8 = 0;
const SENT: u8 = 1;
const DONE: u8 = 2;
const HDR: usize = 21;

/// A message that will not be delivered, for reporting to its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// The sending machine.
    pub from: String,
    /// The target machine.
    pub to: String,
    /// The event name.
    pub event: String,
    /// The sequence number.
    pub seq: u64,
}

/// Messages sent to other processes and not yet acknowledged.
pub struct Outstanding {
    buf: Box<[u8]>,
    head: usize,
    tail: usize,
    first_unsent: usize,
    /// sender -> receiver -> highest acknowledged sequence number.
    acked: HashMap<String, HashMap<String, u64>>,
    entries: usize,
}

/// Reads a postcard varint at `at`; returns (value, bytes used).
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(at + i)?;
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The spans of `from` and `to` in a Deliver body, and its sequence number, without decoding
/// the whole frame: the variant index, then `from` and `to` as length-prefixed strings.
/// (offset, length) of a string inside a frame body.
type Span = (usize, usize);

fn deliver_spans(body: &[u8]) -> Option<(Span, Span, u64)> {
    let (_, _, _, seq) = deliver_of(body)?;
    let (_, v) = varint(body, 0)?;
    let (from_len, a) = varint(body, v)?;
    let from = (v + a, from_len as usize);
    let to_at = from.0 + from.1;
    let (to_len, b) = varint(body, to_at)?;
    let to = (to_at + b, to_len as usize);
    (to.0 + to.1 <= body.len() && from.0 + from.1 <= body.len() && to.0 + to.1 <= u16::MAX as usize)
        .then_some((from, to, seq))
}

fn deliver_of(body: &[u8]) -> Option<(&str, &str, &str, u64)> {
    match Frame::decode(body) {
        Ok(Frame::Deliver(d)) => Some((d.from, d.to, d.event, d.seq)),
        _ => None,
    }
}

impl Outstanding {
    /// A buffer of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Outstanding {
            buf: vec![0; capacity].into_boxed_slice(),
            head: 0,
            tail: 0,
            first_unsent: 0,
            acked: HashMap::default(),
            entries: 0,
        }
    }

    fn entry(&self, at: usize) -> (u8, &[u8], usize) {
        let len = u32::from_le_bytes([
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
            self.buf[at + 4],
        ]) as usize;
        (self.buf[at], &self.buf[at + HDR..at + HDR + len], HDR + len)
    }

    /// (from, to, seq) of the entry at `at`, from its header.
    fn key(&self, at: usize) -> (&[u8], &[u8], u64) {
        let h = &self.buf[at..at + HDR];
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let seq = u64::from_le_bytes([h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]]);
        let body = at + HDR;
        let from = &self.buf[body + u16_at(13)..body + u16_at(13) + u16_at(15)];
        let to = &self.buf[body + u16_at(17)..body + u16_at(17) + u16_at(19)];
        (from, to, seq)
    }

    /// Messages held (unsent or unacknowledged).
    pub fn len(&self) -> usize {
        self.entries
    }
    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    /// Whether unsent messages wait.
    pub fn has_unsent(&self) -> bool {
        self.first_unsent < self.tail
    }

    /// Whether a body of `len` bytes fits (after compaction).
    pub fn has_room(&self, len: usize) -> bool {
        self.buf.len() - (self.tail - self.head) >= HDR + len
    }

    /// Appends a Deliver body. `Err(LinkFull)` when the buffer is full or the body is not a Deliver.
    pub fn push(&mut self, body: &[u8], sent: bool) -> Result<(), LinkFull> {
        let Some((from, to, seq)) = deliver_spans(body) else {
            return Err(LinkFull);
        };
        let need = HDR + body.len();
        if self.buf.len() - self.tail < need {
            if !self.has_room(body.len()) {
                return Err(LinkFull);
            }
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.first_unsent -= self.head;
            self.head = 0;
        }
        let at = self.tail;
        let h = &mut self.buf[at..at + HDR];
        h[0] = if sent { SENT } else { UNSENT };
        h[1..5].copy_from_slice(&(body.len() as u32).to_le_bytes());
        h[5..13].copy_from_slice(&seq.to_le_bytes());
        for (i, (off, len)) in [from, to].into_iter().enumerate() {
            h[13 + 4 * i..15 + 4 * i].copy_from_slice(&(off as u16).to_le_bytes());
            h[15 + 4 * i..17 + 4 * i].copy_from_slice(&(len as u16).to_le_bytes());
        }
        self.buf[at + HDR..at + need].copy_from_slice(body);
        self.tail += need;
        if sent && self.first_unsent == at {
            self.first_unsent = self.tail;
        }
        self.entries += 1;
        Ok(())
    }

    /// Hands unsent messages to `send` in order, skipping (and holding back every later message
    /// to) targets for which `sendable` is false. Stops when `send` returns false (no room).
    pub fn transmit(
        &mut self,
        sendable: &dyn Fn(&str) -> bool,
        send: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let mut at = self.first_unsent;
        let mut held: Vec<(usize, usize)> = Vec::new();
        let mut new_first: Option<usize> = None;
        while at < self.tail {
            let (state, body, size) = self.entry(at);
            if state == UNSENT {
                let target = deliver_of(body).map(|(_, to, _, _)| to).unwrap_or("");
                let is_held = held
                    .iter()
                    .any(|&(o, l)| &self.buf[o..o + l] == target.as_bytes());
                if is_held || !sendable(target) {
                    if !is_held {
                        // Remember the target by its bytes in the buffer (no allocation).
                        let off = target.as_ptr() as usize - self.buf.as_ptr() as usize;
                        held.push((off, target.len()));
                    }
                    new_first.get_or_insert(at);
                } else if send(body) {
                    self.buf[at] = SENT;
                } else {
                    new_first.get_or_insert(at);
                    break;
                }
            }
            at += size;
        }
        self.first_unsent = new_first.unwrap_or(self.tail);
    }

    /// The link to the hub was lost: everything unacknowledged is to be sent again.
    pub fn rewind(&mut self) {
        let mut at = self.head;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if state == SENT {
                self.buf[at] = UNSENT;
            }
            at += size;
        }
        self.first_unsent = self.head;
    }

    /// A cumulative acknowledgement: `receiver` got every message from `sender` up to `seq`.
    pub fn ack(&mut self, sender: &str, receiver: &str, seq: u64) {
        let per = match self.acked.get_mut(sender) {
            Some(m) => m,
            None => self.acked.entry(sender.to_string()).or_default(),
        };
        match per.get_mut(receiver) {
            Some(s) => *s = (*s).max(seq),
            None => {
                per.insert(receiver.to_string(), seq);
            }
        }
        self.release();
    }

    fn is_acked(&self, at: usize) -> bool {
        let (from, to, seq) = self.key(at);
        let (Ok(from), Ok(to)) = (std::str::from_utf8(from), std::str::from_utf8(to)) else {
            return false;
        };
        self.acked
            .get(from)
            .and_then(|m| m.get(to))
            .is_some_and(|&a| a >= seq)
    }

    fn release(&mut self) {
        while self.head < self.tail {
            let (state, _, size) = self.entry(self.head);
            let done = state == DONE || (state == SENT && self.is_acked(self.head));
            if !done {
                break;
            }
            self.head += size;
            self.entries -= 1;
            if self.first_unsent < self.head {
                self.first_unsent = self.head;
            }
        }
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
            self.first_unsent = 0;
        }
    }

    /// Marks as failed every outstanding message `matches` selects (by from, to, seq) and
    /// returns them for reporting.
    pub fn fail_where(&mut self, matches: &dyn Fn(&str, &str, u64) -> bool) -> Vec<Undelivered> {
        let mut out = Vec::new();
        let mut at = self.head;
        while at < self.tail {
            let (state, body, size) = self.entry(at);
            if state != DONE {
                if let Some((from, to, event, seq)) = deliver_of(body) {
                    let acked = state == SENT && self.is_acked(at);
                    if !acked && matches(from, to, seq) {
                        out.push(Undelivered {
                            from: from.into(),
                            to: to.into(),
                            event: event.into(),
                            seq,
                        });
                        self.buf[at] = DONE;
                    }
                }
            }
            at += size;
        }
        self.release();
        out
    }
}

/// The receiver's side: duplicate suppression and pending acknowledgements.
#[derive(Default)]
pub struct Received {
    /// receiver -> sender -> (highest delivered, highest acknowledged).
    seen: HashMap<String, HashMap<String, (u64, u64)>>,
    dirty: bool,
    owed: usize,
}

impl Received {
    /// Records a message; returns false when it is a duplicate (already delivered).
    pub fn accept(&mut self, receiver: &str, sender: &str, seq: u64) -> bool {
        let per = match self.seen.get_mut(receiver) {
            Some(m) => m,
            None => self.seen.entry(receiver.to_string()).or_default(),
        };
        self.dirty = true;
        match per.get_mut(sender) {
            Some((delivered, acked)) => {
                if seq <= *delivered {
                    // Acknowledge it again: the first acknowledgement may have been lost.
                    *acked = (*acked).min(seq.saturating_sub(1));
                    return false;
                }
                *delivered = seq;
                self.owed += 1;
                true
            }
            None => {
                per.insert(sender.to_string(), (seq, 0));
                self.owed += 1;
                true
            }
        }
    }

    /// Calls `send(receiver, sender, seq)` for every pair with unacknowledged deliveries; a
    /// pair is marked acknowledged when `send` returns true.
    pub fn emit(&mut self, send: &mut dyn FnMut(&str, &str, u64) -> bool) {
        if !self.dirty {
            return;
        }
        let mut all = true;
        for (receiver, per) in self.seen.iter_mut() {
            for (sender, (delivered, acked)) in per.iter_mut() {
                if *delivered > *acked {
                    if send(receiver, sender, *delivered) {
                        *acked = *delivered;
                    } else {
                        all = false;
                    }
                }
            }
        }
        self.dirty = !all;
        if all {
            self.owed = 0;
        }
    }

    /// Deliveries not yet acknowledged.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Whether any acknowledgement is owed (including re-acknowledgements of duplicates).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interstate_core::wire::Deliver;

    fn body(from: &str, to: &str, seq: u64) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let n = Frame::Deliver(Deliver {
            from,
            to,
            event: "E",
            payload: b"x",
            seq,
        })
        .encode(&mut buf)
        .unwrap();
        buf[4..n].to_vec()
    }

    #[test]
    fn released_only_when_acknowledged_in_order() {
        let mut o = Outstanding::new(4096);
        for s in 1..=3 {
            o.push(&body("a", "b", s), false).unwrap();
        }
        let mut sent = Vec::new();
        o.transmit(&|_| true, &mut |b| {
            sent.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(sent, vec![1, 2, 3]);
        o.ack("a", "b", 2);
        assert_eq!(o.len(), 1);
        o.rewind();
        let mut again = Vec::new();
        o.transmit(&|_| true, &mut |b| {
            again.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(
            again,
            vec![3],
            "only the unacknowledged message is sent again"
        );
        o.ack("a", "b", 3);
        assert!(o.is_empty());
    }

    #[test]
    fn held_targets_keep_their_order_and_others_pass() {
        let mut o = Outstanding::new(4096);
        o.push(&body("a", "x", 1), false).unwrap();
        o.push(&body("a", "y", 2), false).unwrap();
        o.push(&body("a", "x", 3), false).unwrap();
        let mut sent = Vec::new();
        o.transmit(&|t| t != "x", &mut |b| {
            sent.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(sent, vec![2]);
        let mut later = Vec::new();
        o.transmit(&|_| true, &mut |b| {
            later.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(later, vec![1, 3]);
    }

    #[test]
    fn full_buffer_refuses_and_failures_are_reported_once() {
        let mut o = Outstanding::new(64);
        let b = body("a", "b", 1);
        let mut n = 0;
        while o.push(&b, true).is_ok() {
            n += 1;
        }
        assert!(n >= 1);
        let failed = o.fail_where(&|_, to, _| to == "b");
        assert_eq!(failed.len(), n);
        assert!(o.is_empty());
        assert!(o.fail_where(&|_, _, _| true).is_empty());
    }

    #[test]
    fn duplicates_are_dropped_and_reacknowledged() {
        let mut r = Received::default();
        assert!(r.accept("b", "a", 5));
        assert!(!r.accept("b", "a", 5));
        assert!(r.accept("b", "a", 6));
        let mut acks = Vec::new();
        r.emit(&mut |rx, tx, s| {
            acks.push((rx.to_string(), tx.to_string(), s));
            true
        });
        assert_eq!(acks, vec![("b".into(), "a".into(), 6)]);
        assert!(!r.accept("b", "a", 6));
        let mut again = Vec::new();
        r.emit(&mut |_, _, s| {
            again.push(s);
            true
        });
        assert_eq!(again, vec![6]);
    }
}
