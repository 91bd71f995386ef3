//! A process's side of the bus as one sans-IO state machine: the link's handshake and
//! keepalive ([`Endpoint`]), registration of the process's machine ids and its retry, the
//! outstanding buffer with retransmission after a reconnect, per-sender-process duplicate
//! suppression, and the acknowledgement policy.
//!
//! The host moves bytes: it tells the client what happened ([`Client::connected`],
//! [`Client::handle_frame`], [`Client::disconnected`], [`Client::handle_timeout`]) and hands
//! it a [`FrameSink`] to write to. The client never reads a clock: every call takes `now`.
//! What only the host can do (deliver an event to a machine, report a failure to the
//! machine that sent a message, keep the registry copy) comes back as an [`Incoming`].

use crate::bus::credit::Credit;
use crate::bus::direct::DirectPeers;
use crate::bus::outstanding::{NoRoom, Outstanding, Undelivered, ENTRY_HEADER};
use crate::bus::policy::{
    registration_answer, AckTimer, Grace, RegisterRetry, Registration, FORGET_DEPARTED_MS,
    RESEND_WITHIN, SWEEP_EVERY,
};
use crate::bus::received::{Accepted, Id, OwnerSlot, PairSlot, Received};
use crate::endpoint::{Endpoint, EndpointConfig, LinkState, Todo};
use crate::time::Instant;
use crate::wire::{
    cut_at_char, Correlation, Deliver, DeliveryFailed, FailReason, Frame, RegisterStatus,
    LEN_PREFIX, MAX_STOP_ERROR,
};

/// A machine id as a map key that can be looked up by `&str`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IdKey(Id);

impl core::hash::Hash for IdKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state)
    }
}

impl core::borrow::Borrow<str> for IdKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

#[derive(Clone, Copy, Debug)]
struct IdState {
    reg: Registration,
    /// The hub's last answer on the current connection.
    answer: Option<RegisterStatus>,
    /// The hub accepted this id from this process at least once, or may have: it was asked
    /// for on a connection that was lost before the answer came (the hub may still hold it
    /// for that connection).
    owned: bool,
    /// Asked for on the current connection, no answer yet.
    asked: bool,
    /// Registered as durable ([`Frame::RegisterDurable`]).
    durable: bool,
    /// The hub holds it for another connection (logged once when that starts, once when it
    /// ends, however many times it is asked for meanwhile).
    held: bool,
}

/// The client state machine. `B`: the outstanding buffer's bytes; `P`, `O`: the duplicate
/// filter's pair and owner slots; `R`: how many machine ids the process may register.
pub struct Client<B, P, O, const R: usize> {
    endpoint: Endpoint,
    outstanding: Outstanding<B>,
    /// How much of `outstanding` may be in flight now (sized by the messages' sojourn).
    credit: Credit,
    received: Received<P, O>,
    ids: heapless::FnvIndexMap<IdKey, IdState, R>,
    /// Every id in `ids` is registered: messages need no per-sender check.
    all_registered: bool,
    acks: AckTimer,
    retry: RegisterRetry,
    grace: Grace,
    snapshot_done: bool,
    monitor: bool,
    next_sweep: Instant,
    /// When the last frame came from the hub.
    heard: Instant,
    /// Since when (the last frame heard on the lost link) the client has been away from the
    /// bus, until its next link is ready.
    away_since: Option<Instant>,
    /// Back after [`RESEND_WITHIN`] or longer: what it had written before is not sent again
    /// but failed ([`Client::fail_after_long_absence`]); nothing is transmitted until then.
    stale: bool,
    /// [`Frame::Resending`] frames the link had no room for: sent before any message.
    resending: heapless::Vec<Id, 16>,
    /// The direct peer rings this process holds (see [`super::direct`]).
    direct: DirectPeers,
    /// [`Frame::DirectClose`] frames the link had no room for: sent before any message.
    direct_closes: heapless::Vec<u32, { super::direct::MAX_DIRECT_PAIRS * 2 }>,
}

/// Too many machine ids for the client's table, or an id longer than the bus allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooManyIds;

