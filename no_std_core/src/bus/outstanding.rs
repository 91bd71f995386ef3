//! The sender's side of end-to-end delivery: every message sent to another process stays in
//! a bounded buffer until its receiver acknowledges it, so that a hub restart loses nothing
//! (the client sends again what is unacknowledged, [`Outstanding::rewind`]) and a receiver
//! that dies has every message it never confirmed reported back as failed
//! ([`Outstanding::fail_where`], [`Outstanding::fail_one`]).
//!
//! The buffer is the caller's (`B`: a `[u8; N]` on a device, a boxed slice on a host),
//! allocated once. Entries are `[state: u8][len: u32 LE][seq: u64 LE][from: u16 offset, u16
//! len][to: u16 offset, u16 len][Deliver frame body]`, appended at the tail and released
//! from the head of a ring: positions grow for ever, and a position's place in the buffer is
//! the position modulo the capacity. An entry is never split: one that does not fit before
//! the end of the buffer goes to its start, after a padding marker (`PAD`) that fills the
//! rest. Nothing is ever moved. The header lets acknowledgements be matched without
//! decoding.
//!
//! A message is encoded once, straight into its entry ([`Outstanding::push_deliver`]), and
//! written to the link from there ([`Outstanding::transmit`]).

use crate::wire::{Correlation, Deliver, Frame, DELIVER_CORRELATED_TAG};

const UNSENT: u8 = 0;
const SENT: u8 = 1;
/// Failed: released when it reaches the head.
const DONE: u8 = 2;
/// The rest of the buffer, up to its end, is padding: the next entry is at its start.
const PAD: u8 = 3;
/// Acknowledged: released (and no longer counted) when it reaches the head.
const ACKED: u8 = 4;
/// Unsent, but written to a link before (rewound after the link was lost): its receiver may
/// have it.
const RESEND: u8 = 5;

/// Written to direct peer ring `k` (see [`crate::bus::direct`]): `DIRECT_BASE + k`. Such an
/// entry is sent again (through the hub) when that pair closes, as a `SENT` one is after a
/// reconnect.
const DIRECT_BASE: u8 = 8;
/// How many direct rings the states can tell apart.
pub const DIRECT_SLOTS: usize = 8;

/// Whether an entry in `state` was written to a link (the hub's or a direct ring) and waits
/// for its acknowledgement.
#[inline]
fn written(state: u8) -> bool {
    state == SENT || (DIRECT_BASE..DIRECT_BASE + DIRECT_SLOTS as u8).contains(&state)
}

/// Whether an entry in `state` is outstanding (not acknowledged, failed or padding).
#[inline]
fn held(state: u8) -> bool {
    matches!(state, UNSENT | RESEND) || written(state)
}
/// The entry header's size.
pub const ENTRY_HEADER: usize = 21;
/// How many targets [`Outstanding::transmit`] can hold back in one pass (more: it stops, and
/// the rest goes out on a later pass, in order).
const HELD_TARGETS: usize = 16;

/// No room for the message: the buffer holds as much unacknowledged data as it can (wait for
/// acknowledgements), or the message is larger than the whole buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoRoom;

/// The tail of an [`Outstanding`] buffer at one moment (see [`Outstanding::rollback`]).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    tail: usize,
    first_unsent: usize,
    entries: usize,
    taken: u64,
}

/// A message that will not be delivered, for reporting to its sender. Its strings borrow
/// from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undelivered<'a> {
    /// The sending machine.
    pub from: &'a str,
    /// The target machine.
    pub to: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The sequence number.
    pub seq: u64,
    /// The request it opened or answered, if any (a failed request settles it).
    pub correlation: Correlation,
}

/// Messages sent to other processes and not yet acknowledged, in the caller's buffer `B`.
pub struct Outstanding<B> {
    buf: B,
    head: usize,
    tail: usize,
    first_unsent: usize,
    entries: usize,
    /// Where [`Outstanding::fail_one`] starts looking.
    fail_hint: usize,
    /// Entries `fail_one` and `ack` looked at (what the linear-work tests count).
    examined: usize,
    /// Messages ever taken, and ever released from the head (acknowledged or failed): the
    /// oldest message held is number `released` (see [`crate::bus::credit`]).
    taken: u64,
    released: u64,
}

