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
//! - eventless selection asks the active atomic states in the order they became active (XState
//!   keeps its active states in insertion order; see `order`), each for its own or its nearest
//!   ancestor's first enabled eventless transition;
//! - a macrostep is the event's microstep, then eventless transitions and internal (raised and
//!   done) events until none is enabled; more than `microstep_limit` microsteps is an error.
//!
//! Nothing here allocates, blocks or reads a clock.
//!
//! The pieces, one file each:
//! - this file: [`Machine`] itself, its public API ([`Machine::start`], [`Machine::send`],
//!   timers and the outbox as the host sees them), [`Status`], [`Stats`] and [`Outgoing`];
//! - `store`: the outbox and the timers with the bytes behind them, and the `Effects`
//!   actions send through;
//! - `step`: macrosteps and microsteps (entering, exiting, final states and done events);
//! - `select`: which transitions an event or the eventless scan enables, and their conflicts;
//! - `exit_entry`: transition domains, exit and entry sets, history;
//! - `actions`: running a state's or a transition's actions, built-in and the host's;
//! - `json`: the state value as JSON ([`Machine::write_value`]);
//! - `context_store`: the machine's context (typed or JSON) and what actions and guards
//!   reach of it;
//! - `snapshot`: [`Machine::snapshot`] and [`Machine::restore`].
//! - `invoke`: invoked children (`invoke`, `sendTo` a child, `sendParent`) and the starts
//!   and stops the host reads beside the outbox.
//! - `order`: the order in which the active states entered (XState's insertion order), which
//!   its eventless selection and, after a history quirk, its state value follow.

mod actions;
mod context_store;
mod exit_entry;
mod invoke;
mod json;
mod native;
mod order;
mod select;
mod snapshot;
mod step;
mod store;
mod view;

pub use context_store::ContextFormat;
pub(crate) use context_store::{ContextRef, ContextView};
pub use invoke::{
    parent_id, write_child_id, ChildChange, ChildChangeKind, CHILD_DONE_PREFIX, CHILD_ERROR_PREFIX,
    MAX_CHILD_CHANGES, MAX_CHILD_ID, MAX_LIVE_CHILDREN,
};
pub use native::{
    prefix_matches, push_enabled, NativeChart, NativeHost, NativeMachine, NativePlan, NativeSet,
};
pub use snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

use heapless::{Deque, Vec};

use crate::chart::{Chart, EventId, StateId, TransitionId};
use crate::context::{Behavior, Event, Target};
use crate::error::Error;
use crate::request::{write_error_payload, ReplyVerdict, RequestId, Settled, REQUEST_ERROR_EVENT};
use crate::set::StateSet;
use crate::time::Instant;
use crate::wire::{Correlation, FailReason};

use store::{Bytes, Io, Message, TimerKind};

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
    /// Sends that failed because the outbox, the timers or their byte storage were full (or
    /// the request table: see [`Error::RequestsFull`]).
    pub send_failures: u32,
    /// Replies dropped because their request was settled already (timed out, failed), or
    /// was not this machine's: never delivered.
    pub late_replies: u32,
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
    /// The request it opens or answers, if any (the host puts it on the wire).
    pub correlation: Correlation,
}

/// A running statechart instance in fixed-size storage.
///
/// Capacities are const generics:
/// - `W`: 64-bit words of the state sets (`64 * W` states);
/// - `Q`: internal event queue (raised and done events of one macrostep);
/// - `O`: outbox messages between two drains;
/// - `T`: pending timers (`after` transitions and delayed sends);
/// - `H`: history memory slots (see [`Chart::history_slots`]);
/// - `B`: bytes of names and payloads behind the outbox, and again behind the timers;
/// - `C`: bytes of the context (a typed value encoded with postcard, or a JSON chart's
///   `context` as JSON text; see [`ContextFormat`]);
/// - `R`: requests waiting for their replies ([`crate::request::Pending`]).
///
/// Every overflow is an [`Error`] returned to the host (or to the action that sent).
///
/// The defaults fit a small device (728 bytes on a 32-bit target, the chart's tables
/// excluded, 128 of them the entry order: one byte per state): 128 states, 4 internal
/// events, 4 outbox messages, 2 timers, 4 history slots, 40 bytes of names and payloads, 32
/// bytes of context, and no room for pending requests (a machine that makes requests needs
/// `R` of at least 1: each costs about 80 bytes). Hosts size theirs for the work (the
/// platform's nodes use far larger ones); a chart that needs more is refused at
/// [`Machine::new`] or fails a step with the capacity it ran out of, never silently.
pub struct Machine<
    'c,
    const W: usize = 2,
    const Q: usize = 4,
    const O: usize = 4,
    const T: usize = 2,
    const H: usize = 4,
    const B: usize = 40,
    const C: usize = 32,
    const R: usize = 0,
