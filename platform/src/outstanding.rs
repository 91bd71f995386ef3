//! The sender's side of end-to-end delivery: every message sent to another process stays in a
//! bounded buffer until its receiver acknowledges it, so that a hub restart loses nothing
//! (the client sends again what is unacknowledged) and a receiver that dies has every message
//! it never confirmed reported back as failed.
//!
//! The receiver's side ([`Received`]) drops duplicates by per-sender sequence number and
//! acknowledges cumulatively, once per loop iteration.
//!
//! Entries are `[state: u8][len: u32 LE][seq: u64 LE][from: u16 offset, u16 len][to: u16
//! offset, u16 len][Deliver frame body]`, appended at the tail and released from the head of
//! a ring allocated once: positions grow for ever, and a position's place in the buffer is
//! the position modulo the capacity. An entry is never split: one that does not fit before
//! the end of the buffer goes to its start, after a padding marker (`PAD`) that fills the
//! rest. Nothing is ever moved. The header lets acknowledgements be matched without decoding.

use rustc_hash::FxHashMap as HashMap;

use interstate_core::hub::LinkFull;
use interstate_core::wire::Frame;

const UNSENT: u8 = 0;
const SENT: u8 = 1;
const DONE: u8 = 2;
/// The rest of the buffer, up to its end, is padding: the next entry is at its start.
const PAD: u8 = 3;
const HDR: usize = 21;
/// How many (sender, receiver) pairs the acknowledgement table keeps before it is emptied
/// (when nothing is outstanding).
const ACKED_PAIRS_KEPT: usize = 64;

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
    /// Entries in `acked`.
    acked_pairs: usize,
    /// Where [`Outstanding::fail_one`] starts looking.
    fail_hint: usize,
    /// Entries `fail_one` looked at (what the linear-time test counts).
    #[cfg(test)]
    examined: usize,
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

/// The postcard variant index of `Frame::Deliver` (docs/wire.md).
const DELIVER_TAG: u64 = 6;

/// Reads the length-prefixed field at `at`: its span.
fn field(body: &[u8], at: usize) -> Option<Span> {
    let (len, used) = varint(body, at)?;
    let start = at + used;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= body.len()).then_some((start, end - start))
}

