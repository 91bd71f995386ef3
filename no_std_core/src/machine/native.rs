//! Machines whose macrostep is Rust code generated for one chart (`interstate compile
//! --native`), beside the interpreter.
//!
//! A [`NativeMachine`] is a [`Machine`] in everything but the step: the same outbox, timers,
//! requests, context, status, counters, snapshot and state value, in the same storage. Only
//! selecting transitions and running exit and entry sequences come from the generated code
//! (a [`NativeChart`]): transitions chosen by `match` on the event in each state, the
//! exit and entry sequences of each transition unrolled, the configuration the machine's
//! bit set sized for the chart. Actions and guards go through the same [`Behavior`], built-in
//! actions (raise, `sendTo`, timers, `assign`, ...) through the same code as the interpreter's,
//! decoded from the chart's table: they are rare, and their effects are the machine's.
//!
//! The generated code reaches the machine only through [`NativeHost`], so it needs no
//! `unsafe`, no allocation and nothing but `interstate_core`. A chart with history states
//! takes each microstep's exit and entry sets, the history it records and the entry order
//! from the interpreter's own functions ([`NativeHost::plan_microstep`]: what it enters
//! depends on what was recorded), and while a history quirk leaves the configuration
//! irregular, its selection too. A chart with eventless transitions beside parallel
//! states keeps the entry order (through [`NativeHost::stamp_entering`]) and selects its
//! eventless transitions with the interpreter's ordered scan.
//!
//! [`NativeMachine::send`] (and [`NativeMachine::send_ref`], by reference) is a lean entry
//! point: for an event to an active machine that is not a reply, it runs the generated
//! microstep over the event where it is (the interpreter's entry point copies it into its
//! step context), and the settle loop and the machine's failure or completion only when
//! the chart can have them and there is something to do.

use core::marker::PhantomData;

use crate::chart::{Chart, Guard, GuardId, StateId, TransitionId};
use crate::context::{Behavior, Event};
use crate::error::Error;
use crate::request::RequestId;
use crate::set::StateSet;
use crate::time::Instant;
use crate::wire::{Correlation, FailReason};

use super::{Enabled, Machine, Status, StepCx, Stepping};

/// A chart compiled to Rust: implemented by the code `interstate compile --native` writes,
/// never by hand. Every function works on the machine through `h`.
pub trait NativeChart {
    /// The chart's tables, validated (names, built-in actions, the state value).
    fn chart() -> Chart<'static>;
    /// The fingerprint of the tables the code was generated from: [`NativeMachine::new`]
    /// refuses tables that are not those.
    const FINGERPRINT: u64;
    /// Whether a macrostep can have more than its first microstep: the chart has eventless
    /// transitions, or something puts events on the internal queue (a `raise`, a final
    /// state's done event). Without, the loop after the first microstep is skipped, and so
    /// is the check for the machine's completion (only a final state completes it, and a
    /// chart with one settles): the generator must say `true` for any chart with a final
    /// state.
    const SETTLES: bool = true;
    /// Enters the initial configuration (the first microstep).
    fn initial<H: NativeHost>(h: &mut H) -> Result<(), Error>;
    /// Selects the transitions the current event enables (XState's `transitionNode` from
    /// the root) into `out`.
    fn select<H: NativeHost>(h: &mut H, out: &mut Enabled) -> Result<(), Error>;
    /// Selects the enabled eventless transitions into `out`.
    fn select_eventless<H: NativeHost>(h: &mut H, out: &mut Enabled) -> Result<(), Error>;
    /// Takes `enabled` (not empty) as one microstep. Returns whether the configuration
    /// changed (or the machine stopped being active), as the interpreter's microstep does.
    fn microstep<H: NativeHost>(h: &mut H, enabled: &Enabled) -> Result<bool, Error>;
    /// The microstep of an external event: [`Self::select`] then [`Self::microstep`]; a
    /// chart without parallel states selects at most one transition, and its generated code
    /// takes it without the list.
    #[inline]
    fn event<H: NativeHost>(h: &mut H) -> Result<(), Error> {
        let mut enabled = Enabled::new();
        Self::select(h, &mut enabled)?;
        if enabled.is_empty() {
            return Ok(());
        }
        Self::microstep(h, &enabled).map(|_| ())
    }
}

