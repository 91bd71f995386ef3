//! A node's invoked children: the starts and stops its machines' steps report (the core's
//! [`ChildChange`]s, made in order with their outboxes' messages), each start resolved by
//! its `src` to the actor it runs ([`start_child`](Node::start_child), the one place that
//! knows the kinds), and a child's end reported to its parent.
//!
//! - A child chart is a machine of this node, `parent/invoke-id`, registered on the bus
//!   (reachable and listed as any machine is); stopped, it leaves the bus and its table slot
//!   is reused by the next child.
//! - A service lives in the node's service table, reachable by its parent's `sendTo`.
//! - A child that reaches its final state sends its parent `xstate.done.actor.<id>` (its
//!   `output`), one that fails `xstate.error.actor.<id>` (`{"message": ...}`), after what it
//!   sent before; a child that cannot start (no actor bound, the node's table full, its
//!   first step failing) is an `xstate.error.actor.<id>` of the invoking step too.
//! - Events to and from a chart child are routed as between any two machines of the node:
//!   no allocation on that path.

use std::rc::Rc;

use interstate_core::chart::Invocation;
use interstate_core::machine::{
    write_child_id, ChildChange, ChildChangeKind, Status, CHILD_DONE_PREFIX, CHILD_ERROR_PREFIX,
    MAX_CHILD_ID,
};
use interstate_core::{Correlation, StateId, StateKind};

use super::client_side::Sink;
use super::hub_side::HubIoImpl;
use super::invoked::{Actor, Actors, End, ServiceCx, ServiceOut, ServiceStart};
use super::local::{Deferred, Local, Origin};
use super::machines::sized_for;
use super::payload::json_string;
use super::{Node, Side};

/// What a hosted machine is to the machine that invoked it.
pub(super) struct ChildOf {
    /// The invoking machine's id.
    pub(super) parent: String,
    /// The invoke id (the child's name among its parent's children).
    pub(super) invoke_id: String,
    /// The src it runs (whose binding knows its `output`).
    pub(super) src: String,
    pub(super) actors: Rc<Actors>,
    /// A second child of the same id took its place (its state was entered again through
    /// history, without an exit): it runs on, reachable by no one, its id (still on the bus,
    /// for the new child) no longer its own.
    pub(super) unnamed: bool,
}

/// A live service.
pub(super) struct ServiceSlot {
    pub(super) parent: String,
    pub(super) invoke_id: String,
    pub(super) service: Box<dyn super::invoked::Service>,
    pub(super) out: ServiceOut,
}

impl Node {
    /// Makes machine `i`'s child starts and stops that come before its outbox message
    /// `before` (all of them when `before` is the outbox's length). Returns whether it made
    /// any.
    pub(super) fn child_changes_due(
        &mut self,
        i: usize,
        before: usize,
        deferred: &mut Deferred,
    ) -> bool {
        let mut made = false;
        loop {
            let h = &mut self.local.machines[i];
            let Some(c) = h
                .machine
                .child_change(0)
                .filter(|c| c.after_messages <= before)
            else {
                return made;
            };
            // Forgotten before it is made: making it may step the parent again (a failed
            // start), whose changes come after this one.
            h.machine.forget_child_changes(1);
            made = true;
            self.child_change(i, c, deferred);
        }
    }