/// The spans of `from` and `to` in a Deliver body, and its sequence number, read from the
/// encoding directly (the variant index, from, to, event and payload as length-prefixed
/// fields, then the sequence number): a message is not decoded to be kept.
fn deliver_spans(body: &[u8]) -> Option<(Span, Span, u64)> {
    let (tag, v) = varint(body, 0)?;
    if tag != DELIVER_TAG {
        return None;
    }
    let from = field(body, v)?;
    let to = field(body, from.0 + from.1)?;
    let event = field(body, to.0 + to.1)?;
    let payload = field(body, event.0 + event.1)?;
    let (seq, used) = varint(body, payload.0 + payload.1)?;
    // The strings are not checked for UTF-8 here: the node encoded them from `&str`, and
    // every reader of the header checks them (an invalid one matches nothing).
    (payload.0 + payload.1 + used == body.len() && to.0 + to.1 <= u16::MAX as usize)
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
            acked_pairs: 0,
            fail_hint: 0,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Where position `at` is in the buffer.
    fn place(&self, at: usize) -> usize {
        at % self.buf.len()
    }

    /// The entry at position `at`: its state, its body and how far the next one is (for
    /// padding: its state, nothing, the distance to the buffer's end).
    fn entry(&self, at: usize) -> (u8, &[u8], usize) {
        let at = self.place(at);
        if self.buf[at] == PAD {
            return (PAD, &[], self.buf.len() - at);
        }
        let len = u32::from_le_bytes([
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
            self.buf[at + 4],
        ]) as usize;
        (self.buf[at], &self.buf[at + HDR..at + HDR + len], HDR + len)
    }

    fn set_state(&mut self, at: usize, state: u8) {
        let at = self.place(at);
        self.buf[at] = state;
    }

    /// (from, to, seq) of the entry at position `at` (not padding), from its header.
    fn key(&self, at: usize) -> (&[u8], &[u8], u64) {
        let at = self.place(at);
        let h = &self.buf[at..at + HDR];
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let seq = u64::from_le_bytes([h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]]);
        let body = at + HDR;
        let from = &self.buf[body + u16_at(13)..body + u16_at(13) + u16_at(15)];
        let to = &self.buf[body + u16_at(17)..body + u16_at(17) + u16_at(19)];
        (from, to, seq)
    }

    /// Messages held: unsent or unacknowledged, or acknowledged behind an older one still
    /// held (released in order); not those failed.
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

    /// Whether a body of `len` bytes fits: before the buffer's end, or at its start after
    /// padding out the end. (The buffer is a ring and nothing is ever moved: moving what it
    /// held to gain room cost the sender more than the rest of sending.)
    pub fn has_room(&self, len: usize) -> bool {
        let need = HDR + len;
        let free = self.buf.len() - (self.tail - self.head);
        let to_end = self.buf.len() - self.place(self.tail);
        if to_end >= need {
            free >= need
        } else {
            free >= to_end + need
        }
    }

    /// Appends a Deliver body. `Err(LinkFull)` when the buffer is full or the body is not a Deliver.
    pub fn push(&mut self, body: &[u8], sent: bool) -> Result<(), LinkFull> {
        let Some((from, to, seq)) = deliver_spans(body) else {
            return Err(LinkFull);
        };
        let need = HDR + body.len();
        if !self.has_room(body.len()) {
            return Err(LinkFull);
        }
        let all_sent = self.first_unsent == self.tail;
        let to_end = self.buf.len() - self.place(self.tail);
        if to_end < need {
            let pad = self.place(self.tail);
            self.buf[pad] = PAD;
            self.tail += to_end;
        }
        if all_sent {
            self.first_unsent = self.tail;
        }
        let at = self.place(self.tail);
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
        if sent && all_sent {
            self.first_unsent = self.tail;
        }
        self.entries += 1;
        Ok(())
    }

    /// Hands unsent messages to `send` in order, skipping those for which `sendable(from, to)`
    /// is false (and holding back every later message to a target so skipped, to keep the
    /// order). Stops when `send` returns false (no room).
    pub fn transmit(
        &mut self,
        sendable: &dyn Fn(&str, &str) -> bool,
        send: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let mut at = self.first_unsent;
        // Held targets, by their bytes in the buffer (no allocation).
        let mut held: Vec<(usize, usize)> = Vec::new();
        let mut new_first: Option<usize> = None;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if state == UNSENT {
                let (from, to, _) = self.key(at);
                let to_at = to.as_ptr() as usize - self.buf.as_ptr() as usize;
                let is_held = held.iter().any(|&(o, l)| &self.buf[o..o + l] == to);
                let (from, to_str) = (
                    std::str::from_utf8(from).unwrap_or(""),
                    std::str::from_utf8(to).unwrap_or(""),
                );
                if is_held || !sendable(from, to_str) {
                    if !is_held {
                        held.push((to_at, to.len()));
                    }
                    new_first.get_or_insert(at);
                } else {
                    let p = self.place(at);
                    if send(&self.buf[p + HDR..p + size]) {
                        self.set_state(at, SENT);
                    } else {
                        new_first.get_or_insert(at);
                        break;
                    }
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
            // (One acknowledged behind an older one still held needs no second sending.)
            if state == SENT && !self.is_acked(at) {
                self.set_state(at, UNSENT);
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
                self.acked_pairs += 1;
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
            let done = state == DONE || state == PAD || (state == SENT && self.is_acked(self.head));
            if !done {
                break;
            }
            self.head += size;
            if state == SENT {
                self.entries -= 1;
            }
            if self.first_unsent < self.head {
                self.first_unsent = self.head;
            }
        }
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
            self.first_unsent = 0;
            self.fail_hint = 0;
            // Nothing left to match acknowledgements against, and whatever is sent next has
            // higher sequence numbers than anything acknowledged so far: the table may be
            // emptied. It is once it holds many pairs (it would otherwise grow with every
            // receiver ever sent to), not every time (refilling it allocates).
            if self.acked_pairs > ACKED_PAIRS_KEPT {
                self.acked.clear();
                self.acked_pairs = 0;
            }
        }
    }

    /// Marks as failed every outstanding message `matches` selects (by from, to, seq) and
    /// returns them for reporting. One pass over the buffer, matching on the entries' headers:
    /// only the selected entries are decoded.
    pub fn fail_where(&mut self, matches: &dyn Fn(&str, &str, u64) -> bool) -> Vec<Undelivered> {
        let mut out = Vec::new();
        let mut at = self.head;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if state == UNSENT || state == SENT && !self.is_acked(at) {
                let (from, to, seq) = self.key(at);
                let hit = match (std::str::from_utf8(from), std::str::from_utf8(to)) {
                    (Ok(f), Ok(t)) => matches(f, t, seq),
                    _ => false,
                };
                if hit {
                    self.fail_at(at, &mut out);
                }
            }
            at += size;
        }
        self.release();
        out
    }

    /// Marks as failed the one outstanding message (from, to, seq), if it is still
    /// outstanding, and returns it for reporting.
    ///
    /// Failure reports come one per message and, per (from, to) pair, in the order the
    /// messages were sent: the search starts where the previous one ended, so failing every
    /// message of a long buffer one by one costs linear time, not quadratic.
    pub fn fail_one(&mut self, from: &str, to: &str, seq: u64) -> Option<Undelivered> {
        let start = self.fail_hint.clamp(self.head, self.tail);
        let mut out = Vec::new();
        // From the hint to the tail, then from the head to the hint.
        for (lo, hi) in [(start, self.tail), (self.head, start)] {
            let mut at = lo;
            while at < hi {
                #[cfg(test)]
                {
                    self.examined += 1;
                }
                let (state, _, size) = self.entry(at);
                if (state == UNSENT || state == SENT)
                    && self.key(at) == (from.as_bytes(), to.as_bytes(), seq)
                {
                    if !(state == SENT && self.is_acked(at)) {
                        self.fail_at(at, &mut out);
                    }
                    self.fail_hint = at + size;
                    self.release();
                    return out.pop();
                }
                at += size;
            }
        }
        None
    }

    fn fail_at(&mut self, at: usize, out: &mut Vec<Undelivered>) {
        let (_, body, _) = self.entry(at);
        if let Some((from, to, event, seq)) = deliver_of(body) {
            out.push(Undelivered {
                from: from.into(),
                to: to.into(),
                event: event.into(),
                seq,
            });
        }
        self.set_state(at, DONE);
        self.entries -= 1;
    }
}