/// A state set the generated code builds exit and entry sets in (a [`StateSet`] of the
/// machine's width).
pub trait NativeSet: Copy + PartialEq {
    /// Adds state `s`.
    fn add(&mut self, s: u16);
    /// Removes and returns the state of the lowest index (document order).
    fn pop_first(&mut self) -> Option<u16>;
    /// Removes and returns the state of the highest index (reverse document order).
    fn pop_last(&mut self) -> Option<u16>;
}

impl<const W: usize> NativeSet for StateSet<W> {
    #[inline]
    fn add(&mut self, s: u16) {
        self.insert(StateId(s));
    }
    #[inline]
    fn pop_first(&mut self) -> Option<u16> {
        let s = self.iter().next()?;
        self.remove(s);
        Some(s.0)
    }
    #[inline]
    fn pop_last(&mut self) -> Option<u16> {
        let s = self.last()?;
        self.remove(s);
        Some(s.0)
    }
}

/// What generated code may do to a machine during a macrostep. States, events, actions and
/// guards are the chart's numbers (the ids of [`crate::chart`]).
pub trait NativeHost {
    /// The machine's state sets.
    type Set: NativeSet;
    /// Whether state `s` is active.
    fn active(&self, s: u16) -> bool;
    /// The current event's id, if the chart knows its name.
    fn event_id(&self) -> Option<u16>;
    /// The current event's name.
    fn event_name(&self) -> &str;
    /// Asks the behaviour for the named guard `g`.
    fn guard(&mut self, g: u16) -> bool;
    /// Evaluates the context condition at action-table index `i`.
    fn context_guard(&mut self, i: u16) -> bool;
    /// Runs user action `a`.
    fn user(&mut self, a: u16) -> Result<(), Error>;
    /// Runs the built-in action at action-table index `i`.
    fn builtin(&mut self, i: u16) -> Result<(), Error>;
    /// Counts a microstep (call once at its start).
    fn begin_microstep(&mut self);
    /// Marks `s` active.
    fn enter(&mut self, s: u16);
    /// Marks `s` inactive.
    fn exit(&mut self, s: u16);
    /// The final state `s` was entered: done events and the machine's completion, as the
    /// interpreter's (once per parallel ancestor per microstep).
    fn entered_final(&mut self, s: u16) -> Result<(), Error>;
    /// Ends a microstep: when the machine is done, every state exits.
    fn end_microstep(&mut self) -> Result<(), Error>;
    /// Whether the machine is still active.
    fn running(&self) -> bool;
    /// The active states.
    fn config(&self) -> Self::Set;
    /// An empty set.
    fn empty(&self) -> Self::Set;
    /// Adds the active states of `lo..=hi` to `set`.
    fn add_active_range(&self, set: &mut Self::Set, lo: u16, hi: u16);
    /// XState's `removeConflictingTransitions`, the interpreter's own.
    fn remove_conflicts(&self, enabled: &Enabled) -> Enabled;
    /// Charts that keep the entry order (eventless transitions beside parallel states),
    /// before a microstep's exits: whether the states it enters become the latest in the
    /// entry order, as the interpreter decides (`simple`: every transition is a sibling
    /// move).
    fn restamp(&self, exit: &Self::Set, enter: &Self::Set, simple: bool) -> bool;
    /// Stamps the states of `enter` that are not active as the latest in the entry order.
    fn stamp_entering(&mut self, enter: &Self::Set);
    /// Eventless selection in the order the active states entered, the interpreter's own
    /// (XState's `selectEventlessTransitions`).
    fn select_eventless_ordered(&mut self, out: &mut Enabled) -> Result<(), Error>;
    /// Charts with history states: whether a history quirk left the configuration irregular
    /// (see the interpreter's state value view); the generated selection, which assumes
    /// one active child per active compound state, is then not used.
    fn irregular(&self) -> bool;
    /// The interpreter's selection from the root (XState's `transitionNode` over the state
    /// value), for an irregular configuration.
    fn select_interpreted(&mut self, out: &mut Enabled) -> Result<(), Error>;
    /// The interpreter's selection of an event in a chart without parallel states, for an
    /// irregular configuration.
    fn select_chain_interpreted(&mut self) -> Option<u16>;
    /// Charts with history states: the first half of the interpreter's microstep, before
    /// any action runs (it counts the microstep): conflicts resolved, the exit set, history
    /// recorded, the entry set from the history as recorded, the entry order decided.
    /// `sibling`: whether the transitions may all be sibling moves.
    fn plan_microstep(
        &mut self,
        enabled: &Enabled,
        sibling: bool,
        exit: &mut Self::Set,
        enter: &mut Self::Set,
    ) -> NativePlan<Self::Set>;
    /// Charts with history states, after a microstep's entries: the state value's view
    /// (`simple`: the plan's).
    fn view_after_microstep(&mut self, simple: bool);
    /// Charts with history states: the sibling move of one transition entered `x` (after
    /// its bit, before its entry actions), as the interpreter's: in an irregular
    /// configuration, `x` becomes the latest in the entry order and the view is recomputed.
    fn entered_sibling(&mut self, x: u16);
}

