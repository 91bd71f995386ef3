//! Snapshots: a machine's whole state between two steps as postcard bytes
//! ([`Machine::snapshot`]), and a fresh machine brought to that state ([`Machine::restore`]).
//!
//! A snapshot holds what the next steps depend on: the status, the configuration, the history
//! memory, the internal event queue, the pending timers with the time each has left, the
//! outbox, the context, and the counters behind send ids and timer numbers. It starts with a
//! magic, the format version ([`SNAPSHOT_VERSION`]) and the chart's
//! [`fingerprint`](crate::Chart::fingerprint), so a snapshot of another chart or another
//! revision of the chart is refused ([`Error::SnapshotChart`]), never applied.
//!
//! The layout is a sequence of postcard values, written one after the other into the caller's
//! buffer and read back the same way, so neither side allocates:
//!
//! ```text
//! magic "ISNP", version u16, chart fingerprint u64, status u8, next send id u32,
//! next timer number u32, timer changes u32, context format u8, context bytes,
//! n u16 + n active states u16 (document order),
//! n u16 + n history slots u16 (the chart's history_slots; each memory a bit set over its
//! parent's subtree, 16 states a slot, bit 0 marking it recorded),
//! n u16 + n queued event ids u16,
//! n u16 + n outbox messages,
//! n u16 + n timers (ms from `now` to when due, negative if overdue; number, key, kind),
//! next request id u32, n u16 + n pending requests (id, ms to the deadline, target)
//! ```
//!
//! Restoring trusts nothing: every index is checked against the chart, every count against
//! the machine's capacities, the configuration must be one the chart allows (the root active,
//! every active state's parent active, exactly one active child of an active compound state,
//! every region of an active parallel state), the status must agree with it, and each history
//! memory must hold what its parent could have recorded (children or atomic states below it). Any failure leaves the machine
//! fresh, as [`Machine::new`] made it. A snapshot is only taken of a state that passes the same
//! checks, so every snapshot the machine writes it can restore.
//!
//! Not in a snapshot: the machine id (restore under any id), the microstep limit (the host's
//! setting) and [`Stats`](super::Stats) (counters of this run).

use serde::{Deserialize, Serialize};

use crate::chart::{EventId, StateId, StateKind, StrId};
use crate::error::Error;
use crate::set::StateSet;
use crate::time::{Duration, Instant};

use super::context_store::{ContextFormat, ContextStore};
use super::store::{push_bytes, Bytes, Message, Timer, TimerKey, TimerKind, CORRELATION_BYTES};
use super::{Machine, Status};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"ISNP";
/// The snapshot format version this build writes and reads.
///
/// 2: a history memory is a bit set over its parent's subtree (was a list of states).
pub const SNAPSHOT_VERSION: u16 = 2;

#[derive(Serialize, Deserialize)]
enum BytesSnap<'a> {
    Chart(u16),
    #[serde(borrow)]
    Bytes(&'a [u8]),
    /// An outbox target with its correlation in front (see `Bytes::Correlated`): the
    /// correlation's bytes, then the target's.
    #[serde(borrow)]
    Correlated(&'a [u8]),
}

#[derive(Serialize, Deserialize)]
struct RequestSnap<'a> {
    id: u32,
    /// Milliseconds from the snapshot's `now` to the request's deadline (negative: overdue).
    remaining: i64,
    target: &'a str,
}

#[derive(Serialize, Deserialize)]
struct MessageSnap<'a> {
    #[serde(borrow)]
    target: Option<BytesSnap<'a>>,
    #[serde(borrow)]
    event: BytesSnap<'a>,
    #[serde(borrow)]
    payload: BytesSnap<'a>,
}

#[derive(Serialize, Deserialize)]
enum KeySnap {
    After(u16),
    Named(u16),
    Id(u32),
}

#[derive(Serialize, Deserialize)]
enum KindSnap<'a> {
    Event(u16),
    #[serde(borrow)]
    Send(MessageSnap<'a>),
}

#[derive(Serialize, Deserialize)]
struct TimerSnap<'a> {
    /// Milliseconds from the snapshot's `now` to when it is due; negative when it was due
    /// already (kept, not rounded to 0, so overdue timers keep their order).
    remaining: i64,
    seq: u32,
    key: KeySnap,
    mapped: bool,
    #[serde(borrow)]
    kind: KindSnap<'a>,
}

fn status_to_u8(s: Status) -> u8 {
    match s {
        Status::Idle => 0,
        Status::Active => 1,
        Status::Done => 2,
        Status::Failed => 3,
    }
}