/// The receiver's side: duplicate suppression and pending acknowledgements.
///
/// Per (receiver, sender) pair it keeps the highest sequence number delivered (anything at or
/// below it is a duplicate), the highest handed to the application (a machine has it once its
/// step ran; a port once [`Node::recv_port`](crate::Node::recv_port) returned it) and the
/// highest acknowledged. Only what the application has is acknowledged.
///
/// Sequence numbers belong to a sender *process*: when the registry shows a sender id owned
/// by another process than before ([`Received::sender_registered`]), what was remembered for
/// it is forgotten, so that an earlier owner of the id (a squatter that sent a huge sequence
/// number) cannot make the new owner's messages look like duplicates. The state of senders
/// gone from the registry for a while is dropped ([`Received::forget_departed`]), so the
/// tables do not grow with every short-lived sender.
#[derive(Default)]
pub struct Received {
    /// receiver -> sender -> sequence state.
    seen: HashMap<String, HashMap<String, Pair>>,
    /// sender -> its owner process as last seen in the registry.
    owners: HashMap<String, Owner>,
    /// The state of earlier owners of a sender id, by (sender, pid), with when it was put
    /// aside (ms): restored if that process owns the id again.
    earlier: HashMap<(String, u32), (u64, PairsOf)>,
    dirty: bool,
    owed: usize,
}