impl<B, P, O, const R: usize> Client<B, P, O, R>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    P: AsRef<[PairSlot]> + AsMut<[PairSlot]>,
    O: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>,
{
    /// A disconnected client whose first connection attempt is due at `now`, over the
    /// caller's storage: `outstanding` bytes for unacknowledged messages, and the duplicate
    /// filter's `pairs` and `owners` slots (all `Default`).
    pub fn new(config: EndpointConfig, now: Instant, outstanding: B, pairs: P, owners: O) -> Self {
        let capacity = outstanding.as_ref().len();
        Client {
            endpoint: Endpoint::new(config, now),
            credit: Credit::new(capacity),
            outstanding: Outstanding::new(outstanding),
            received: Received::new(pairs, owners),
            ids: heapless::FnvIndexMap::new(),
            all_registered: true,
            acks: AckTimer::default(),
            retry: RegisterRetry::default(),
            grace: Grace::default(),
            snapshot_done: false,
            monitor: false,
            next_sweep: now,
            heard: now,
            away_since: None,
            stale: false,
            resending: heapless::Vec::new(),
            direct: DirectPeers::new(),
            direct_closes: heapless::Vec::new(),
        }
    }

    /// The link's handshake and keepalive state machine.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    /// Whether the link is ready.
    pub fn is_ready(&self) -> bool {
        self.endpoint.is_ready()
    }
    /// Whether the registry snapshot has arrived since the link became ready.
    pub fn registry_synced(&self) -> bool {
        self.snapshot_done
    }
    /// The outstanding buffer.
    pub fn outstanding(&self) -> &Outstanding<B> {
        &self.outstanding
    }
    /// The sender's credit: how many bytes may be in flight now ([`crate::bus::credit`]).
    pub fn credit(&self) -> &Credit {
        &self.credit
    }
    /// The outstanding buffer, for the host's own failure reports.
    pub fn outstanding_mut(&mut self) -> &mut Outstanding<B> {
        &mut self.outstanding
    }
    /// The duplicate filter.
    pub fn received(&self) -> &Received<P, O> {
        &self.received
    }
    /// The duplicate filter, for the host (ports hand messages over with
    /// [`Received::handed`]).
    pub fn received_mut(&mut self) -> &mut Received<P, O> {
        &mut self.received
    }
    /// Where `id`'s registration stands (`None`: not an id of this client's).
    pub fn registration(&self, id: &str) -> Option<Registration> {
        self.ids.get(id).map(|s| s.reg)
    }

    /// The hub's last answer for `id` on the current connection, if it answered.
    pub fn last_answer(&self, id: &str) -> Option<RegisterStatus> {
        self.ids.get(id).and_then(|s| s.answer)
    }

    /// Adds `id` to the ids this process registers, and asks the hub for it now when the
    /// link is ready (the answer comes as [`Incoming::Registered`]); otherwise once it is.
    pub fn register(&mut self, id: &str, sink: &mut dyn FrameSink) -> Result<(), TooManyIds> {
        self.register_as(id, false, sink)
    }

    /// As [`register`](Self::register), for a durable machine (one that journals its state
    /// and comes back after a crash): when this process dies, the hub keeps the id for its
    /// next process, and senders send that one what this one had not acknowledged
    /// ([`Frame::RegisterDurable`]).
    pub fn register_durable(
        &mut self,
        id: &str,
        sink: &mut dyn FrameSink,
    ) -> Result<(), TooManyIds> {
        self.register_as(id, true, sink)
    }

    fn register_as(
        &mut self,
        id: &str,
        durable: bool,
        sink: &mut dyn FrameSink,
    ) -> Result<(), TooManyIds> {
        let key = {
            let mut k = Id::new();
            k.push_str(id).map_err(|_| TooManyIds)?;
            IdKey(k)
        };
        let owned = self.ids.get(id).is_some_and(|s| s.owned);
        let ready = self.endpoint.is_ready();
        self.ids
            .insert(
                key,
                IdState {
                    reg: Registration::Pending,
                    answer: None,
                    owned,
                    asked: ready,
                    durable,
                    held: false,
                },
            )
            .map_err(|_| TooManyIds)?;
        self.all_registered = false;
        if self.endpoint.is_ready() {
            sink.send_frame(&register_frame(id, durable));
        }
        Ok(())
    }

    /// Forgets `id` (a machine that was refused or removed).
    pub fn forget(&mut self, id: &str) {
        self.ids.remove(id);
        self.refresh_registered();
    }

    /// Takes `id` off the bus: forgets it and, when connected, tells the hub (`Unregister`),
    /// after every acknowledgement owed (the hub takes acknowledgements only from an id's
    /// owner: what `id` has was delivered, and its senders must hear so before it goes).
    /// Messages that arrive for it afterwards are the host's to leave unacknowledged.
    pub fn unregister(&mut self, id: &str, sink: &mut dyn FrameSink) {
        self.leave(id, None, sink);
    }

    /// As [`unregister`](Self::unregister) for a machine that stopped on `error`: the hub
    /// is told `Stopped` with the error's first [`MAX_STOP_ERROR`] bytes, and answers later
    /// messages to it with `TargetStopped` and that text.
    pub fn stopped(&mut self, id: &str, error: &str, sink: &mut dyn FrameSink) {
        self.leave(id, Some(error), sink);
    }

    fn leave(&mut self, id: &str, stopped: Option<&str>, sink: &mut dyn FrameSink) {
        if self.ids.remove(id).is_some() {
            self.refresh_registered();
            if self.endpoint.is_ready() {
                self.received.emit(&mut |receiver, sender, seq| {
                    sink.send_frame(&Frame::Ack {
                        from: receiver,
                        to: sender,
                        seq,
                    })
                });
                sink.send_frame(&match stopped {
                    Some(error) => Frame::Stopped {
                        machine: id,
                        error: cut_at_char(error, MAX_STOP_ERROR),
                    },
                    None => Frame::Unregister { machine: id },
                });
            }
        }
    }

    /// A message of this process's failed here, without the hub (too large, not connected,
    /// a reserved event, a stopped local target...): tells the hub, for its monitors
    /// ([`Frame::NodeFailure`]), when the link is ready. Sent whether or not anyone monitors
    /// (the hub drops it when nobody does): a failure is rare, and one small frame is cheaper
    /// than keeping every client told whether anyone monitors. Returns whether it was queued.
    pub fn report_found_failure(
        &mut self,
        f: &DeliveryFailed<'_>,
        sink: &mut dyn FrameSink,
    ) -> bool {
        self.endpoint.is_ready() && sink.send_frame(&Frame::NodeFailure(*f))
    }

    fn refresh_registered(&mut self) {
        self.all_registered = self.ids.values().all(|s| s.reg == Registration::Registered);
    }

    /// Starts (`on`) or stops watching `machine`'s state: its reports come back as
    /// [`Incoming::State`]. Only while connected (a host that watches across reconnections
    /// asks again on [`Incoming::Ready`]: the hub forgets a link's watches when it closes).
    /// Returns whether the request was sent.
    pub fn watch_state(&mut self, machine: &str, on: bool, sink: &mut dyn FrameSink) -> bool {
        self.endpoint.is_ready() && sink.send_frame(&Frame::Watch { machine, on })
    }

    /// Sends a state report of `machine` (one of this process's, which the hub asked to
    /// report with [`Incoming::Report`]). Returns whether it was queued.
    pub fn send_state(&mut self, machine: &str, report: &[u8], sink: &mut dyn FrameSink) -> bool {
        self.endpoint.is_ready() && sink.send_frame(&Frame::State { machine, report })
    }

    /// Subscribes to copies of every frame crossing the hub (from now on, and after every
    /// reconnect).
    pub fn subscribe_monitor(&mut self, sink: &mut dyn FrameSink) {
        self.monitor = true;
        if self.endpoint.is_ready() {
            sink.send_frame(&Frame::Subscribe {
                registry: true,
                monitor: true,
            });
        }
    }

    /// The connection is up: queue the Hello.
    pub fn connected(&mut self, now: Instant, sink: &mut dyn FrameSink) {
        self.endpoint.connected(now);
        sink.send_frame(&self.endpoint.hello());
    }

    /// The connection is gone (or an attempt failed). What was sent and not acknowledged is
    /// sent again after the reconnect; the registry copy is stale until the next snapshot.
    pub fn disconnected(&mut self, now: Instant) {
        // Every direct pair goes with the hub's link (the host drops their rings too):
        // everything unacknowledged is sent again after the reconnect, whichever way it went.
        self.direct.close_all(&mut |_, _| {});
        self.direct_closes.clear();
        self.outstanding.rewind();
        self.resending.clear();
        self.away_since.get_or_insert(self.heard);
        if !matches!(
            self.endpoint.state(),
            LinkState::Disconnected { .. } | LinkState::Failed
        ) {
            self.endpoint.disconnected(now);
        }
        self.snapshot_done = false;
    }

    /// A connection attempt failed.
    pub fn connect_failed(&mut self, now: Instant) {
        self.endpoint.disconnected(now);
    }

    /// The host's writes to the hub are blocked (backpressure): the hub is taken for alive
    /// meanwhile (see [`Endpoint::hub_busy`]).
    pub fn hub_busy(&mut self, now: Instant) {
        self.endpoint.hub_busy(now);
    }

    /// A frame from the hub.
    pub fn handle_frame<'f>(
        &mut self,
        now: Instant,
        frame: Frame<'f>,
        sink: &mut dyn FrameSink,
    ) -> Incoming<'f> {
        self.heard = now;
        match self.endpoint.handle_frame(now, &frame) {
            Todo::Ready => {
                let Frame::Welcome(w) = frame else {
                    return Incoming::Nothing;
                };
                self.on_ready(now, sink);
                return Incoming::Ready {
                    max_frame: w.max_frame,
                };
            }
            Todo::Send(f) => {
                sink.send_frame(&f);
                return Incoming::Nothing;
            }
            Todo::Close => {
                let why = match frame {
                    Frame::Reject(r) => r.message,
                    _ => "closing",
                };
                return Incoming::Close(CloseReason::Rejected(why));
            }
            Todo::Connect | Todo::Nothing => {}
        }
        match frame {
            Frame::Deliver(d) => Incoming::Deliver(d),
            Frame::Ack { from, to, seq } => {
                self.outstanding.ack(to, from, seq);
                Incoming::Nothing
            }
            Frame::DeliveryFailed(f) => {
                let settled = self.outstanding.fail_one(f.from, f.to, f.seq);
                Incoming::Failed {
                    failed: f,
                    settled: settled.is_some(),
                    correlation: settled.map_or(Correlation::None, |u| u.correlation),
                }
            }
            Frame::RegisterResult { machine, status } => {
                let change = self.registered(now, machine, status);
                Incoming::Registered {
                    machine,
                    status,
                    change,
                }
            }
            Frame::RegistryEntry(e) => {
                // A new owner of an id this process had messages out to, unacknowledged:
                // the hub held the id for its durable owner, who came back, and dropped
                // them. They go again, in order; the hub forwards what follows this.
                if self.outstanding.rewind_to(e.machine)
                    && !sink.send_frame(&Frame::Resending { machine: e.machine })
                {
                    // Sent before anything else is transmitted (the hub drops what comes
                    // before it or the Pong to its Ping).
                    let mut id = Id::new();
                    let _ = id.push_str(e.machine);
                    let _ = self.resending.push(id);
                }
                self.received
                    .sender_registered_as(e.machine, e.pid, e.durable, now.as_millis());
                Incoming::RegistryEntry(e)
            }
            Frame::RegistryRemoved { machine } => {
                if !self.ids.contains_key(machine) {
                    self.received.sender_departed(machine, now.as_millis());
                }
                Incoming::RegistryRemoved(machine)
            }
            Frame::SnapshotEnd => {
                self.snapshot_done = true;
                Incoming::SnapshotEnd
            }
            Frame::Monitored { frame, .. } => Incoming::Monitored(frame),
            Frame::Report { machine, on } => Incoming::Report { machine, on },
            Frame::State { machine, report } => Incoming::State { machine, report },
            Frame::Goodbye { reason } => Incoming::Close(CloseReason::Goodbye(reason)),
            f
            @ (Frame::TopicEntry { .. } | Frame::TopicSnapshotEnd | Frame::TopicResult { .. }) => {
                Incoming::Topic(f)
            }
            f @ (Frame::StatsRequest { .. } | Frame::Stats { .. }) => Incoming::Stats(f),
            Frame::DirectOffer { pair, peer_pid } => self.direct_offered(pair, peer_pid, sink),
            Frame::DirectOpen { pair } => match self.direct.peer_opened(pair) {
                Some(slot) => Incoming::DirectReadable { slot },
                None => Incoming::Nothing,
            },
            Frame::DirectClose { pair } => self.direct_closed_by_hub(pair),
            _ => Incoming::Nothing,
        }
    }

    fn registered(
        &mut self,
        now: Instant,
        machine: &str,
        status: RegisterStatus,
    ) -> RegistrationChange {
        let Some(s) = self.ids.get_mut(machine) else {
            return RegistrationChange::None;
        };
        s.asked = false;
        s.reg = registration_answer(status, s.owned);
        s.answer = Some(status);
        let change = match s.reg {
            Registration::Registered => {
                s.owned = true;
                if core::mem::take(&mut s.held) {
                    RegistrationChange::Regained
                } else {
                    RegistrationChange::None
                }
            }
            Registration::HeldElsewhere => {
                self.retry.refused(now);
                if core::mem::replace(&mut s.held, true) {
                    RegistrationChange::None
                } else {
                    RegistrationChange::HeldElsewhere
                }
            }
            _ => RegistrationChange::Refused,
        };
        self.refresh_registered();
        change
    }

    /// The link is (again) ready: register every id, subscribe, start the grace.
    fn on_ready(&mut self, now: Instant, sink: &mut dyn FrameSink) {
        if let Some(since) = self.away_since.take() {
            self.stale |= now - since >= RESEND_WITHIN;
        }
        self.grace.reconnected(now);
        self.retry.reset();
        for (id, s) in self.ids.iter_mut() {
            // Every id is asked for afresh on a new connection, refused ones included.
            // One asked for on the previous connection and not answered may be held for it
            // by the hub: a `Taken` now is that connection's, and the id is asked for again.
            s.owned |= s.asked;
            s.asked = true;
            s.reg = Registration::Pending;
            s.answer = None;
            sink.send_frame(&register_frame(&id.0, s.durable));
        }
        self.all_registered = self.ids.is_empty();
        sink.send_frame(&Frame::Subscribe {
            registry: true,
            monitor: self.monitor,
        });
        if self.direct.allowed() > 0 {
            sink.send_frame(&Frame::DirectAllow {
                pairs: self.direct.allowed() as u32,
            });
        }
    }

    /// Tells a new message from a duplicate and records it. `handed`: the application has it
    /// once delivered (a machine); otherwise (a port) acknowledge it with [`Received::handed`].
    pub fn accept(&mut self, d: &Deliver<'_>, handed: bool) -> Accepted {
        self.accept_read(d, d.body_len(), handed)
    }

    /// As [`Client::accept`], for a host that holds the frame body `d` was read from:
    /// `body_len` is that body's length (no second computation of it).
    pub fn accept_read(&mut self, d: &Deliver<'_>, body_len: usize, handed: bool) -> Accepted {
        self.acks.delivered(body_len);
        self.received.accept(d.to, d.from, d.seq, handed)
    }

    /// Takes a message from one of this process's machines to another process at `now`:
    /// encoded once, into the outstanding buffer, where it waits to be written
    /// ([`Client::transmit`]) and then for its acknowledgement. `max_frame`: the largest
    /// frame body the bus allows.
    ///
    /// While the link is up, what is in flight is also bounded by the sender's
    /// [`Credit`]: when its messages' sojourn has stood above the target, new ones are
    /// refused as [`SendRefused::Full`] (backpressure) until acknowledgements free room.
    pub fn send(
        &mut self,
        now: Instant,
        d: &Deliver<'_>,
        max_frame: u32,
    ) -> Result<(), SendRefused> {
        let len = d.body_len();
        if len > max_frame as usize {
            return Err(SendRefused::Failed(FailReason::TooLarge));
        }
        if self.endpoint.is_ready() {
            let o = &self.outstanding;
            let oldest = (!o.is_empty()).then(|| self.credit.age_of(o.released(), now));
            if !self.credit.admits(
                now,
                o.bytes_held(),
                ENTRY_HEADER + len,
                oldest,
                o.released(),
            ) {
                return Err(SendRefused::Full);
            }
        }
        let number = self.outstanding.taken();
        match self.outstanding.push_deliver_sized(d, len, false) {
            Ok(_) => {
                self.credit.taken(number, now);
                Ok(())
            }
            Err(NoRoom) if self.endpoint.is_ready() => Err(SendRefused::Full),
            // Not connected and no room to keep it until the link is back.
            Err(NoRoom) => Err(SendRefused::Failed(FailReason::Disconnected)),
        }
    }

    /// Ends the grace after the link became ready: messages to machines the host's registry
    /// copy does not show go out at the next [`Client::transmit`] (and fail at the hub, if
    /// those machines are absent) instead of waiting for them to appear. For a one-shot
    /// sender whose registry copy is current; the next connection starts a grace again.
    pub fn end_grace(&mut self) {
        self.grace = Grace::default();
    }

    /// Whether a message of `body_len` bytes fits in the outstanding buffer now.
    pub fn has_room(&self, body_len: usize) -> bool {
        self.outstanding.has_room(body_len)
    }

    /// Whether messages from `id` go out now: the hub has accepted the id on the current
    /// connection, or refused it for good (then they fail visibly, as `not-owner`). They
    /// wait while its registration is pending, or being asked for again.
    pub fn may_send_as(&self, id: &str) -> bool {
        self.all_registered || self.ids.get(id).is_none_or(|s| s.reg.may_send())
    }

    /// Moves unsent messages onto the link, in order, holding back (during the grace after a
    /// reconnect) those for machines the registry copy does not show yet (`present`). While
    /// the client holds direct pairs this sends nothing: use [`Client::transmit_direct`].
    pub fn transmit(
        &mut self,
        now: Instant,
        present: &dyn Fn(&str) -> bool,
        sink: &mut dyn FrameSink,
    ) {
        self.transmit_via(now, present, &|_| None, sink, None);
    }

    /// As [`Client::transmit`], with messages to the machines of a process this one holds a
    /// direct pair with written to that pair's ring (`rings`) instead of the hub's link.
    /// `owner_pid(id)`: the process the host's registry copy shows `id` on.
    pub fn transmit_direct(
        &mut self,
        now: Instant,
        present: &dyn Fn(&str) -> bool,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        sink: &mut dyn FrameSink,
        rings: &mut dyn DirectSink,
    ) {
        self.transmit_via(now, present, owner_pid, sink, Some(rings));
    }

    fn transmit_via(
        &mut self,
        now: Instant,
        present: &dyn Fn(&str) -> bool,
        owner_pid: &dyn Fn(&str) -> Option<u32>,
        sink: &mut dyn FrameSink,
        mut rings: Option<&mut dyn DirectSink>,
    ) {
        if !self.endpoint.is_ready() {
            return;
        }
        while let Some(&pair) = self.direct_closes.first() {
            if !sink.send_frame(&Frame::DirectClose { pair }) {
                return;
            }
            self.direct_closes.remove(0);
        }
        if !self.outstanding.has_unsent() || self.stale {
            return;
        }
        if rings.is_none() && self.direct.any() {
            // Which messages may take the hub's way is only known with the registry's
            // owners: a message to the other side of a pair sent through the hub could
            // overtake one in the ring. A host holding pairs transmits with
            // `transmit_direct`.
            return;
        }
        while let Some(id) = self.resending.first() {
            if !sink.send_frame(&Frame::Resending { machine: id }) {
                return;
            }
            self.resending.remove(0);
        }
        let Client {
            outstanding,
            ids,
            all_registered,
            grace,
            snapshot_done,
            direct,
            ..
        } = self;
        let (all, synced) = (*all_registered, *snapshot_done);
        let in_grace = grace.in_grace(now);
        let any_direct = rings.is_some() && direct.any();
        outstanding.transmit_routed(
            // (The ids are read as text only for the checks that need them.)
            &mut |from, to| {
                (!in_grace || (synced && present(to.text())))
                    && (all || ids.get(from.text()).is_none_or(|s| s.reg.may_send()))
            },
            &mut |to| {
                if any_direct {
                    direct.route(owner_pid(to.text()))
                } else {
                    None
                }
            },
            &mut |way, body| match (way, rings.as_deref_mut()) {
                (Some(k), Some(r)) => r.send_body(k, body),
                _ => sink.send_body(body),
            },
        );
    }

    /// After a link is ready ([`Incoming::Ready`]), and before [`Client::transmit`]: when the
    /// client was away from the bus for [`RESEND_WITHIN`] or longer, fails every message it
    /// had written to its lost link and not had acknowledged, handing each to `report`
    /// (report it to its sender as `disconnected`: not confirmed). Its receiver may have it
    /// and may have forgotten the sender meanwhile: sent again, it could be delivered twice.
    /// Until this is called after such an absence, nothing is transmitted. Returns how many
    /// failed.
    pub fn fail_after_long_absence(&mut self, report: &mut dyn FnMut(Undelivered<'_>)) -> usize {
        if !core::mem::take(&mut self.stale) {
            return 0;
        }
        self.outstanding.fail_written(report)
    }

    /// Fails what this process sent to `machine` and has not had acknowledged (it left the
    /// bus), handing each to `report`.
    pub fn fail_to(&mut self, machine: &str, report: &mut dyn FnMut(Undelivered<'_>)) -> usize {
        self.outstanding
            .fail_where(&mut |_, to, _| to == machine, report)
    }

    /// Time-driven work: reconnect attempts, keepalive, registration retries, the duplicate
    /// filter's sweep. `present(id)`: whether the host's registry copy shows `id`.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut dyn FrameSink) -> TimeoutTodo {
        if now >= self.next_sweep {
            // A sweep long overdue (the host did not run: a stopped process, a clock jump)
            // forgets nothing this once: frames not read yet may show departed senders back.
            let overdue = now >= self.next_sweep + SWEEP_EVERY;
            self.next_sweep = now + SWEEP_EVERY;
            // Only with a current registry: a sender missing from a stale one may be alive.
            if self.snapshot_done && !overdue {
                self.received
                    .forget_departed(now.as_millis(), FORGET_DEPARTED_MS);
            }
        }
        if let Some(backoff) = self.retry.due(now) {
            if self.endpoint.is_ready() {
                let mut again = false;
                for (id, s) in self.ids.iter_mut() {
                    if s.reg == Registration::HeldElsewhere {
                        s.reg = Registration::Pending;
                        s.asked = true;
                        again = true;
                        sink.send_frame(&register_frame(&id.0, s.durable));
                    }
                }
                if again {
                    self.retry.asked(now, backoff);
                }
            }
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            match self.endpoint.handle_timeout(now) {
                Todo::Connect => return TimeoutTodo::Connect,
                Todo::Send(f) => {
                    sink.send_frame(&f);
                }
                Todo::Close => return TimeoutTodo::Close,
                _ => {}
            }
        }
        TimeoutTodo::Nothing
    }

    /// When [`Client::handle_timeout`] (or [`Client::emit_acks`], or [`Client::transmit`] at
    /// the end of the grace) next has work.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        // The earliest of five, with no iterator over an array of options (a host asks
        // every loop turn: 134 instructions a call that way, counted).
        let earlier = |a: Instant, b: Option<Instant>| match b {
            Some(b) if b < a => b,
            _ => a,
        };
        let mut due = self.next_sweep;
        due = earlier(due, self.endpoint.poll_timeout());
        due = earlier(due, self.retry.poll_timeout());
        due = earlier(due, self.acks.poll_timeout());
        if self.outstanding.has_unsent() {
            due = earlier(due, self.grace.poll_timeout(now));
        }
        Some(due)
    }
}

fn register_frame(id: &str, durable: bool) -> Frame<'_> {
    if durable {
        Frame::RegisterDurable { machine: id }
    } else {
        Frame::Register { machine: id }
    }
}

/// The body of a Deliver frame encoded into `buf` (length prefix skipped), for hosts that
/// hand a hub their own messages.
pub fn encode_deliver<'b>(d: &Deliver<'_>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let n = Frame::Deliver(*d).encode(buf).ok()?;
    buf.get(LEN_PREFIX..n)
}

#[path = "client_acks.rs"]
mod acks_side;
#[path = "client_direct.rs"]
mod direct_side;

#[path = "client_incoming.rs"]
mod incoming;
pub use incoming::{
    CloseReason, DirectSink, FrameSink, Incoming, RegistrationChange, SendRefused, TimeoutTodo,
};

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
