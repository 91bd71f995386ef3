//! What the node hosts and receives: its machines (with their last errors), ports, registry
//! copy, watches and counters; delivering to them, and the follow-up work (`Deferred`) calls
//! leave behind.

use interstate_core::topic::{split_publication, TOPIC_SEPARATOR};
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use interstate_core::bus::Accepted;
use interstate_core::hub::LinkId;
use interstate_core::machine::Status;
use interstate_core::request::{Pending, ReplyVerdict};
use interstate_core::wire::{
    cut_at_char, Deliver, DeliveryFailed, FailReason, RegistryEntry, MAX_STOP_ERROR,
};
use interstate_core::{Behavior, Correlation, Event, Instant};

use crate::registry::{MachineInfo, Registry};

use super::machines::RunningMachine;
use super::payload::json_string;
use super::status::LastEvents;
use super::{NodeStats, PortMessage, MACHINE_DOWN_EVENT, MACHINE_UP_EVENT, PORT_REQUESTS};

pub(super) struct Hosted {
    pub(super) id: String,
    pub(super) machine: Box<dyn RunningMachine>,
    pub(super) behavior: Box<dyn Behavior>,
    pub(super) seq: u64,
    /// Its id is routed to this node; until then its outbox waits (the hub would refuse a
    /// sender id it does not know this node owns).
    pub(super) registered: bool,
    /// The last errors of its steps, oldest first (at most [`KEPT_ERRORS`]).
    pub(super) errors: VecDeque<String>,
    /// Stopped by an error: it left the bus and takes no more events.
    pub(super) stopped: bool,
    /// Someone watches its state: the node reports it after each step.
    pub(super) watched: bool,
    /// The next report carries the chart's outline (the hub asked for reports: a new
    /// watcher, who may need to draw the chart).
    pub(super) outline_due: bool,
    /// Its state report waits in the node's due list (see `Node::report_due`).
    pub(super) report_due: bool,
    /// When its last state report was sent (reports are at least `report_interval` apart).
    pub(super) last_report: Option<Instant>,
    /// Steps since its last report (each would have had a report of its own).
    pub(super) unreported_steps: u32,
    /// Steps the last report stands for beyond the one it shows (its `"skipped"`).
    pub(super) skipped_steps: u32,
    /// Its last event names.
    pub(super) events: LastEvents,
    /// Where its publication or broadcast fan-out stands (see `topics`).
    pub(super) fanout: super::topics::FanOut,
    /// Its journal state, when the node is durable (see `durable`).
    pub(super) durable: Option<super::durable::DurableMachine>,
    /// Its messages in and out, for the metrics.
    pub(super) counters: super::metrics::MachineCounters,
    /// The actors its `invoke`s start, by src.
    pub(super) actors: Option<std::rc::Rc<super::invoked::Actors>>,
    /// It is an invoked child: of which machine, as what.
    pub(super) child: Option<super::children::ChildOf>,
    /// A stopped child's slot, free for the next child (it is no machine of the node).
    pub(super) vacant: bool,
    /// The ids of child charts started before its first step ran (see `first_step`), whose
    /// starts that step reported and the node has not reached yet, with their slots.
    pub(super) early: Vec<(String, usize)>,
    /// Its timers' places in the node's arming order (see `timer_order`).
    pub(super) timers: super::timer_order::ArmedTimers,
}

impl Hosted {
    /// A machine's entry in the node's table, not registered yet.
    pub(super) fn new(
        id: &str,
        machine: Box<dyn RunningMachine>,
        behavior: Box<dyn Behavior>,
    ) -> Hosted {
        Hosted {
            id: id.to_string(),
            machine,
            behavior,
            seq: super::hosting::sequence_base(),
            registered: false,
            errors: VecDeque::new(),
            stopped: false,
            watched: false,
            outline_due: false,
            report_due: false,
            last_report: None,
            unreported_steps: 0,
            skipped_steps: 0,
            events: Default::default(),
            fanout: Default::default(),
            durable: None,
            counters: Default::default(),
            actors: None,
            child: None,
            vacant: false,
            early: Vec::new(),
            timers: Default::default(),
        }
    }
}