/// One sender's state with each receiver: (receiver, state).
type PairsOf = Vec<(String, Pair)>;

#[derive(Clone, Copy, Default)]
struct Pair {
    delivered: u64,
    handed: u64,
    acked: u64,
}

struct Owner {
    pid: u32,
    /// When the sender left the registry (ms on the node's clock), if it is not back.
    departed: Option<u64>,
}

impl Received {
    /// Records a message. Returns false when it is a duplicate (already delivered). `handed`:
    /// the application has it once it is delivered (a machine); otherwise (a port) it is
    /// acknowledged only after [`Received::handed`].
    pub fn accept(&mut self, receiver: &str, sender: &str, seq: u64, handed: bool) -> bool {
        let per = match self.seen.get_mut(receiver) {
            Some(m) => m,
            None => self.seen.entry(receiver.to_string()).or_default(),
        };
        let pair = match per.get_mut(sender) {
            Some(p) if seq <= p.delivered => {
                // Acknowledge it again (the first acknowledgement may have been lost), if
                // the application has it.
                if seq <= p.handed {
                    p.acked = p.acked.min(seq.saturating_sub(1));
                    self.dirty = true;
                }
                return false;
            }
            Some(p) => p,
            None => per.entry(sender.to_string()).or_default(),
        };
        pair.delivered = seq;
        if handed {
            pair.handed = seq;
            self.dirty = true;
            self.owed += 1;
        }
        true
    }

    /// The application (a port's reader) has the message `seq` from `sender`.
    pub fn handed(&mut self, receiver: &str, sender: &str, seq: u64) {
        if let Some(pair) = self.seen.get_mut(receiver).and_then(|m| m.get_mut(sender)) {
            // (A message from an earlier owner of the id, read late, is above what the new
            // owner has delivered and must not acknowledge the new owner's messages.)
            if seq > pair.handed && seq <= pair.delivered {
                pair.handed = seq;
                self.dirty = true;
                self.owed += 1;
            }
        }
    }

    /// The registry shows `sender` owned by process `pid` (at `now_ms`). If another process
    /// owned it before, that process's sequence state is put aside (and restored should it
    /// own the id again): the new owner's numbers are its own.
    pub fn sender_registered(&mut self, sender: &str, pid: u32, now_ms: u64) {
        match self.owners.get_mut(sender) {
            Some(o) if o.pid == pid => o.departed = None,
            Some(o) => {
                let before = o.pid;
                o.pid = pid;
                o.departed = None;
                let mut aside = Vec::new();
                for (receiver, per) in self.seen.iter_mut() {
                    if let Some(p) = per.remove(sender) {
                        aside.push((receiver.clone(), p));
                    }
                }
                if !aside.is_empty() {
                    self.earlier
                        .insert((sender.to_string(), before), (now_ms, aside));
                }
                if let Some((_, back)) = self.earlier.remove(&(sender.to_string(), pid)) {
                    for (receiver, p) in back {
                        self.seen
                            .entry(receiver)
                            .or_default()
                            .insert(sender.to_string(), p);
                    }
                }
            }
            None => {
                self.owners.insert(
                    sender.to_string(),
                    Owner {
                        pid,
                        departed: None,
                    },
                );
            }
        }
    }

    /// `sender` left the registry at `now_ms`.
    pub fn sender_departed(&mut self, sender: &str, now_ms: u64) {
        if let Some(o) = self.owners.get_mut(sender) {
            o.departed.get_or_insert(now_ms);
        }
    }

