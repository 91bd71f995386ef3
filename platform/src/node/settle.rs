//! Doing the follow-up work (`Deferred`) that calls into the hub and the machines leave
//! behind: log lines, failures to report and to tell monitors, registry removals, links to
//! close.

use interstate_core::wire::{DeliveryFailed, FailReason};
use interstate_core::{Correlation, Instant};

use super::client_side::Sink;
use super::hub_side::{ForwardIo, HubIoImpl};
use super::local::{Deferred, Failed, Origin};
use super::payload::delivery_error_payload;
use super::{Node, Side, DELIVERY_ERROR_EVENT};

impl Node {
    /// Does what calls into the hub and the machines left for later: log lines, failures to
    /// report, registry removals, links to close (which may leave more of the same).
    ///
    /// Inline, so that the common case (nothing left, several times a loop turn) costs a
    /// look at each list where it was made: no move of the lists, no call, no drop.
    #[inline]
    pub(super) fn settle(&mut self, deferred: Deferred) {
        if deferred.never_held_anything() {
            // Nothing was ever pushed, so nothing was allocated: the drop (a call that looks
            // at every list again, about 80 instructions) has nothing to free.
            std::mem::forget(deferred);
            return;
        }
        self.settle_work(deferred)
    }

    // Kept out of line: `settle` is inlined at some thirty call sites.
    #[inline(never)]
    fn settle_work(&mut self, mut deferred: Deferred) {
        if deferred.is_empty() {
            // Pushed to and drained again: no clock read, no work.
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
}