/// (offset, length) of a string inside a frame body.
type Span = (usize, usize);

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
    if tag != DELIVER_TAG && tag != u64::from(DELIVER_CORRELATED_TAG) {
        return None;
    }
    let from = field(body, v)?;
    let to = field(body, from.0 + from.1)?;
    let event = field(body, to.0 + to.1)?;
    let payload = field(body, event.0 + event.1)?;
    let (seq, used) = varint(body, payload.0 + payload.1)?;
    let mut end = payload.0 + payload.1 + used;
    if tag != DELIVER_TAG {
        // The correlation: its kind and its request id.
        let (_, used) = varint(body, end)?;
        let (_, used_id) = varint(body, end + used)?;
        end += used + used_id;
    }
    // The strings are not checked for UTF-8 here: they were encoded from `&str`, and every
    // reader of the header checks them (an invalid one matches nothing).
    (end == body.len() && to.0 + to.1 <= u16::MAX as usize).then_some((from, to, seq))
}

/// The spans of `from` and `to` in a Deliver body this side encoded itself (see
/// [`deliver_spans`] for one from elsewhere, which checks the whole body).
fn leading_spans(body: &[u8]) -> Option<(Span, Span)> {
    let (_, v) = varint(body, 0)?;
    let from = field(body, v)?;
    let to = field(body, from.0 + from.1)?;
    (to.0 + to.1 <= u16::MAX as usize).then_some((from, to))
}

fn text(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("")
}

/// A machine id as stored in an entry of the buffer, handed to the callers of
/// [`Outstanding::transmit_routed`]: checked as UTF-8 only if it is read as text (a check
/// is about 90 instructions, and a client past its reconnect grace reads neither name).
#[derive(Clone, Copy, Debug)]
pub struct StoredId<'a>(&'a [u8]);