/// Writes postcard values one after another into a buffer.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put<V: Serialize + ?Sized>(&mut self, v: &V) -> Result<(), Error> {
        let capacity = self.buf.len();
        let n = postcard::to_slice(v, &mut self.buf[self.at..])
            .map_err(|_| Error::SnapshotBufferTooSmall { capacity })?
            .len();
        self.at += n;
        Ok(())
    }
}

/// Reads postcard values one after another.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<V: Deserialize<'a>>(&mut self, what: &'static str) -> Result<V, Error> {
        let (v, rest) =
            postcard::take_from_bytes(self.rest).map_err(|_| Error::InvalidSnapshot(what))?;
        self.rest = rest;
        Ok(v)
    }
    /// A count, checked against a capacity.
    fn count(&mut self, what: &'static str, capacity: usize) -> Result<usize, Error> {
        let n = self.take::<u16>(what)? as usize;
        if n > capacity {
            return Err(Error::SnapshotCapacity {
                what,
                needed: n,
                capacity,
            });
        }
        Ok(n)
    }
}

impl<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > Machine<'c, W, Q, O, T, H, B, C, R>
{
    /// Writes the machine's state into `buf` and returns how many bytes it took. `now` is the
    /// host's clock: each pending timer is recorded with the time it has left.
    ///
    /// Take it between steps. A machine stopped by an error has no state worth keeping
    /// ([`Error::SnapshotState`]); a buffer too small is [`Error::SnapshotBufferTooSmall`].
    pub fn snapshot(&self, now: Instant, buf: &mut [u8]) -> Result<usize, Error> {
        if self.status == Status::Failed {
            return Err(Error::SnapshotState(
                "the machine stopped with an error; its configuration may be half-changed, so it is not snapshotted",
            ));
        }
        // What is written must restore: the same checks as a restore, on this machine.
        self.check_restorable()?;
        let mut w = Writer { buf, at: 0 };
        w.put(&SNAPSHOT_MAGIC)?;
        w.put(&SNAPSHOT_VERSION)?;
        w.put(&self.chart.fingerprint())?;
        w.put(&status_to_u8(self.status))?;
        w.put(&self.io.next_id)?;
        w.put(&self.io.seq)?;
        w.put(&self.io.changes)?;
        w.put(&self.context.meta.format.to_u8())?;
        w.put(self.context.get())?;
        let active = self.config.iter().count();
        w.put(&(active as u16))?;
        for s in self.config.iter() {
            w.put(&s.0)?;
        }
        let slots = self.chart.history_slots();
        w.put(&(slots as u16))?;
        for &m in &self.history[..slots] {
            w.put(&m)?;
        }
        w.put(&(self.queue.len() as u16))?;
        for e in self.queue.iter() {
            w.put(&e.0)?;
        }
        w.put(&(self.io.outbox.len() as u16))?;
        for m in &self.io.outbox {
            w.put(&self.message_snap(m, &self.io.out_bytes))?;
        }
        w.put(&(self.io.timers.len() as u16))?;
        for t in &self.io.timers {
            let kind = match t.kind {
                TimerKind::Event(e) => KindSnap::Event(e.0),
                TimerKind::Send(m) => KindSnap::Send(self.message_snap(&m, &self.io.timer_bytes)),
            };
            w.put(&TimerSnap {
                remaining: (t.due.as_millis() as i64).saturating_sub(now.as_millis() as i64),
                seq: t.seq,
                key: match t.key {
                    TimerKey::After(e) => KeySnap::After(e.0),
                    TimerKey::Named(s) => KeySnap::Named(s.0),
                    TimerKey::Id(i) => KeySnap::Id(i),
                },
                mapped: t.mapped,
                kind,
            })?;
        }
        let (next, pending) = self.io.requests.parts();
        w.put(&next)?;
        w.put(&(self.io.requests.len() as u16))?;
        for (id, due, target) in pending {
            w.put(&RequestSnap {
                id,
                remaining: (due.as_millis() as i64).saturating_sub(now.as_millis() as i64),
                target,
            })?;
        }
        Ok(w.at)
    }

