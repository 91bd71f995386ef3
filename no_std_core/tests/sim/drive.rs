//! The simulated processes' hosts, and the loop that moves frames and fires timeouts.

use interstate_core::bus::client::{Incoming, RegistrationChange, SendRefused, TimeoutTodo};
use interstate_core::bus::Accepted;
use interstate_core::wire::{Deliver, FailReason, Frame};
use interstate_core::{Duration, Instant};

use super::requests::{answer, expire, reply_arrived, request_failed, targets_gone};
use super::{direct, event_number, Delivery, Failure, Note, Process, Sent, Sim, Sink};

/// What a process's host does in one turn, to tell the loop whether it moved.
#[derive(Default)]
struct Turn {
    moved: bool,
    lost: bool,
    connect: bool,
}

impl Sim {
    /// One turn of process `p`'s host, as a node's loop turn: timeouts, frames that have
    /// arrived, then its outbox, transmission and acknowledgements.
    fn process_turn(&mut self, p: usize) -> bool {
        let now = self.now;
        let mut turn = Turn::default();
        let Some(pr) = self.procs[p].as_mut().filter(|pr| !pr.frozen) else {
            return false;
        };
        turn.moved |= expire(p, pr, now, &mut self.rec);
        if let Some(c) = pr.conn {
            self.conns[c].wrote = false;
            if self.conns[c].stalled_on.is_some() {
                // The hub is not reading this link (backpressure): it is alive meanwhile.
                pr.client.hub_busy(now);
            }
        }
        if pr.client.poll_timeout(now).is_some_and(|t| t <= now) {
            let conn = pr.conn.map(|c| &mut self.conns[c]);
            let mut sink = Sink { conn, now };
            match pr.client.handle_timeout(now, &mut sink) {
                TimeoutTodo::Connect => turn.connect = true,
                TimeoutTodo::Close => turn.lost = true,
                TimeoutTodo::Nothing => {}
            }
            turn.moved = true;
        }
        while !turn.lost {
            let Some(c) = pr.conn else { break };
            let Some((at, _)) = self.conns[c].down.front() else {
                break;
            };
            if *at > now {
                break;
            }
            if let Some(rate) = pr.reads_per_ms {
                if pr.read_in.0 != now {
                    pr.read_in = (now, 0);
                }
                if pr.read_in.1 >= rate {
                    break;
                }
                pr.read_in.1 += 1;
            }
            if direct::close_waits_for_ring(p, pr, &self.rings, &self.conns[c].down[0].1, now) {
                // As the platform does: what the other side wrote to the ring before the
                // hub's close is read first (below); the close is handled on the next turn.
                turn.moved = true;
                break;
            }
            let (_, body) = self.conns[c].down.pop_front().expect("a frame");
            self.conns[c].down_bytes -= body.len();
            turn.moved = true;
            let frame = Frame::decode(&body).expect("the hub sends valid frames");
            let mut sink = Sink {
                conn: Some(&mut self.conns[c]),
                now,
            };
            let incoming = pr.client.handle_frame(now, frame, &mut sink);
            if !direct::host_direct(p, pr, &mut self.rings, &incoming, &mut sink) {
                host(p, pr, now, incoming, &mut self.rec, &mut turn, &mut sink);
            }
            if pr.transmit_each_frame {
                let registry = &pr.registry;
                let owners = &pr.owners;
                let mut rings = direct::RingSink {
                    rings: &mut self.rings,
                    slots: pr.rings,
                    from: p,
                    now,
                    delay: self.config.direct_delay,
                    written: 0,
                };
                pr.client.transmit_direct(
                    now,
                    &|to| registry.contains(to),
                    &|id| owners.get(id).copied(),
                    &mut sink,
                    &mut rings,
                );
                self.rec.ring_writes += rings.written;
            }
        }
        // What the direct rings carry, once the other side's switch-over has arrived.
        while !turn.lost {
            let Some((slot, body)) = direct::next_frame(p, pr, &mut self.rings, now) else {
                break;
            };
            turn.moved = true;
            self.rec.ring_reads += 1;
            let frame = direct::decode(&body);
            let conn = pr.conn.map(|c| &mut self.conns[c]);
            let mut sink = Sink { conn, now };
            let (owners, machines, ports) = (&pr.owners, &pr.machines, &pr.ports);
            let incoming = pr.client.handle_direct_frame(
                slot,
                frame,
                &|id| owners.get(id).copied(),
                &|id| machines.iter().chain(ports).any(|m| m == id),
                &mut sink,
            );
            if let Incoming::DirectClosed { why: Some(w), .. } = &incoming {
                self.rec.ring_refusals.push((p, w.to_string()));
            }
            if !direct::host_direct(p, pr, &mut self.rings, &incoming, &mut sink) {
                host(p, pr, now, incoming, &mut self.rec, &mut turn, &mut sink);
            }
        }
        if turn.lost {
            self.rec.disruptions.push((p, now));
            self.client_lost(p);
            return true;
        }
        if turn.connect {
            self.connect(p);
        }
        let pr = self.procs[p].as_mut().expect("live");
        let mut rings = direct::RingSink {
            rings: &mut self.rings,
            slots: pr.rings,
            from: p,
            now,
            delay: self.config.direct_delay,
            written: 0,
        };
        turn.moved |= pump(
            p,
            pr,
            now,
            &mut self.conns,
            &mut self.rec,
            &mut self.next_n,
            &mut rings,
        );
        turn.moved
    }