/// What [`NativeHost::plan_microstep`] decided, for the generated rest of the microstep.
pub struct NativePlan<S> {
    /// The transitions left after conflict resolution, when it removed any (`None`: all).
    pub resolved: Option<Enabled>,
    /// Every transition is a sibling move between atomic states.
    pub simple: bool,
    /// Recording history changed it.
    pub history_changed: bool,
    /// The entered states become the latest in the entry order (stamp them before entering).
    pub restamp: bool,
    /// The configuration before the microstep.
    pub before: S,
}

/// Appends `t` (a transition of state `s`) to `out`.
#[inline]
pub fn push_enabled(out: &mut Enabled, t: u16, s: u16) -> Result<(), Error> {
    out.push(TransitionId(t)).map_err(|_| Error::InvalidChart {
        table: "states",
        index: s as u32,
        reason: "more than MAX_ENABLED transitions in one microstep",
    })
}

/// The [`NativeHost`] of a machine during one step. It holds the event by reference (the
/// interpreter's `StepCx` holds a copy): the generated step of a lean chart never copies it,
/// and the rare calls that need a `StepCx` (built-in actions, named guards, the machine's
/// completion) make one for the call.
struct Host<
    'm,
    'x,
    'e,
    'b,
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
> {
    m: &'m mut Machine<'c, W, Q, O, T, H, B, C, R>,
    /// The current event, its id resolved.
    event: &'x Event<'e>,
    /// The event's id, held apart from the event so that the generated selection's `match`
    /// compares a value in a register, not a field behind the reference.
    id: Option<u16>,
    now: Instant,
    behavior: &'b mut BH,
    /// The parallel states completed in this microstep (their done events are raised once).
    completed: StateSet<W>,
}

