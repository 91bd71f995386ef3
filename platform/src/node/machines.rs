//! The machines a node hosts, whatever their size: [`RunningMachine`] is what the node needs
//! of a [`Machine`], implemented for every capacity, so that one node hosts small and large
//! charts side by side, each machine sized for its chart.

use core::fmt;

use interstate_core::machine::{ChildChange, Stats, Status};
use interstate_core::set::StateSet;
use interstate_core::wire::FailReason;
use interstate_core::{
    Behavior, Chart, Error, Event, Instant, Machine, Outgoing, RequestId, StateId,
};

use crate::error::PlatformError;

/// A machine hosted by a node by default: 256 states, 64 outbox messages with 16 KiB of names
/// and payloads, 64 timers, 32 internal events, 64 history slots, 4 KiB of context, 16
/// pending requests.
pub type HostedMachine = Machine<'static, 4, 32, 64, 64, 64, 16384, 4096, 16>;

/// A machine for a chart larger than [`HostedMachine`] holds: 65,536 states and 1,024
/// history slots (the size `interstate simulate` runs, and more states than the JSON
/// compiler accepts), the other capacities as [`HostedMachine`]'s. [`Node::add_machine`](super::Node::add_machine) chooses it for such a
/// chart; its steps cost more, as its state sets are 256 times wider.
pub type LargeHostedMachine = Machine<'static, 1024, 32, 64, 64, 1024, 16384, 4096, 16>;