    /// Advances the clock, turn by turn, until `done` holds (true) or `limit` has passed
    /// (false).
    pub fn drive_until(&mut self, limit: Duration, done: &mut dyn FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            self.run_instant();
            if done(self) {
                return true;
            }
            let next = self.next_due().max(self.now + Duration::from_millis(1));
            if next > deadline {
                self.now = deadline;
                self.run_instant();
                return done(self);
            }
            self.now = next;
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.drive_until(d, &mut |_| false);
    }

    /// Runs until the bus is quiescent (see [`Sim::quiescent`]), for at most `limit`.
    pub fn settle(&mut self, limit: Duration) -> bool {
        self.drive_until(limit, &mut |s| s.quiescent())
    }

    /// The hub is up; every live process is connected, registered and has its registry
    /// snapshot; nothing is in flight, waiting to be sent, unacknowledged or owed.
    pub fn quiescent(&self) -> bool {
        self.hub.is_some()
            && self
                .conns
                .iter()
                .all(|c| c.up.is_empty() && c.down.is_empty() && c.hub_close_at.is_none())
            && self.rings.iter().all(|r| {
                r.pending(&|p, pair| self.holds_ring(p, pair))
                    .next()
                    .is_none()
            })
            && self.procs.iter().flatten().all(|pr| {
                pr.conn.is_some()
                    && pr.client.is_ready()
                    && pr.client.registry_synced()
                    && pr.outbox.is_empty()
                    && pr.client.outstanding().is_empty()
                    && !pr.client.received().is_dirty()
                    && pr
                        .machines
                        .iter()
                        .chain(&pr.ports)
                        .all(|m| pr.client.may_send_as(m))
            })
    }

    /// Whether process `p` holds ring pair `pair` in one of its slots.
    fn holds_ring(&self, p: usize, pair: u32) -> bool {
        self.procs[p]
            .as_ref()
            .is_some_and(|pr| pr.rings.contains(&Some(pair)))
    }

    /// Where every process and connection stands, for a failing test's message.
    pub fn describe(&self) -> String {
        let mut out = format!("at {:?}, hub up: {}\n", self.now, self.hub.is_some());
        for (p, pr) in self.procs.iter().enumerate() {
            let Some(pr) = pr else {
                out += &format!("  p{p}: dead\n");
                continue;
            };
            let regs: Vec<_> = pr
                .machines
                .iter()
                .chain(&pr.ports)
                .map(|m| (m.as_str(), pr.client.registration(m)))
                .collect();
            out += &format!(
                "  p{p}#{}: conn {:?} {:?} synced {} outbox {} outstanding {} dirty {} {regs:?}\n",
                pr.incarnation,
                pr.conn,
                pr.client.endpoint().state(),
                pr.client.registry_synced(),
                pr.outbox.len(),
                pr.client.outstanding().len(),
                pr.client.received().is_dirty(),
            );
        }
        for r in &self.rings {
            if r.pending(&|p, pair| self.holds_ring(p, pair))
                .next()
                .is_some()
            {
                out += &format!("  {r:?}\n");
            }
        }
        for (i, c) in self.conns.iter().enumerate() {
            if c.link.is_some() || c.client_open || !c.up.is_empty() || !c.down.is_empty() {
                out += &format!(
                    "  conn {i} of p{}: link {:?} client {} up {} down {} stalled {:?} close {:?}\n",
                    c.proc,
                    c.link,
                    c.client_open,
                    c.up.len(),
                    c.down.len(),
                    c.stalled_on,
                    c.hub_close_at
                );
            }
        }
        out
    }

