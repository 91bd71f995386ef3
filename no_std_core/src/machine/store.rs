//! The outbox and the timers of a [`Machine`](super::Machine): the messages its actions sent,
//! the timers they started, and the bytes (names and payloads) behind both, in fixed arenas.
//! Kept apart from the step algorithm because it is the machine's only contact with the
//! world, drained by the host; actions reach it through [`Effects`].

use heapless::Vec;

use crate::chart::{Chart, EventId, StrId};
use crate::context::{Effects, SendId, Target};
use crate::error::Error;
use crate::request::{Pending, RequestId};
use crate::time::{Duration, Instant};
use crate::wire::Correlation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bytes {
    Empty,
    Chart(StrId),
    Arena {
        off: u16,
        len: u16,
    },
    /// A target id in the arena (`off..off + len`), preceded by the message's correlation
    /// ([`CORRELATION_BYTES`] bytes: its kind, then its request id, little-endian). Only an
    /// outbox message's target is ever one: a request or a reply costs its 5 bytes of arena,
    /// and no slot of the outbox or the timers grows for it.
    Correlated {
        off: u16,
        len: u16,
    },
}

/// The arena bytes of a correlation (see [`Bytes::Correlated`]).
pub(super) const CORRELATION_BYTES: usize = 5;

fn correlation_bytes(c: Correlation) -> Option<[u8; CORRELATION_BYTES]> {
    let (kind, id) = match c {
        Correlation::None => return None,
        Correlation::Request(id) => (1, id),
        Correlation::Reply(id) => (2, id),
    };
    let id = id.to_le_bytes();
    Some([kind, id[0], id[1], id[2], id[3]])
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Message {
    /// `None`: this machine.
    pub(super) target: Option<Bytes>,
    pub(super) event: Bytes,
    pub(super) payload: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerKey {
    After(EventId),
    Named(StrId),
    Id(u32),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum TimerKind {
    /// Comes back to this machine as an external event (`after`, delayed `raise`).
    Event(EventId),
    /// Goes to the outbox.
    Send(Message),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Timer {
    pub(super) due: Instant,
    pub(super) seq: u32,
    pub(super) key: TimerKey,
    pub(super) kind: TimerKind,
    /// Whether `cancel` still reaches this timer by its key: a send id names only the latest
    /// timer armed with it, and none once a timer with that id has fired (XState's scheduler
    /// keeps one timer per id and forgets the id when any of them fires).
    pub(super) mapped: bool,
    /// The outbox messages sent and the child changes made before it was armed, since the
    /// outbox was last cleared (see [`super::Machine::timer_armed_after`]).
    pub(super) after_messages: u16,
    pub(super) after_changes: u8,
}

/// Outbox and timers: the machine's only contact with the world, drained by the host.
pub(super) struct Io<const O: usize, const T: usize, const B: usize, const R: usize> {
    pub(super) outbox: Vec<Message, O>,
    pub(super) out_bytes: [u8; B],
    pub(super) out_used: usize,
    pub(super) timers: Vec<Timer, T>,
    pub(super) timer_bytes: [u8; B],
    pub(super) timer_used: usize,
    pub(super) next_id: u32,
    pub(super) seq: u32,
    /// The child changes made since the outbox was last cleared.
    pub(super) child_changes_made: u8,
    /// Counts timers armed and timers cancelled (not those that fired).
    pub(super) changes: u32,
    /// Requests waiting for their replies.
    pub(super) requests: Pending<R>,
}

pub(super) fn push_bytes<const B: usize>(
    buf: &mut [u8; B],
    used: &mut usize,
    data: &[u8],
) -> Result<Bytes, Error> {
    if data.is_empty() {
        return Ok(Bytes::Empty);
    }
    let end = *used + data.len();
    if end > B || end > u16::MAX as usize {
        return Err(Error::PayloadSpaceFull { capacity: B });
    }
    buf[*used..end].copy_from_slice(data);
    let b = Bytes::Arena {
        off: *used as u16,
        len: data.len() as u16,
    };
    *used = end;
    Ok(b)
}

impl<const O: usize, const T: usize, const B: usize, const R: usize> Io<O, T, B, R> {
    /// The bytes a [`Bytes`] stands for: in the chart's strings or in `arena`.
    pub(super) fn bytes_in<'s>(chart: Chart<'s>, b: Bytes, arena: &'s [u8]) -> &'s [u8] {
        match b {
            Bytes::Empty => &[],
            Bytes::Chart(s) => chart.str(s).as_bytes(),
            Bytes::Arena { off, len } | Bytes::Correlated { off, len } => arena
                .get(off as usize..off as usize + len as usize)
                .unwrap_or(&[]),
        }
    }

    /// The correlation of an outbox message (see [`Bytes::Correlated`]).
    pub(super) fn correlation(&self, m: &Message) -> Correlation {
        let Some(Bytes::Correlated { off, .. }) = m.target else {
            return Correlation::None;
        };
        let off = off as usize;
        let Some(b) = off
            .checked_sub(CORRELATION_BYTES)
            .and_then(|start| self.out_bytes.get(start..off))
        else {
            return Correlation::None;
        };
        let id = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        match b[0] {
            1 => Correlation::Request(id),
            2 => Correlation::Reply(id),
            _ => Correlation::None,
        }
    }

    pub(super) fn push_timer(
        &mut self,
        due: Instant,
        key: TimerKey,
        kind: TimerKind,
    ) -> Result<(), Error> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.changes = self.changes.wrapping_add(1);
        self.timers
            .push(Timer {
                due,
                seq,
                key,
                kind,
                mapped: true,
                after_messages: self.outbox.len() as u16,
                after_changes: self.child_changes_made,
            })
            .map_err(|_| Error::TimersFull { capacity: T })
    }

    /// Makes the timers whose key `matches` unreachable by `cancel`.
    pub(super) fn unmap_where(&mut self, matches: impl Fn(TimerKey) -> bool) {
        for t in self.timers.iter_mut() {
            if matches(t.key) {
                t.mapped = false;
            }
        }
    }

    /// Removes timer `i`, compacting the byte storage behind it.
    pub(super) fn remove_timer(&mut self, i: usize) -> Timer {
        let t = self.timers.swap_remove(i);
        if let TimerKind::Send(m) = t.kind {
            // Highest offset first: freeing a span shifts every span above it, and `m` is a
            // copy that is not shifted.
            for b in [m.payload, m.event, m.target.unwrap_or(Bytes::Empty)] {
                self.free_timer_bytes(b);
            }
        }
        t
    }

    fn free_timer_bytes(&mut self, b: Bytes) {
        let Bytes::Arena { off, len } = b else { return };
        let (off, len) = (off as usize, len as usize);
        self.timer_bytes
            .copy_within(off + len..self.timer_used, off);
        self.timer_used -= len;
        let shift = |b: &mut Bytes| {
            if let Bytes::Arena { off: o, .. } = b {
                if *o as usize > off {
                    *o -= len as u16;
                }
            }
        };
        for t in self.timers.iter_mut() {
            if let TimerKind::Send(m) = &mut t.kind {
                if let Some(target) = &mut m.target {
                    shift(target);
                }
                shift(&mut m.event);
                shift(&mut m.payload);
            }
        }
    }

    /// Removes every timer whose key `matches` and that `cancel` still reaches. Returns
    /// whether there was one.
    ///
    /// `#[inline]`: its callers in `actions.rs` (`run_builtin`) inlined it while they shared
    /// one module; since the split it would be emitted in another codegen unit and called.
    #[inline]
    pub(super) fn cancel_where(&mut self, matches: impl Fn(TimerKey) -> bool) -> bool {
        let mut found = false;
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].mapped && matches(self.timers[i].key) {
                self.changes = self.changes.wrapping_add(1);
                self.remove_timer(i);
                found = true;
            } else {
                i += 1;
            }
        }
        found
    }

    /// Moves a fired send into the outbox.
    pub(super) fn outbox_from_timer(&mut self, m: Message) -> Result<(), Error> {
        if self.outbox.is_full() {
            return Err(Error::OutboxFull { capacity: O });
        }
        let copy = |b: Bytes, io: &mut Self| -> Result<Bytes, Error> {
            match b {
                Bytes::Arena { off, len } => {
                    let mut tmp_used = io.out_used;
                    let r = {
                        let src = &io.timer_bytes[off as usize..off as usize + len as usize];
                        let end = tmp_used + src.len();
                        if end > B {
                            return Err(Error::PayloadSpaceFull { capacity: B });
                        }
                        io.out_bytes[tmp_used..end].copy_from_slice(src);
                        let r = Bytes::Arena {
                            off: tmp_used as u16,
                            len,
                        };
                        tmp_used = end;
                        r
                    };
                    io.out_used = tmp_used;
                    Ok(r)
                }
                other => Ok(other),
            }
        };
        // All or nothing: a send that does not fit leaves the byte space as it was.
        let mark = self.out_used;
        let copied = (|| {
            let target = match m.target {
                Some(t) => Some(copy(t, self)?),
                None => None,
            };
            Ok((target, copy(m.event, self)?, copy(m.payload, self)?))
        })();
        let (target, event, payload) = copied.inspect_err(|_| self.out_used = mark)?;
        let _ = self.outbox.push(Message {
            target,
            event,
            payload,
        });
        Ok(())
    }

    pub(super) fn send_chart(
        &mut self,
        now: Instant,
        target: StrId,
        event: StrId,
        payload: Option<StrId>,
        delay: Option<Duration>,
        id: Option<StrId>,
    ) -> Result<(), Error> {
        let m = Message {
            target: Some(Bytes::Chart(target)),
            event: Bytes::Chart(event),
            payload: payload.map_or(Bytes::Empty, Bytes::Chart),
        };
        match delay {
            None => self
                .outbox
                .push(m)
                .map_err(|_| Error::OutboxFull { capacity: O }),
            Some(d) => {
                let key = match id {
                    Some(s) => TimerKey::Named(s),
                    None => {
                        self.next_id = self.next_id.wrapping_add(1);
                        TimerKey::Id(self.next_id)
                    }
                };
                self.push_timer(now + d, key, TimerKind::Send(m))
            }
        }
    }
}

impl<const O: usize, const T: usize, const B: usize, const R: usize> Effects for Io<O, T, B, R> {
    fn send(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        payload: &[u8],
        delay: Option<Duration>,
        correlation: Correlation,
    ) -> Result<SendId, Error> {
        self.send_encoded(
            now,
            target,
            event,
            delay,
            correlation,
            &mut |buf: &mut [u8]| {
                buf.get_mut(..payload.len()).map(|b| {
                    b.copy_from_slice(payload);
                    payload.len()
                })
            },
        )
    }

    fn send_encoded(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        delay: Option<Duration>,
        correlation: Correlation,
        encode: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<SendId, Error> {
        if crate::wire::is_reserved_event(event) {
            return Err(Error::ReservedEvent);
        }
        let (bytes, used) = match delay {
            None if self.outbox.is_full() => return Err(Error::OutboxFull { capacity: O }),
            Some(_) if self.timers.is_full() => return Err(Error::TimersFull { capacity: T }),
            None => (&mut self.out_bytes, &mut self.out_used),
            Some(_) => (&mut self.timer_bytes, &mut self.timer_used),
        };
        let mark = *used;
        // A delayed send is never a request or a reply (no API makes one): it stays plain.
        let correlation = correlation_bytes(correlation).filter(|_| delay.is_none());
        let result = (|| {
            let target = match (target, correlation) {
                (Target::ThisMachine, _) => None,
                (Target::Machine(t), None) => Some(push_bytes(bytes, used, t.as_bytes())?),
                // A publication or a broadcast is never a request or a reply.
                (Target::Topic(t), _) => {
                    // The mark, then the topic, in one stretch of the arena.
                    let off = *used as u16;
                    push_bytes(bytes, used, &[crate::context::PUBLISH_MARK])?;
                    push_bytes(bytes, used, t.as_bytes())?;
                    Some(Bytes::Arena {
                        off,
                        len: (1 + t.len()) as u16,
                    })
                }
                (Target::Broadcast, _) => {
                    Some(push_bytes(bytes, used, &[crate::context::BROADCAST_MARK])?)
                }
                (Target::Machine(t), Some(c)) => {
                    push_bytes(bytes, used, &c)?;
                    match push_bytes(bytes, used, t.as_bytes())? {
                        Bytes::Arena { off, len } => Some(Bytes::Correlated { off, len }),
                        other => Some(other),
                    }
                }
            };
            let event = push_bytes(bytes, used, event.as_bytes())?;
            let n = encode(&mut bytes[*used..]).ok_or(Error::PayloadSpaceFull { capacity: B })?;
            let payload = if n == 0 {
                Bytes::Empty
            } else {
                let b = Bytes::Arena {
                    off: *used as u16,
                    len: n as u16,
                };
                *used += n;
                b
            };
            Ok(Message {
                target,
                event,
                payload,
            })
        })();
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                *used = mark;
                return Err(e);
            }
        };
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        match delay {
            None => {
                let _ = self.outbox.push(m);
            }
            Some(d) => self.push_timer(now + d, TimerKey::Id(id), TimerKind::Send(m))?,
        }
        Ok(SendId(id))
    }

    fn cancel(&mut self, id: SendId) -> bool {
        self.cancel_where(|k| k == TimerKey::Id(id.0))
    }

    fn request(
        &mut self,
        now: Instant,
        target: &str,
        event: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<RequestId, Error> {
        if crate::wire::is_reserved_event(event) {
            return Err(Error::ReservedEvent);
        }
        let id = self.requests.open(now, target, timeout)?;
        let sent = self.send(
            now,
            Target::Machine(target),
            event,
            payload,
            None,
            id.request(),
        );
        match sent {
            Ok(_) => Ok(id),
            Err(e) => {
                self.requests.withdraw(id);
                Err(e)
            }
        }
    }
}