impl Hosted {
    /// It took a step: while someone watches it, its state report is due. A report already
    /// waiting only counts the step: no copy of its id and no work in `Node::settle` for
    /// every message a watched machine takes.
    pub(super) fn stepped(&mut self, deferred: &mut Deferred) {
        if !self.watched {
            return;
        }
        if self.report_due && !self.stopped {
            if !self.outline_due {
                self.unreported_steps = self.unreported_steps.saturating_add(1);
            }
        } else {
            deferred.reports.push(self.id.clone());
        }
    }
}

/// How many of a machine's last errors a node keeps (for `status`).
pub(super) const KEPT_ERRORS: usize = 4;

impl Hosted {
    /// A step of this machine failed with `e` (`what`: on what): keeps the error, logs it, and
    /// when it stopped the machine, has the node take it off the bus.
    pub(super) fn failed(
        &mut self,
        what: &str,
        e: interstate_core::Error,
        deferred: &mut Deferred,
    ) {
        let line = format!("machine '{}' failed {what}: {e}", self.id);
        if self.errors.len() == KEPT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(e.to_string());
        if self.machine.status() == Status::Failed && !self.stopped {
            self.stopped = true;
            deferred.stopped.push(self.id.clone());
        }
        deferred.logs.push(line);
    }
}

/// Everything of the node that receives: its machines, ports, registry copy and counters.
/// (Both ends of end-to-end delivery, the outstanding buffer and the duplicate filter, are
/// the core's: the hub side's own, or the client's.)
pub(super) struct Local {
    pub(super) machines: Vec<Hosted>,
    pub(super) by_id: HashMap<String, usize>,
    pub(super) ports: HashMap<String, VecDeque<PortMessage>>,
    /// Messages the program read and gave back ([`Node::recv_port_into`](super::Node::recv_port_into)):
    /// the next messages for ports are built in their buffers.
    pub(super) port_spares: super::ports::PortSpares,
    /// Sequence numbers of the ports' sends.
    pub(super) port_seq: HashMap<String, u64>,
    /// The ports' requests waiting for their replies (a table once a port has requested).
    pub(super) port_requests: HashMap<String, Pending<PORT_REQUESTS>>,
    pub(super) registry: Registry,
    pub(super) stats: NodeStats,
    /// The metrics [`NodeStats`] does not hold.
    pub(super) metrics: super::metrics::NodeMetrics,
    /// Watched machine ids: whether each was last seen up, and who watches it.
    pub(super) watches: HashMap<String, Watch>,
    /// The journal of a durable node (`NodeConfig::state_dir`).
    pub(super) durable: Option<super::durable::Durable>,
    /// An error journalling a step met (the loop returns it).
    pub(super) journal_error: Option<crate::error::PlatformError>,
    /// Acknowledgements of the ports' messages, kept for the program when it asked for them
    /// ([`Node::watch_port_acks`](super::Node::watch_port_acks)): (port, receiver, seq).
    pub(super) port_acks: Option<VecDeque<(String, String, u64)>>,
    /// Whether the messages queued unread in ports stay unacknowledged while
    /// `send_from_port` waits for room ([`Node::hold_port_acks`](super::Node::hold_port_acks)).
    pub(super) hold_port_acks: bool,
    /// The most messages a port holds unread from this process (`NodeConfig::port_queue`).
    pub(super) port_queue: usize,
    /// A message of this process waits for room in a full port (`port_full`).
    pub(super) port_blocked: bool,
    /// A port was read while a message waited for room: the next loop turn does not sleep.
    pub(super) port_room: bool,
    /// The live invoked services, by id (`parent/invoke-id`).
    pub(super) services: HashMap<String, super::children::ServiceSlot>,
    /// Invoked children live in this node (child machines and services).
    pub(super) live_children: usize,
    /// Wakes the loop from a blocking service's thread (made with the first service).
    pub(super) waker: Option<std::sync::Arc<mio::Waker>>,
    /// The node-wide arming order of the machines' timers (see `timer_order`).
    pub(super) timer_order: super::timer_order::TimerOrder,
}