    fn child_change(&mut self, i: usize, c: ChildChange<'static>, deferred: &mut Deferred) {
        // The parent's timers armed before this change go before what the child arms.
        let t = &self.local.machines[i].timers;
        let point = (t.msgs_base + c.after_messages, t.changes_made);
        self.local.note_timers(i, Some(point));
        self.local.machines[i].timers.changes_made += 1;
        let mut id = heapless::String::<MAX_CHILD_ID>::new();
        if write_child_id(&self.local.machines[i].id, c.invocation.id, &mut id).is_err() {
            if c.kind == ChildChangeKind::Start {
                let message = format!(
                    "the child's machine id '{}/{}' is longer than 64 bytes: use a shorter \
                     machine id or invoke id",
                    self.local.machines[i].id, c.invocation.id
                );
                self.failed_start(i, c.invocation, &message, deferred);
            }
            return;
        }
        match c.kind {
            ChildChangeKind::Start => {
                // Started before its parent's first step (`first_step`): running already.
                // XState's first children map holds an id's last start (a state entered
                // twice through history, without an exit): that start takes the early child;
                // an earlier one starts now, beside it, and is unnamed when the last comes.
                let h = &self.local.machines[i];
                let later = (0..).map_while(|n| h.machine.child_change(n)).any(|l| {
                    l.kind == ChildChangeKind::Start && l.invocation.id == c.invocation.id
                });
                let early = h.early.iter().position(|e| e.0 == id.as_str());
                if let Some(k) = early.filter(|_| !later) {
                    let (_, slot) = self.local.machines[i].early.remove(k);
                    self.name_early(&id, slot);
                    return;
                }
                // A child of that id runs still: its state was entered again without an
                // exit (a history quirk). XState starts a second one and the first runs on,
                // unnamed.
                let old = self.local.by_id.get(id.as_str()).copied().filter(|&k| {
                    let parent = &self.local.machines[i].id;
                    self.local.machines[k]
                        .child
                        .as_ref()
                        .is_some_and(|c| &c.parent == parent && !c.unnamed)
                });
                if let Some(k) = old {
                    self.local.by_id.remove(id.as_str());
                    if let Some(c) = self.local.machines[k].child.as_mut() {
                        c.unnamed = true;
                    }
                }
                if let Err(message) = self.start_child(i, &id, c.invocation, deferred) {
                    self.failed_start(i, c.invocation, &message, deferred);
                }
            }
            ChildChangeKind::Stop => self.stop_child(&id, deferred),
        }
    }

    /// The early child `id` in `slot` is named again: a child an earlier start of its id
    /// made (which unnamed it) runs on unnamed.
    fn name_early(&mut self, id: &str, slot: usize) {
        let Some(&named) = self.local.by_id.get(id) else {
            return;
        };
        let h = &self.local.machines[slot];
        if named == slot || h.vacant || h.id != id {
            return;
        }
        for (k, unnamed) in [(named, true), (slot, false)] {
            if let Some(c) = self.local.machines[k].child.as_mut() {
                c.unnamed = unnamed;
            }
        }
        self.local.by_id.insert(id.to_string(), slot);
    }

    /// Starts the child `id` of machine `parent` for `inv`, by the kind of actor its `src`
    /// is bound to.
    pub(super) fn start_child(
        &mut self,
        parent: usize,
        id: &str,
        inv: Invocation<'static>,
        deferred: &mut Deferred,
    ) -> Result<(), String> {
        let limit = self.config.max_children;
        let announced = self.child_procs_announced(parent, inv.start);
        if self.children_live() >= limit && !announced {
            return Err(format!(
                "the node runs {limit} invoked children already, its most \
                 (NodeConfig::max_children)"
            ));
        }
        let parent_id = self.local.machines[parent].id.clone();
        let actors = self.local.machines[parent]
            .actors
            .clone()
            .filter(|a| a.contains(inv.src))
            .ok_or_else(|| format!("no actor is bound to the src '{}'", inv.src))?;
        let actor = actors.get(inv.src).expect("checked above");
        let mut actor = actor
            .try_borrow_mut()
            .map_err(|_| format!("the actor of src '{}' is starting already", inv.src))?;
        match &mut *actor {
            Actor::Chart(c) => {
                let behavior = (c.behavior)(id);
                let machine = sized_for(c.chart, id).map_err(|e| e.to_string())?;
                let child = super::children::ChildOf {
                    parent: parent_id,
                    invoke_id: inv.id.to_string(),
                    src: inv.src.to_string(),
                    actors: actors.clone(),
                    unnamed: false,
                };
                drop(actor);
                let init = super::invoked::child_init_data(inv.input);
                self.host_child(parent, machine, behavior, child, &init, deferred)
                    .map_err(|e| e.to_string())?;
            }
            Actor::Process(p) => {
                let p = p.clone();
                drop(actor);
                self.start_child_process(parent, inv, p);
            }
            Actor::Service(make) => {
                if self.local.services.contains_key(id) || self.local.by_id.contains_key(id) {
                    return Err(format!("machine id '{id}' is in use in this process"));
                }
                self.ensure_waker().map_err(|e| e.to_string())?;
                let mut out = ServiceOut::default();
                let start = ServiceStart {
                    id,
                    parent: &parent_id,
                    input: inv.input,
                };
                let mut cx = ServiceCx {
                    id,
                    out: &mut out,
                    waker: self.local.waker.as_ref(),
                };
                let service = make(&start, &mut cx)?;
                drop(actor);
                self.local.services.insert(
                    id.to_string(),
                    ServiceSlot {
                        parent: parent_id,
                        invoke_id: inv.id.to_string(),
                        service,
                        out: ServiceOut::default(),
                    },
                );
                self.local.live_children += 1;
                let now = self.turn_now;
                self.local.service_output(now, id, out, deferred);
            }
        }
        Ok(())
    }