    /// Every sender for which `present` is false left the registry at `now_ms` (if it had not
    /// already): for a new registry snapshot, after a reconnect.
    pub fn departed_unless(&mut self, present: &dyn Fn(&str) -> bool, now_ms: u64) {
        for (sender, o) in self.owners.iter_mut() {
            if !present(sender) {
                o.departed.get_or_insert(now_ms);
            }
        }
    }

    /// Drops the state of senders that left the registry more than `after_ms` before
    /// `now_ms` and did not come back. (Not sooner: a sender whose link broke comes back
    /// under the same process and sends again what was not acknowledged, and its duplicates
    /// must still be recognised.) Returns how many senders were forgotten.
    pub fn forget_departed(&mut self, now_ms: u64, after_ms: u64) -> usize {
        let gone: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, o)| {
                o.departed
                    .is_some_and(|d| now_ms.saturating_sub(d) >= after_ms)
            })
            .map(|(s, _)| s.clone())
            .collect();
        let mut forgotten = 0;
        for sender in &gone {
            let mut left = false;
            for per in self.seen.values_mut() {
                match per.get(sender) {
                    // Still owes an acknowledgement (a port not read yet): kept.
                    Some(p) if p.acked < p.handed || p.handed < p.delivered => left = true,
                    Some(_) => {
                        per.remove(sender);
                    }
                    None => {}
                }
            }
            if !left {
                self.owners.remove(sender);
                forgotten += 1;
            }
        }
        self.seen.retain(|_, per| !per.is_empty());
        self.earlier
            .retain(|_, (at, _)| now_ms.saturating_sub(*at) < after_ms);
        forgotten
    }

    /// (Receiver, sender) pairs whose state is kept, earlier owners' included (for tests and
    /// statistics).
    pub fn senders(&self) -> usize {
        let mut n = self.earlier.values().map(|(_, v)| v.len()).sum();
        for per in self.seen.values() {
            n += per.len();
        }
        n
    }

    /// Calls `send(receiver, sender, seq)` for every pair with unacknowledged deliveries; a
    /// pair is marked acknowledged when `send` returns true.
    pub fn emit(&mut self, send: &mut dyn FnMut(&str, &str, u64) -> bool) {
        if !self.dirty {
            return;
        }
        let mut all = true;
        for (receiver, per) in self.seen.iter_mut() {
            for (sender, pair) in per.iter_mut() {
                if pair.handed > pair.acked {
                    if send(receiver, sender, pair.handed) {
                        pair.acked = pair.handed;
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
        body_with(from, to, b"x", seq)
    }

    fn body_with(from: &str, to: &str, payload: &[u8], seq: u64) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        let n = Frame::Deliver(Deliver {
            from,
            to,
            event: "E",
            payload,
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
        o.transmit(&|_, _| true, &mut |b| {
            sent.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(sent, vec![1, 2, 3]);
        o.ack("a", "b", 2);
        assert_eq!(o.len(), 1);
        o.rewind();
        let mut again = Vec::new();
        o.transmit(&|_, _| true, &mut |b| {
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
        o.transmit(&|_, t| t != "x", &mut |b| {
            sent.push(deliver_of(b).unwrap().3);
            true
        });
        assert_eq!(sent, vec![2]);
        let mut later = Vec::new();
        o.transmit(&|_, _| true, &mut |b| {
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

    /// Failure reports come one per message (`Node::settle`): failing n messages one by one
    /// looks at O(n) entries in all, not O(n^2), also when messages to another target, still
    /// outstanding, sit between them. (Quadratic, 20 000 failures kept a node deaf to the
    /// bus for seconds.)
    #[test]
    fn failing_messages_one_by_one_takes_linear_work() {
        for n in [400u64, 4000] {
            let mut o = Outstanding::new(64 << 20);
            for seq in 1..=n {
                o.push(&body("a", "gone", seq), true).unwrap();
                o.push(&body("a", "alive", seq), true).unwrap();
            }
            for seq in 1..=n {
                let u = o.fail_one("a", "gone", seq).expect("outstanding");
                assert_eq!((u.to.as_str(), u.seq), ("gone", seq));
            }
            assert_eq!(o.len(), n as usize, "the other target's messages stay");
            assert!(o.fail_one("a", "gone", 1).is_none(), "failed once only");
            // Each search passes at most the one "alive" entry before its target.
            assert!(
                o.examined <= 3 * n as usize + 2 * n as usize,
                "{} entries examined for {n} failures",
                o.examined
            );
        }
        // Out of order works too (wrapping around from the hint).
        let mut o = Outstanding::new(4096);
        for seq in 1..=4 {
            o.push(&body("a", "b", seq), true).unwrap();
        }
        for seq in [3, 1, 4, 2] {
            assert_eq!(o.fail_one("a", "b", seq).map(|u| u.seq), Some(seq));
        }
        assert!(o.is_empty());
    }

    /// The header read without decoding agrees with the decoder, and refuses what it refuses.
    #[test]
    fn deliver_spans_agree_with_the_decoder() {
        for (from, to, payload, seq) in [
            ("a", "b", &b"x"[..], 1u64),
            ("", "t", &b""[..], 0),
            ("sender", "receiver", &[7u8; 300][..], u64::MAX),
            (&"f".repeat(200)[..], "t", &b"{}"[..], 1 << 40),
        ] {
            let b = body_with(from, to, payload, seq);
            let (f, t, s) = deliver_spans(&b).expect("a Deliver");
            assert_eq!(
                (&b[f.0..f.0 + f.1], &b[t.0..t.0 + t.1], s),
                (from.as_bytes(), to.as_bytes(), seq)
            );
            for cut in 0..b.len() {
                assert!(deliver_spans(&b[..cut]).is_none(), "cut at {cut}");
            }
        }
        let mut ack = vec![0u8; 64];
        let n = Frame::Ack {
            from: "a",
            to: "b",
            seq: 1,
        }
        .encode(&mut ack)
        .unwrap();
        assert!(deliver_spans(&ack[4..n]).is_none());
    }

    /// A push never fails after `has_room` said yes (the node relies on it), and a buffer
    /// whose receiver keeps up (acknowledging as it goes) stays usable to its full size.
    #[test]
    fn room_is_what_push_finds() {
        let mut o = Outstanding::new(10_000);
        let b = body("a", "b", 1);
        let mut seq = 0;
        let mut acked = 0;
        for round in 0..5_000u64 {
            if o.has_room(b.len()) {
                seq += 1;
                o.push(&body("a", "b", seq), true)
                    .expect("has_room said yes");
            } else {
                assert!(o.push(&body("a", "b", seq + 1), true).is_err());
                // Full: at least 80% held (but for the room one more message would need).
                let held = o.tail - o.head;
                let need = HDR + b.len() + 2;
                assert!(5 * held >= 4 * (10_000 - need), "{held} bytes held");
            }
            if round % 3 == 0 && acked < seq {
                acked += 1;
                o.ack("a", "b", acked);
            }
        }
        o.ack("a", "b", seq);
        assert!(o.is_empty());
    }

    /// The ring against a plain list, through random pushes (of sizes that make entries wrap
    /// around the end of a small buffer), transmissions, acknowledgements, failures and
    /// rewinds: the same messages held, sent in the same order, failed once.
    #[test]
    fn the_ring_behaves_like_a_list() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for capacity in [300usize, 301, 512, 1000] {
            let mut o = Outstanding::new(capacity);
            // (to, seq, sent, acknowledged) of every message held, oldest first.
            let mut model: Vec<(String, u64, bool, bool)> = Vec::new();
            let mut seq = 0u64;
            for _ in 0..20_000 {
                match next(6) {
                    0 | 1 => {
                        seq += 1;
                        let to = ["b", "c"][next(2) as usize].to_string();
                        let pad = "x".repeat(next(60) as usize);
                        let b = body_with("a", &to, pad.as_bytes(), seq);
                        let room = o.has_room(b.len());
                        assert_eq!(o.push(&b, false).is_ok(), room, "has_room and push agree");
                        if room {
                            model.push((to, seq, false, false));
                        }
                    }
                    2 => {
                        let mut sent = Vec::new();
                        o.transmit(&|_, _| true, &mut |b| {
                            sent.push(deliver_of(b).unwrap().3);
                            true
                        });
                        let expect: Vec<u64> = model.iter().filter(|m| !m.2).map(|m| m.1).collect();
                        assert_eq!(sent, expect, "sent in order, once");
                        model.iter_mut().for_each(|m| m.2 = true);
                    }
                    3 => {
                        // The receiver acknowledges a prefix of what was sent to it.
                        let to = ["b", "c"][next(2) as usize];
                        let sent: Vec<u64> = model
                            .iter()
                            .filter(|m| m.0 == to && m.2)
                            .map(|m| m.1)
                            .collect();
                        if let Some(&upto) = sent.get(next(sent.len() as u64 + 1) as usize) {
                            o.ack("a", to, upto);
                            for m in model.iter_mut().filter(|m| m.0 == to && m.1 <= upto) {
                                m.3 = true;
                            }
                            // Released in order, from the oldest.
                            let keep = model.iter().position(|m| !m.3).unwrap_or(model.len());
                            model.drain(..keep);
                        }
                    }
                    4 if !model.is_empty() => {
                        let i = next(model.len() as u64) as usize;
                        let (to, s, _, acked) = model[i].clone();
                        let u = o.fail_one("a", &to, s);
                        if acked {
                            assert!(u.is_none(), "an acknowledged message does not fail");
                        } else {
                            model.remove(i);
                            let u = u.expect("outstanding");
                            assert_eq!((u.to, u.seq), (to.clone(), s));
                            assert!(o.fail_one("a", &to, s).is_none(), "failed once");
                            let keep = model.iter().position(|m| !m.3).unwrap_or(model.len());
                            model.drain(..keep);
                        }
                    }
                    _ => {
                        o.rewind();
                        model.iter_mut().filter(|m| !m.3).for_each(|m| m.2 = false);
                    }
                }
                assert_eq!(o.len(), model.len());
                assert!(o.tail - o.head <= capacity);
            }
            let all = o.fail_where(&|_, _, _| true);
            assert_eq!(all.len(), model.iter().filter(|m| !m.3).count());
            assert!(o.is_empty());
        }
    }

    #[test]
    fn the_acknowledgement_table_empties_with_the_buffer() {
        let mut o = Outstanding::new(4096);
        for r in 0..=ACKED_PAIRS_KEPT {
            let to = format!("r{r}");
            o.push(&body("a", &to, 1), true).unwrap();
            o.ack("a", &to, 1);
        }
        assert!(o.is_empty());
        assert!(o.acked.is_empty());
        // A few pairs are kept (emptying and refilling the table would allocate).
        o.push(&body("a", "r0", 2), true).unwrap();
        o.ack("a", "r0", 2);
        assert_eq!(o.acked_pairs, 1);
        // A late acknowledgement changes nothing for what is sent next.
        o.push(&body("a", "r0", 3), true).unwrap();
        o.ack("a", "r0", 1);
        assert_eq!(o.len(), 1);
        o.ack("a", "r0", 3);
        assert!(o.is_empty());
    }

    #[test]
    fn an_acknowledged_message_is_not_failed() {
        let mut o = Outstanding::new(4096);
        o.push(&body("a", "b", 1), true).unwrap();
        o.push(&body("a", "c", 1), true).unwrap();
        o.ack("a", "b", 1);
        assert!(o.fail_one("a", "b", 1).is_none());
        assert_eq!(o.fail_where(&|_, _, _| true).len(), 1);
    }

    #[test]
    fn a_port_is_acknowledged_only_for_what_it_handed_over() {
        let mut r = Received::default();
        assert!(r.accept("port", "s", 10, false));
        assert!(r.accept("port", "s", 11, false));
        let mut acks = Vec::new();
        r.emit(&mut |_, _, s| {
            acks.push(s);
            true
        });
        assert!(acks.is_empty(), "nothing read yet, nothing acknowledged");
        r.handed("port", "s", 10);
        r.emit(&mut |_, _, s| {
            acks.push(s);
            true
        });
        assert_eq!(acks, vec![10]);
        // A duplicate of an unread message is dropped, and not acknowledged either.
        assert!(!r.accept("port", "s", 11, false));
        r.emit(&mut |_, _, s| {
            acks.push(s);
            true
        });
        assert_eq!(acks, vec![10]);
    }

    #[test]
    fn a_new_owner_of_a_sender_id_starts_afresh() {
        let mut r = Received::default();
        r.sender_registered("s", 100, 0);
        assert!(r.accept("k", "s", u64::MAX, true));
        // The same process again (its link broke and came back): duplicates still dropped.
        r.sender_departed("s", 5);
        r.sender_registered("s", 100, 5);
        assert!(!r.accept("k", "s", 7, true));
        // Another process under the id: its numbers are its own.
        r.sender_departed("s", 6);
        r.sender_registered("s", 200, 6);
        assert!(r.accept("k", "s", 7, true));
        assert!(r.accept("k", "s", 8, true));
        // The first process takes the id back: its state comes back with it.
        r.sender_registered("s", 100, 7);
        assert!(!r.accept("k", "s", 9, true), "still below u64::MAX");
        r.sender_registered("s", 200, 8);
        assert!(
            !r.accept("k", "s", 8, true),
            "a duplicate of the second owner's"
        );
        assert!(r.accept("k", "s", 9, true));
    }

    #[test]
    fn departed_senders_are_forgotten_after_a_while() {
        let mut r = Received::default();
        for i in 0..100 {
            let s = format!("send-{i}");
            r.sender_registered(&s, i, 0);
            assert!(r.accept("k", &s, 1, true));
            r.sender_departed(&s, 1000);
        }
        r.sender_registered("stays", 1, 0);
        assert!(r.accept("k", "stays", 1, true));
        r.emit(&mut |_, _, _| true);
        assert_eq!(r.forget_departed(30_000, 60_000), 0, "not yet");
        assert_eq!(r.forget_departed(61_000, 60_000), 100);
        assert_eq!(r.senders(), 1);
        // A port's unread message keeps its sender's state until it is read.
        r.sender_registered("p", 9, 0);
        assert!(r.accept("port", "p", 1, false));
        r.sender_departed("p", 61_000);
        assert_eq!(r.forget_departed(200_000, 60_000), 0);
        r.handed("port", "p", 1);
        r.emit(&mut |_, _, _| true);
        assert_eq!(r.forget_departed(200_000, 60_000), 1);
    }

    #[test]
    fn duplicates_are_dropped_and_reacknowledged() {
        let mut r = Received::default();
        assert!(r.accept("b", "a", 5, true));
        assert!(!r.accept("b", "a", 5, true));
        assert!(r.accept("b", "a", 6, true));
        let mut acks = Vec::new();
        r.emit(&mut |rx, tx, s| {
            acks.push((rx.to_string(), tx.to_string(), s));
            true
        });
        assert_eq!(acks, vec![("b".into(), "a".into(), 6)]);
        assert!(!r.accept("b", "a", 6, true));
        let mut again = Vec::new();
        r.emit(&mut |_, _, s| {
            again.push(s);
            true
        });
        assert_eq!(again, vec![6]);
    }
}