impl Local {
    /// Whether a round of the pump could move anything: a machine with messages in its
    /// outbox, child changes due, sends of a restored journal to put back, or an invoked
    /// child whose end its parent may have to hear of.
    pub(super) fn has_work_to_pump(&self) -> bool {
        self.machines.iter().any(|h| {
            !h.vacant
                && (h.machine.outbox_len() > 0
                    || h.child.is_some()
                    || h.machine.child_change(0).is_some()
                    || h.durable.as_ref().is_some_and(|d| !d.resend.is_empty()))
        })
    }

    /// Whether `to` is a port holding [`Local::port_queue`] unread messages: a message of
    /// this process for it waits (or is refused) instead of growing its queue. Only its
    /// reader makes room; `taken` tells the loop when it does.
    pub(super) fn port_full(&self, to: &str) -> bool {
        self.ports
            .get(to)
            .is_some_and(|q| q.len() >= self.port_queue)
    }

    /// A message was taken from a port: a message waiting for room may go now.
    pub(super) fn taken(&mut self) {
        if self.port_blocked {
            self.port_room = true;
        }
    }

    /// An acknowledgement from `receiver` of `sender`'s messages up to `seq`: kept for the
    /// program when `sender` is a port and it asked for them.
    pub(super) fn port_acked(&mut self, sender: &str, receiver: &str, seq: u64) {
        if let Some(q) = self.port_acks.as_mut() {
            if self.ports.contains_key(sender) {
                q.push_back((sender.to_string(), receiver.to_string(), seq));
            }
        }
    }
}

/// Who watches a machine id, and whether it was last seen registered.
pub(super) struct Watch {
    pub(super) up: bool,
    pub(super) watchers: Vec<String>,
}

/// Things the node does when the current call into the hub or a machine returns.
#[derive(Default)]
pub(super) struct Deferred {
    /// Links to close, with the reason.
    pub(super) close: Vec<(LinkId, String)>,
    /// Failures the hub reported (each settles an outstanding message, once).
    pub(super) failures: Vec<Failure>,
    /// Machine ids that left the registry: their outstanding messages fail.
    pub(super) removed: Vec<String>,
    /// Failures reported as they are: found here, or reported by the hub and settled
    /// already.
    pub(super) direct: Vec<Failure>,
    /// Deliveries to local machines that arrived from the hub.
    pub(super) logs: Vec<String>,
    /// Machines stopped by an error: they leave the bus.
    pub(super) stopped: Vec<String>,
    /// Machines (or ports) whose state report is due (someone watches them).
    pub(super) reports: Vec<String>,
    /// Stats requests to answer: (asker's link, other processes asked).
    pub(super) stats_asked: Vec<(u32, u32)>,
}

impl Deferred {
    /// Whether no list ever held anything (none has allocated): then dropping it frees
    /// nothing, and [`Node::settle`](super::Node::settle) skips the drop.
    #[inline]
    pub(super) fn never_held_anything(&self) -> bool {
        // Every field is named, so that a list added to `Deferred` fails to compile here
        // until it is checked too.
        let Deferred {
            close,
            failures,
            removed,
            direct,
            logs,
            stopped,
            reports,
            stats_asked,
        } = self;
        close.capacity() == 0
            && failures.capacity() == 0
            && removed.capacity() == 0
            && direct.capacity() == 0
            && logs.capacity() == 0
            && stopped.capacity() == 0
            && reports.capacity() == 0
            && stats_asked.capacity() == 0
    }

    pub(super) fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.stopped.is_empty()
            && self.reports.is_empty()
            && self.direct.is_empty()
            && self.failures.is_empty()
            && self.removed.is_empty()
            && self.close.is_empty()
            && self.stats_asked.is_empty()
    }
}

/// A message that will not be delivered, as reported to its sender.
pub(super) struct Failed<'a> {
    pub(super) from: &'a str,
    pub(super) to: &'a str,
    pub(super) event: &'a str,
    pub(super) seq: u64,
    pub(super) reason: FailReason,
    /// What there is to add to the reason (a stopped target's error), or empty.
    pub(super) detail: &'a str,
    /// A request's failure settles the request instead (`xstate.error.request`).
    pub(super) correlation: Correlation,
}