impl<
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
    > Host<'_, '_, 'e, '_, '_, W, Q, O, T, H, B, C, R, BH>
{
    /// Runs `f` with a step context made of the host's parts (a copy of the event).
    #[inline]
    fn with_cx<X>(
        &mut self,
        f: impl FnOnce(&mut Machine<'_, W, Q, O, T, H, B, C, R>, &mut StepCx<'e, '_, BH>) -> X,
    ) -> X {
        let mut cx = StepCx {
            now: self.now,
            event: *self.event,
            behavior: &mut *self.behavior,
        };
        f(self.m, &mut cx)
    }
}

impl<
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
        BH: Behavior + ?Sized,
    > NativeHost for Host<'_, '_, '_, '_, '_, W, Q, O, T, H, B, C, R, BH>
{
    type Set = StateSet<W>;
    #[inline(always)]
    fn active(&self, s: u16) -> bool {
        self.m.config.contains(StateId(s))
    }
    #[inline(always)]
    fn event_id(&self) -> Option<u16> {
        self.id
    }
    #[inline]
    fn event_name(&self) -> &str {
        self.event.name
    }
    #[inline]
    fn guard(&mut self, g: u16) -> bool {
        self.with_cx(|m, cx| m.guard_passes(Guard::Named(GuardId(g)), cx))
    }
    #[inline]
    fn context_guard(&mut self, i: u16) -> bool {
        self.with_cx(|m, cx| m.guard_passes(Guard::Context(i), cx))
    }
    #[inline(always)]
    fn user(&mut self, a: u16) -> Result<(), Error> {
        self.m.run_user_parts(
            crate::chart::ActionId(a),
            self.now,
            self.event,
            self.behavior,
        )
    }
    #[inline]
    fn builtin(&mut self, i: u16) -> Result<(), Error> {
        self.with_cx(|m, cx| m.run_builtin(i, cx))
    }
    #[inline(always)]
    fn begin_microstep(&mut self) {
        self.m.stats.microsteps += 1;
        self.completed = StateSet::new();
    }
    #[inline(always)]
    fn enter(&mut self, s: u16) {
        self.m.config.insert(StateId(s));
    }
    #[inline(always)]
    fn exit(&mut self, s: u16) {
        self.m.config.remove(StateId(s));
    }
    #[inline]
    fn entered_final(&mut self, s: u16) -> Result<(), Error> {
        self.m.entered_final(StateId(s), &mut self.completed)
    }
    #[inline(always)]
    fn end_microstep(&mut self) -> Result<(), Error> {
        if self.m.status == Status::Done {
            return self.with_cx(|m, cx| m.after_microstep(cx));
        }
        Ok(())
    }
    #[inline(always)]
    fn running(&self) -> bool {
        self.m.status == Status::Active
    }
    #[inline]
    fn config(&self) -> StateSet<W> {
        self.m.config
    }
    #[inline]
    fn empty(&self) -> StateSet<W> {
        StateSet::new()
    }
    #[inline]
    fn add_active_range(&self, set: &mut StateSet<W>, lo: u16, hi: u16) {
        set.union_range(&self.m.config, StateId(lo), StateId(hi));
    }
    #[inline]
    fn remove_conflicts(&self, enabled: &Enabled) -> Enabled {
        self.m.remove_conflicts(enabled)
    }
    #[inline]
    fn restamp(&self, exit: &StateSet<W>, enter: &StateSet<W>, simple: bool) -> bool {
        self.m.track_order && (simple || !enter.is_subset(&self.m.config) || !exit.is_subset(enter))
    }
    #[inline]
    fn stamp_entering(&mut self, enter: &StateSet<W>) {
        self.m.stamp_entering(enter);
    }
    #[inline]
    fn select_eventless_ordered(&mut self, out: &mut Enabled) -> Result<(), Error> {
        self.with_cx(|m, cx| m.select_eventless(cx, out))
    }
    #[inline]
    fn irregular(&self) -> bool {
        self.m.view.irregular
    }
    fn select_interpreted(&mut self, out: &mut Enabled) -> Result<(), Error> {
        self.with_cx(|m, cx| m.select(StateId(0), cx, out, 0).map(|_| ()))
    }
    fn select_chain_interpreted(&mut self) -> Option<u16> {
        self.with_cx(|m, cx| m.select_chain(cx).map(|t| t.0))
    }
    fn plan_microstep(
        &mut self,
        enabled: &Enabled,
        sibling: bool,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) -> NativePlan<StateSet<W>> {
        self.completed = StateSet::new();
        let p = self.m.plan_microstep(enabled, sibling, exit, enter);
        NativePlan {
            resolved: p.resolved,
            simple: p.simple,
            history_changed: p.history_changed,
            restamp: p.restamp,
            before: p.before,
        }
    }
    fn view_after_microstep(&mut self, simple: bool) {
        self.m.view_after_microstep(simple);
    }
    #[inline]
    fn entered_sibling(&mut self, x: u16) {
        if self.m.view.irregular {
            self.m.entered_irregular(StateId(x));
        }
    }
}

/// The host of `m` over a step context's parts.
macro_rules! host {
    ($m:expr, $cx:expr) => {
        Host {
            m: $m,
            event: &$cx.event,
            id: $cx.event.id.map(|e| e.0),
            now: $cx.now,
            behavior: &mut *$cx.behavior,
            completed: StateSet::new(),
        }
    };
}

/// The generated macrostep of `N`, as a [`Stepping`].
struct Native<N>(PhantomData<N>);

impl<N: NativeChart> Stepping for Native<N> {
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
        N::initial(&mut host!(m, cx))
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
        N::event(&mut host!(m, cx))
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
        if m.microstep_limit > 0 && !needs_settling::<N, W, Q, O, T, H, B, C, R>(m) {
            return Ok(());
        }
        settle_loop::<N, W, Q, O, T, H, B, C, R, BH>(m, cx)
    }
}