    /// A start that failed: the parent hears of it as its child's error.
    fn failed_start(
        &mut self,
        parent: usize,
        inv: Invocation<'static>,
        message: &str,
        deferred: &mut Deferred,
    ) {
        let parent_id = self.local.machines[parent].id.clone();
        deferred.logs.push(format!(
            "machine '{parent_id}': the child '{}' (src '{}') cannot start: {message}",
            inv.id, inv.src
        ));
        let event = format!("{CHILD_ERROR_PREFIX}{}", inv.id);
        let payload = format!("{{\"message\":{}}}", json_string(message));
        let now = self.turn_now;
        self.local.deliver(
            now,
            &parent_id,
            &parent_id,
            &event,
            payload.as_bytes(),
            Origin::Runtime,
            deferred,
        );
    }

    /// Adds a child machine of machine `parent` (in a free slot after its parent's when there
    /// is one: its first messages go out after its parent's), starts it with `init` as the
    /// payload of its `xstate.init` (its `input`) and registers its id, without waiting for
    /// the hub's answer (the loop is busy with its parent's step).
    fn host_child(
        &mut self,
        parent: usize,
        machine: Box<dyn super::machines::RunningMachine>,
        behavior: Box<dyn interstate_core::Behavior>,
        child: ChildOf,
        init: &[u8],
        deferred: &mut Deferred,
    ) -> Result<(), crate::PlatformError> {
        let id = machine.id().to_string();
        self.check_new_id(&id)?;
        let mut hosted = super::local::Hosted::new(&id, machine, behavior);
        hosted.actors = Some(child.actors.clone());
        hosted.child = Some(child);
        let per_machine = self.config.children_per_machine;
        hosted
            .machine
            .set_request_base(super::requests::request_base());
        hosted.machine.set_child_capacity(per_machine)?;
        let free = self
            .local
            .machines
            .iter()
            .enumerate()
            .position(|(k, h)| k > parent && h.vacant);
        let idx = match free {
            Some(free) => {
                self.local.machines[free] = hosted;
                free
            }
            None => {
                self.local.machines.push(hosted);
                self.local.machines.len() - 1
            }
        };
        self.local.by_id.insert(id.clone(), idx);
        // Counted before its first step, which may start children of its own.
        self.local.live_children += 1;
        let now = self.turn_now;
        let started = self.start_first_step(idx, now, init, deferred);
        self.local.note_timers_after_step(idx);
        // An unnamed child of the same id (see `ChildOf::unnamed`) keeps it on the bus.
        let on_bus = self.local.machines.iter().any(|h| {
            !h.vacant && h.registered && h.id == id && h.child.as_ref().is_some_and(|c| c.unnamed)
        });
        let registered = match started {
            Ok(()) if on_bus => Ok(()),
            Ok(()) => self.register_on_bus_now(&id),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = registered {
            // Its slot is freed by hand (it never was on the bus), its early children stopped.
            self.stop_children_of(&id, deferred);
            self.local.live_children -= 1;
            self.local.by_id.remove(&id);
            self.local.machines[idx].vacant = true;
            self.local.machines[idx].stopped = true;
            return Err(e);
        }
        self.local.machines[idx].registered = true;
        self.local.registry.insert(super::payload::local_info(&id));
        Ok(())
    }

    /// Stops the child `id` (its invoking state was exited, or its parent went): a service
    /// is told and dropped; a child machine leaves the bus, its slot freed, its own children
    /// stopped with it. What either sends later is dropped.
    pub(super) fn stop_child(&mut self, id: &str, deferred: &mut Deferred) {
        if self.stop_child_process(id) {
            return;
        }
        if let Some(mut slot) = self.local.services.remove(id) {
            slot.service.stop();
            self.local.live_children -= 1;
            self.stop_children_of(id, deferred);
            return;
        }
        let Some(&i) = self.local.by_id.get(id) else {
            return;
        };
        if self.local.machines[i].child.is_none() {
            return;
        }
        self.vacate(i, deferred);
    }

    /// Stops every child of machine (or service) `parent`.
    pub(super) fn stop_children_of(&mut self, parent: &str, deferred: &mut Deferred) {
        // Child machines by their slots (an unnamed one shares its id with the named one).
        let slots: Vec<usize> = (0..self.local.machines.len())
            .filter(|&k| {
                let h = &self.local.machines[k];
                !h.vacant && h.child.as_ref().is_some_and(|c| c.parent == parent)
            })
            .collect();
        for k in slots {
            if !self.local.machines[k].vacant {
                self.vacate(k, deferred);
            }
        }
        let ids: Vec<String> = self
            .local
            .services
            .iter()
            .filter(|(_, s)| s.parent == parent)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.stop_child(&id, deferred);
        }
    }