/// A failed message waiting in [`Deferred`] to be reported to its sender.
pub(super) struct Failure {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) event: String,
    pub(super) seq: u64,
    pub(super) reason: FailReason,
    /// What there is to add to the reason (a stopped target's error), or empty.
    pub(super) detail: String,
    /// Found by this node (not reported by the hub): the hub is told, for its monitors.
    pub(super) found_here: bool,
    /// The failed message's correlation, when known here (a request's failure settles the
    /// request; the hub's reports leave it to the outstanding buffer, which knows it).
    pub(super) correlation: Correlation,
}

impl Failure {
    /// A failure this node found itself, with nothing to add to the reason.
    pub(super) fn found(from: &str, to: &str, event: &str, seq: u64, reason: FailReason) -> Self {
        Failure {
            from: from.into(),
            to: to.into(),
            event: event.into(),
            seq,
            reason,
            detail: String::new(),
            found_here: true,
            correlation: Correlation::None,
        }
    }

    /// The same failure of a message with correlation `c`.
    pub(super) fn correlated(self, correlation: Correlation) -> Self {
        Failure {
            correlation,
            ..self
        }
    }

    /// A failure the hub reported.
    pub(super) fn reported(f: &DeliveryFailed<'_>) -> Self {
        Failure {
            from: f.from.into(),
            to: f.to.into(),
            event: f.event.into(),
            seq: f.seq,
            reason: f.reason,
            detail: f.detail.into(),
            found_here: false,
            correlation: Correlation::None,
        }
    }
}

/// Where an event delivered to a machine or port of this node comes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Origin {
    /// A message from the machine `from`, with its correlation: the machine sees its sender.
    Message(Correlation),
    /// The runtime itself (a delivery error, a watch notification): no sender.
    Runtime,
}

impl Local {
    /// Whether `to` is a machine, service or port of this node.
    pub(super) fn hosts(&self, to: &str) -> bool {
        self.by_id.contains_key(to) || self.ports.contains_key(to) || self.services.contains_key(to)
    }

    /// A failure the hub reported settles its message's outstanding record here, once: the
    /// failure to report (with its request's correlation), or `None` for a message of this
    /// process that was settled already (reported then). A failure for a sender elsewhere
    /// is reported as it is.
    pub(super) fn settle_reported(
        &self,
        outstanding: &mut super::CoreOutstanding,
        f: Failure,
    ) -> Option<Failure> {
        match outstanding.fail_one(&f.from, &f.to, f.seq) {
            Some(u) => Some(f.correlated(u.correlation)),
            None if self.by_id.contains_key(&f.from) || self.ports.contains_key(&f.from) => None,
            None => Some(f),
        }
    }

    /// The error that stopped hosted machine `id`, as its senders are told it (the bound
    /// the wire puts on it, so that a local sender reads what a remote one does).
    pub(super) fn stop_error(&self, id: &str) -> String {
        let error = self
            .by_id
            .get(id)
            .and_then(|&i| self.machines[i].errors.back())
            .map_or("", String::as_str);
        cut_at_char(error, MAX_STOP_ERROR).to_string()
    }