> {
    chart: Chart<'c>,
    id: heapless::String<MAX_MACHINE_ID>,
    config: StateSet<W>,
    history: [u16; H],
    queue: Deque<EventId, Q>,
    status: Status,
    /// [`Chart::needs_entry_order`], read once: whether `order` is kept.
    track_order: bool,
    microstep_limit: u32,
    stats: Stats,
    io: Io<O, T, B, R>,
    view: view::View<W>,
    context: context_store::ContextStore<C>,
    order: order::EntryOrder<W>,
    children: invoke::Children,
    /// The event the last external event's name was found to be: a peer sends one name many
    /// times in a row, and comparing it with one name costs a seventh of the chart's search.
    last_event: Option<EventId>,
}

/// The transitions one microstep takes, in selection order.
pub type Enabled = Vec<TransitionId, MAX_ENABLED>;

/// The per-step inputs every stage of a macrostep needs.
struct StepCx<'e, 'b, BH: ?Sized> {
    now: Instant,
    event: Event<'e>,
    behavior: &'b mut BH,
}

/// How a macrostep is taken: by the interpreter over the chart's tables ([`Interpreted`]),
/// or by code generated for one chart ([`native`]). Everything around the macrostep (the
/// outbox, timers, requests, context, status) is the same [`Machine`]'s either way.
trait Stepping {
    /// The first microstep (entering the initial configuration).
    fn initial<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error>;
    /// The microstep of an external event.
    fn event<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error>;
    /// The eventless-and-internal-queue loop.
    fn settle<
        'c: 'e,
        'e,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error>;
}

/// The interpreter's macrostep.
struct Interpreted;

