//! Hosting: adding machines, watches, timers, and routing the machines' outboxes (ports and
//! their sends are `port_sends`, the follow-up work calls leave behind `settle`, the
//! machines' table and delivering to them `local`).

use interstate_core::bus::client::TimeoutTodo;
use interstate_core::bus::SendRefused;
use interstate_core::hub::Handled;
use interstate_core::wire::{is_reserved_event, Deliver, FailReason};
use interstate_core::{Behavior, Chart, Instant, Target};

use crate::error::PlatformError;

use super::client_side::Sink;
use super::hub_side::{ForwardIo, HubIoImpl};
use super::local::{Deferred, Failure, Hosted, Origin, Watch};
use super::machines::{sized_for, RunningMachine};
use super::payload::local_info;
use super::{Node, NodeConfig, Side};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Routed {
    Sent,
    Full,
}

/// A starting sequence number above any a previous incarnation of this process can have used
/// (nanoseconds since the epoch), so receivers never take a restarted sender's messages for
/// duplicates.
pub(super) fn sequence_base() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

impl Node {
    /// Makes the hosted machine or port `watcher` receive
    /// [`MACHINE_DOWN_EVENT`](super::MACHINE_DOWN_EVENT) when the machine `target` leaves the
    /// bus and [`MACHINE_UP_EVENT`](super::MACHINE_UP_EVENT) when it (re)joins it, as the
    /// registry says: a crashed worker's supervisor-restarted successor shows as down, then up.
    /// Returns whether `target` is on the bus now.
    pub fn watch(&mut self, watcher: &str, target: &str) -> Result<bool, PlatformError> {
        if !self.local.by_id.contains_key(watcher) && !self.local.ports.contains_key(watcher) {
            return Err(PlatformError::BadMachineId { id: watcher.into() });
        }
        let up = self.local.registry.contains(target);
        let w = self
            .local
            .watches
            .entry(target.to_string())
            .or_insert(Watch {
                up,
                watchers: Vec::new(),
            });
        if !w.watchers.iter().any(|x| x == watcher) {
            w.watchers.push(watcher.to_string());
        }
        Ok(up)
    }

    pub(super) fn check_new_id(&self, id: &str) -> Result<(), PlatformError> {
        if !interstate_core::hub::valid_machine_id(id) {
            return Err(PlatformError::BadMachineId { id: id.into() });
        }
        if self.local.by_id.contains_key(id) || self.local.ports.contains_key(id) {
            return Err(PlatformError::MachineIdTaken { id: id.into() });
        }
        Ok(())
    }