/// Whether a macrostep goes on after its first microstep: eventless transitions to look for,
/// or events on the internal queue (never, for a chart that cannot have either: `N::SETTLES`).
#[inline(always)]
fn needs_settling<
    N: NativeChart,
    const W: usize,
    const Q: usize,
    const O: usize,
    const T: usize,
    const H: usize,
    const B: usize,
    const C: usize,
    const R: usize,
>(
    m: &Machine<'_, W, Q, O, T, H, B, C, R>,
) -> bool {
    N::SETTLES && (m.chart.has_eventless() || !m.queue.is_empty())
}

/// The interpreter's `settle_loop` with the generated selection and microstep.
#[inline(never)]
fn settle_loop<
    'c: 'e,
    'e,
    N: NativeChart,
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
    let mut select_eventless = true;
    let mut iterations = 0u32;
    while m.status == Status::Active {
        iterations += 1;
        if iterations > m.microstep_limit {
            return Err(Error::MicrostepLimit {
                limit: m.microstep_limit,
            });
        }
        let mut enabled = Enabled::new();
        if select_eventless {
            N::select_eventless(&mut host!(&mut *m, cx), &mut enabled)?;
        }
        let eventless = !enabled.is_empty();
        if !eventless {
            let Some(e) = m.queue.pop_front() else {
                break;
            };
            cx.event = Event::from_id(&m.chart, e);
            N::select(&mut host!(&mut *m, cx), &mut enabled)?;
            if enabled.is_empty() {
                select_eventless = true;
                continue;
            }
        }
        let changed = N::microstep(&mut host!(&mut *m, cx), &enabled)?;
        select_eventless = !eventless || changed;
    }
    Ok(())
}

/// A machine whose macrostep is the code generated for the chart `N`, with the capacities of
/// [`Machine`] (and its defaults). It reads as a [`Machine`] (it dereferences to one: state
/// value, outbox, timers, context, snapshot) and steps with [`start`](Self::start),
/// [`send`](Self::send) and the timer and request calls here, which mirror the interpreter's.
pub struct NativeMachine<
    N: NativeChart,
    const W: usize = 2,
    const Q: usize = 4,
    const O: usize = 4,
    const T: usize = 2,
    const H: usize = 4,
    const B: usize = 40,
    const C: usize = 32,
    const R: usize = 0,