    /// Takes child machine `i` off the bus and frees its slot.
    fn vacate(&mut self, i: usize, deferred: &mut Deferred) {
        let id = self.local.machines[i].id.clone();
        let unnamed = self.local.machines[i]
            .child
            .as_ref()
            .is_some_and(|c| c.unnamed);
        if unnamed {
            // Its id, its registry entry and its place on the bus are the named child's.
            let h = &mut self.local.machines[i];
            h.registered = false;
            h.stopped = true;
            h.vacant = true;
            h.watched = false;
            let n = h.machine.outbox_len();
            h.machine.consume_outbox(n);
            self.local.live_children -= 1;
            return;
        }
        self.stop_children_of(&id, deferred);
        // What it sent to other processes goes to the hub before its Unregister (the hub
        // refuses a message from an id no longer registered).
        self.transmit();
        let h = &mut self.local.machines[i];
        let registered = h.registered;
        h.registered = false;
        h.stopped = true;
        h.vacant = true;
        h.watched = false;
        let n = h.machine.outbox_len();
        h.machine.consume_outbox(n);
        self.local.by_id.remove(&id);
        self.local.registry.remove(&id);
        self.local.live_children -= 1;
        if !registered {
            // Stopped on an error: it left the bus already.
            return;
        }
        // What it has was delivered: its senders hear so before it goes (else the hub
        // reports those messages as lost with it).
        self.emit_acks_when(true);
        let now = self.turn_now;
        match &mut self.side {
            Side::Hub(h) => {
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    deferred,
                );
                h.hub.unregister_local(&id, &mut io);
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.client.unregister(&id, &mut sink);
                c.topics.forget(&id);
            }
        }
    }

    /// Child machine `i` reached its final state or failed: its parent hears of it (after
    /// what the child sent before, routed already), and it stops. Returns whether it ended.
    pub(super) fn child_ended(&mut self, i: usize, deferred: &mut Deferred) -> bool {
        let h = &self.local.machines[i];
        if h.vacant {
            return false;
        }
        let Some(child) = h.child.as_ref() else {
            return false;
        };
        let (event, payload) = match h.machine.status() {
            Status::Done if h.machine.outbox_len() == 0 => {
                let chart = *h.machine.chart();
                let last = chart
                    .children(StateId(0))
                    .find(|&s| chart.kind(s) == StateKind::Final && h.machine.is_active(s));
                let output: Vec<u8> = child
                    .actors
                    .get(&child.src)
                    .and_then(|a| match &*a.borrow() {
                        Actor::Chart(c) => c
                            .output
                            .as_ref()
                            .and_then(|f| last.and_then(f))
                            .map(|o| o.as_bytes().to_vec()),
                        Actor::Service(_) | Actor::Process(_) => None,
                    })
                    .unwrap_or_default();
                (format!("{CHILD_DONE_PREFIX}{}", child.invoke_id), output)
            }
            Status::Failed => {
                let error = h.errors.back().map_or("", String::as_str);
                let payload = format!("{{\"message\":{}}}", json_string(error));
                (
                    format!("{CHILD_ERROR_PREFIX}{}", child.invoke_id),
                    payload.into_bytes(),
                )
            }
            _ => return false,
        };
        let parent = child.parent.clone();
        let id = h.id.clone();
        self.vacate(i, deferred);
        let now = self.turn_now;
        self.local.deliver(
            now,
            &id,
            &parent,
            &event,
            &payload,
            Origin::Message(Correlation::None),
            deferred,
        );
        true
    }

    /// A message of machine `i` to `to`, which is not here: when `to` is a child of `i`
    /// that a change not made yet starts (a `sendTo` in the entry actions of the state that
    /// invokes it), how many changes to make first: through that start and the starts beside
    /// it (XState sends it after the state's whole entry list, its starts included).
    pub(super) fn pending_start_for(&self, i: usize, to: &str) -> Option<usize> {
        let h = &self.local.machines[i];
        let invoke_id = to.strip_prefix(h.id.as_str())?.strip_prefix('/')?;
        let mut k = 0;
        let start = loop {
            let c = h.machine.child_change(k)?;
            if c.kind == ChildChangeKind::Start && c.invocation.id == invoke_id {
                break c;
            }
            k += 1;
        };
        while h.machine.child_change(k + 1).is_some_and(|c| {
            c.kind == ChildChangeKind::Start && c.after_messages == start.after_messages
        }) {
            k += 1;
        }
        Some(k + 1)
    }

    /// Message `msg` of machine `i`'s outbox, to `to`: when the entry actions of the state
    /// that invokes the child `to` sent it and that start is not made yet, how many changes
    /// to make first: through that start (not the starts beside it, as
    /// [`pending_start_for`](Self::pending_start_for) does). XState resolves
    /// such a send to the child the start makes (its deferred actor ids), also when a child
    /// of that id runs still (a state entered again through history, without an exit).
    pub(super) fn entry_start_for(&self, i: usize, to: &str, msg: usize) -> Option<usize> {
        let h = &self.local.machines[i];
        let invoke_id = to.strip_prefix(h.id.as_str())?.strip_prefix('/')?;
        let mut k = 0;
        loop {
            let c = h.machine.child_change(k)?;
            if c.kind == ChildChangeKind::Start
                && c.invocation.id == invoke_id
                && c.entry_messages_from <= msg
                && msg < c.after_messages
            {
                // Only through that start: XState queues the send in the child's mailbox,
                // which it takes right after its first step, before the next child starts.
                return Some(k + 1);
            }
            k += 1;
        }
    }

    /// Makes the first `count` child changes of machine `i`.
    pub(super) fn make_child_changes(&mut self, i: usize, count: usize, deferred: &mut Deferred) {
        for _ in 0..count {
            let h = &mut self.local.machines[i];
            let Some(c) = h.machine.child_change(0) else {
                return;
            };
            h.machine.forget_child_changes(1);
            self.child_change(i, c, deferred);
        }
    }

    /// The waker blocking services wake the loop with, made once.
    fn ensure_waker(&mut self) -> Result<(), crate::PlatformError> {
        if self.local.waker.is_none() {
            let waker = mio::Waker::new(self.poll.registry(), super::WAKER)
                .map_err(|e| crate::PlatformError::io("creating the services' waker", None, e))?;
            self.local.waker = Some(std::sync::Arc::new(waker));
        }
        Ok(())
    }

    /// The waker woke the loop: every service sends what its thread has for its parent.
    pub(super) fn poll_services(&mut self) {
        if self.local.services.is_empty() {
            return;
        }
        let ids: Vec<String> = self.local.services.keys().cloned().collect();
        let now = self.turn_now;
        let mut deferred = Deferred::default();
        for id in ids {
            let Some(slot) = self.local.services.get_mut(&id) else {
                continue;
            };
            let mut out = std::mem::take(&mut slot.out);
            let mut cx = ServiceCx {
                id: &id,
                out: &mut out,
                waker: self.local.waker.as_ref(),
            };
            slot.service.poll(&mut cx);
            self.local.service_output(now, &id, out, &mut deferred);
        }
        self.settle(deferred);
    }
}