    /// Delivers to a machine or port of this node; `false` when `to` is a stopped machine
    /// (or neither).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        origin: Origin,
        deferred: &mut Deferred,
    ) -> bool {
        if let Some(&i) = self.by_id.get(to) {
            if self.machines[i].stopped {
                return false;
            }
            self.step(i, now, from, event, payload, origin, deferred);
            return true;
        }
        if self
            .deliver_to_service(now, from, to, event, payload, deferred)
            .is_some()
        {
            return true;
        }
        if self.ports.contains_key(to) {
            let correlation = match origin {
                Origin::Message(c) => c,
                Origin::Runtime => Correlation::None,
            };
            if self.port_reply_is_late(to, from, correlation, true) {
                return true;
            }
            if let Some(q) = self.ports.get_mut(to) {
                let (topic, event) = split_event(event);
                q.push_back(self.port_spares.message(
                    to,
                    from,
                    (topic, event),
                    payload,
                    0,
                    correlation,
                ));
            }
            return true;
        }
        false
    }

    /// Whether a message for `port` is a reply to one of its requests that is settled
    /// already (it is dropped, counted and logged). `settle`: a reply that matches settles
    /// its request.
    pub(super) fn port_reply_is_late(
        &mut self,
        port: &str,
        from: &str,
        correlation: Correlation,
        settle: bool,
    ) -> bool {
        let Correlation::Reply(id) = correlation else {
            return false;
        };
        let pending = self.port_requests.get_mut(port);
        // A port that never made a request through the node (one that relays a foreign
        // client's messages: the serial bridge's device) keeps the replies it gets.
        let late = match pending {
            Some(p) if settle => p.reply(id, Some(from)) == ReplyVerdict::Late,
            Some(p) => !p.matches(id, from),
            None => false,
        };
        if late && settle {
            self.stats.late_replies += 1;
        }
        late
    }

    /// Machine `i` takes its step on an event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &mut self,
        i: usize,
        now: Instant,
        from: &str,
        event: &str,
        payload: &[u8],
        origin: Origin,
        deferred: &mut Deferred,
    ) {
        // A publication's machine sees its event; the topic chose it as a receiver.
        let event = split_event(event).1;
        let h = &mut self.machines[i];
        h.events.push(event);
        let e = Event::new(event).with_payload(payload);
        let (e, reply) = match origin {
            Origin::Message(c) => (
                e.with_sender(from).with_correlation(c),
                matches!(c, Correlation::Reply(_)),
            ),
            Origin::Runtime => (e, false),
        };
        let late_before = if reply {
            h.machine.stats().late_replies
        } else {
            0
        };
        if let Err(e) = h.machine.send(now, e, &mut *h.behavior) {
            h.failed(&format!("on event '{event}'"), e, deferred);
        }
        self.note_timers_after_step(i);
        // Journalled after every step (before its event is acknowledged and its sends leave).
        if let Err(e) = self.journal_machine(i, now) {
            deferred.logs.push(format!("the journal failed: {e}"));
            self.journal_error.get_or_insert(e);
        }
        let h = &mut self.machines[i];
        if reply && h.machine.stats().late_replies != late_before {
            self.stats.late_replies += 1;
            deferred.logs.push(format!(
                "machine '{}': a late reply '{event}' from '{from}' was dropped (its request \
                 was settled already)",
                h.id
            ));
        }
        h.stepped(deferred);
    }

    /// A message from another process: delivered once (a duplicate, sent again after a lost
    /// connection, is dropped and acknowledged again), and acknowledged once the application
    /// has it: a machine once its step ran, a port once `recv_port` returned it. `accept` is
    /// the duplicate filter's verdict (`handed`: whether the application has it on delivery).
    pub(super) fn receive(
        &mut self,
        now: Instant,
        d: &Deliver<'_>,
        deferred: &mut Deferred,
        accept: &mut dyn FnMut(&Deliver<'_>, bool) -> Accepted,
    ) {
        let machine = self
            .by_id
            .get(d.to)
            .copied()
            .filter(|&i| !self.machines[i].stopped);
        if machine.is_none() && !matches!(d.correlation, Correlation::Reply(_)) {
            // A port's message that is no reply: its queue is looked up once (a reply may
            // settle a request first, below).
            let Some(q) = self.ports.get_mut(d.to) else {
                deferred.logs.push(not_hosted(d));
                return;
            };
            if !new_message(accept(d, false), d, &mut self.stats, deferred) {
                return;
            }
            self.stats.received += 1;
            q.push_back(port_message(&mut self.port_spares, d));
            return;
        }
        if machine.is_none() && !self.ports.contains_key(d.to) {
            deferred.logs.push(not_hosted(d));
            return;
        }
        // A late reply for a port is dropped: the application never has it, so it is
        // acknowledged as soon as it is taken.
        let late = machine.is_none() && self.port_reply_is_late(d.to, d.from, d.correlation, false);
        if !new_message(
            accept(d, machine.is_some() || late),
            d,
            &mut self.stats,
            deferred,
        ) {
            return;
        }
        self.stats.received += 1;
        if let Some(i) = machine {
            if let Some(durable) = self.machines[i].durable.as_mut() {
                // Journalled with the step: a retransmission after a restart is a duplicate.
                let (pid, sender_durable) = self.registry.owner_of(d.from).unwrap_or((0, false));
                durable.took(d.from, pid, sender_durable, d.seq, &self.registry);
            }
            self.machines[i].counters.received += 1;
            let origin = Origin::Message(d.correlation);
            self.step(i, now, d.from, d.event, d.payload, origin, deferred);
        } else if self.port_reply_is_late(d.to, d.from, d.correlation, true) {
            deferred.logs.push(format!(
                "port '{}': a late reply '{}' from '{}' was dropped (its request was settled \
                 already)",
                d.to, d.event, d.from
            ));
        } else if let Some(q) = self.ports.get_mut(d.to) {
            q.push_back(port_message(&mut self.port_spares, d));
        }
    }

    /// A registry entry arrived (a machine joined, or the snapshot after a reconnect).
    pub(super) fn registry_entry(
        &mut self,
        now: Instant,
        e: &RegistryEntry<'_>,
        deferred: &mut Deferred,
    ) {
        self.registry.insert(MachineInfo::from_entry(e));
        self.watched(now, e.machine, true, deferred);
    }

    /// A machine left the registry.
    pub(super) fn registry_removed(
        &mut self,
        now: Instant,
        machine: &str,
        deferred: &mut Deferred,
    ) {
        self.registry.remove(machine);
        // What this process's machines sent it and never had acknowledged will not arrive:
        // their senders are told.
        deferred.removed.push(machine.to_string());
        self.watched(now, machine, false, deferred);
        // What this process's machines and ports asked of it will not be answered.
        self.requests_target_gone(now, machine, deferred);
    }

    /// A registry change for `machine`: tells its watchers on a real change (up after down,
    /// down after up), never twice for the same state.
    pub(super) fn watched(
        &mut self,
        now: Instant,
        machine: &str,
        up: bool,
        deferred: &mut Deferred,
    ) {
        let Some(w) = self.watches.get_mut(machine) else {
            return;
        };
        if w.up == up {
            return;
        }
        w.up = up;
        let watchers = w.watchers.clone();
        let payload = format!("{{\"machine\":{}}}", json_string(machine)).into_bytes();
        let event = if up {
            MACHINE_UP_EVENT
        } else {
            MACHINE_DOWN_EVENT
        };
        for watcher in watchers {
            self.deliver(
                now,
                machine,
                &watcher,
                event,
                &payload,
                Origin::Runtime,
                deferred,
            );
        }
    }
}