> {
    inner: Machine<'static, W, Q, O, T, H, B, C, R>,
    chart: PhantomData<N>,
}

impl<
        N: NativeChart,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > core::ops::Deref for NativeMachine<N, W, Q, O, T, H, B, C, R>
{
    type Target = Machine<'static, W, Q, O, T, H, B, C, R>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<
        N: NativeChart,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > NativeMachine<N, W, Q, O, T, H, B, C, R>
{
    /// A machine of the generated chart `N`, idle until [`start`](Self::start). Fails as
    /// [`Machine::new`] does (capacities), or with [`Error::InvalidChart`] when the tables
    /// are not the ones the code was generated for.
    pub fn new(machine_id: &str) -> Result<Self, Error> {
        let chart = N::chart();
        if chart.fingerprint() != N::FINGERPRINT {
            return Err(Error::InvalidChart {
                table: "states",
                index: 0,
                reason: "the generated code was made for other tables: regenerate it",
            });
        }
        Ok(NativeMachine {
            inner: Machine::new(chart, machine_id)?,
            chart: PhantomData,
        })
    }

    /// The machine as the interpreter's type, for what reads it.
    pub fn machine(&self) -> &Machine<'static, W, Q, O, T, H, B, C, R> {
        &self.inner
    }

    /// See [`Machine::restore`]: the generated steps work on the same configuration, context
    /// and timers, so a snapshot of either form restores into the other of the same chart.
    pub fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        self.inner.restore(now, bytes)
    }

    /// See [`Machine::start`].
    pub fn start<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        self.inner.start_with::<Native<N>, BH>(now, &[], behavior)
    }

    /// See [`Machine::start_with_data`].
    pub fn start_with_data<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut BH,
    ) -> Result<(), Error> {
        self.inner.start_with::<Native<N>, BH>(now, data, behavior)
    }

    /// See [`Machine::send`]. The same as [`send_ref`](Self::send_ref) with the event where
    /// it is.
    #[inline]
    pub fn send<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        self.send_ref(now, &event, behavior)
    }

    /// [`send`](Self::send) by reference: the event is read where it is, never copied on the
    /// lean path (an [`Event`] is 64 bytes; a caller that keeps its events, a node's decode
    /// buffer or a benchmark, need not make one per step).
    ///
    /// An event to an active machine that is not a reply takes a lean path: the generated
    /// microstep over the event where it is, the settle loop only when the chart can settle
    /// (`N::SETTLES`) and has something to settle, the machine's failure or completion
    /// handled only when they can have happened (a chart that cannot settle has no final
    /// state, so its microstep cannot complete the machine: its status is not read again).
    /// Anything else (a reply, whose request is checked first; a machine not active; a
    /// microstep limit of 0) goes through the interpreter's entry point with the generated
    /// step.
    #[inline]
    pub fn send_ref<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        event: &Event<'_>,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        let m = &mut self.inner;
        if m.status != Status::Active
            || matches!(event.correlation, Correlation::Reply(_))
            || m.microstep_limit == 0
        {
            return m.send_with::<Native<N>, BH>(now, *event, behavior);
        }
        m.stats.events += 1;
        // The event is used where it is. One without an id is resolved apart (copied, with
        // its id), so that here the generated selection knows the id is there.
        let r = match event.id {
            Some(id) => N::event(&mut Host {
                m: &mut *m,
                event,
                id: Some(id.0),
                now,
                behavior: &mut *behavior,
                completed: StateSet::new(),
            }),
            None => event_by_name::<N, W, Q, O, T, H, B, C, R, BH>(m, now, event, behavior),
        };
        // Only a final state completes a machine, and a chart with one settles (its done
        // event goes on the internal queue): without `N::SETTLES` the machine is still
        // active after an `Ok` microstep.
        if r.is_ok()
            && (!N::SETTLES
                || (m.status == Status::Active && !needs_settling::<N, W, Q, O, T, H, B, C, R>(m)))
        {
            return Ok(());
        }
        settle_then_finish::<N, W, Q, O, T, H, B, C, R, BH>(m, r, now, *event, behavior)
    }

    /// See [`Machine::handle_timeout`].
    pub fn handle_timeout<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.inner
            .handle_timeout_with::<Native<N>, BH>(now, behavior)
    }

    /// See [`Machine::fire_timer`].
    pub fn fire_timer<BH: Behavior + ?Sized>(
        &mut self,
        seq: u32,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.inner
            .fire_timer_with::<Native<N>, BH>(seq, now, behavior)
    }

    /// See [`Machine::handle_request_timeout`].
    pub fn handle_request_timeout<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.inner
            .handle_request_timeout_with::<Native<N>, BH>(now, behavior)
    }

    /// See [`Machine::request_failed`].
    pub fn request_failed<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut BH,
    ) -> Result<bool, Error> {
        self.inner
            .request_failed_with::<Native<N>, BH>(now, id, reason, behavior)
    }

    /// See [`Machine::target_gone`].
    pub fn target_gone<BH: Behavior + ?Sized>(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut BH,
    ) -> Result<usize, Error> {
        self.inner
            .target_gone_with::<Native<N>, BH>(now, machine, behavior)
    }

    /// See [`Machine::set_microstep_limit`].
    pub fn set_microstep_limit(&mut self, limit: u32) {
        self.inner.set_microstep_limit(limit);
    }

    /// See [`Machine::set_request_base`].
    pub fn set_request_base(&mut self, base: u32) {
        self.inner.set_request_base(base);
    }

    /// See [`Machine::consume_outbox`].
    pub fn consume_outbox(&mut self, n: usize) {
        self.inner.consume_outbox(n);
    }

    /// See [`Machine::clear_outbox`].
    pub fn clear_outbox(&mut self) {
        self.inner.clear_outbox();
    }
}