    /// Adds a machine running `chart` with `behavior`, starts it, and registers `id` on the
    /// bus. Fails if the id is in use in this node or owned by a live peer.
    ///
    /// The machine is sized for the chart: a [`super::HostedMachine`] (256 states) when it
    /// fits, else a [`super::LargeHostedMachine`] (65,536 states). For other capacities, build
    /// the machine yourself and use [`add_sized_machine`](Self::add_sized_machine).
    ///
    /// The chart must live as long as the node: compile it once and leak it (a node's
    /// machines live as long as the process).
    pub fn add_machine(
        &mut self,
        id: &str,
        chart: Chart<'static>,
        behavior: Box<dyn Behavior>,
    ) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        let machine = sized_for(chart, id)?;
        self.add_sized_machine(machine, behavior)
    }

    /// Adds a machine built by the caller, of any capacities (any
    /// `interstate_core::Machine<'static, W, Q, O, T, H, B, C>`, not started), under its own id;
    /// starts it and registers it as [`add_machine`](Self::add_machine) does. For a chart
    /// that needs more states, timers, outbox room or history than the node's sizes give:
    ///
    /// ```no_run
    /// # fn f(node: &mut interstate_platform::node::Node, chart: interstate_core::Chart<'static>,
    /// #      behavior: Box<dyn interstate_core::Behavior>) -> Result<(), Box<dyn std::error::Error>> {
    /// // 128 * 64 = 8192 states, 256 timers, 128 history slots.
    /// let m = interstate_core::Machine::<'static, 128, 32, 64, 256, 128, 16384>::new(chart, "big")?;
    /// node.add_sized_machine(Box::new(m), behavior)?;
    /// # Ok(()) }
    /// ```
    pub fn add_sized_machine(
        &mut self,
        machine: Box<dyn RunningMachine>,
        behavior: Box<dyn Behavior>,
    ) -> Result<(), PlatformError> {
        self.add_hosted(machine, behavior, None)
    }

    /// [`add_machine`](Self::add_machine) for a chart that invokes actors: `actors` binds
    /// every `src` its `invoke`s (and its children's) name, a child chart or a service (see
    /// [`super::invoked`]). The children start and stop as the machine's steps say.
    pub fn add_machine_with_actors(
        &mut self,
        id: &str,
        chart: Chart<'static>,
        behavior: Box<dyn Behavior>,
        actors: super::invoked::Actors,
    ) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        let mut machine = sized_for(chart, id)?;
        machine.set_child_capacity(self.config.children_per_machine)?;
        self.add_hosted(machine, behavior, Some(std::rc::Rc::new(actors)))
    }

    fn add_hosted(
        &mut self,
        machine: Box<dyn RunningMachine>,
        behavior: Box<dyn Behavior>,
        actors: Option<std::rc::Rc<super::invoked::Actors>>,
    ) -> Result<(), PlatformError> {
        let id = machine.id().to_string();
        let id = id.as_str();
        self.check_new_id(id)?;
        // The machine is in the table and started before its id is announced, so that a
        // message sent the moment the registry shows it finds it.
        let idx = self.local.machines.len();
        let mut hosted = Hosted::new(id, machine, behavior);
        hosted.actors = actors;
        self.local.machines.push(hosted);
        self.local.by_id.insert(id.to_string(), idx);
        let now = self.now();
        let h = &mut self.local.machines[idx];
        // Request ids of an earlier process with this machine's id match nothing here.
        h.machine.set_request_base(super::requests::request_base());
        // A durable node's machine goes on from its journal, if it has one.
        let restored = match self.open_durable(idx) {
            Ok(Some((restored, state))) => {
                // Retransmissions of what it took before are duplicates.
                let received = self.side.received_mut();
                for (sender, &(pid, durable, seq)) in &state.senders {
                    received.restore_delivered_as(id, sender, pid, durable, seq);
                }
                self.local.machines[idx].durable = Some(state);
                restored
            }
            Ok(None) => false,
            Err(e) => {
                self.local.machines.pop();
                self.local.by_id.remove(id);
                return Err(e);
            }
        };
        // The child charts its first step invokes start before its first actions run, as
        // in XState (`first_step`).
        let mut deferred = Deferred::default();
        let started = if restored {
            Ok(())
        } else {
            self.start_first_step(idx, now, &[], &mut deferred)
        };
        if let Err(e) = started {
            if let Some(d) = self.local.durable.as_mut() {
                d.journal.close_machine(id);
            }
            self.remove_added(idx, id, deferred);
            return Err(e.into());
        }
        let durable = self.local.durable.is_some();
        if let Err(e) = self.register_on_bus(id, durable) {
            self.remove_added(idx, id, deferred);
            return Err(e);
        }
        self.local.machines[idx].registered = true;
        self.local.registry.insert(local_info(id));
        self.settle(deferred);
        self.pump()?;
        Ok(())
    }

    pub(super) fn fire_timers(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        self.local.expire_port_requests(now);
        self.fire_machine_timers()?;
        let mut connect = false;
        let mut lost = None;
        match &mut self.side {
            Side::Hub(h) => {
                h.delivery.sweep(now);
                if h.hub.poll_timeout().is_some_and(|t| t <= now) {
                    let mut deferred = Deferred::default();
                    let mut io = HubIoImpl::new(
                        &mut h.links,
                        &mut self.local,
                        Some(&mut h.delivery),
                        now,
                        &mut deferred,
                    );
                    h.hub.handle_timeout(now, &mut io);
                    self.settle(deferred);
                }
            }
            Side::Client(c) => {
                // Blocked by backpressure, the hub does not read our pings either: it is
                // taken for alive until the stall outlasts the idle timeout (within which the
                // hub closes a receiver that reads nothing, ending the stall).
                if c.blocked_since
                    .is_some_and(|b| now < b + self.config.idle_timeout)
                    && c.conn.as_ref().is_some_and(|cn| cn.pending() > 0)
                {
                    c.client.hub_busy(now);
                }
                if c.client.poll_timeout(now).is_some_and(|t| t <= now) {
                    let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                    match c.client.handle_timeout(now, &mut sink) {
                        TimeoutTodo::Connect => connect = true,
                        TimeoutTodo::Close => lost = Some("the hub stopped answering"),
                        TimeoutTodo::Nothing => {}
                    }
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(why);
        }
        if connect {
            self.client_connect()?;
        }
        Ok(())
    }

    /// Routes every machine's outbox, sends acknowledgements owed, moves outstanding messages
    /// onto the hub link, and flushes every link. Runs until nothing moves.
    ///
    /// A message to another process is encoded straight from the machine's outbox into the
    /// outstanding buffer; one to a machine of this node is copied once, into a reused
    /// buffer (the receiving machine's step needs the node while the sender's outbox holds
    /// the message), and delivered without encoding.
    pub(super) fn pump(&mut self) -> Result<(), PlatformError> {
        // One reused buffer holds a local message's strings while it is delivered.
        let mut buf = std::mem::take(&mut self.msg_buf);
        let now = self.turn_now;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut moved = false;
            // A machine's message waits for room in a full port of this node.
            let mut blocked = false;
            let mut deferred = Deferred::default();
            // Steps are journalled before their sends leave; under the group policy a
            // durable machine's sends wait for their group's sync.
            if let Err(e) = self.journal_steps() {
                self.msg_buf = buf;
                return Err(e);
            }
            let hold = match self.journal_holds() {
                Ok(hold) => hold,
                Err(e) => {
                    self.msg_buf = buf;
                    return Err(e);
                }
            };
            for i in 0..self.local.machines.len() {
                // An invoked child that finished or failed: its parent hears of it.
                if self.local.machines[i].child.is_some() && self.child_ended(i, &mut deferred) {
                    moved = true;
                    continue;
                }
                let n = self.local.machines[i].machine.outbox_len();
                if !self.local.machines[i].registered {
                    continue;
                }
                // A restored machine's unacknowledged sends go before its new ones.
                if !self.put_back_resends(i) {
                    continue;
                }
                if hold && self.local.machines[i].durable.is_some() {
                    continue;
                }
                // Sends to a child process about to start wait for it (`child_process`).
                self.announce_child_processes(i);
                let mut done = 0;
                while done < n {
                    // Children start and stop in order with the messages (XState's deferred
                    // actions).
                    moved |= self.child_changes_due(i, done, &mut deferred);
                    let t = &self.local.machines[i].timers;
                    let point = (t.msgs_base + done, t.changes_made);
                    self.local.note_timers(i, Some(point));
                    let h = &self.local.machines[i];
                    let Some(m) = h.machine.outbox_nth(done) else {
                        break;
                    };
                    let to = match m.target {
                        Target::ThisMachine => h.id.as_str(),
                        Target::Machine(t) => t,
                        Target::Topic(_) | Target::Broadcast => {
                            // One message per receiver (see `topics`).
                            match self.fan_out(i, done, now, &mut buf, &mut deferred) {
                                Routed::Sent => {
                                    self.local.machines[i].seq += 1;
                                    self.local.machines[i].counters.sent += 1;
                                    done += 1;
                                    moved = true;
                                    continue;
                                }
                                Routed::Full => break,
                            }
                        }
                    };
                    let correlation = m.correlation;
                    let mut noted = None;
                    let mut start_first = None;
                    let routed = if is_reserved_event(m.event) {
                        // A chart's `sendTo` of an `xstate.*` event (actions' sends are
                        // refused when they are made): only the runtime makes those.
                        deferred.direct.push(
                            Failure::found(&h.id, to, m.event, h.seq, FailReason::Reserved)
                                .correlated(m.correlation),
                        );
                        Routed::Sent
                    } else if let Some(k) = self.entry_start_for(i, to, done) {
                        // Sent by the entry actions of the state that invokes `to`: the child
                        // that state starts takes it, after its start.
                        start_first = Some(k);
                        Routed::Full
                    } else if self.local.port_full(to) {
                        // Backpressure: the message waits in the outbox until the port's
                        // reader takes some (`Local::taken` wakes the loop then).
                        blocked = true;
                        Routed::Full
                    } else if self.local.hosts(to) {
                        buf.clear();
                        buf.extend_from_slice(h.id.as_bytes());
                        let from_end = buf.len();
                        buf.extend_from_slice(to.as_bytes());
                        let to_end = buf.len();
                        buf.extend_from_slice(m.event.as_bytes());
                        let event_end = buf.len();
                        buf.extend_from_slice(m.payload);
                        let text =
                            |r: std::ops::Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or("");
                        self.local.stats.payload_copies += 1;
                        self.local.stats.sent_local += 1;
                        let (from, to, event) = (
                            text(0..from_end),
                            text(from_end..to_end),
                            text(to_end..event_end),
                        );
                        if !self.local.deliver(
                            now,
                            from,
                            to,
                            event,
                            &buf[event_end..],
                            Origin::Message(correlation),
                            &mut deferred,
                        ) {
                            // Its target stopped on an error (and left the bus).
                            let mut f = Failure::found(
                                from,
                                to,
                                event,
                                self.local.machines[i].seq,
                                FailReason::TargetStopped,
                            )
                            .correlated(correlation);
                            f.detail = self.local.stop_error(to);
                            deferred.direct.push(f);
                        }
                        Routed::Sent
                    } else if let Some(k) = self.pending_start_for(i, to) {
                        // To a child about to start: it starts first.
                        start_first = Some(k);
                        Routed::Full
                    } else {
                        let d = Deliver {
                            from: &h.id,
                            to,
                            event: m.event,
                            payload: m.payload,
                            seq: h.seq,
                            correlation: m.correlation,
                        };
                        // A child process not on the bus yet: held for it (`child_process`).
                        let (routed, stats) = match self.child_procs.intercept(&d, &mut deferred) {
                            Some(held) => (held, RouteStats::default()),
                            None => {
                                route_remote(&mut self.side, &self.config, now, &d, &mut deferred)
                            }
                        };
                        self.local.stats.sent_remote += stats.sent;
                        self.local.stats.payload_copies += stats.copies;
                        if stats.sent == 1 {
                            self.local.metrics.sent_remote(now, d.from, d.to, d.seq);
                            if h.durable.is_some() {
                                // (Its outbox holds the message's strings: copied, a
                                // durable machine's cost beside its record.)
                                noted = Some(super::durable::encode_sent(&d));
                            }
                        }
                        routed
                    };
                    if let Some(k) = start_first {
                        self.make_child_changes(i, k, &mut deferred);
                        moved = true;
                        continue;
                    }
                    if let Some(sent) = noted.take() {
                        self.local.note_sent(i, &sent);
                    }
                    match routed {
                        Routed::Sent => {
                            self.local.machines[i].seq += 1;
                            self.local.machines[i].counters.sent += 1;
                            done += 1;
                            moved = true;
                        }
                        Routed::Full => break,
                    }
                }
                if done == n {
                    moved |= self.child_changes_due(i, n, &mut deferred);
                }
                self.local.machines[i].machine.consume_outbox(done);
                self.local.pumped(i, done);
                self.local.port_blocked |= blocked;
            }
            self.settle(deferred);
            self.transmit();
            self.emit_acks();
            self.flush_all();
            // Another round only if a machine has something it could move: a round that
            // finds nothing was a tenth of a ping-pong's work per message (profiled).
            if !moved || rounds > 64 || !self.local.has_work_to_pump() {
                self.msg_buf = buf;
                if self.send_due_reports() {
                    self.flush_all();
                }
                return Ok(());
            }
        }
    }

    /// `now`: the time, or `None` to read the clock only if a local machine takes a step
    /// (a message to another process needs none fresh: the loop turn's will do).
    pub(super) fn route(
        &mut self,
        now: Option<Instant>,
        d: Deliver<'_>,
        deferred: &mut Deferred,
    ) -> Routed {
        let hosted = self.local.hosts(d.to);
        self.route_known(now, d, hosted, deferred)
    }

    /// [`Node::route`] for a caller that has looked up whether `d.to` is hosted here
    /// (`hosted`: `Local::hosts`): a port's send needs to know
    /// before it routes (a full port of this process refuses it), and each lookup of an id
    /// is a hash of it (three for an id hosted elsewhere).
    pub(super) fn route_known(
        &mut self,
        now: Option<Instant>,
        d: Deliver<'_>,
        hosted: bool,
        deferred: &mut Deferred,
    ) -> Routed {
        if hosted {
            if self.local.port_full(d.to) {
                self.local.port_blocked = true;
                return Routed::Full;
            }
            self.local.stats.sent_local += 1;
            let now = now.unwrap_or_else(|| self.now());
            let origin = Origin::Message(d.correlation);
            if !self
                .local
                .deliver(now, d.from, d.to, d.event, d.payload, origin, deferred)
            {
                // Its target stopped on an error (and left the bus).
                let mut f = Failure::found(d.from, d.to, d.event, d.seq, FailReason::TargetStopped)
                    .correlated(d.correlation);
                f.detail = self.local.stop_error(d.to);
                deferred.direct.push(f);
            }
            return Routed::Sent;
        }
        let now = now.unwrap_or(self.turn_now);
        let (routed, stats) = route_remote(&mut self.side, &self.config, now, &d, deferred);
        self.local.stats.sent_remote += stats.sent;
        self.local.stats.payload_copies += stats.copies;
        if stats.sent == 1 {
            self.local.metrics.sent_remote(now, d.from, d.to, d.seq);
            // Only a durable node has durable machines (`open_durable`): elsewhere the
            // sender is not looked up (a port's sends, a hash of its id each).
            if self.local.durable.is_some() {
                if let Some(&i) = self.local.by_id.get(d.from) {
                    if self.local.machines[i].durable.is_some() {
                        let sent = super::durable::encode_sent(&d);
                        self.local.note_sent(i, &sent);
                    }
                }
            }
        }
        routed
    }
}