/// What a node needs of a machine, for any capacities: [`Machine`] of every size implements
/// it. Build a machine of the size a chart needs and hand it to
/// [`Node::add_sized_machine`](super::Node::add_sized_machine), or let
/// [`Node::add_machine`](super::Node::add_machine) choose between [`HostedMachine`] and
/// [`LargeHostedMachine`].
pub trait RunningMachine {
    /// The machine id.
    fn id(&self) -> &str;
    /// The chart it runs.
    fn chart(&self) -> &Chart<'static>;
    /// Where it is in its life.
    fn status(&self) -> Status;
    /// Whether it reached a top-level final state.
    fn is_done(&self) -> bool {
        self.status() == Status::Done
    }
    /// Counters.
    fn stats(&self) -> Stats;
    /// Whether a state is active.
    fn is_active(&self, s: StateId) -> bool;
    /// The state value as JSON (XState's `state.value`).
    fn write_value(&self, w: &mut dyn fmt::Write) -> fmt::Result;
    /// See [`Machine::start`].
    fn start(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<(), Error>;
    /// See [`Machine::start_with_data`] (how an invoked child chart gets its `input`).
    fn start_with_data(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error>;
    /// See [`Machine::send`].
    fn send(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error>;
    /// See [`Machine::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<bool, Error>;
    /// See [`Machine::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// See [`Machine::outbox_len`].
    fn outbox_len(&self) -> usize;
    /// The `i`th message waiting in the outbox, oldest first.
    fn outbox_nth(&self, i: usize) -> Option<Outgoing<'_>>;
    /// See [`Machine::consume_outbox`].
    fn consume_outbox(&mut self, n: usize);
    /// See [`Machine::context_json`].
    fn context_json(&self) -> Option<&str>;
    /// See [`Machine::snapshot`].
    fn snapshot(&self, now: Instant, buf: &mut [u8]) -> Result<usize, Error>;
    /// See [`Machine::restore`].
    fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error>;
    /// See [`Machine::request_failed`].
    fn request_failed(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut dyn Behavior,
    ) -> Result<bool, Error>;
    /// See [`Machine::target_gone`].
    fn target_gone(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut dyn Behavior,
    ) -> Result<usize, Error>;
    /// See [`Machine::set_request_base`].
    fn set_request_base(&mut self, base: u32);
    /// See [`Machine::pending_requests`].
    fn pending_requests(&self) -> usize;
    /// The `k`th start or stop of an invoked child not made yet (see
    /// [`Machine::child_changes`]); none for a machine that invokes nothing.
    fn child_change(&self, _k: usize) -> Option<ChildChange<'static>> {
        None
    }
    /// See [`Machine::forget_child_changes`].
    fn forget_child_changes(&mut self, _n: usize) {}
    /// See [`Machine::set_child_capacity`].
    fn set_child_capacity(&mut self, _capacity: usize) -> Result<(), Error> {
        Ok(())
    }
    /// The `k`th pending timer as (when due, arming number): see
    /// [`Machine::pending_timers`]. A node fires timers due at one instant across its
    /// machines in their arming order (see `timer_order`).
    fn pending_timer(&self, _k: usize) -> Option<(Instant, u32)> {
        None
    }
    /// See [`Machine::timer_armed_after`].
    fn timer_armed_after(&self, _seq: u32) -> Option<(usize, usize)> {
        None
    }
    /// See [`Machine::timer_changes`].
    fn timer_changes(&self) -> u32 {
        0
    }
    /// See [`Machine::clear_outbox`] (called with the outbox empty and every child change
    /// made: the counters of [`Machine::timer_armed_after`] start over).
    fn clear_outbox(&mut self) {}
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
    > RunningMachine for Machine<'static, W, Q, O, T, H, B, C, R>
{
    fn context_json(&self) -> Option<&str> {
        Machine::context_json(self)
    }
    fn snapshot(&self, now: Instant, buf: &mut [u8]) -> Result<usize, Error> {
        Machine::snapshot(self, now, buf)
    }
    fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        Machine::restore(self, now, bytes)
    }
    fn id(&self) -> &str {
        Machine::id(self)
    }
    fn chart(&self) -> &Chart<'static> {
        Machine::chart(self)
    }
    fn status(&self) -> Status {
        Machine::status(self)
    }
    fn stats(&self) -> Stats {
        Machine::stats(self)
    }
    fn is_active(&self, s: StateId) -> bool {
        Machine::is_active(self, s)
    }
    fn write_value(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        Machine::write_value(self, w)
    }
    fn start(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<(), Error> {
        Machine::start(self, now, behavior)
    }
    fn start_with_data(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error> {
        Machine::start_with_data(self, now, data, behavior)
    }
    fn send(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error> {
        Machine::send(self, now, event, behavior)
    }
    fn handle_timeout(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<bool, Error> {
        Machine::handle_timeout(self, now, behavior)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Machine::poll_timeout(self)
    }
    fn outbox_len(&self) -> usize {
        Machine::outbox_len(self)
    }
    fn outbox_nth(&self, i: usize) -> Option<Outgoing<'_>> {
        self.outbox_get(i)
    }
    fn consume_outbox(&mut self, n: usize) {
        Machine::consume_outbox(self, n)
    }
    fn request_failed(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut dyn Behavior,
    ) -> Result<bool, Error> {
        Machine::request_failed(self, now, id, reason, behavior)
    }
    fn target_gone(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut dyn Behavior,
    ) -> Result<usize, Error> {
        Machine::target_gone(self, now, machine, behavior)
    }
    fn set_request_base(&mut self, base: u32) {
        Machine::set_request_base(self, base)
    }
    fn pending_requests(&self) -> usize {
        Machine::pending_requests(self)
    }
    fn child_change(&self, k: usize) -> Option<ChildChange<'static>> {
        // Asked before every message of the outbox: most machines invoke nothing, and an
        // empty list's iterator cost some 60 instructions a question (counted).
        if !self.has_child_changes() {
            return None;
        }
        self.child_changes().nth(k)
    }
    fn forget_child_changes(&mut self, n: usize) {
        Machine::forget_child_changes(self, n)
    }
    fn set_child_capacity(&mut self, capacity: usize) -> Result<(), Error> {
        Machine::set_child_capacity(self, capacity)
    }
    fn pending_timer(&self, k: usize) -> Option<(Instant, u32)> {
        self.pending_timers().nth(k)
    }
    fn timer_armed_after(&self, seq: u32) -> Option<(usize, usize)> {
        Machine::timer_armed_after(self, seq)
    }
    fn timer_changes(&self) -> u32 {
        Machine::timer_changes(self)
    }
    fn clear_outbox(&mut self) {
        Machine::clear_outbox(self)
    }
}

/// A machine whose macrostep was generated for its chart (`interstate compile --native`)
/// runs in a node exactly where an interpreted one does: it is a [`Machine`] in everything
/// but its step, so everything but the stepping calls is the interpreter's own.
impl<
        N: interstate_core::machine::NativeChart,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > RunningMachine for interstate_core::machine::NativeMachine<N, W, Q, O, T, H, B, C, R>
{
    fn context_json(&self) -> Option<&str> {
        self.machine().context_json()
    }
    fn snapshot(&self, now: Instant, buf: &mut [u8]) -> Result<usize, Error> {
        self.machine().snapshot(now, buf)
    }
    fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Error> {
        interstate_core::machine::NativeMachine::restore(self, now, bytes)
    }
    fn id(&self) -> &str {
        self.machine().id()
    }
    fn chart(&self) -> &Chart<'static> {
        self.machine().chart()
    }
    fn status(&self) -> Status {
        self.machine().status()
    }
    fn stats(&self) -> Stats {
        self.machine().stats()
    }
    fn is_active(&self, s: StateId) -> bool {
        self.machine().is_active(s)
    }
    fn write_value(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        self.machine().write_value(w)
    }
    fn start(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<(), Error> {
        Self::start(self, now, behavior)
    }
    fn start_with_data(
        &mut self,
        now: Instant,
        data: &[u8],
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error> {
        Self::start_with_data(self, now, data, behavior)
    }
    fn send(
        &mut self,
        now: Instant,
        event: Event<'_>,
        behavior: &mut dyn Behavior,
    ) -> Result<(), Error> {
        Self::send(self, now, event, behavior)
    }
    fn handle_timeout(&mut self, now: Instant, behavior: &mut dyn Behavior) -> Result<bool, Error> {
        Self::handle_timeout(self, now, behavior)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.machine().poll_timeout()
    }
    fn outbox_len(&self) -> usize {
        self.machine().outbox_len()
    }
    fn outbox_nth(&self, i: usize) -> Option<Outgoing<'_>> {
        self.machine().outbox_get(i)
    }
    fn consume_outbox(&mut self, n: usize) {
        Self::consume_outbox(self, n)
    }
    fn request_failed(
        &mut self,
        now: Instant,
        id: RequestId,
        reason: FailReason,
        behavior: &mut dyn Behavior,
    ) -> Result<bool, Error> {
        Self::request_failed(self, now, id, reason, behavior)
    }
    fn target_gone(
        &mut self,
        now: Instant,
        machine: &str,
        behavior: &mut dyn Behavior,
    ) -> Result<usize, Error> {
        Self::target_gone(self, now, machine, behavior)
    }
    fn set_request_base(&mut self, base: u32) {
        Self::set_request_base(self, base)
    }
    fn pending_requests(&self) -> usize {
        self.machine().pending_requests()
    }
    fn pending_timer(&self, k: usize) -> Option<(Instant, u32)> {
        self.machine().pending_timers().nth(k)
    }
    fn timer_armed_after(&self, seq: u32) -> Option<(usize, usize)> {
        self.machine().timer_armed_after(seq)
    }
    fn timer_changes(&self) -> u32 {
        self.machine().timer_changes()
    }
    fn clear_outbox(&mut self) {
        Self::clear_outbox(self)
    }
}

/// A machine of the size `chart` needs: [`HostedMachine`] when it fits, else
/// [`LargeHostedMachine`] (an error naming the chart's size when even that is too small).
pub(super) fn sized_for(
    chart: Chart<'static>,
    id: &str,
) -> Result<Box<dyn RunningMachine>, PlatformError> {
    let small = StateSet::<4>::CAPACITY;
    let large = StateSet::<1024>::CAPACITY;
    if chart.state_count() <= small && chart.history_slots() <= 64 {
        Ok(Box::new(HostedMachine::new(chart, id)?))
    } else if chart.state_count() <= large && chart.history_slots() <= 1024 {
        Ok(Box::new(LargeHostedMachine::new(chart, id)?))
    } else {
        Err(PlatformError::ChartTooLarge {
            states: chart.state_count(),
            limit: large,
        })
    }
}
