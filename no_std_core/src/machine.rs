//! A running machine: the XState v5 step algorithm over a [`Chart`], in fixed-size storage.
//!
//! The algorithm follows XState v5's `macrostep`/`microstep` (itself the SCXML algorithm with
//! XState's choices):
//! - selection: for an event, the deepest active states are asked first, then their ancestors;
//!   within a state the first enabled candidate in document order wins; a parallel state asks
//!   every region and only falls back to its own transitions when no region has one;
//! - conflicts between regions: a transition whose exit set intersects an earlier one's is
//!   dropped, unless its source is a descendant of the earlier one's source, which then loses;
//! - the exit set is every active descendant of the transition domain; states exit in reverse
//!   document order after all history is recorded, then transition actions run, then states
//!   enter in document order;
//! - a macrostep is the event's microstep, then eventless transitions and internal (raised and
//!   done) events until none is enabled; more than `microstep_limit` microsteps is an error.
//!
//! Nothing here allocates, blocks or reads a clock.

use core::fmt;

use heapless::{Deque, Vec};

use crate::chart::{
    Action, ActionId, Chart, Delay, EventId, Guard, StateId, StateKind, StrId, Transition,
    TransitionId, Trigger, MAX_DEPTH,
};
use crate::context::{ActionContext, Behavior, Effects, Event, GuardContext, SendId, Target};
use crate::error::Error;
use crate::set::StateSet;
use crate::time::{Duration, Instant};

/// The most transitions one microstep can take: one per active atomic state, which
/// [`Chart::new`] bounds by [`crate::chart::MAX_ACTIVE_LEAVES`].
pub const MAX_ENABLED: usize = crate::chart::MAX_ACTIVE_LEAVES;

/// The default microstep limit of a macrostep (XState's `maxIterations` as the oracle sets it).
pub const DEFAULT_MICROSTEP_LIMIT: u32 = 1000;

/// The longest machine id a machine stores.
pub const MAX_MACHINE_ID: usize = 64;

/// Where a machine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// Created, not started.
    Idle,
    /// Processing events.
    Active,
    /// Reached a top-level final state; ignores further events.
    Done,
    /// Stopped by an error (e.g. an eventless loop); ignores further events.
    Failed,
}

/// Counters a host can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// External events processed (sent or fired by timers).
    pub events: u64,
    /// Microsteps taken.
    pub microsteps: u64,
    /// Sends that failed because the outbox, the timers or their byte storage were full.
    pub send_failures: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bytes {
    Empty,
    Chart(StrId),
    Arena { off: u16, len: u16 },
}