/// What [`route_remote`] adds to the node's counters.
#[derive(Default)]
struct RouteStats {
    sent: u64,
    copies: u64,
}

/// A message to another process: encoded once, into the outstanding buffer, where it waits
/// for its acknowledgement. A client writes it to the hub link from there
/// ([`Node::transmit`]); the hub's own process hands it to the hub, which copies it onto
/// the target's link.
fn route_remote(
    side: &mut Side,
    config: &NodeConfig,
    now: Instant,
    d: &Deliver<'_>,
    deferred: &mut Deferred,
) -> (Routed, RouteStats) {
    let mut stats = RouteStats::default();
    let fail = |deferred: &mut Deferred, reason| {
        deferred
            .direct
            .push(Failure::found(d.from, d.to, d.event, d.seq, reason).correlated(d.correlation));
    };
    match side {
        Side::Client(c) => match c.client.send(now, d, config.max_frame) {
            Ok(()) => {
                stats.sent = 1;
                stats.copies = 1;
            }
            // Backpressure: the message stays in the machine's outbox until acks free room.
            Err(SendRefused::Full) => return (Routed::Full, stats),
            Err(SendRefused::Failed(reason)) => fail(deferred, reason),
        },
        Side::Hub(h) => {
            let too_large = |len: usize| len > config.max_frame as usize;
            if super::failover::holding(h) {
                if too_large(d.body_len()) {
                    fail(deferred, FailReason::TooLarge);
                    return (Routed::Sent, stats);
                }
                // Since a takeover: it waits behind the held ones for its target to be back.
                if h.delivery.outstanding.push_deliver(d, false).is_err() {
                    return (Routed::Full, stats);
                }
                stats.sent = 1;
                stats.copies = 1;
                return (Routed::Sent, stats);
            }
            let mark = h.delivery.outstanding.mark();
            // Every message to another process is kept until its receiver acknowledges it.
            // Its size is checked on what was encoded (the push measures the message; doing
            // it before too was 80 instructions a message, counted), and taken back if too
            // large: the outcome is the check's before the push.
            let body = match h.delivery.outstanding.push_deliver(d, true) {
                Ok(body) if too_large(body.len()) => {
                    h.delivery.outstanding.rollback(mark);
                    fail(deferred, FailReason::TooLarge);
                    return (Routed::Sent, stats);
                }
                Ok(body) => body,
                Err(_) if too_large(d.body_len()) => {
                    fail(deferred, FailReason::TooLarge);
                    return (Routed::Sent, stats);
                }
                // Backpressure: the message stays in the machine's outbox until acks free room.
                Err(_) => return (Routed::Full, stats),
            };
            let mut io = ForwardIo::new(&mut h.links, deferred);
            let handled = h.hub.deliver_local(now, *d, body, &mut io);
            let forwarded = io.forwarded();
            if let Handled::Stalled(_) = handled {
                h.delivery.outstanding.rollback(mark);
                return (Routed::Full, stats);
            }
            stats.sent = 1;
            stats.copies = 1 + forwarded;
        }
    }
    (Routed::Sent, stats)
}