    /// Everything due at the current instant, until nothing moves.
    fn run_instant(&mut self) {
        if self.hub_up_at.is_some_and(|t| t <= self.now) {
            self.hub_up();
        }
        for _ in 0..10_000 {
            let mut moved = self.hub_turn();
            for p in 0..self.procs.len() {
                moved |= self.process_turn(p);
            }
            self.note_peaks();
            if !moved {
                return;
            }
        }
        panic!("the bus does not settle at {:?}", self.now);
    }

    fn note_peaks(&mut self) {
        for c in &self.conns {
            self.rec.peak_hub_queue = self.rec.peak_hub_queue.max(c.down_bytes);
        }
        for pr in self.procs.iter().flatten() {
            let o = pr.client.outstanding();
            self.rec.peak_outstanding = self.rec.peak_outstanding.max(o.bytes_held());
            assert!(o.bytes_held() <= o.capacity());
            let r = pr.client.received();
            self.rec.peak_pairs = self.rec.peak_pairs.max(r.senders());
            assert!(r.senders() <= r.capacity());
        }
    }

    /// The next instant anything has work.
    fn next_due(&self) -> Instant {
        let far = self.now + Duration::from_millis(3_600_000);
        let frozen = |p: usize| self.procs[p].as_ref().is_some_and(|pr| pr.frozen);
        let frames = self.conns.iter().flat_map(|c| {
            // (A stalled link resumes when its target drains: that is a frame event.)
            let up =
                c.up.front()
                    .filter(|_| c.link.is_some() && c.stalled_on.is_none());
            let up = up.map(|f| f.0);
            let down = c.down.front().filter(|_| c.client_open && !frozen(c.proc));
            [up, down.map(|f| f.0), c.hub_close_at]
        });
        let clients = self
            .procs
            .iter()
            .flatten()
            .filter(|pr| !pr.frozen)
            .flat_map(|pr| [pr.client.poll_timeout(self.now), pr.requests.poll_timeout()]);
        let hub = self.hub.as_ref().and_then(|h| h.poll_timeout());
        let holds = |p: usize, pair: u32| self.holds_ring(p, pair);
        let rings = self.rings.iter().flat_map(|r| r.pending(&holds)).map(Some);
        frames
            .chain(rings)
            .chain(clients)
            .chain([hub, self.hub_up_at])
            .flatten()
            .min()
            .unwrap_or(far)
    }
}