impl<'a> StoredId<'a> {
    /// The id as text (empty if the stored bytes are not UTF-8, which `push_deliver`,
    /// encoding from `&str`, never stores).
    pub fn text(self) -> &'a str {
        text(self.0)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Outstanding<B> {
    /// An empty buffer over `buf` (its whole length is used).
    pub fn new(buf: B) -> Self {
        Outstanding {
            buf,
            head: 0,
            tail: 0,
            first_unsent: 0,
            entries: 0,
            fail_hint: 0,
            examined: 0,
            taken: 0,
            released: 0,
        }
    }

    fn cap(&self) -> usize {
        self.buf.as_ref().len()
    }

    /// Where position `at` is in the buffer.
    fn place(&self, at: usize) -> usize {
        at % self.cap().max(1)
    }

    /// The entry at position `at`: its state, its body and how far the next one is (for
    /// padding: its state, nothing, the distance to the buffer's end).
    fn entry(&self, at: usize) -> (u8, &[u8], usize) {
        let at = self.place(at);
        let buf = self.buf.as_ref();
        if buf[at] == PAD {
            return (PAD, &[], buf.len() - at);
        }
        let len = u32::from_le_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
        (
            buf[at],
            &buf[at + ENTRY_HEADER..at + ENTRY_HEADER + len],
            ENTRY_HEADER + len,
        )
    }

    fn set_state(&mut self, at: usize, state: u8) {
        let at = self.place(at);
        self.buf.as_mut()[at] = state;
    }

    /// (from, to, seq) of the entry at position `at` (not padding), from its header.
    fn key(&self, at: usize) -> (&[u8], &[u8], u64) {
        self.key_at(self.place(at))
    }

    /// As [`Self::key`], for the entry at place `at` in the buffer.
    fn key_at(&self, at: usize) -> (&[u8], &[u8], u64) {
        let buf = self.buf.as_ref();
        let h = &buf[at..at + ENTRY_HEADER];
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let seq = u64::from_le_bytes([h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]]);
        let body = at + ENTRY_HEADER;
        let from = &buf[body + u16_at(13)..body + u16_at(13) + u16_at(15)];
        let to = &buf[body + u16_at(17)..body + u16_at(17) + u16_at(19)];
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
    /// How many messages were ever taken (the number the next one gets, counting from 0).
    pub fn taken(&self) -> u64 {
        self.taken
    }
    /// How many messages were ever released (acknowledged or failed, and passed by the
    /// head): the number of the oldest message held, if any is.
    pub fn released(&self) -> u64 {
        self.released
    }
    /// Bytes held, headers and padding included (at most the buffer's size).
    pub fn bytes_held(&self) -> usize {
        self.tail - self.head
    }
    /// The buffer's size.
    pub fn capacity(&self) -> usize {
        self.cap()
    }

    /// Whether a body of `len` bytes fits: before the buffer's end, or at its start after
    /// padding out the end. (The buffer is a ring and nothing is ever moved: moving what it
    /// held to gain room cost the sender more than the rest of sending.)
    pub fn has_room(&self, len: usize) -> bool {
        let need = ENTRY_HEADER + len;
        let cap = self.cap();
        let free = cap - (self.tail - self.head);
        let to_end = cap - self.place(self.tail);
        if to_end >= need {
            free >= need
        } else {
            free >= to_end + need
        }
    }

    /// Makes room for an entry of `len` body bytes at the tail (padding out the end when it
    /// does not fit there); returns its place.
    fn reserve(&mut self, len: usize) -> Result<usize, NoRoom> {
        if !self.has_room(len) {
            return Err(NoRoom);
        }
        let need = ENTRY_HEADER + len;
        let all_sent = self.first_unsent == self.tail;
        let to_end = self.cap() - self.place(self.tail);
        if to_end < need {
            let pad = self.place(self.tail);
            self.buf.as_mut()[pad] = PAD;
            self.tail += to_end;
        }
        if all_sent {
            self.first_unsent = self.tail;
        }
        Ok(self.place(self.tail))
    }

    /// Writes the header of the entry at place `at`, whose body has `from` and `to` at the
    /// spans given and the sequence number `seq`, and moves the tail past it.
    fn commit(
        &mut self,
        at: usize,
        body_len: usize,
        sent: bool,
        (from, to, seq): (Span, Span, u64),
    ) {
        let all_sent = self.first_unsent == self.tail;
        let h = &mut self.buf.as_mut()[at..at + ENTRY_HEADER];
        h[0] = if sent { SENT } else { UNSENT };
        h[1..5].copy_from_slice(&(body_len as u32).to_le_bytes());
        h[5..13].copy_from_slice(&seq.to_le_bytes());
        for (i, (off, len)) in [from, to].into_iter().enumerate() {
            h[13 + 4 * i..15 + 4 * i].copy_from_slice(&(off as u16).to_le_bytes());
            h[15 + 4 * i..17 + 4 * i].copy_from_slice(&(len as u16).to_le_bytes());
        }
        self.tail += ENTRY_HEADER + body_len;
        if sent && all_sent {
            self.first_unsent = self.tail;
        }
        self.entries += 1;
        self.taken += 1;
    }

    /// Appends an encoded Deliver body (without its length prefix). `sent`: it has already
    /// been written to the link (a hub's own machines' messages). `Err(NoRoom)` when the
    /// buffer is full or the body is not a Deliver.
    pub fn push(&mut self, body: &[u8], sent: bool) -> Result<(), NoRoom> {
        let spans = deliver_spans(body).ok_or(NoRoom)?;
        let at = self.reserve(body.len())?;
        self.buf.as_mut()[at + ENTRY_HEADER..at + ENTRY_HEADER + body.len()].copy_from_slice(body);
        self.commit(at, body.len(), sent, spans);
        Ok(())
    }

    /// Encodes `d` straight into a new entry (the message's one copy on the sender's side
    /// until it is written to the link); returns the encoded body. `Err(NoRoom)` when the
    /// buffer is full.
    pub fn push_deliver(&mut self, d: &Deliver<'_>, sent: bool) -> Result<&[u8], NoRoom> {
        self.push_deliver_sized(d, d.body_len(), sent)
    }

    /// As [`Outstanding::push_deliver`], for a sender that has just computed `len`,
    /// `d.body_len()` (a sixth of the push, counted): a wrong `len` is refused as
    /// `NoRoom`, since the encoding must fill it exactly.
    pub(crate) fn push_deliver_sized(
        &mut self,
        d: &Deliver<'_>,
        len: usize,
        sent: bool,
    ) -> Result<&[u8], NoRoom> {
        if d.to.len() > u16::MAX as usize / 2 || d.from.len() > u16::MAX as usize / 2 {
            return Err(NoRoom);
        }
        let at = self.reserve(len)?;
        let slot = &mut self.buf.as_mut()[at + ENTRY_HEADER..at + ENTRY_HEADER + len];
        if d.write_body(slot) != Some(len) {
            return Err(NoRoom);
        }
        // Just encoded from `d`: only the spans of `from` and `to` are read back (two
        // length prefixes), not the whole body (a fifth of a send's work, counted).
        let body = &self.buf.as_ref()[at + ENTRY_HEADER..at + ENTRY_HEADER + len];
        let spans = leading_spans(body).map(|(from, to)| (from, to, d.seq));
        debug_assert_eq!(spans, deliver_spans(body));
        self.commit(at, len, sent, spans.ok_or(NoRoom)?);
        Ok(&self.buf.as_ref()[at + ENTRY_HEADER..at + ENTRY_HEADER + len])
    }

    /// Where the tail is now, to take back what is pushed after it ([`Self::rollback`]).
    pub fn mark(&self) -> Mark {
        Mark {
            tail: self.tail,
            first_unsent: self.first_unsent,
            entries: self.entries,
            taken: self.taken,
        }
    }

    /// Takes back every entry pushed since `mark` (a message a hub could not take after
    /// all). Nothing else may have happened to the buffer since.
    pub fn rollback(&mut self, mark: Mark) {
        if mark.tail <= self.tail && mark.tail >= self.head {
            self.tail = mark.tail;
            self.first_unsent = mark.first_unsent.min(self.tail);
            self.entries = mark.entries;
            self.taken = mark.taken;
            if self.head == self.tail {
                self.head = 0;
                self.tail = 0;
                self.first_unsent = 0;
                self.fail_hint = 0;
            }
        }
    }

    /// Hands unsent messages to `send` in order, skipping those for which `sendable(from,
    /// to)` is false (and holding back every later message to a target so skipped, to keep
    /// the order). Stops when `send` returns false (no room).
    pub fn transmit(
        &mut self,
        sendable: &mut dyn FnMut(&str, &str) -> bool,
        send: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        self.transmit_routed(
            &mut |from, to| sendable(from.text(), to.text()),
            &mut |_| None,
            &mut |_, body| send(body),
        );
    }

    /// As [`Outstanding::transmit`], with each message's way chosen by `route(to)`: `None`
    /// the hub's link, `Some(k)` direct ring `k` (below [`DIRECT_SLOTS`]). `send` gets the
    /// way and the body; what it takes is remembered as written to that way, so that
    /// [`Outstanding::rewind_direct`] finds it when the ring closes.
    /// The ids are handed as [`StoredId`]s, read as text only where needed.
    pub fn transmit_routed(
        &mut self,
        sendable: &mut dyn FnMut(StoredId<'_>, StoredId<'_>) -> bool,
        route: &mut dyn FnMut(StoredId<'_>) -> Option<usize>,
        send: &mut dyn FnMut(Option<usize>, &[u8]) -> bool,
    ) {
        let mut at = self.first_unsent;
        // Held targets, by their places in the buffer (no allocation).
        let mut held: heapless::Vec<(usize, usize), HELD_TARGETS> = heapless::Vec::new();
        let mut new_first: Option<usize> = None;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if state == UNSENT || state == RESEND {
                let (from, to, _) = self.key(at);
                let buf = self.buf.as_ref();
                let to_at = to.as_ptr() as usize - buf.as_ptr() as usize;
                let is_held = held.iter().any(|&(o, l)| &buf[o..o + l] == to);
                if is_held || !sendable(StoredId(from), StoredId(to)) {
                    new_first.get_or_insert(at);
                    if !is_held && held.push((to_at, to.len())).is_err() {
                        // Too many held targets to track: the rest waits for a later pass.
                        break;
                    }
                } else {
                    let p = self.place(at);
                    let way = route(StoredId(to)).filter(|&k| k < DIRECT_SLOTS);
                    if send(way, &self.buf.as_ref()[p + ENTRY_HEADER..p + size]) {
                        let state = way.map_or(SENT, |k| DIRECT_BASE + k as u8);
                        self.set_state(at, state);
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
            if written(state) {
                self.set_state(at, RESEND);
            }
            at += size;
        }
        self.first_unsent = self.head;
    }

    /// `machine` has a new owner (its durable owner came back, and the hub dropped what was
    /// sent to it meanwhile): what was sent to it and not acknowledged is to be sent again,
    /// in order. Returns whether there was any.
    pub fn rewind_to(&mut self, machine: &str) -> bool {
        let mut at = self.head;
        let mut first = None;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if written(state) && self.key(at).1 == machine.as_bytes() {
                self.set_state(at, RESEND);
                first.get_or_insert(at);
            }
            at += size;
        }
        if let Some(first) = first {
            self.first_unsent = self.first_unsent.min(first);
        }
        first.is_some()
    }

    /// Direct ring `k` closed: what was written to it and not acknowledged is to be sent
    /// again (through the hub), in order with what follows. Returns how many.
    pub fn rewind_direct(&mut self, k: usize) -> usize {
        let mut at = self.head;
        let mut n = 0;
        let mut first = None;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if k < DIRECT_SLOTS && state == DIRECT_BASE + k as u8 {
                self.set_state(at, RESEND);
                first.get_or_insert(at);
                n += 1;
            }
            at += size;
        }
        if let Some(first) = first {
            self.first_unsent = self.first_unsent.min(first);
        }
        n
    }

    /// Hands `each` the encoded Deliver body of every message from `from` still held (sent
    /// or not, not acknowledged, not failed), in order: what a durable machine's journal
    /// keeps, so that its restarted process sends them again.
    pub fn held_from(&self, from: &str, each: &mut dyn FnMut(&[u8])) {
        let mut at = self.head;
        while at < self.tail {
            let (state, body, size) = self.entry(at);
            if held(state) && self.key(at).0 == from.as_bytes() {
                each(body);
            }
            at += size;
        }
    }

    /// A cumulative acknowledgement: `receiver` got every message from `sender` up to `seq`.
    ///
    /// A pair's messages are in the buffer in sequence order, so the search ends at the
    /// first of the pair's messages past `seq`: acknowledging as messages arrive costs
    /// linear time in all. While everything passed is released, the pair's messages are
    /// released as they are found (the usual case: a run of one pair's messages from the
    /// head), without being marked first and passed again; the first message of another
    /// pair still held stops the releasing, and the pair's later ones are marked, released
    /// when the head reaches them. Places are followed as the walk goes, with no division.
    pub fn ack(&mut self, sender: &str, receiver: &str, seq: u64) {
        let (sender, receiver) = (sender.as_bytes(), receiver.as_bytes());
        let cap = self.cap();
        let mut at = self.head;
        let mut p = self.place(at);
        let mut releasing = true;
        while at < self.tail {
            self.examined += 1;
            let buf = self.buf.as_ref();
            let state = buf[p];
            let size = if state == PAD {
                cap - p
            } else {
                let len: [u8; 4] = buf[p + 1..p + 5].try_into().unwrap_or_default();
                ENTRY_HEADER + u32::from_le_bytes(len) as usize
            };
            // Whether the entry is one of the pair's, held, up to `seq` (acknowledged now).
            let mut acked = false;
            if held(state) {
                let (from, to, s) = self.key_at(p);
                if from == sender && to == receiver {
                    if s > seq {
                        break;
                    }
                    acked = true;
                } else {
                    releasing = false;
                }
            }
            if releasing {
                // Acknowledged, failed or padding, and everything before it released.
                if acked || state == ACKED {
                    self.entries -= 1;
                }
                if state != PAD {
                    self.released += 1;
                }
                self.head = at + size;
            } else if acked {
                self.buf.as_mut()[p] = ACKED;
            }
            at += size;
            p += size;
            if p == cap {
                p = 0;
            }
        }
        // The head is now at the tail or at a message still held, where `release` stops.
        if self.first_unsent < self.head {
            self.first_unsent = self.head;
        }
        if self.head == self.tail {
            self.reset_empty();
        }
    }

    fn release(&mut self) {
        while self.head < self.tail {
            let (state, _, size) = self.entry(self.head);
            if state != DONE && state != PAD && state != ACKED {
                break;
            }
            if state == ACKED {
                self.entries -= 1;
            }
            if state != PAD {
                self.released += 1;
            }
            self.head += size;
            if self.first_unsent < self.head {
                self.first_unsent = self.head;
            }
        }
        if self.head == self.tail {
            self.reset_empty();
        }
    }

    /// Nothing is held: positions start again from 0.
    fn reset_empty(&mut self) {
        self.head = 0;
        self.tail = 0;
        self.first_unsent = 0;
        self.fail_hint = 0;
    }

    /// The message in the entry at `at`, marked failed.
    fn fail_at(&mut self, at: usize) -> Option<(usize, usize)> {
        self.set_state(at, DONE);
        self.entries -= 1;
        let p = self.place(at);
        let len = self.entry(at).2 - ENTRY_HEADER;
        Some((p + ENTRY_HEADER, len))
    }

    fn undelivered(&self, body: (usize, usize)) -> Option<Undelivered<'_>> {
        match Frame::decode(&self.buf.as_ref()[body.0..body.0 + body.1]) {
            Ok(Frame::Deliver(d)) => Some(Undelivered {
                from: d.from,
                to: d.to,
                event: d.event,
                seq: d.seq,
                correlation: d.correlation,
            }),
            _ => None,
        }
    }

    /// Marks as failed every outstanding message `matches` selects (by from, to, seq) and
    /// hands each to `report`. One pass over the buffer, matching on the entries' headers:
    /// only the selected entries are decoded. Returns how many failed.
    pub fn fail_where(
        &mut self,
        matches: &mut dyn FnMut(&str, &str, u64) -> bool,
        report: &mut dyn FnMut(Undelivered<'_>),
    ) -> usize {
        let mut n = 0;
        let mut at = self.head;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if held(state) {
                let (from, to, seq) = self.key(at);
                if matches(text(from), text(to), seq) {
                    if let Some(body) = self.fail_at(at) {
                        if let Some(u) = self.undelivered(body) {
                            report(u);
                        }
                        n += 1;
                    }
                }
            }
            at += size;
        }
        // (Released only now: the bodies reported above stay where they are until then.)
        self.release();
        n
    }

    /// Marks as failed every message written to a link before and not acknowledged since (it
    /// waits to be sent again after a reconnect), handing each to `report`. Returns how many
    /// failed.
    pub fn fail_written(&mut self, report: &mut dyn FnMut(Undelivered<'_>)) -> usize {
        let mut n = 0;
        let mut at = self.head;
        while at < self.tail {
            let (state, _, size) = self.entry(at);
            if written(state) || state == RESEND {
                if let Some(body) = self.fail_at(at) {
                    if let Some(u) = self.undelivered(body) {
                        report(u);
                    }
                    n += 1;
                }
            }
            at += size;
        }
        self.release();
        n
    }

    /// Marks as failed the one outstanding message (from, to, seq), if it is still
    /// outstanding, and returns it for reporting.
    ///
    /// Failure reports come one per message and, per (from, to) pair, in the order the
    /// messages were sent: the search starts where the previous one ended, so failing every
    /// message of a long buffer one by one costs linear time, not quadratic.
    pub fn fail_one(&mut self, from: &str, to: &str, seq: u64) -> Option<Undelivered<'_>> {
        let start = self.fail_hint.clamp(self.head, self.tail);
        // From the hint to the tail, then from the head to the hint.
        for (lo, hi) in [(start, self.tail), (self.head, start)] {
            let mut at = lo;
            while at < hi {
                self.examined += 1;
                let (state, _, size) = self.entry(at);
                if held(state) && self.key(at) == (from.as_bytes(), to.as_bytes(), seq) {
                    let body = self.fail_at(at);
                    self.fail_hint = at + size;
                    // The entry's bytes stay in place until the next push, even if the
                    // release below moves the head past them.
                    self.release();
                    return body.and_then(|b| self.undelivered(b));
                }
                at += size;
            }
        }
        None
    }

    /// Entries examined by searches so far (for tests that bound the work).
    pub fn examined(&self) -> usize {
        self.examined
    }
}

#[cfg(test)]
#[path = "outstanding_tests.rs"]
mod tests;