#[derive(Clone, Copy, Debug)]
struct Message {
    /// `None`: this machine.
    target: Option<Bytes>,
    event: Bytes,
    payload: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKey {
    After(EventId),
    Named(StrId),
    Id(u32),
}

#[derive(Clone, Copy, Debug)]
enum TimerKind {
    /// Comes back to this machine as an external event (`after`, delayed `raise`).
    Event(EventId),
    /// Goes to the outbox.
    Send(Message),
}

#[derive(Clone, Copy, Debug)]
struct Timer {
    due: Instant,
    seq: u32,
    key: TimerKey,
    kind: TimerKind,
}

/// Outbox and timers: the machine's only contact with the world, drained by the host.
struct Io<const O: usize, const T: usize, const B: usize> {
    outbox: Vec<Message, O>,
    out_bytes: [u8; B],
    out_used: usize,
    timers: Vec<Timer, T>,
    timer_bytes: [u8; B],
    timer_used: usize,
    next_id: u32,
    seq: u32,
}

fn push_bytes<const B: usize>(
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

impl<const O: usize, const T: usize, const B: usize> Io<O, T, B> {
    /// The bytes a [`Bytes`] stands for: in the chart's strings or in `arena`.
    fn bytes_in<'s>(chart: Chart<'s>, b: Bytes, arena: &'s [u8]) -> &'s [u8] {
        match b {
            Bytes::Empty => &[],
            Bytes::Chart(s) => chart.str(s).as_bytes(),
            Bytes::Arena { off, len } => arena
                .get(off as usize..off as usize + len as usize)
                .unwrap_or(&[]),
        }
    }

    fn push_timer(&mut self, due: Instant, key: TimerKey, kind: TimerKind) -> Result<(), Error> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.timers
            .push(Timer {
                due,
                seq,
                key,
                kind,
            })
            .map_err(|_| Error::TimersFull { capacity: T })
    }

    /// Removes timer `i`, compacting the byte storage behind it.
    fn remove_timer(&mut self, i: usize) -> Timer {
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

    /// Removes every timer whose key `matches`. Returns whether there was one.
    fn cancel_where(&mut self, matches: impl Fn(TimerKey) -> bool) -> bool {
        let mut found = false;
        let mut i = 0;
        while i < self.timers.len() {
            if matches(self.timers[i].key) {
                self.remove_timer(i);
                found = true;
            } else {
                i += 1;
            }
        }
        found
    }

    /// Moves a fired send into the outbox.
    fn outbox_from_timer(&mut self, m: Message) -> Result<(), Error> {
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

    fn send_chart(
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

impl<const O: usize, const T: usize, const B: usize> Effects for Io<O, T, B> {
    fn send(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        payload: &[u8],
        delay: Option<Duration>,
    ) -> Result<SendId, Error> {
        self.send_encoded(now, target, event, delay, &mut |buf: &mut [u8]| {
            buf.get_mut(..payload.len()).map(|b| {
                b.copy_from_slice(payload);
                payload.len()
            })
        })
    }

    fn send_encoded(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        delay: Option<Duration>,
        encode: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<SendId, Error> {
        let (bytes, used) = match delay {
            None if self.outbox.is_full() => return Err(Error::OutboxFull { capacity: O }),
            Some(_) if self.timers.is_full() => return Err(Error::TimersFull { capacity: T }),
            None => (&mut self.out_bytes, &mut self.out_used),
            Some(_) => (&mut self.timer_bytes, &mut self.timer_used),
        };
        let mark = *used;
        let result = (|| {
            let target = match target {
                Target::ThisMachine => None,
                Target::Machine(t) => Some(push_bytes(bytes, used, t.as_bytes())?),
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
}

/// A message the machine sent, as the host reads it from the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Outgoing<'a> {
    /// The target.
    pub target: Target<'a>,
    /// The event name.
    pub event: &'a str,
    /// The payload.
    pub payload: &'a [u8],
}

/// A running statechart instance in fixed-size storage.
///
/// Capacities are const generics:
/// - `W`: 64-bit words of the state sets (`64 * W` states);
/// - `Q`: internal event queue (raised and done events of one macrostep);
/// - `O`: outbox messages between two drains;
/// - `T`: pending timers (`after` transitions and delayed sends);
/// - `H`: history memory slots (see [`Chart::history_slots`]);
/// - `B`: bytes of names and payloads behind the outbox, and again behind the timers.
///
/// Every overflow is an [`Error`] returned to the host (or to the action that sent).
///
/// The defaults fit a small device (under 512 bytes on a 32-bit target, the chart's tables
/// excluded): 128 states, 4 internal events, 4 outbox messages, 2 timers, 4 history slots and
/// 40 bytes of names and payloads. Hosts size theirs for the work (the platform's nodes use
/// far larger ones); a chart that needs more is refused at [`Machine::new`] or fails a step
/// with the capacity it ran out of, never silently.
pub struct Machine<
    'c,
    const W: usize = 2,
    const Q: usize = 4,
    const O: usize = 4,
    const T: usize = 2,
    const H: usize = 4,
    const B: usize = 40,
> {
    chart: Chart<'c>,
    id: heapless::String<MAX_MACHINE_ID>,
    config: StateSet<W>,
    history: [u16; H],
    queue: Deque<EventId, Q>,
    status: Status,
    microstep_limit: u32,
    stats: Stats,
    io: Io<O, T, B>,
}

type Enabled = Vec<TransitionId, MAX_ENABLED>;

/// The per-step inputs every stage of a macrostep needs.
struct StepCx<'e, 'b, BH: ?Sized> {
    now: Instant,
    event: Event<'e>,
    behavior: &'b mut BH,
}

impl<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
    > Machine<'c, W, Q, O, T, H, B>
{
    /// Creates a machine for `chart` with the id `machine_id`. It is idle until [`start`](Self::start).
    pub fn new(chart: Chart<'c>, machine_id: &str) -> Result<Self, Error> {
        if chart.state_count() > StateSet::<W>::CAPACITY {
            return Err(Error::TooManyStates {
                states: chart.state_count(),
                capacity: StateSet::<W>::CAPACITY,
            });
        }
        if chart.history_slots() > H {
            return Err(Error::HistoryCapacity {
                needed: chart.history_slots(),
                capacity: H,
            });
        }
        let mut id = heapless::String::new();
        id.push_str(machine_id)
            .map_err(|_| Error::MachineIdTooLong {
                len: machine_id.len(),
                capacity: MAX_MACHINE_ID,
            })?;
        Ok(Machine {
            chart,
            id,
            config: StateSet::new(),
            history: [crate::chart::NONE; H],
            queue: Deque::new(),
            status: Status::Idle,
            microstep_limit: DEFAULT_MICROSTEP_LIMIT,
            stats: Stats::default(),
            io: Io {
                outbox: Vec::new(),
                out_bytes: [0; B],
                out_used: 0,
                timers: Vec::new(),
                timer_bytes: [0; B],
                timer_used: 0,
                next_id: 0,
                seq: 0,
            },
        })
    }

    /// Sets the most microsteps one macrostep may take before it fails with
    /// [`Error::MicrostepLimit`] (default [`DEFAULT_MICROSTEP_LIMIT`]).
    pub fn set_microstep_limit(&mut self, limit: u32) {
        self.microstep_limit = limit;
    }

    /// The chart.
    pub fn chart(&self) -> &Chart<'c> {
        &self.chart
    }
    /// The machine id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Where the machine is in its life.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Whether it reached a top-level final state.
    pub fn is_done(&self) -> bool {
        self.status == Status::Done
    }
    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// The active states, in document order (the root included).
    pub fn active_states(&self) -> impl Iterator<Item = StateId> + '_ {
        self.config.iter()
    }
    /// Whether a state is active.
    pub fn is_active(&self, s: StateId) -> bool {
        self.config.contains(s)
    }
    /// Looks an event up in the chart, for [`Event::from_id`].
    pub fn event_id(&self, name: &str) -> Option<EventId> {
        self.chart.event(name)
    }

    /// Enters the initial configuration and runs the first macrostep (eventless transitions and
    /// raised events included).
    pub fn start<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        if self.status != Status::Idle {
            return Err(Error::AlreadyStarted);
        }
        self.status = Status::Active;
        let mut cx = StepCx {
            now,
            event: Event::new("xstate.init"),
            behavior,
        };
        let r = self
            .initial_microstep(&mut cx)
            .and_then(|()| self.settle(&mut cx));
        self.finish(r)
    }

    /// Processes one external event: a whole macrostep.
    ///
    /// Events sent to a machine that is done are ignored, as XState ignores them.
    pub fn send<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        match self.status {
            Status::Active => {}
            Status::Done => return Ok(()),
            Status::Idle | Status::Failed => return Err(Error::NotRunning),
        }
        let mut event = event;
        if event.id.is_none() {
            event.id = self.chart.event(event.name);
        }
        self.stats.events += 1;
        let mut cx = StepCx {
            now,
            event,
            behavior,
        };
        let r = self
            .event_microstep(&mut cx)
            .and_then(|()| self.settle(&mut cx));
        self.finish(r)
    }

    /// When the next timer is due, if any: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.timers.iter().map(|t| t.due).min()
    }

    /// Fires the earliest timer due at `now`, if any, and returns whether one fired.
    ///
    /// An `after` transition or a delayed raise becomes an external event processed right
    /// away (a macrostep); a delayed send moves to the outbox. Call it again while
    /// [`poll_timeout`](Self::poll_timeout) is at or before `now`; firing one timer at a time
    /// lets the host interleave what the outbox delivers back, in due order.
    ///
    /// A delayed send that comes due while the outbox (or its byte space) is full returns
    /// [`Error::OutboxFull`] or [`Error::PayloadSpaceFull`] and is kept, still due: the machine
    /// stays [`Active`](Status::Active). Drain the outbox and call again. Any other error fails
    /// the machine, as [`send`](Self::send) does.
    pub fn handle_timeout<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        if self.status != Status::Active {
            return Ok(false);
        }
        let mut best: Option<usize> = None;
        for (i, t) in self.io.timers.iter().enumerate() {
            if t.due <= now
                && best
                    .is_none_or(|b| (t.due, t.seq) < (self.io.timers[b].due, self.io.timers[b].seq))
            {
                best = Some(i);
            }
        }
        let Some(i) = best else { return Ok(false) };
        match self.io.timers[i].kind {
            TimerKind::Event(e) => {
                self.io.remove_timer(i);
                self.send(now, Event::from_id(&self.chart, e), behavior)?;
            }
            TimerKind::Send(m) => {
                self.io.outbox_from_timer(m)?;
                self.io.remove_timer(i);
            }
        }
        Ok(true)
    }

    /// Number of messages waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.io.outbox.len()
    }

    /// The messages waiting in the outbox, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = Outgoing<'_>> + '_ {
        self.io.outbox.iter().map(move |m| self.outgoing(m))
    }

    fn outgoing<'s>(&'s self, m: &Message) -> Outgoing<'s> {
        let s = |b: Bytes| {
            core::str::from_utf8(Io::<O, T, B>::bytes_in(self.chart, b, &self.io.out_bytes))
                .unwrap_or("")
        };
        Outgoing {
            target: match m.target {
                None => Target::ThisMachine,
                Some(b) => Target::Machine(s(b)),
            },
            event: s(m.event),
            payload: Io::<O, T, B>::bytes_in(self.chart, m.payload, &self.io.out_bytes),
        }
    }

    /// Removes the first `n` messages of the outbox (those delivered), keeping the rest in
    /// order. Lets a host stop at the first message it cannot deliver yet (backpressure).
    pub fn consume_outbox(&mut self, n: usize) {
        if n >= self.io.outbox.len() {
            self.clear_outbox();
            return;
        }
        for _ in 0..n {
            self.io.outbox.remove(0);
        }
    }

    /// Empties the outbox. Call it after delivering what [`outbox`](Self::outbox) listed.
    pub fn clear_outbox(&mut self) {
        self.io.outbox.clear();
        self.io.out_used = 0;
    }

    /// Writes the state value as JSON, exactly as XState v5's `snapshot.value`: the key of
    /// the active child for a compound state whose child is atomic, objects for the rest.
    pub fn write_value(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        self.write_value_of(w, StateId(0), 0)
    }

    fn write_value_of(&self, w: &mut dyn fmt::Write, s: StateId, depth: usize) -> fmt::Result {
        let kind = self.chart.kind(s);
        let mut active = self.chart.children(s).filter(|&c| self.config.contains(c));
        if kind == StateKind::Compound {
            if let Some(c) = self.chart.children(s).find(|&c| self.config.contains(c)) {
                if self.chart.kind(c).is_atomic() {
                    return write_json_str(w, self.chart.key(c));
                }
            }
        }
        if depth > MAX_DEPTH {
            return w.write_str("{}");
        }
        w.write_char('{')?;
        let mut first = true;
        for c in &mut active {
            if !first {
                w.write_char(',')?;
            }
            first = false;
            write_json_str(w, self.chart.key(c))?;
            w.write_char(':')?;
            self.write_value_of(w, c, depth + 1)?;
        }
        w.write_char('}')
    }

    // ----- the algorithm -----

    fn finish(&mut self, r: Result<(), Error>) -> Result<(), Error> {
        if let Err(e) = r {
            core_log!(
                error,
                "machine {}: stopped by an error: {}",
                self.id.as_str(),
                e
            );
            self.status = Status::Failed;
            self.queue.clear();
            return Err(e);
        }
        if self.status == Status::Done {
            // A stopped actor's scheduled events are cancelled.
            while !self.io.timers.is_empty() {
                self.io.remove_timer(0);
            }
        }
        Ok(())
    }

    fn initial_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let mut enter = StateSet::<W>::new();
        enter.insert(StateId(0));
        self.add_descendants(StateId(0), &mut enter);
        self.stats.microsteps += 1;
        self.enter_states(&enter, cx)?;
        self.after_microstep(cx)
    }

    #[inline]
    fn event_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if !self.chart.has_parallel() {
            // At most one transition.
            return match self.select_chain(cx) {
                Some(t) => self.microstep_one(t, cx).map(|_| ()),
                None => Ok(()),
            };
        }
        let mut enabled = Enabled::new();
        self.select(StateId(0), cx, &mut enabled, 0)?;
        self.microstep(&enabled, true, cx).map(|_| ())
    }

    /// [`Self::select`] from the root in a chart without parallel states.
    ///
    /// Without parallel states the configuration is one chain from the root down to one
    /// atomic state, the highest index in it (descendants come after their ancestors).
    /// `select` walks that chain down and asks the deepest state first, then its ancestors:
    /// the same, from the bottom up.
    #[inline]
    fn select_chain<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let mut s = self.config.last();
        while let Some(st) = s {
            if let Some(t) = self.candidate(st, cx) {
                return Some(t);
            }
            s = self.chart.parent(st);
        }
        None
    }

    /// The eventless-and-internal-queue loop of a macrostep.
    #[inline]
    fn settle<'e, BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error>
    where
        'c: 'e,
    {
        // Nothing to do (and the loop would find nothing): no eventless transitions to look
        // for and no internal event.
        if !self.chart.has_eventless() && self.queue.is_empty() && self.microstep_limit > 0 {
            return Ok(());
        }
        self.settle_loop(cx)
    }

    #[inline(never)]
    fn settle_loop<'e, BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error>
    where
        'c: 'e,
    {
        let mut select_eventless = true;
        let mut iterations = 0u32;
        while self.status == Status::Active {
            iterations += 1;
            if iterations > self.microstep_limit {
                return Err(Error::MicrostepLimit {
                    limit: self.microstep_limit,
                });
            }
            let mut enabled = Enabled::new();
            if select_eventless {
                self.select_eventless(cx, &mut enabled)?;
            }
            let eventless = !enabled.is_empty();
            if !eventless {
                let Some(e) = self.queue.pop_front() else {
                    break;
                };
                cx.event = Event::from_id(&self.chart, e);
                self.select(StateId(0), cx, &mut enabled, 0)?;
            }
            let changed = self.microstep(&enabled, true, cx)?;
            select_eventless = !eventless || changed;
        }
        Ok(())
    }

    /// XState's `transitionNode`: the transitions an event selects below `s`.
    ///
    /// A compound state asks its active child and only falls back to its own transitions
    /// when the child selected none; a parallel state asks every active region, and falls
    /// back when none selected any. Chains of compound states are walked down in a loop, then
    /// back up asking each state until one selects; only parallel states recurse.
    fn select<BH: Behavior + ?Sized>(
        &self,
        s: StateId,
        cx: &mut StepCx<'_, '_, BH>,
        out: &mut Enabled,
        depth: usize,
    ) -> Result<bool, Error> {
        let mut bottom = s;
        let mut depth = depth;
        while depth <= MAX_DEPTH && self.chart.kind(bottom) == StateKind::Compound {
            match self.active_child(bottom) {
                Some(c) => {
                    bottom = c;
                    depth += 1;
                }
                None => break,
            }
        }
        let mut found = false;
        if depth <= MAX_DEPTH && self.chart.kind(bottom) == StateKind::Parallel {
            for c in self.chart.children(bottom) {
                if self.config.contains(c) {
                    found |= self.select(c, cx, out, depth + 1)?;
                }
            }
        }
        // Up from `bottom` to `s`: each state is asked when nothing below it selected.
        let mut st = bottom;
        loop {
            if found {
                return Ok(true);
            }
            if let Some(t) = self.candidate(st, cx) {
                out.push(t).map_err(|_| Error::InvalidChart {
                    table: "states",
                    index: st.0 as u32,
                    reason: "more than MAX_ENABLED transitions in one microstep",
                })?;
                return Ok(true);
            }
            if st == s {
                return Ok(false);
            }
            // `bottom` was reached from `s` through active children, so this is in the chain.
            match self.chart.parent(st) {
                Some(p) => st = p,
                None => return Ok(false),
            }
        }
    }

    /// The active child of a compound state.
    #[inline]
    fn active_child(&self, s: StateId) -> Option<StateId> {
        // In document order the first active state below `s` is normally its active child
        // (an active state's ancestors are active and come first); XState can leave a state
        // active without its parent (see the properties tests), so the parent is checked and
        // the children scanned when it does not match.
        match self.config.first_in(StateId(s.0 + 1), self.chart.end(s)) {
            Some(c) if self.chart.parent(c) == Some(s) => Some(c),
            _ => self.chart.children(s).find(|&c| self.config.contains(c)),
        }
    }

    /// XState's `StateNode.next`: the first enabled candidate of `s` for the event.
    #[inline(always)]
    fn candidate<BH: Behavior + ?Sized>(
        &self,
        s: StateId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let range = self.chart.on_transitions(s);
        if range.is_empty() {
            return None;
        }
        // XState's `getCandidates`: the exact descriptor's transitions first, then the
        // matching partial descriptors (stored longest first), each in document order.
        // Whether there are partial descriptors to look at (only their trigger and event are
        // read until one matches).
        let mut partial = cx.event.id.is_none();
        if let Some(e) = cx.event.id {
            for ti in range.clone() {
                let t = TransitionId(ti);
                match self.chart.exact_trigger(t) {
                    None => partial = true,
                    Some((event, guarded)) => {
                        if event == e.0 && (!guarded || self.guarded_passes(t, cx)) {
                            return Some(t);
                        }
                    }
                }
            }
        }
        if !partial {
            return None;
        }
        self.partial_candidate(range, cx)
    }

    /// Whether the guard of the guarded transition `t` passes.
    #[inline(never)]
    fn guarded_passes<BH: Behavior + ?Sized>(
        &self,
        t: TransitionId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> bool {
        self.guard_passes(self.chart.transition(t).guard, cx)
    }

    /// The first enabled transition of `range` whose partial descriptor or wildcard matches
    /// the event.
    #[inline(never)]
    fn partial_candidate<BH: Behavior + ?Sized>(
        &self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let name = cx.event.name;
        for ti in range {
            let t = self.chart.transition(TransitionId(ti));
            let matches = match t.trigger {
                Trigger::Any => true,
                Trigger::Prefix => {
                    let p = self.chart.str(StrId(t.event));
                    name == p
                        || (name.len() > p.len()
                            && name.starts_with(p)
                            && name.as_bytes()[p.len()] == b'.')
                }
                _ => false,
            };
            if matches && self.guard_passes(t.guard, cx) {
                return Some(TransitionId(ti));
            }
        }
        None
    }

    fn guard_passes<BH: Behavior + ?Sized>(&self, g: Guard, cx: &mut StepCx<'_, '_, BH>) -> bool {
        match g {
            Guard::None => true,
            Guard::InState(s) => self.config.contains(s),
            Guard::NotInState(s) => !self.config.contains(s),
            Guard::Named(id) => cx.behavior.guard(
                id,
                &GuardContext {
                    machine_id: &self.id,
                    event: cx.event,
                },
            ),
        }
    }

    fn select_eventless<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
        out: &mut Enabled,
    ) -> Result<(), Error> {
        // A chart without eventless transitions never needs the scan of every active state
        // and its ancestors.
        if !self.chart.has_eventless() {
            return Ok(());
        }
        for leaf in self.config.iter() {
            if !self.chart.kind(leaf).is_atomic() {
                continue;
            }
            let mut s = Some(leaf);
            'up: while let Some(st) = s {
                for ti in self.chart.always_transitions(st) {
                    let t = self.chart.transition(TransitionId(ti));
                    if self.guard_passes(t.guard, cx) {
                        if !out.contains(&TransitionId(ti)) {
                            out.push(TransitionId(ti))
                                .map_err(|_| Error::InvalidChart {
                                    table: "states",
                                    index: leaf.0 as u32,
                                    reason: "more than MAX_ENABLED transitions in one microstep",
                                })?;
                        }
                        break 'up;
                    }
                }
                s = self.chart.parent(st);
            }
        }
        Ok(())
    }

    /// The targets of a transition with history states replaced by what they stand for.
    fn effective_targets(&self, tr: &Transition, out: &mut Vec<StateId, MAX_ENABLED>) {
        if !self.targets_history(tr) {
            // Several targets are distinct states (validated): they are the effective ones.
            for target in self.chart.targets(tr) {
                let _ = out.push(target);
            }
            return;
        }
        for target in self.chart.targets(tr) {
            self.push_effective(target, out);
        }
    }

    fn push_effective(&self, target: StateId, out: &mut Vec<StateId, MAX_ENABLED>) {
        let add = |s: StateId, out: &mut Vec<StateId, MAX_ENABLED>| {
            if !out.contains(&s) {
                let _ = out.push(s);
            }
        };
        if !self.chart.kind(target).is_history() {
            add(target, out);
            return;
        }
        let (slot, len) = self.chart.history_memory(target);
        if self.history_recorded(target) {
            for &m in &self.history[slot..slot + len] {
                if m != crate::chart::NONE {
                    add(StateId(m), out);
                }
            }
        } else {
            let defaults = self.chart.history_defaults(target);
            if defaults.is_empty() {
                // XState: the parent's initial transition. For a parallel parent that is
                // every region (each then enters its default), as XState does. A history
                // state that is its compound parent's initial state and has no default would
                // stand for itself; it stands for nothing instead.
                match self.chart.parent(target) {
                    Some(p) if self.chart.kind(p) == StateKind::Parallel => {
                        for region in self
                            .chart
                            .children(p)
                            .filter(|&c| !self.chart.kind(c).is_history())
                        {
                            add(region, out);
                        }
                    }
                    Some(p) => {
                        if let Some(init) = self
                            .chart
                            .initial(p)
                            .filter(|&i| !self.chart.kind(i).is_history())
                        {
                            add(init, out);
                        }
                    }
                    None => {}
                }
            } else {
                for d in defaults {
                    add(d, out);
                }
            }
        }
    }

    fn history_recorded(&self, h: StateId) -> bool {
        let (slot, _) = self.chart.history_memory(h);
        self.history
            .get(slot)
            .is_some_and(|&m| m != crate::chart::NONE)
    }

    /// XState's `getTransitionDomain`. `Ok(None)` is "above the root" (a reentering root
    /// transition: everything exits, the root included).
    fn domain(&self, t: TransitionId) -> Option<StateId> {
        let tr = self.chart.transition(t);
        let mut targets = Vec::<StateId, MAX_ENABLED>::new();
        self.effective_targets(&tr, &mut targets);
        self.domain_of(&tr, &targets)
    }

    /// Whether a target of `tr` is a history state.
    #[inline]
    fn targets_history(&self, tr: &Transition) -> bool {
        self.chart.has_history()
            && self
                .chart
                .targets(tr)
                .any(|x| self.chart.kind(x).is_history())
    }

    /// [`Self::domain`] with the effective targets given.
    fn domain_of(&self, tr: &Transition, targets: &[StateId]) -> Option<StateId> {
        let Some((&head, rest)) = targets.split_first() else {
            return Some(tr.source);
        };
        if !tr.reenter
            && targets
                .iter()
                .all(|&x| x == tr.source || self.chart.is_descendant(x, tr.source))
        {
            return Some(tr.source);
        }
        // findLCCA(targets ++ [source]): the first proper ancestor of the first target that
        // contains all the others.
        let mut anc = self.chart.parent(head);
        while let Some(a) = anc {
            if self.chart.is_descendant(tr.source, a)
                && rest.iter().all(|&x| self.chart.is_descendant(x, a))
            {
                return Some(a);
            }
            anc = self.chart.parent(a);
        }
        if tr.reenter {
            None
        } else {
            Some(StateId(0))
        }
    }

    fn exit_set_into(&self, t: TransitionId, set: &mut StateSet<W>) {
        let tr = self.chart.transition(t);
        if self.chart.targets(&tr).is_empty() {
            return;
        }
        self.exit_set_with_domain(&tr, self.domain(t), set);
    }

    /// [`Self::exit_set_into`] for a transition with targets whose domain is known.
    fn exit_set_with_domain(
        &self,
        tr: &Transition,
        domain: Option<StateId>,
        set: &mut StateSet<W>,
    ) {
        match domain {
            None => set.union_with(&self.config),
            Some(d) => {
                if tr.reenter && tr.source == d {
                    set.insert(d);
                }
                set.union_range(&self.config, StateId(d.0 + 1), self.chart.end(d));
            }
        }
    }

    /// XState's `removeConflictingTransitions`.
    fn remove_conflicts(&self, enabled: &Enabled) -> Enabled {
        let mut kept = Enabled::new();
        for &t1 in enabled {
            let mut x1 = StateSet::<W>::new();
            self.exit_set_into(t1, &mut x1);
            let s1 = self.chart.transition(t1).source;
            let mut preempted = false;
            let mut remove = Vec::<TransitionId, MAX_ENABLED>::new();
            for &t2 in &kept {
                let mut x2 = StateSet::<W>::new();
                self.exit_set_into(t2, &mut x2);
                if x1.intersects(&x2) {
                    if self
                        .chart
                        .is_descendant(s1, self.chart.transition(t2).source)
                    {
                        let _ = remove.push(t2);
                    } else {
                        preempted = true;
                        break;
                    }
                }
            }
            if !preempted {
                kept.retain(|t| !remove.contains(t));
                let _ = kept.push(t1);
            }
        }
        kept
    }

    /// One microstep. Returns whether the configuration or the history changed.
    ///
    /// `sibling`: whether the transitions may all be sibling moves (see
    /// [`Self::sibling_moves`]); false skips the check when they are known not to be.
    fn microstep<BH: Behavior + ?Sized>(
        &mut self,
        enabled: &Enabled,
        sibling: bool,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<bool, Error> {
        if enabled.is_empty() {
            return Ok(false);
        }
        self.stats.microsteps += 1;
        let mut exit = StateSet::<W>::new();
        let mut enter = StateSet::<W>::new();
        // The common case, sibling moves between atomic states, skips conflict removal, the
        // domain computation and history: their exit and entry sets are the sources and the
        // targets, they do not conflict (each exits only its own source), and they exit only
        // atomic states, which record no history.
        let simple = sibling && self.sibling_moves(enabled, &mut exit, &mut enter);
        let resolved;
        let filtered: &Enabled = if simple || enabled.len() == 1 {
            enabled
        } else {
            resolved = self.remove_conflicts(enabled);
            &resolved
        };
        let before = self.config;
        let mut history_changed = false;
        if !simple {
            self.exit_and_entry_sets(filtered, &mut exit, &mut enter);
            if self.chart.has_history() {
                history_changed = self.record_history(&exit);
            }
        }
        for s in exit.iter_rev() {
            self.run_actions(self.chart.exit_actions(s), cx)?;
            self.config.remove(s);
        }
        for &t in filtered {
            self.run_rare_actions(self.chart.transition_actions_of(t), cx)?;
        }
        self.enter_states(&enter, cx)?;
        self.after_microstep(cx)?;
        // Sibling moves: each source left the configuration for a state that was not in it.
        Ok(simple || history_changed || self.config != before || self.status != Status::Active)
    }

    /// The exit and entry sets of `filtered`, both from the configuration and history as
    /// they are before the microstep; each transition's domain once, for both.
    #[inline(never)]
    fn exit_and_entry_sets(
        &self,
        filtered: &Enabled,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) {
        for &t in filtered {
            let tr = self.chart.transition(t);
            let mut targets = self.chart.targets(&tr);
            match (targets.next(), targets.next()) {
                (None, _) => continue,
                (Some(x), None) if !self.chart.kind(x).is_history() => {
                    let (mut x_exit, mut x_enter) = (StateSet::new(), StateSet::new());
                    self.one_target_sets(&tr, x, &mut x_exit, &mut x_enter);
                    #[cfg(debug_assertions)]
                    self.check_sets(t, &x_exit, &x_enter);
                    exit.union_with(&x_exit);
                    enter.union_with(&x_enter);
                }
                _ => {
                    let domain = self.domain(t);
                    self.exit_set_with_domain(&tr, domain, exit);
                    self.entry_set_into(&tr, domain, enter);
                }
            }
        }
    }

    /// Debug builds (the tests): the exit and entry sets a shortcut found for `t` are the
    /// general algorithm's.
    #[cfg(debug_assertions)]
    fn check_sets(&self, t: TransitionId, exit: &StateSet<W>, enter: &StateSet<W>) {
        let tr = self.chart.transition(t);
        let (mut want_exit, mut want_enter) = (StateSet::new(), StateSet::new());
        let domain = self.domain(t);
        self.exit_set_with_domain(&tr, domain, &mut want_exit);
        self.entry_set_into(&tr, domain, &mut want_enter);
        assert_eq!(
            (exit, enter),
            (&want_exit, &want_enter),
            "shortcut sets of transition {t:?}"
        );
    }

    /// [`Self::domain`], [`Self::exit_set_with_domain`] and [`Self::entry_set_into`] for a
    /// transition whose only target `x` is not a history state, with one walk up from `x`:
    /// the ancestors it passes before the domain are the ones to enter.
    fn one_target_sets(
        &self,
        tr: &Transition,
        x: StateId,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) {
        let s = tr.source;
        // Inside the source without re-entering: the domain is the source, which is not
        // entered again. Otherwise it is found on the way up (findLCCA: the first proper
        // ancestor of `x` that contains the source).
        let inside = !tr.reenter && (x == s || self.chart.is_descendant(x, s));
        let mut domain = if inside {
            Some(s)
        } else if tr.reenter {
            None
        } else {
            Some(StateId(0))
        };
        if x != s || !inside {
            enter.insert(x);
        }
        self.add_descendants(x, enter);
        let mut anc = if x == s && inside {
            None
        } else {
            self.chart.parent(x)
        };
        while let Some(a) = anc {
            if (inside && a == s) || self.chart.is_descendant(s, a) {
                domain = Some(a);
                break;
            }
            // Below the domain: entered whatever the reentrancy (`add_ancestor`).
            enter.insert(a);
            if self.chart.kind(a) == StateKind::Parallel {
                self.add_regions(a, enter);
            }
            anc = self.chart.parent(a);
        }
        if let Some(d) = domain {
            if self.chart.kind(d) == StateKind::Parallel {
                let reentrancy = if self.chart.parent(s).is_none() && tr.reenter {
                    None
                } else {
                    domain
                };
                self.add_ancestor(d, reentrancy, enter);
            }
        }
        self.exit_set_with_domain(tr, domain, exit);
    }

    /// Records history for every exiting state, before any exit action runs. Returns whether
    /// there was any to record.
    #[inline(never)]
    fn record_history(&mut self, exit: &StateSet<W>) -> bool {
        let mut history_changed = false;
        for s in exit.iter() {
            for h in self.chart.children(s) {
                let kind = self.chart.kind(h);
                if !kind.is_history() {
                    continue;
                }
                history_changed = true;
                let (slot, len) = self.chart.history_memory(h);
                let mut n = 0;
                let end = self.chart.end(s);
                for a in self.config.iter_range(StateId(s.0 + 1), end) {
                    let keep = match kind {
                        StateKind::DeepHistory => self.chart.kind(a).is_atomic(),
                        _ => self.chart.parent(a) == Some(s),
                    };
                    if keep && n < len {
                        self.history[slot + n] = a.0;
                        n += 1;
                    }
                }
                for m in &mut self.history[slot + n..slot + len] {
                    *m = crate::chart::NONE;
                }
            }
        }
        history_changed
    }

    /// When every enabled transition moves from an atomic state to one atomic sibling under a
    /// compound parent (not reentering, no history), fills in the exit and entry sets (the
    /// sources and the targets) and returns true. XState's general algorithm gives the same
    /// sets for these: the domain is the parent, whose only active descendant is the source.
    fn sibling_moves(
        &self,
        enabled: &Enabled,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) -> bool {
        for &t in enabled {
            let Some((s, x)) = self.sibling_move(t) else {
                exit.clear();
                enter.clear();
                return false;
            };
            #[cfg(debug_assertions)]
            self.check_sets(t, &crate::set::one(s), &crate::set::one(x));
            exit.insert(s);
            enter.insert(x);
        }
        true
    }

    /// The source and the target of `t` if it is a sibling move (see
    /// [`Self::sibling_moves`]).
    #[inline]
    fn sibling_move(&self, t: TransitionId) -> Option<(StateId, StateId)> {
        let (s, x) = self.chart.sibling_move(t)?;
        // The source must be its parent's only active descendant (XState's exit set is all
        // of them; only a quirk can leave a second one there, and only in a chart with
        // parallel states: without them the configuration is one chain, through the active
        // source).
        if self.chart.has_parallel() {
            let parent = self.chart.parent(s)?;
            let end = self.chart.end(parent);
            if self.config.first_in(StateId(parent.0 + 1), end) != Some(s)
                || self.config.first_in(StateId(s.0 + 1), end).is_some()
            {
                return None;
            }
        }
        Some((s, x))
    }

    /// A microstep of one transition `t`: [`Self::microstep`], with sibling moves run
    /// straight from the transition record.
    #[inline]
    fn microstep_one<BH: Behavior + ?Sized>(
        &mut self,
        t: TransitionId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<bool, Error> {
        let Some((s, x)) = self.sibling_move(t) else {
            let mut enabled = Enabled::new();
            // One fits.
            let _ = enabled.push(t);
            return self.microstep(&enabled, false, cx);
        };
        #[cfg(debug_assertions)]
        self.check_sets(t, &crate::set::one(s), &crate::set::one(x));
        self.stats.microsteps += 1;
        self.run_actions(self.chart.exit_actions(s), cx)?;
        self.config.remove(s);
        self.run_rare_actions(self.chart.transition_actions_of(t), cx)?;
        self.config.insert(x);
        self.run_actions(self.chart.entry_actions(x), cx)?;
        if self.chart.has_final() && self.chart.kind(x) == StateKind::Final {
            self.entered_final(x, &mut StateSet::new())?;
            self.after_microstep(cx)?;
        }
        Ok(true)
    }

    #[inline]
    fn after_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if self.status == Status::Done {
            self.exit_all(cx)?;
        }
        Ok(())
    }

    /// Reaching the top-level final state exits every state, in reverse order; the
    /// configuration itself is kept, as XState keeps it in the final snapshot.
    #[inline(never)]
    fn exit_all<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let all = self.config;
        let hi = StateId((self.chart.state_count() - 1) as u16);
        for s in all.iter_range_rev(StateId(0), hi) {
            self.run_rare_actions(self.chart.exit_actions(s), cx)?;
        }
        Ok(())
    }

    /// XState's `computeEntrySet` for one transition.
    fn entry_set_into(&self, tr: &Transition, domain: Option<StateId>, enter: &mut StateSet<W>) {
        if self.chart.targets(tr).is_empty() {
            return;
        }
        for s in self.chart.targets(tr) {
            if !self.chart.kind(s).is_history()
                && (tr.source != s || Some(tr.source) != domain || tr.reenter)
            {
                enter.insert(s);
            }
            self.add_descendants(s, enter);
        }
        let mut targets = Vec::<StateId, MAX_ENABLED>::new();
        self.effective_targets(tr, &mut targets);
        let reentrancy = if self.chart.parent(tr.source).is_none() && tr.reenter {
            None
        } else {
            domain
        };
        for &s in &targets {
            // Proper ancestors of `s` below the domain (none when `s` is the domain), then
            // the domain itself if parallel.
            let mut anc = if Some(s) == domain {
                None
            } else {
                self.chart.parent(s)
            };
            while let Some(a) = anc {
                if Some(a) == domain {
                    break;
                }
                self.add_ancestor(a, reentrancy, enter);
                anc = self.chart.parent(a);
            }
            if let Some(d) = domain {
                if self.chart.kind(d) == StateKind::Parallel {
                    self.add_ancestor(d, reentrancy, enter);
                }
            }
        }
    }

    /// One step of XState's `addAncestorStatesToEnter`.
    fn add_ancestor(&self, a: StateId, reentrancy: Option<StateId>, enter: &mut StateSet<W>) {
        if reentrancy.is_none_or(|d| self.chart.is_descendant(a, d)) {
            enter.insert(a);
        }
        if self.chart.kind(a) == StateKind::Parallel {
            self.add_regions(a, enter);
        }
    }

    /// The regions of the parallel state `p` that nothing in `enter` is inside yet, entered
    /// with their default descendants.
    #[inline(never)]
    fn add_regions(&self, p: StateId, enter: &mut StateSet<W>) {
        for c in self.chart.children(p) {
            if self.chart.kind(c).is_history() {
                continue;
            }
            if !enter.any_in(StateId(c.0 + 1), self.chart.end(c)) {
                enter.insert(c);
                self.add_descendants(c, enter);
            }
        }
    }

    /// XState's `addDescendantStatesToEnter`.
    fn add_descendants(&self, s: StateId, enter: &mut StateSet<W>) {
        match self.chart.kind(s) {
            StateKind::ShallowHistory | StateKind::DeepHistory => {
                let Some(parent) = self.chart.parent(s) else {
                    return;
                };
                let mut list = Vec::<StateId, MAX_ENABLED>::new();
                self.push_effective(s, &mut list);
                for &m in &list {
                    enter.insert(m);
                    self.add_descendants(m, enter);
                }
                for &m in &list {
                    let mut anc = self.chart.parent(m);
                    while let Some(a) = anc {
                        if a == parent {
                            break;
                        }
                        self.add_ancestor(a, None, enter);
                        anc = self.chart.parent(a);
                    }
                }
            }
            StateKind::Compound => {
                if let Some(init) = self.chart.initial(s) {
                    if !self.chart.kind(init).is_history() {
                        enter.insert(init);
                    }
                    self.add_descendants(init, enter);
                }
            }
            StateKind::Parallel => self.add_regions(s, enter),
            _ => {}
        }
    }

    /// XState's `enterStates` after the entry set is known.
    #[inline]
    fn enter_states<BH: Behavior + ?Sized>(
        &mut self,
        enter: &StateSet<W>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let mut completed = StateSet::<W>::new();
        for s in enter.iter() {
            self.config.insert(s);
            self.run_actions(self.chart.entry_actions(s), cx)?;
            if self.chart.has_final() && self.chart.kind(s) == StateKind::Final {
                self.entered_final(s, &mut completed)?;
            }
        }
        Ok(())
    }

    /// What entering the final state `s` completes: done events for its parent and for
    /// every parallel ancestor whose regions are all final (each once per microstep, in
    /// `completed`), and the machine when the top level is.
    #[inline(never)]
    fn entered_final(&mut self, s: StateId, completed: &mut StateSet<W>) -> Result<(), Error> {
        let parent = self.chart.parent(s);
        let mut marker = match parent {
            Some(p) if self.chart.kind(p) == StateKind::Parallel => Some(p),
            Some(p) => self.chart.parent(p),
            None => None,
        };
        if let Some(p) = parent {
            if self.chart.kind(p) == StateKind::Compound {
                if let Some(e) = self.chart.done_event(p) {
                    self.queue
                        .push_back(e)
                        .map_err(|_| Error::QueueFull { capacity: Q })?;
                }
            }
        }
        while let Some(m) = marker {
            if self.chart.kind(m) != StateKind::Parallel
                || completed.contains(m)
                || !self.in_final_state(m, 0)
            {
                break;
            }
            completed.insert(m);
            if let Some(e) = self.chart.done_event(m) {
                self.queue
                    .push_back(e)
                    .map_err(|_| Error::QueueFull { capacity: Q })?;
            }
            marker = self.chart.parent(m);
        }
        if marker.is_none() {
            self.status = Status::Done;
        }
        Ok(())
    }

    fn in_final_state(&self, s: StateId, depth: usize) -> bool {
        match self.chart.kind(s) {
            StateKind::Compound => self
                .chart
                .children(s)
                .any(|c| self.chart.kind(c) == StateKind::Final && self.config.contains(c)),
            StateKind::Parallel if depth <= MAX_DEPTH => self
                .chart
                .children(s)
                .filter(|&c| !self.chart.kind(c).is_history())
                .all(|c| self.in_final_state(c, depth + 1)),
            StateKind::Final => true,
            _ => false,
        }
    }

    fn resolve_delay<BH: Behavior + ?Sized>(
        &self,
        d: Delay,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<Duration, Error> {
        match d {
            Delay::Millis(ms) => Ok(Duration::from_millis(ms as u64)),
            Delay::Named(id) => cx
                .behavior
                .delay(id)
                .ok_or(Error::UnboundDelay { delay: id.0 }),
        }
    }

    /// Runs the actions `range` of the action table in order. User actions, the common case,
    /// are called here; the others are decoded and run by [`Self::run_builtin`].
    #[inline]
    fn run_actions<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        for i in range {
            match self.chart.user_action_at(i) {
                Some(a) => self.run_user(a, cx),
                None => self.run_builtin(i, cx)?,
            }
        }
        Ok(())
    }

    /// [`Self::run_actions`] where actions are rare (transition actions, the final exit): a
    /// test inline, the loop out of line, to keep the code small.
    #[inline]
    fn run_rare_actions<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if range.is_empty() {
            return Ok(());
        }
        self.run_actions_outlined(range, cx)
    }

    #[inline(never)]
    fn run_actions_outlined<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        self.run_actions(range, cx)
    }

    #[inline]
    fn run_user<BH: Behavior + ?Sized>(&mut self, a: ActionId, cx: &mut StepCx<'_, '_, BH>) {
        let mut acx = ActionContext {
            effects: &mut self.io,
            machine_id: &self.id,
            event: cx.event,
            now: cx.now,
            failures: &mut self.stats.send_failures,
        };
        cx.behavior.action(a, &mut acx);
    }

    /// Runs action `i` of the action table, whatever its kind.
    #[inline(never)]
    fn run_builtin<BH: Behavior + ?Sized>(
        &mut self,
        i: u16,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        match self.chart.action_at(i) {
            Action::User(a) => self.run_user(a, cx),
            Action::Raise { event } => {
                self.queue
                    .push_back(event)
                    .map_err(|_| Error::QueueFull { capacity: Q })?;
            }
            Action::RaiseAfter { event, delay, id } => {
                let d = self.resolve_delay(delay, cx)?;
                let key = match id {
                    Some(s) => TimerKey::Named(s),
                    None => {
                        self.io.next_id = self.io.next_id.wrapping_add(1);
                        TimerKey::Id(self.io.next_id)
                    }
                };
                self.io
                    .push_timer(cx.now + d, key, TimerKind::Event(event))?;
            }
            Action::StartAfter { event, delay } => {
                let d = self.resolve_delay(delay, cx)?;
                self.io
                    .push_timer(cx.now + d, TimerKey::After(event), TimerKind::Event(event))?;
            }
            Action::CancelAfter { event } => {
                self.io.cancel_where(|k| k == TimerKey::After(event));
            }
            Action::Cancel { id } => {
                // Send ids are compared as strings: two ids for one name are one send id.
                let chart = self.chart;
                self.io.cancel_where(
                    |k| matches!(k, TimerKey::Named(x) if chart.str(x) == chart.str(id)),
                );
            }
            Action::SendTo {
                target,
                event,
                payload,
                delay,
                id,
            } => {
                let d = match delay {
                    Some(d) => Some(self.resolve_delay(d, cx)?),
                    None => None,
                };
                let target_is_self = self.chart.str(target) == self.id.as_str();
                let r = if target_is_self && d.is_none() {
                    let m = Message {
                        target: None,
                        event: Bytes::Chart(event),
                        payload: payload.map_or(Bytes::Empty, Bytes::Chart),
                    };
                    self.io
                        .outbox
                        .push(m)
                        .map_err(|_| Error::OutboxFull { capacity: O })
                } else {
                    self.io.send_chart(cx.now, target, event, payload, d, id)
                };
                r?;
            }
            Action::Log { message } => {
                cx.behavior.log(&self.id, self.chart.str(message));
            }
        }
        Ok(())
    }
}

fn write_json_str(w: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}