/// What a node does with one `Incoming` (`platform/src/node/client_side.rs`).
fn host(
    p: usize,
    pr: &mut Process,
    now: Instant,
    incoming: Incoming<'_>,
    rec: &mut super::Records,
    turn: &mut Turn,
    sink: &mut Sink<'_>,
) {
    let failure = |pr: &Process, from: &str, to: &str, event: &str, seq, reason| Failure {
        n: event_number(event),
        at: now,
        proc: p,
        incarnation: pr.incarnation,
        from: from.to_string(),
        to: to.to_string(),
        seq,
        reason,
    };
    match incoming {
        // (No simulated process watches a machine's state, so none is asked to report.)
        Incoming::Nothing
        | Incoming::Monitored(_)
        | Incoming::Report { .. }
        | Incoming::State { .. }
        | Incoming::Stats(_) => {}
        Incoming::Topic(f) => {
            pr.topics.handle(&f);
        }
        // (Taken by `direct::host_direct` before this.)
        Incoming::DirectOffer { .. }
        | Incoming::DirectReadable { .. }
        | Incoming::DirectClosed { .. } => {}
        Incoming::Ready { max_frame } => {
            pr.max_frame = max_frame;
            pr.topics.on_ready(&mut *sink);
            rec.readies.push((p, pr.incarnation, now));
            // Back after a long absence: what it had written before fails, not confirmed.
            let mut failed = Vec::new();
            pr.client.fail_after_long_absence(&mut |u| {
                failed.push((
                    u.from.to_string(),
                    u.to.to_string(),
                    u.event.to_string(),
                    u.seq,
                    u.correlation,
                ))
            });
            for (from, to, event, seq, correlation) in failed {
                let fl = failure(pr, &from, &to, &event, seq, FailReason::Disconnected);
                rec.failed.push(fl);
                request_failed(p, pr, now, correlation, FailReason::Disconnected, rec);
            }
            let registry = &pr.registry;
            pr.client
                .transmit(now, &|to| registry.contains(to), &mut *sink);
        }
        Incoming::Deliver(d) => {
            if !pr.hosts(d.to) {
                rec.notes.push(Note::Stray(p, d.to.to_string()));
                return;
            }
            let port = pr.ports.iter().any(|m| m == d.to);
            let n = event_number(d.event);
            let accepted = pr.client.accept(&d, !port);
            match accepted {
                Accepted::New => {
                    pr.accepted.insert(n);
                }
                Accepted::Duplicate if !pr.accepted.contains(&n) => {
                    rec.notes.push(Note::DroppedUnseen(p, d.to.to_string(), n));
                }
                _ => {}
            }
            match accepted {
                Accepted::New if port => pr.port_queue.push_back((
                    d.to.to_string(),
                    d.from.to_string(),
                    d.seq,
                    event_number(d.event),
                )),
                Accepted::New => {
                    rec.delivered.push(Delivery {
                        n: event_number(d.event),
                        proc: p,
                        incarnation: pr.incarnation,
                        from: d.from.to_string(),
                        to: d.to.to_string(),
                        seq: d.seq,
                        at: now,
                    });
                    answer(pr, &d);
                    reply_arrived(p, pr, now, &d, rec);
                }
                Accepted::Duplicate => {
                    rec.notes
                        .push(Note::Duplicate(p, d.to.to_string(), event_number(d.event)))
                }
                Accepted::NoRoom => rec.notes.push(Note::FilterFull(p, d.to.to_string())),
            }
        }
        Incoming::Failed {
            failed: f,
            settled,
            correlation,
        } => {
            // Reported once: when it settled an outstanding message here, or when its
            // sender is not this process's.
            if settled || !pr.hosts(f.from) {
                let fl = failure(pr, f.from, f.to, f.event, f.seq, f.reason);
                rec.failed.push(fl);
            }
            if settled {
                request_failed(p, pr, now, correlation, f.reason, rec);
            }
        }
        Incoming::Registered {
            machine,
            status,
            change,
        } => match change {
            _ if status == interstate_core::wire::RegisterStatus::Ok
                && change != RegistrationChange::HeldElsewhere =>
            {
                // Its subscriptions are asked for with its registration, as a node does.
                pr.topics.registered(machine, &mut *sink);
                if change == RegistrationChange::Regained {
                    rec.notes.push(Note::Regained(p, machine.into()));
                }
            }
            RegistrationChange::None => {}
            RegistrationChange::Regained => rec.notes.push(Note::Regained(p, machine.into())),
            RegistrationChange::HeldElsewhere => {
                rec.notes.push(Note::HeldElsewhere(p, machine.into()))
            }
            RegistrationChange::Refused => rec.notes.push(Note::Refused(p, machine.into(), status)),
        },
        Incoming::RegistryEntry(e) => {
            pr.registry.insert(e.machine.to_string());
            pr.owners.insert(e.machine.to_string(), e.pid);
        }
        Incoming::RegistryRemoved(machine) => {
            if !pr.hosts(machine) {
                pr.registry.remove(machine);
                pr.owners.remove(machine);
                // What this process sent it and never had acknowledged will not arrive.
                let mut failed = Vec::new();
                pr.client.fail_to(machine, &mut |u| {
                    failed.push((
                        u.from.to_string(),
                        u.to.to_string(),
                        u.event.to_string(),
                        u.seq,
                        u.correlation,
                    ))
                });
                for (from, to, event, seq, correlation) in failed {
                    let fl = failure(pr, &from, &to, &event, seq, FailReason::TargetGone);
                    rec.failed.push(fl);
                    request_failed(p, pr, now, correlation, FailReason::TargetGone, rec);
                }
                // What it had taken and not answered will not be answered.
                targets_gone(p, pr, now, machine, rec);
            }
        }
        Incoming::SnapshotEnd => {
            let registry = &pr.registry;
            pr.client
                .received_mut()
                .departed_unless(&|m| registry.contains(m), now.as_millis());
        }
        Incoming::Close(_) => turn.lost = true,
    }
}