/// A port's message as the program will read it, in a spare's buffers when there is one.
#[inline]
fn port_message(spares: &mut super::ports::PortSpares, d: &Deliver<'_>) -> PortMessage {
    spares.message(
        d.to,
        d.from,
        split_event(d.event),
        d.payload,
        d.seq,
        d.correlation,
    )
}

/// [`split_publication`], with no search when the event has no separator byte (most do): a
/// loop over a short name's bytes, where `split_once`'s searcher cost about a hundred
/// instructions a message (counted: docs/performance.md).
/// The log line of a message for an id this node does not host. Not acknowledged: the hub
/// routes only ids this node registered, so this is a bug, and its sender must not take the
/// message for delivered.
fn not_hosted(d: &Deliver<'_>) -> String {
    format!(
        "a message from '{}' for '{}', which this process does not host, was dropped",
        d.from, d.to
    )
}

/// Whether the duplicate filter's verdict on `d` lets it be delivered: a duplicate is
/// dropped, and one the filter had no room for is neither delivered nor acknowledged (its
/// sender keeps it).
fn new_message(
    verdict: Accepted,
    d: &Deliver<'_>,
    stats: &mut NodeStats,
    deferred: &mut Deferred,
) -> bool {
    match verdict {
        Accepted::New => true,
        Accepted::Duplicate => false,
        Accepted::NoRoom => {
            stats.duplicate_filter_full += 1;
            deferred.logs.push(format!(
                "a message from '{}' for '{}' was refused: the duplicate filter is full \
                 (NodeConfig::duplicate_filter_pairs)",
                d.from, d.to
            ));
            false
        }
    }
}

fn split_event(event: &str) -> (Option<&str>, &str) {
    // (The separator is one byte in UTF-8: U+0000.)
    const SEPARATOR: u8 = TOPIC_SEPARATOR as u8;
    const _: () = assert!(TOPIC_SEPARATOR as u32 == SEPARATOR as u32);
    if event.bytes().any(|b| b == SEPARATOR) {
        split_publication(event)
    } else {
        (None, event)
    }
}