    fn message_snap<'s>(&self, m: &Message, arena: &'s [u8]) -> MessageSnap<'s> {
        let b = |b: Bytes| match b {
            Bytes::Empty => BytesSnap::Bytes(&[]),
            Bytes::Chart(s) => BytesSnap::Chart(s.0),
            Bytes::Arena { off, len } => BytesSnap::Bytes(
                arena
                    .get(off as usize..off as usize + len as usize)
                    .unwrap_or(&[]),
            ),
            Bytes::Correlated { off, len } => BytesSnap::Correlated(
                arena
                    .get(off as usize - CORRELATION_BYTES..off as usize + len as usize)
                    .unwrap_or(&[]),
            ),
        };
        MessageSnap {
            target: m.target.map(b),
            event: b(m.event),
            payload: b(m.payload),
        }
    }

    /// Brings this machine, fresh from [`Machine::new`] and not started, to the state `bytes`
    /// (a [`snapshot`](Self::snapshot)) holds. `now` is the host's clock: each timer is due
    /// the time it had left when the snapshot was taken after `now`.
    ///
    /// The machine's chart must be the snapshot's ([`Error::SnapshotChart`] otherwise), the
    /// format this build's ([`Error::SnapshotVersion`]), and everything in it valid for the
    /// chart and within the machine's capacities ([`Error::InvalidSnapshot`],
    /// [`Error::SnapshotCapacity`]). On any error the machine is left as [`Machine::new`]
    /// made it. Nothing runs: no entry action, no timer; the next [`send`](Self::send) or
    /// [`handle_timeout`](Self::handle_timeout) goes on from the restored state.
    pub fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        if self.status != Status::Idle || !self.config.is_empty() {
            return Err(Error::SnapshotState(
                "restore into a fresh machine: this one has been started",
            ));
        }
        let r = self.restore_from(now, bytes);
        if r.is_err() {
            self.reset_fresh();
        }
        r
    }

    /// What [`Machine::new`] leaves, for a restore that failed half-way.
    fn reset_fresh(&mut self) {
        self.status = Status::Idle;
        self.config = StateSet::new();
        self.history = [0; H];
        self.queue.clear();
        self.io.outbox.clear();
        self.io.out_used = 0;
        self.io.timers.clear();
        self.io.timer_used = 0;
        self.io.next_id = 0;
        self.io.seq = 0;
        self.io.changes = 0;
        self.io.requests = crate::request::Pending::new();
        self.view = super::view::View::default();
        self.context = ContextStore::new();
        if let Some(text) = self.chart.initial_context() {
            // It fitted when the machine was made.
            let _ = self.context.as_ref(&mut None).set_json(text.as_bytes());
        }
    }

    fn restore_from(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        let mut r = Reader { rest: bytes };
        let magic: [u8; 4] = r.take("not a snapshot (too short)")?;
        if magic != SNAPSHOT_MAGIC {
            return Err(Error::InvalidSnapshot("not a snapshot (wrong magic)"));
        }
        let version: u16 = r.take("truncated version")?;
        if version != SNAPSHOT_VERSION {
            return Err(Error::SnapshotVersion {
                expected: SNAPSHOT_VERSION,
                found: version,
            });
        }
        let fingerprint: u64 = r.take("truncated chart fingerprint")?;
        if fingerprint != self.chart.fingerprint() {
            return Err(Error::SnapshotChart {
                expected: self.chart.fingerprint(),
                found: fingerprint,
            });
        }
        self.status = match r.take::<u8>("truncated status")? {
            0 => Status::Idle,
            1 => Status::Active,
            2 => Status::Done,
            _ => return Err(Error::InvalidSnapshot("unknown or failed status")),
        };
        self.io.next_id = r.take("truncated send id counter")?;
        self.io.seq = r.take("truncated timer counter")?;
        self.io.changes = r.take("truncated timer change counter")?;
        let format = ContextFormat::from_u8(r.take("truncated context format")?)
            .ok_or(Error::InvalidSnapshot("unknown context format"))?;
        let context: &[u8] = r.take("truncated context")?;
        if context.len() > C {
            return Err(Error::SnapshotCapacity {
                what: "context",
                needed: context.len(),
                capacity: C,
            });
        }
        match format {
            ContextFormat::Json => self
                .context
                .as_ref(&mut None)
                .set_json(context)
                .map_err(|_| Error::InvalidSnapshot("the JSON context is not a JSON object"))?,
            ContextFormat::None if !context.is_empty() => {
                return Err(Error::InvalidSnapshot("context bytes without a format"))
            }
            _ => {
                self.context.bytes[..context.len()].copy_from_slice(context);
                self.context.meta.len = context.len();
                self.context.meta.format = format;
            }
        }
        let n = r.count("configuration", self.chart.state_count())?;
        for _ in 0..n {
            let s: u16 = r.take("truncated configuration")?;
            if s as usize >= self.chart.state_count() {
                return Err(Error::InvalidSnapshot(
                    "an active state the chart does not have",
                ));
            }
            self.config.insert(StateId(s));
        }
        let slots = r.take::<u16>("truncated history")? as usize;
        if slots != self.chart.history_slots() {
            return Err(Error::InvalidSnapshot(
                "the history memory does not have the chart's size",
            ));
        }
        for i in 0..slots {
            self.history[i] = r.take("truncated history")?;
        }
        let n = r.count("queue", Q)?;
        for _ in 0..n {
            let e: u16 = r.take("truncated queue")?;
            if e as usize >= self.chart.event_count() {
                return Err(Error::InvalidSnapshot(
                    "a queued event the chart does not have",
                ));
            }
            // Counted against Q above.
            let _ = self.queue.push_back(EventId(e));
        }
        let n = r.count("outbox", O)?;
        for _ in 0..n {
            let m: MessageSnap<'_> = r.take("truncated outbox message")?;
            let m = self.message_from(m, false)?;
            // Counted against O above.
            let _ = self.io.outbox.push(m);
        }
        let n = r.count("timers", T)?;
        for _ in 0..n {
            let t: TimerSnap<'_> = r.take("truncated timer")?;
            let event_ok = |e: u16| (e as usize) < self.chart.event_count();
            let key = match t.key {
                KeySnap::After(e) if event_ok(e) => TimerKey::After(EventId(e)),
                KeySnap::Named(s) if (s as usize) < self.chart.string_count() => {
                    TimerKey::Named(StrId(s))
                }
                KeySnap::Id(i) => TimerKey::Id(i),
                _ => {
                    return Err(Error::InvalidSnapshot(
                        "a timer key the chart does not have",
                    ))
                }
            };
            let kind = match t.kind {
                KindSnap::Event(e) if event_ok(e) => TimerKind::Event(EventId(e)),
                KindSnap::Event(_) => {
                    return Err(Error::InvalidSnapshot(
                        "a timer event the chart does not have",
                    ))
                }
                KindSnap::Send(m) => TimerKind::Send(self.message_from(m, true)?),
            };
            let due = if t.remaining >= 0 {
                now + Duration::from_millis(t.remaining as u64)
            } else {
                Instant::from_millis(now.as_millis().saturating_sub(t.remaining.unsigned_abs()))
            };
            let _ = self.io.timers.push(Timer {
                due,
                seq: t.seq,
                key,
                kind,
                mapped: t.mapped,
                after_messages: 0,
                after_changes: 0,
            });
        }
        let next: u32 = r.take("truncated request id counter")?;
        self.io.requests.restore_next(next);
        let n = r.count("requests", R)?;
        for _ in 0..n {
            let q: RequestSnap<'_> = r.take("truncated pending request")?;
            let due = if q.remaining >= 0 {
                now + Duration::from_millis(q.remaining as u64)
            } else {
                Instant::from_millis(now.as_millis().saturating_sub(q.remaining.unsigned_abs()))
            };
            self.io
                .requests
                .restore_entry(q.id, due, q.target)
                .map_err(|_| {
                    Error::InvalidSnapshot(
                        "a pending request with id 0, a repeated id or a target id too long",
                    )
                })?;
        }
        if !r.rest.is_empty() {
            return Err(Error::InvalidSnapshot("bytes after the end"));
        }
        self.check_restorable()
    }

    /// A message of the snapshot, its bytes copied into the outbox's or the timers' arena.
    fn message_from(&mut self, m: MessageSnap<'_>, timer: bool) -> Result<Message, Error> {
        let strings = self.chart.string_count();
        let io = &mut self.io;
        let (arena, used) = if timer {
            (&mut io.timer_bytes, &mut io.timer_used)
        } else {
            (&mut io.out_bytes, &mut io.out_used)
        };
        let mut bytes = |b: BytesSnap<'_>, text: bool| -> Result<Bytes, Error> {
            match b {
                BytesSnap::Chart(s) if (s as usize) < strings => Ok(Bytes::Chart(StrId(s))),
                BytesSnap::Chart(_) => Err(Error::InvalidSnapshot(
                    "a message string the chart does not have",
                )),
                BytesSnap::Bytes(d) if text && core::str::from_utf8(d).is_err() => Err(
                    Error::InvalidSnapshot("a message's target or event name is not UTF-8"),
                ),
                BytesSnap::Bytes(d) => {
                    push_bytes(arena, used, d).map_err(|_| Error::SnapshotCapacity {
                        what: if timer { "timer bytes" } else { "outbox bytes" },
                        needed: *used + d.len(),
                        capacity: B,
                    })
                }
                // Only an outbox message's target carries a correlation: a request's kind
                // (1) or a reply's (2), its id, then the target's UTF-8 name.
                BytesSnap::Correlated(d)
                    if timer
                        || !text
                        || d.len() <= CORRELATION_BYTES
                        || !matches!(d[0], 1 | 2)
                        || core::str::from_utf8(&d[CORRELATION_BYTES..]).is_err() =>
                {
                    Err(Error::InvalidSnapshot(
                        "a malformed request or reply target",
                    ))
                }
                BytesSnap::Correlated(d) => match push_bytes(arena, used, d) {
                    Ok(Bytes::Arena { off, len }) => Ok(Bytes::Correlated {
                        off: off + CORRELATION_BYTES as u16,
                        len: len - CORRELATION_BYTES as u16,
                    }),
                    Ok(_) => Err(Error::InvalidSnapshot(
                        "a malformed request or reply target",
                    )),
                    Err(_) => Err(Error::SnapshotCapacity {
                        what: "outbox bytes",
                        needed: *used + d.len(),
                        capacity: B,
                    }),
                },
            }
        };
        Ok(Message {
            target: match m.target {
                Some(t) => Some(bytes(t, true)?),
                None => None,
            },
            event: bytes(m.event, true)?,
            payload: bytes(m.payload, false)?,
        })
    }

    /// The checks a restored state must pass (and a snapshotted one, so that it restores):
    /// a legal configuration agreeing with the status, and legal history memories.
    fn check_restorable(&self) -> Result<(), Error> {
        match self.status {
            Status::Idle => {
                if !self.config.is_empty() {
                    return Err(Error::InvalidSnapshot("an idle machine with active states"));
                }
            }
            Status::Active | Status::Done => {
                if !self.config.contains(StateId(0)) {
                    return Err(Error::InvalidSnapshot("the root state is not active"));
                }
                for s in self.config.iter() {
                    if !self.children_legal(s, &self.config) {
                        return Err(Error::InvalidSnapshot(
                            "an illegal configuration: each active compound state needs exactly one active child, each active parallel state all its regions, each active state its parent",
                        ));
                    }
                }
                if self.in_final_state(StateId(0), 0) != (self.status == Status::Done) {
                    return Err(Error::InvalidSnapshot(
                        "the status does not agree with the configuration (done exactly when a top-level final state is reached)",
                    ));
                }
            }
            Status::Failed => {
                return Err(Error::InvalidSnapshot("a failed machine"));
            }
        }
        for h in 0..self.chart.state_count() {
            let h = StateId(h as u16);
            if self.chart.kind(h).is_history() && !self.history_legal(h) {
                return Err(Error::InvalidSnapshot(
                    "a history memory its parent state could not have recorded",
                ));
            }
        }
        Ok(())
    }

    /// Whether the active state `s` has what the chart demands of `set` around it: its parent
    /// in `set`, and the right active children. History states are never active.
    fn children_legal(&self, s: StateId, set: &StateSet<W>) -> bool {
        let kind = self.chart.kind(s);
        if kind.is_history() {
            return false;
        }
        if let Some(p) = self.chart.parent(s) {
            if !set.contains(p) {
                return false;
            }
        }
        let mut regions = self
            .chart
            .children(s)
            .filter(|&c| !self.chart.kind(c).is_history());
        match kind {
            StateKind::Compound => regions.filter(|&c| set.contains(c)).count() == 1,
            StateKind::Parallel => regions.all(|c| set.contains(c)),
            _ => true,
        }
    }

    /// Whether history state `h`'s memory is empty, or what its parent `p` could have
    /// recorded: the mark bit (bit 0, `p` itself) and only bits of states below `p`; a
    /// shallow memory children of `p`, a deep one atomic states. Not one regular
    /// configuration: after a history quirk left several children of a compound state active,
    /// XState's history records them all, and so does the machine's; and a compound state
    /// left without an active child records none.
    fn history_legal(&self, h: StateId) -> bool {
        let (slot, len) = self.chart.history_memory(h);
        let Some(memory) = self.history.get(slot..slot + len) else {
            return false;
        };
        let Some(p) = self.chart.parent(h) else {
            return false;
        };
        if memory.first().is_none_or(|&m| m & 1 == 0) {
            return memory.iter().all(|&m| m == 0);
        }
        let deep = self.chart.kind(h) == StateKind::DeepHistory;
        for (w, &word) in memory.iter().enumerate() {
            let mut bits = if w == 0 { word & !1 } else { word };
            while bits != 0 {
                let k = w * 16 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let s = p.0 as usize + k;
                if s > self.chart.end(p).0 as usize || s >= self.chart.state_count() {
                    return false;
                }
                let s = StateId(s as u16);
                let kind = self.chart.kind(s);
                let legal = !kind.is_history()
                    && if deep {
                        kind.is_atomic()
                    } else {
                        self.chart.parent(s) == Some(p)
                    };
                if !legal {
                    return false;
                }
            }
        }
        true
    }
}