/// Fans the publication at the head of `pr`'s outbox out to the subscribers its copy of the
/// table names, from slot `pr.fanout` on (`platform/src/node/topics.rs` `fan_out`). True
/// when every subscriber has it; false when backpressure stopped it (it resumes there).
fn fan_out(
    p: usize,
    pr: &mut Process,
    now: Instant,
    rec: &mut super::Records,
    next_n: &mut u64,
    from: &str,
    topic: &str,
) -> bool {
    let seq = match pr.seqs.iter().find(|(id, _)| *id == from) {
        Some(s) => s.1,
        None => pr.base,
    };
    while let Some((slot, to)) = pr.topics.table().next_subscriber(topic, pr.fanout) {
        let to = to.to_string();
        let n = *next_n;
        let event = format!("{topic}\0E{n}");
        let d = Deliver {
            from,
            to: &to,
            event: &event,
            payload: &n.to_le_bytes(),
            seq,
            correlation: Default::default(),
        };
        let direct = match pr.client.send(now, &d, pr.max_frame) {
            Ok(()) => None,
            Err(SendRefused::Full) => return false,
            Err(SendRefused::Failed(reason)) => Some(reason),
        };
        *next_n += 1;
        pr.fanout = slot + 1;
        rec.sent.push(Sent {
            n,
            at: now,
            proc: p,
            incarnation: pr.incarnation,
            from: from.to_string(),
            to: to.clone(),
            seq,
        });
        if let Some(reason) = direct {
            rec.failed.push(Failure {
                n,
                at: now,
                proc: p,
                incarnation: pr.incarnation,
                from: from.to_string(),
                to,
                seq,
                reason,
            });
        }
    }
    pr.fanout = 0;
    true
}

/// The application's outbox into the client, then transmission and acknowledgements
/// (`platform/src/node/hosting.rs` `pump`). Returns whether anything moved.
fn pump(
    p: usize,
    pr: &mut Process,
    now: Instant,
    conns: &mut [super::Conn],
    rec: &mut super::Records,
    next_n: &mut u64,
    rings: &mut direct::RingSink<'_>,
) -> bool {
    let mut moved = false;
    while let Some((from, to, n, correlation)) = pr.outbox.front().cloned() {
        if let Some(topic) = to.strip_prefix('\u{1}') {
            // A publication: one message per subscriber, from where backpressure stopped.
            let before = rec.sent.len();
            let done = fan_out(p, pr, now, rec, next_n, &from, topic);
            moved |= rec.sent.len() != before;
            match done {
                true => {
                    pr.outbox.pop_front();
                    for s in pr.seqs.iter_mut().filter(|(id, _)| *id == from) {
                        s.1 += 1;
                    }
                    moved = true;
                    continue;
                }
                false => break,
            }
        }
        let seq = match pr.seqs.iter().find(|(id, _)| *id == from) {
            Some(s) => s.1,
            None => {
                // (An id this process does not own: the hub refuses it as `not-owner`.)
                pr.seqs.push((from.clone(), pr.base));
                pr.base
            }
        };
        let event = format!("E{n}");
        let d = Deliver {
            from: &from,
            to: &to,
            event: &event,
            payload: &n.to_le_bytes(),
            seq,
            correlation,
        };
        let direct = match pr.client.send(now, &d, pr.max_frame) {
            Ok(()) => None,
            // Backpressure: it waits in the outbox until acknowledgements free room.
            Err(SendRefused::Full) => {
                if pr.ack_unread_when_blocked {
                    let received = pr.client.received_mut();
                    for (port, from, seq, _) in &pr.port_queue {
                        received.handed(port, from, *seq);
                    }
                }
                break;
            }
            Err(SendRefused::Failed(reason)) => Some(reason),
        };
        pr.outbox.pop_front();
        moved = true;
        for s in pr.seqs.iter_mut().filter(|(id, _)| *id == from) {
            s.1 += 1;
        }
        rec.sent.push(Sent {
            n,
            at: now,
            proc: p,
            incarnation: pr.incarnation,
            from: from.clone(),
            to: to.clone(),
            seq,
        });
        if let Some(reason) = direct {
            request_failed(p, pr, now, correlation, reason, rec);
            rec.failed.push(Failure {
                n,
                at: now,
                proc: p,
                incarnation: pr.incarnation,
                from,
                to,
                seq,
                reason,
            });
        }
    }
    let conn = pr.conn.map(|c| &mut conns[c]);
    let mut sink = Sink { conn, now };
    let before = sink.conn.as_ref().map_or(0, |c| c.up.len());
    let (registry, owners) = (&pr.registry, &pr.owners);
    pr.client.transmit_direct(
        now,
        &|to| registry.contains(to),
        &|id| owners.get(id).copied(),
        &mut sink,
        rings,
    );
    let owners = &pr.owners;
    pr.client
        .emit_acks_direct(now, &|id| owners.get(id).copied(), &mut sink, rings);
    let wrote = std::mem::take(&mut rings.written);
    rec.ring_writes += wrote;
    moved | (sink.conn.as_ref().map_or(0, |c| c.up.len()) != before) | (wrote > 0)
}