impl Stepping for Interpreted {
    #[inline(always)]
    fn initial<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        m.initial_microstep(cx)
    }
    #[inline(always)]
    fn event<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        // Generated charts refuse `invoke`, so only the interpreter checks for a child's
        // unhandled failure.
        m.check_child_error(cx)?;
        m.event_microstep(cx)
    }
    #[inline(always)]
    fn settle<
        'c: 'e,
        'e,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    >(
        m: &mut Machine<'c, W, Q, O, T, H, B, C, R>,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error> {
        m.settle(cx)
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
    /// Creates a machine for `chart` with the id `machine_id`. It is idle until [`start`](Self::start).
    pub fn new(chart: Chart<'c>, machine_id: &str) -> Result<Self, Error> {
        let id = Self::fits(&chart, machine_id)?;
        let mut context = context_store::ContextStore::new();
        if let Some(text) = chart.initial_context() {
            context.as_ref(&mut None).set_json(text.as_bytes())?;
        }
        Ok(Machine {
            chart,
            id,
            config: StateSet::new(),
            history: [0; H],
            queue: Deque::new(),
            status: Status::Idle,
            track_order: chart.needs_entry_order(),
            microstep_limit: DEFAULT_MICROSTEP_LIMIT,
            view: view::View::default(),
            context,
            order: order::EntryOrder::default(),
            children: invoke::Children::default(),
            last_event: None,
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
                child_changes_made: 0,
                changes: 0,
                requests: crate::request::Pending::new(),
            },
        })
    }

    /// The checks of [`new`](Self::new): the chart fits the capacities, the id its string.
    fn fits(
        chart: &Chart<'c>,
        machine_id: &str,
    ) -> Result<heapless::String<MAX_MACHINE_ID>, Error> {
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
        Ok(id)
    }

    /// Makes this machine what [`new`](Self::new)`(chart, machine_id)` makes, in place, for a
    /// host that starts many machines one after another in the same storage (a simulation
    /// that starts a child per firing of a timer loop). The byte storage behind the outbox,
    /// the timers and the context is not cleared (only the parts in use are ever read), which
    /// is what makes this cheaper than `new` when the capacities are large. On an error (those
    /// of `new`) the machine is unchanged when the chart does not fit, and left without a
    /// context when its initial context does not fit: reset it again before using it.
    pub fn reset_for(&mut self, chart: Chart<'c>, machine_id: &str) -> Result<(), Error> {
        let id = Self::fits(&chart, machine_id)?;
        self.chart = chart;
        self.id = id;
        self.config = StateSet::new();
        self.history = [0; H];
        self.queue = Deque::new();
        self.status = Status::Idle;
        self.track_order = chart.needs_entry_order();
        self.microstep_limit = DEFAULT_MICROSTEP_LIMIT;
        self.view = view::View::default();
        self.order = order::EntryOrder::default();
        self.children = invoke::Children::default();
        // An id of the chart before: it may name nothing in this one.
        self.last_event = None;
        self.stats = Stats::default();
        let io = &mut self.io;
        io.outbox.clear();
        io.out_used = 0;
        io.timers.clear();
        io.timer_used = 0;
        io.next_id = 0;
        io.seq = 0;
        io.child_changes_made = 0;
        io.changes = 0;
        io.requests = crate::request::Pending::new();
        self.context.meta = context_store::ContextMeta::default();
        if let Some(text) = chart.initial_context() {
            self.context.as_ref(&mut None).set_json(text.as_bytes())?;
        }
        Ok(())
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
        self.start_with::<Interpreted, BH>(now, &[], behavior)
    }

    /// [`Self::start`] with `data` as the payload of the first step's event, `xstate.init`:
    /// what an invoked child gets from its invocation's `input` (XState's init event carries
    /// it as `event.input`).
    pub fn start_with_data<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut BH,
    ) -> Result<(), Error> {
        self.start_with::<Interpreted, BH>(now, data, behavior)
    }

    /// [`Self::start`] with the macrostep of `S` (the interpreter's, or a generated one).
    fn start_with<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut BH,
    ) -> Result<(), Error> {
        if self.status != Status::Idle {
            return Err(Error::AlreadyStarted);
        }
        self.status = Status::Active;
        let mut cx = StepCx {
            now,
            event: Event::new("xstate.init").with_payload(data),
            behavior,
        };
        let r = S::initial(self, &mut cx).and_then(|()| S::settle(self, &mut cx));
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
        self.send_with::<Interpreted, BH>(now, event, behavior)
    }

    /// [`Self::send`] with the macrostep of `S`.
    fn send_with<S: Stepping, BH: Behavior + ?Sized>(
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
        if let Correlation::Reply(id) = event.correlation {
            // A reply is delivered only while its request waits for it: exactly once, and
            // never after the request was settled otherwise.
            if self.io.requests.reply(id, event.sender) == ReplyVerdict::Late {
                self.stats.late_replies = self.stats.late_replies.wrapping_add(1);
                core_log!(
                    info,
                    "machine {}: a late reply ({}) to request {} was dropped",
                    self.id.as_str(),
                    event.name,
                    id
                );
                return Ok(());
            }
        }
        self.step_event::<S, BH>(now, event, behavior)
    }

    /// A macrostep on an external event (the machine is active).
    fn step_event<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        let mut event = event;
        if event.id.is_none() {
            event.id = match self.last_event {
                Some(id) if self.chart.event_is_named(id, event.name) => Some(id),
                _ => {
                    let id = self.chart.event(event.name);
                    self.last_event = id.or(self.last_event);
                    id
                }
            };
        }
        self.stats.events += 1;
        let mut cx = StepCx {
            now,
            event,
            behavior,
        };
        let r = S::event(self, &mut cx).and_then(|()| S::settle(self, &mut cx));
        self.finish(r)
    }

    /// When the next timer (or request timeout) is due, if any: call
    /// [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.io.timers.iter().map(|t| t.due).min();
        match (timers, self.io.requests.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Settles the earliest request whose timeout is due at `now`, if any, as
    /// [`handle_timeout`](Self::handle_timeout) would, leaving every timer alone (for a host
    /// that fires timers itself, by [`fire_timer`](Self::fire_timer)). Returns whether one
    /// was due.
    pub fn handle_request_timeout<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.handle_request_timeout_with::<Interpreted, BH>(now, behavior)
    }

    fn handle_request_timeout_with<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        if self.status != Status::Active {
            return Ok(false);
        }
        match self.io.requests.expire(now) {
            Some(s) => self
                .request_error::<S, BH>(now, &s, behavior)
                .map(|()| true),
            None => Ok(false),
        }
    }

    /// Requests of this machine waiting for their replies.
    pub fn pending_requests(&self) -> usize {
        self.io.requests.len()
    }

    /// Whether request `id` waits for its reply.
    pub fn is_request_pending(&self, id: RequestId) -> bool {
        self.io.requests.is_pending(id)
    }

    /// Request ids start after `base` (see [`crate::request::Pending::set_base`]).
    pub fn set_request_base(&mut self, base: u32) {
        self.io.requests.set_base(base);
    }

    /// The host could not deliver request `id` (a delivery failure of a message whose
    /// correlation was [`Correlation::Request`]): settles it with an
    /// [`REQUEST_ERROR_EVENT`] to this machine, unless it was settled already. Returns
    /// whether it settled the request.
    pub fn request_failed<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.request_failed_with::<Interpreted, BH>(now, id, reason, behavior)
    }

    fn request_failed_with<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        match self.io.requests.fail(id, reason) {
            Some(s) => self
                .request_error::<S, BH>(now, &s, behavior)
                .map(|()| true),
            None => Ok(false),
        }
    }

    /// The machine `machine` left the bus (the host saw it leave the registry): every
    /// request waiting for its reply fails as `target-gone`, each with its own
    /// [`REQUEST_ERROR_EVENT`]. Returns how many settled.
    pub fn target_gone<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut BH,
    ) -> Result<usize, Error> {
        self.target_gone_with::<Interpreted, BH>(now, machine, behavior)
    }

    fn target_gone_with<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut BH,
    ) -> Result<usize, Error> {
        let mut n = 0;
        while let Some(s) = self.io.requests.target_gone(machine) {
            self.request_error::<S, BH>(now, &s, behavior)?;
            n += 1;
        }
        Ok(n)
    }

    /// Delivers the failure of a settled request as an external event (a macrostep).
    fn request_error<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        s: &Settled,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        // The payload: a fixed-size buffer on the stack (an id of 64 bytes, escaped, fits).
        let mut payload = heapless::String::<448>::new();
        let _ = write_error_payload(s, &mut payload);
        let event = Event::new(REQUEST_ERROR_EVENT)
            .with_payload(payload.as_bytes())
            .with_correlation(Correlation::Reply(s.id.0));
        match self.status {
            Status::Active => self.step_event::<S, BH>(now, event, behavior),
            _ => Ok(()),
        }
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
        self.handle_timeout_with::<Interpreted, BH>(now, behavior)
    }

    fn handle_timeout_with<S: Stepping, BH: Behavior + ?Sized>(
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
        // A request timing out before every timer due now (or with none due) goes first.
        let request_due = self.io.requests.poll_timeout().filter(|&d| d <= now);
        if let Some(d) = request_due {
            if best.is_none_or(|b| d < self.io.timers[b].due) {
                if let Some(s) = self.io.requests.expire(now) {
                    self.request_error::<S, BH>(now, &s, behavior)?;
                    return Ok(true);
                }
            }
        }
        let Some(i) = best else { return Ok(false) };
        self.fire::<S, BH>(i, now, behavior)?;
        Ok(true)
    }

    /// The pending timers as (when due, arming number): the number grows with every timer
    /// armed, so it orders timers due at one instant and names one for
    /// [`fire_timer`](Self::fire_timer).
    pub fn pending_timers(&self) -> impl Iterator<Item = (Instant, u32)> + '_ {
        self.io.timers.iter().map(|t| (t.due, t.seq))
    }

    /// When timer `seq` (see [`pending_timers`](Self::pending_timers)) was armed: after how
    /// many of the outbox's messages and of the [child changes](Self::child_changes), both
    /// counted since the outbox was last cleared (meaningful for the timers armed since
    /// then). XState arms a machine's delayed events in its deferred actions, in order with
    /// its sends and its children's starts: a host that orders timers due at the same
    /// instant across machines (`interstate simulate`) places this machine's timers among
    /// the timers its children arm as they start and take its messages.
    pub fn timer_armed_after(&self, seq: u32) -> Option<(usize, usize)> {
        let t = self.io.timers.iter().find(|t| t.seq == seq)?;
        Some((t.after_messages as usize, t.after_changes as usize))
    }

    /// A number that changes whenever a timer is armed or cancelled (not when one fires):
    /// a host replaying a clock that re-reads its timer list after such a change can tell.
    pub fn timer_changes(&self) -> u32 {
        self.io.changes
    }

    /// Fires the timer armed as number `seq` (see [`pending_timers`](Self::pending_timers))
    /// if it is still pending and due at `now`, as [`handle_timeout`](Self::handle_timeout)
    /// fires the earliest. Returns whether it fired.
    pub fn fire_timer<BH: Behavior + ?Sized>(
        &mut self,
        seq: u32,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.fire_timer_with::<Interpreted, BH>(seq, now, behavior)
    }

    fn fire_timer_with<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        seq: u32,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        if self.status != Status::Active {
            return Ok(false);
        }
        let Some(i) = self
            .io
            .timers
            .iter()
            .position(|t| t.seq == seq && t.due <= now)
        else {
            return Ok(false);
        };
        self.fire::<S, BH>(i, now, behavior)?;
        Ok(true)
    }

    fn fire<S: Stepping, BH: Behavior + ?Sized>(
        &mut self,
        i: usize,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        // Once a timer with a send id (or an `after` delay) fires, `cancel` of that id reaches
        // no timer.
        match self.io.timers[i].key {
            store::TimerKey::Named(id) => {
                let chart = self.chart;
                self.io.unmap_where(
                    |k| matches!(k, store::TimerKey::Named(x) if chart.str(x) == chart.str(id)),
                );
            }
            key @ store::TimerKey::After(_) => self.io.unmap_where(|k| k == key),
            store::TimerKey::Id(_) => {}
        }
        match self.io.timers[i].kind {
            TimerKind::Event(e) => {
                self.io.remove_timer(i);
                self.send_with::<S, BH>(now, Event::from_id(&self.chart, e), behavior)?;
            }
            TimerKind::Send(m) => {
                self.io.outbox_from_timer(m)?;
                self.io.remove_timer(i);
            }
        }
        Ok(())
    }

    /// Number of messages waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.io.outbox.len()
    }

    /// The messages waiting in the outbox, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = Outgoing<'_>> + '_ {
        self.io.outbox.iter().map(move |m| self.outgoing(m))
    }

    /// The `i`th message waiting in the outbox (0: the oldest), without looking at those
    /// before it (`outbox().nth(i)` makes a view of each).
    pub fn outbox_get(&self, i: usize) -> Option<Outgoing<'_>> {
        self.io.outbox.get(i).map(|m| self.outgoing(m))
    }

    fn outgoing<'s>(&'s self, m: &Message) -> Outgoing<'s> {
        let s = |b: Bytes| {
            core::str::from_utf8(Io::<O, T, B, R>::bytes_in(
                self.chart,
                b,
                &self.io.out_bytes,
            ))
            .unwrap_or("")
        };
        Outgoing {
            target: match m.target {
                None => Target::ThisMachine,
                Some(b) => Target::from_stored(s(b)),
            },
            event: s(m.event),
            payload: Io::<O, T, B, R>::bytes_in(self.chart, m.payload, &self.io.out_bytes),
            correlation: self.io.correlation(m),
        }
    }

    /// Removes the first `n` messages of the outbox (those delivered), keeping the rest in
    /// order. Lets a host stop at the first message it cannot deliver yet (backpressure).
    pub fn consume_outbox(&mut self, n: usize) {
        if n >= self.io.outbox.len() {
            // The changes after the last message stay for the host to make.
            self.children.consumed(self.io.outbox.len());
            self.io.outbox.clear();
            self.io.out_used = 0;
            return;
        }
        for _ in 0..n {
            self.io.outbox.remove(0);
        }
        self.children.consumed(n);
    }

    /// Empties the outbox. Call it after delivering what [`outbox`](Self::outbox) listed.
    pub fn clear_outbox(&mut self) {
        self.io.outbox.clear();
        self.io.out_used = 0;
        self.io.child_changes_made = 0;
        self.children.clear_changes();
    }
}