impl Local {
    /// Delivers an event to the service `to`, if `to` is one (`None` when it is not).
    pub(super) fn deliver_to_service(
        &mut self,
        now: interstate_core::Instant,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) -> Option<()> {
        let slot = self.services.get_mut(to)?;
        let mut out = std::mem::take(&mut slot.out);
        let mut cx = ServiceCx {
            id: to,
            out: &mut out,
            waker: self.waker.as_ref(),
        };
        if let Err(e) = slot.service.event(event, payload, &mut cx) {
            deferred.logs.push(format!(
                "service '{to}' refused '{event}' from '{from}': {e}"
            ));
            deferred.direct.push(super::local::Failure::found(
                from,
                to,
                event,
                0,
                interstate_core::wire::FailReason::QueueFull,
            ));
        }
        self.service_output(now, to, out, deferred);
        Some(())
    }

    /// Delivers what service `id` sent (`out`) to its parent, then its end, if it ended
    /// (the service is then gone); else its buffers go back to it for reuse.
    pub(super) fn service_output(
        &mut self,
        now: interstate_core::Instant,
        id: &str,
        mut out: ServiceOut,
        deferred: &mut Deferred,
    ) {
        // Out of the table while its parent steps (the key and slot go back unchanged).
        let Some((key, slot)) = self.services.remove_entry(id) else {
            return;
        };
        let mut at = 0;
        for &(event_end, end) in &out.items {
            let event = std::str::from_utf8(&out.bytes[at..event_end]).unwrap_or("");
            let payload = &out.bytes[event_end..end];
            at = end;
            self.deliver(
                now,
                &key,
                &slot.parent,
                event,
                payload,
                Origin::Message(Correlation::None),
                deferred,
            );
        }
        let Some((how, from)) = out.end else {
            out.clear();
            self.services.insert(key, ServiceSlot { out, ..slot });
            return;
        };
        // Ended: gone before its parent hears (a stop the parent's step makes finds nothing).
        self.live_children -= 1;
        let prefix = match how {
            End::Done => CHILD_DONE_PREFIX,
            End::Failed => CHILD_ERROR_PREFIX,
        };
        let event = format!("{prefix}{}", slot.invoke_id);
        self.deliver(
            now,
            &key,
            &slot.parent,
            &event,
            &out.bytes[from..],
            Origin::Message(Correlation::None),
            deferred,
        );
    }
}
