//! Hosting: adding machines and ports, their sends, routing of their outboxes, timers, and
//! doing the follow-up work (`Deferred`) calls leave behind (the machines' table and
//! delivering to them are `local`).

use std::collections::VecDeque;
use std::time::Duration as StdDuration;

use interstate_core::bus::client::TimeoutTodo;
use interstate_core::bus::SendRefused;
use interstate_core::hub::Handled;
use interstate_core::wire::{is_reserved_event, Deliver, DeliveryFailed, FailReason};
use interstate_core::{Behavior, Chart, Correlation, Event, Instant, Target};

use crate::error::PlatformError;

use super::client_side::Sink;
use super::hub_side::{ForwardIo, HubIoImpl};
use super::local::{Deferred, Failed, Failure, Hosted, Origin, Watch};
use super::machines::{sized_for, RunningMachine};
use super::payload::{delivery_error_payload, local_info};
use super::{Node, NodeConfig, PortMessage, Side, DELIVERY_ERROR_EVENT};

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

    /// Opens a port: a machine id with no statechart behind it, whose messages are queued for
    /// the caller ([`Node::recv_port`]) and which can send ([`Node::send_from_port`]). Tools
    /// (`interstate send`) and foreign code use ports.
    pub fn open_port(&mut self, id: &str) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        self.local.ports.insert(id.to_string(), VecDeque::new());
        if let Err(e) = self.register_on_bus(id, false) {
            self.local.ports.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// The next message for any port.
    ///
    /// A message from another process is acknowledged to its sender only once this returned
    /// it: one still queued when the process dies is reported to its sender as failed. (Or
    /// once [`Node::send_from_port`] has had to wait for room: see there.)
    pub fn recv_port(&mut self) -> Option<PortMessage> {
        let m = self.local.ports.values_mut().find_map(|q| q.pop_front())?;
        self.local.taken();
        if m.seq != 0 {
            self.side.received_mut().handed(&m.port, &m.from, m.seq);
        }
        Some(m)
    }

    /// Sends from a port; returns the message's sequence number. Delivery failures come back
    /// to the port as `xstate.error.delivery` messages, whose payload names the sequence
    /// number of the message that failed.
    ///
    /// When the bus is full (the receivers have not acknowledged enough), this drives the
    /// loop until there is room, for up to 5 s, then fails. While it waits, the messages
    /// queued unread in this process's ports are acknowledged (the application cannot read
    /// them meanwhile): otherwise two processes each blocked sending to the other would
    /// each hold back the acknowledgements the other waits for.
    pub fn send_from_port(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<u64, PlatformError> {
        self.send_from_port_as(port, to, event, payload, Correlation::None)
    }

    /// [`Node::send_from_port`] of a message with a correlation: a request or a reply made
    /// by a foreign client the caller relays (the serial bridge's device). A port's own
    /// requests go through [`Node::request_from_port`], which keeps their table.
    pub fn send_from_port_as(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        correlation: Correlation,
    ) -> Result<u64, PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        // A full port of this process: waiting would not help (its reader is the caller's
        // program), and queueing beyond the bound would grow without end.
        if self.local.port_full(to) {
            return Err(PlatformError::PortQueueFull {
                port: to.into(),
                capacity: self.local.port_queue,
            });
        }
        let seq = self.next_port_seq(port)?;
        // Read the clock for the deadline only once the bus turns out to be full.
        let mut deadline = None;
        loop {
            let mut deferred = Deferred::default();
            let routed = self.route(
                None,
                Deliver {
                    from: port,
                    to,
                    event,
                    payload,
                    seq,
                    correlation,
                },
                &mut deferred,
            );
            self.settle(deferred);
            if routed == Routed::Sent {
                return Ok(seq);
            }
            let deadline = *deadline
                .get_or_insert_with(|| std::time::Instant::now() + StdDuration::from_secs(5));
            if std::time::Instant::now() > deadline {
                return Err(PlatformError::io(
                    "sending",
                    None,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the bus stayed full for 5 s",
                    ),
                ));
            }
            // Backpressure: drive the loop until there is room. Meanwhile what waits unread
            // in this process's ports is acknowledged: the application cannot read while it
            // is blocked here, and two processes each blocked sending to the other, each
            // holding the other's acknowledgements back, would wait for ever.
            self.acknowledge_queued();
            // What the credit took before it refused goes out before the wait (a turn
            // waits first, then writes): with nothing else in flight nothing would end the
            // wait, and the messages' sojourn would grow by it, keeping the credit small.
            self.flush();
            self.run_once(Some(StdDuration::from_millis(5)))?;
        }
    }

    /// Acknowledges every message waiting in a port's queue (see `send_from_port`).
    pub(super) fn acknowledge_queued(&mut self) {
        if self.local.hold_port_acks {
            return;
        }
        let received = self.side.received_mut();
        for q in self.local.ports.values() {
            for m in q.iter().filter(|m| m.seq != 0) {
                received.handed(&m.port, &m.from, m.seq);
            }
        }
    }

    /// The next sequence number of a port's sends (one lookup once the port has sent).
    pub(super) fn next_port_seq(&mut self, port: &str) -> Result<u64, PlatformError> {
        let seq = match self.local.port_seq.get_mut(port) {
            Some(s) => s,
            None if self.local.ports.contains_key(port) => self
                .local
                .port_seq
                .entry(port.to_string())
                .or_insert_with(sequence_base),
            None => return Err(PlatformError::BadMachineId { id: port.into() }),
        };
        *seq += 1;
        Ok(*seq)
    }

    /// Injects an event into a hosted machine as if it came from outside. Events of the
    /// reserved `xstate.` namespace are refused: only the runtime makes those.
    pub fn send_local(
        &mut self,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        let now = self.now();
        // The turn's time for what follows (a child started, a message delivered): timers
        // armed by this step and by them are due at the same instant, as in XState.
        self.turn_now = now;
        let Some(&i) = self.local.by_id.get(to) else {
            return Err(PlatformError::BadMachineId { id: to.into() });
        };
        let mut deferred = Deferred::default();
        let h = &mut self.local.machines[i];
        h.events.push(event);
        let result = h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        );
        if let Err(e) = result {
            h.failed(&format!("on event '{event}'"), e, &mut deferred);
        }
        h.stepped(&mut deferred);
        self.settle(deferred);
        result?;
        self.pump()
    }

    /// Does what calls into the hub and the machines left for later: log lines, failures to
    /// report, registry removals, links to close (which may leave more of the same).
    pub(super) fn settle(&mut self, mut deferred: Deferred) {
        if deferred.is_empty() {
            // The common case, once per routed message: no clock read, no work.
            return;
        }
        let now = self.now();
        loop {
            for line in deferred.logs.drain(..) {
                (self.log)(&line);
            }
            // A machine that stopped reports now, while it still owns its id; the others'
            // reports wait for the end of the pump (one per machine however many steps it
            // took), behind the acknowledgements, which they must not delay.
            for id in std::mem::take(&mut deferred.reports) {
                if deferred.stopped.contains(&id) {
                    self.send_report(&id);
                } else {
                    self.report_due(id);
                }
            }
            for id in std::mem::take(&mut deferred.stopped) {
                self.leave_bus(now, &id, &mut deferred);
            }
            for (asker, nodes) in std::mem::take(&mut deferred.stats_asked) {
                self.answer_stats(asker, nodes);
            }
            // Failures found here are reported as they are; the hub's reports each settle one
            // outstanding message, once (and are reported only then, unless the sender is not
            // this process's).
            let direct = deferred.direct.drain(..).map(|f| (f, false));
            let from_hub = deferred.failures.drain(..).map(|f| (f, true));
            let all: Vec<_> = direct.chain(from_hub).collect();
            for (f, settle) in all {
                let f = if settle {
                    match self.local.settle_reported(self.side.outstanding_mut(), f) {
                        Some(f) => f,
                        None => continue,
                    }
                } else {
                    f
                };
                let correlation = f.correlation;
                let failed = Failed {
                    from: &f.from,
                    to: &f.to,
                    event: &f.event,
                    seq: f.seq,
                    reason: f.reason,
                    detail: &f.detail,
                    correlation,
                };
                if f.found_here {
                    self.tell_monitors(&failed, &mut deferred);
                }
                self.report_failure(now, failed, &mut deferred);
            }
            // A machine left the bus: what it never acknowledged will not arrive.
            let removed: Vec<_> = deferred.removed.drain(..).collect();
            for machine in removed {
                let mut failed = Vec::new();
                self.side
                    .outstanding_mut()
                    .fail_where(&mut |_, t, _| t == machine, &mut |u| {
                        failed.push((
                            u.from.to_string(),
                            u.to.to_string(),
                            u.event.to_string(),
                            u.seq,
                            u.correlation,
                        ))
                    });
                for (from, to, event, seq, correlation) in failed {
                    let failed = Failed {
                        from: &from,
                        to: &to,
                        event: &event,
                        seq,
                        reason: FailReason::TargetGone,
                        detail: "",
                        correlation,
                    };
                    // Found here: the hub reports nothing for a target that left.
                    self.tell_monitors(&failed, &mut deferred);
                    self.report_failure(now, failed, &mut deferred);
                }
            }
            let closes: Vec<_> = deferred.close.drain(..).collect();
            for (link, reason) in closes {
                let Side::Hub(h) = &mut self.side else { break };
                let Some(mut lc) = h.links.get_mut(link as usize).and_then(Option::take) else {
                    continue;
                };
                if lc.executable.is_some() {
                    (self.log)(&format!(
                        "connections: link {link} disconnected: {} ({reason})",
                        lc.who()
                    ));
                }
                lc.conn.flush();
                let _ = lc.conn.stream.deregister(self.poll.registry());
                let unwritten = lc.conn.unwritten_frames();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                h.hub.link_closed(link, &mut io);
                // Messages queued for the dead link go back to their senders as failures.
                for body in unwritten {
                    h.hub.undeliverable(&body, &mut io);
                }
            }
            if deferred.is_empty() {
                return;
            }
        }
    }

    /// A machine stopped by an error leaves the bus: its id is unregistered, so that its
    /// senders learn it is gone (what they sent and it never acknowledged fails as
    /// `target-gone`, later sends as `unknown-target`) instead of sending into a void.
    fn leave_bus(&mut self, now: Instant, id: &str, deferred: &mut Deferred) {
        let Some(&i) = self.local.by_id.get(id) else {
            return;
        };
        self.local.machines[i].registered = false;
        let error = self.local.machines[i]
            .errors
            .back()
            .cloned()
            .unwrap_or_default();
        // What its senders are told, bounded as the wire bounds it.
        let told = self.local.stop_error(id);
        self.local.registry.remove(id);
        deferred.logs.push(format!(
            "machine '{id}' stopped on an error and left the bus: {error}"
        ));
        // What this node's machines and ports asked of it will not be answered.
        self.local.requests_target_gone(now, id, deferred);
        // Its invoked children stop with it.
        self.stop_children_of(id, deferred);
        // What it has was delivered: its senders hear so before it goes.
        self.emit_acks_when(true);
        match &mut self.side {
            Side::Hub(h) => {
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    deferred,
                );
                h.hub.stopped_local(id, &told, &mut io);
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.client.stopped(id, &told, &mut sink);
                // Its subscriptions end with it (the hub drops them as it unregisters).
                c.topics.forget(id);
            }
        }
    }

    fn report_failure(&mut self, now: Instant, failed: Failed<'_>, deferred: &mut Deferred) {
        let Failed {
            from,
            to,
            event,
            seq,
            reason,
            detail,
            correlation,
        } = failed;
        self.local.stats.delivery_failures += 1;
        self.local.metrics.failed(reason);
        if let Some(&i) = self.local.by_id.get(from) {
            self.local.machines[i].counters.failed += 1;
        }
        if let Correlation::Request(id) = correlation {
            // A request that fails settles it: its sender hears once, as the request's error.
            if self.local.by_id.contains_key(from) || self.local.ports.contains_key(from) {
                self.local.request_failed(now, from, id, reason, deferred);
                return;
            }
        }
        let payload = delivery_error_payload(to, event, seq, reason, detail);
        if !self.local.deliver(
            now,
            to,
            from,
            DELIVERY_ERROR_EVENT,
            &payload,
            Origin::Runtime,
            deferred,
        ) {
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            deferred.logs.push(format!(
                "undeliverable message from '{from}' to '{to}' ({event}): {}{detail}",
                reason.as_str()
            ));
        }
    }

    /// A failure this node found itself (the hub never saw the message): the hub is told,
    /// for its monitors (`interstate monitor`). A client sends it whether or not anyone
    /// monitors, and the hub drops it when nobody does; the hub's own process copies it to
    /// its monitors only when there are any.
    fn tell_monitors(&mut self, failed: &Failed<'_>, deferred: &mut Deferred) {
        let f = DeliveryFailed {
            from: failed.from,
            to: failed.to,
            event: failed.event,
            seq: failed.seq,
            reason: failed.reason,
            detail: failed.detail,
        };
        match &mut self.side {
            Side::Hub(h) => {
                if h.hub.monitored() {
                    let mut io = ForwardIo::new(&mut h.links, deferred);
                    h.hub.node_failure_local(&f, &mut io);
                }
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.client.report_found_failure(&f, &mut sink);
            }
        }
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
        if self.local.hosts(d.to) {
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
            if let Some(&i) = self.local.by_id.get(d.from) {
                if self.local.machines[i].durable.is_some() {
                    let sent = super::durable::encode_sent(&d);
                    self.local.note_sent(i, &sent);
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
            if d.body_len() > config.max_frame as usize {
                fail(deferred, FailReason::TooLarge);
                return (Routed::Sent, stats);
            }
            if super::failover::holding(h) {
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
            let Ok(body) = h.delivery.outstanding.push_deliver(d, true) else {
                // Backpressure: the message stays in the machine's outbox until acks free room.
                return (Routed::Full, stats);
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