/// [`NativeMachine::send_ref`]'s microstep of an event sent by name: its id looked up in the
/// chart (`None` when the chart does not know the name: only partial descriptors and the
/// wildcard can match it), over a copy of the event that carries the id, as the
/// interpreter's step context holds it.
#[inline(never)]
fn event_by_name<
    N: NativeChart,
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
    m: &mut Machine<'static, W, Q, O, T, H, B, C, R>,
    now: Instant,
    event: &Event<'_>,
    behavior: &mut BH,
) -> Result<(), Error> {
    let id = m.chart.event(event.name);
    let event = Event { id, ..*event };
    N::event(&mut Host {
        m,
        event: &event,
        id: id.map(|e| e.0),
        now,
        behavior,
        completed: StateSet::new(),
    })
}

/// The rest of [`NativeMachine::send`]'s lean path after the event's microstep `r`: the
/// settle loop when there is something to settle, then the interpreter's `finish` (a failure
/// stops the machine; completion cancels its timers).
#[inline(never)]
fn settle_then_finish<
    N: NativeChart,
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
    m: &mut Machine<'static, W, Q, O, T, H, B, C, R>,
    r: Result<(), Error>,
    now: Instant,
    event: Event<'_>,
    behavior: &mut BH,
) -> Result<(), Error> {
    let r = r.and_then(|()| {
        // As the interpreter's step context holds it: with its id, when the chart knows it.
        let id = event.id.or_else(|| m.chart.event(event.name));
        let mut cx = StepCx {
            now,
            event: Event { id, ..event },
            behavior,
        };
        <Native<N> as Stepping>::settle(m, &mut cx)
    });
    m.finish(r)
}

/// Whether the event `name` matches the partial descriptor `prefix` (`prefix.*`, stored
/// without `.*`): the event is the prefix or starts with it and a dot, as the interpreter
/// (and XState) match them.
#[inline]
pub fn prefix_matches(name: &str, prefix: &str) -> bool {
    name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'.')
}
