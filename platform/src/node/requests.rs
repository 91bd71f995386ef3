//! Requests and replies in a node: the ports' requests (a machine's are in its own core
//! table), and settling the requests of machines and ports when the bus says they failed
//! (a delivery failure, the target leaving the registry) or their time is up. The rules
//! (one settlement per request, late replies dropped) are the core's
//! ([`interstate_core::request`]); this is where the node's events meet them.

use interstate_core::request::{write_error_payload, Pending, Settled};
use interstate_core::wire::FailReason;
use interstate_core::{Correlation, Duration, Instant, RequestId};

use crate::error::PlatformError;

use super::local::{Deferred, Local};
use super::{Node, PortMessage, REQUEST_ERROR_EVENT};

impl Local {
    /// The request `id` of the machine or port `from` (to `to`) was not delivered: it is
    /// settled with an `xstate.error.request`, unless it was settled already.
    pub(super) fn request_failed(
        &mut self,
        now: Instant,
        from: &str,
        id: u32,
        reason: FailReason,
        deferred: &mut Deferred,
    ) {
        if let Some(&i) = self.by_id.get(from) {
            let h = &mut self.machines[i];
            if h.stopped {
                return;
            }
            match h
                .machine
                .request_failed(now, RequestId(id), reason, &mut *h.behavior)
            {
                Ok(true) => {
                    if h.watched {
                        deferred.reports.push(h.id.clone());
                    }
                }
                Ok(false) => {}
                Err(e) => h.failed("on a failed request", e, deferred),
            }
            return;
        }
        let settled = self
            .port_requests
            .get_mut(from)
            .and_then(|p| p.fail(RequestId(id), reason));
        if let Some(s) = settled {
            self.port_request_error(from, &s);
        }
    }

    /// `machine` left the bus: every request of this node's machines and ports waiting for
    /// its reply fails as `target-gone`.
    pub(super) fn requests_target_gone(
        &mut self,
        now: Instant,
        machine: &str,
        deferred: &mut Deferred,
    ) {
        for h in self.machines.iter_mut().filter(|h| !h.stopped) {
            if h.machine.pending_requests() == 0 {
                continue;
            }
            match h.machine.target_gone(now, machine, &mut *h.behavior) {
                Ok(0) => {}
                Ok(_) => {
                    if h.watched {
                        deferred.reports.push(h.id.clone());
                    }
                }
                Err(e) => h.failed("on a request whose target left", e, deferred),
            }
        }
        let mut settled = Vec::new();
        for (port, p) in self.port_requests.iter_mut() {
            while let Some(s) = p.target_gone(machine) {
                settled.push((port.clone(), s));
            }
        }
        for (port, s) in settled {
            self.port_request_error(&port, &s);
        }
    }

    /// Ports' requests whose time is up at `now` fail as `timeout`.
    pub(super) fn expire_port_requests(&mut self, now: Instant) {
        let mut settled = Vec::new();
        for (port, p) in self.port_requests.iter_mut() {
            while let Some(s) = p.expire(now) {
                settled.push((port.clone(), s));
            }
        }
        for (port, s) in settled {
            self.port_request_error(&port, &s);
        }
    }

    /// When a port's request next times out.
    pub(super) fn next_port_deadline(&self) -> Option<Instant> {
        self.port_requests
            .values()
            .filter_map(Pending::poll_timeout)
            .min()
    }

    /// Queues a port's request error for it.
    fn port_request_error(&mut self, port: &str, s: &Settled) {
        let mut payload = String::new();
        let _ = write_error_payload(s, &mut payload);
        if let Some(q) = self.ports.get_mut(port) {
            q.push_back(PortMessage {
                port: port.to_string(),
                from: s.target.to_string(),
                event: REQUEST_ERROR_EVENT.to_string(),
                topic: None,
                payload: payload.into_bytes(),
                seq: 0,
                correlation: Correlation::Reply(s.id.0),
            });
        }
    }
}

impl Node {
    /// Sends from a port as a request: `to` answers it (with [`Node::reply_from_port`], a
    /// machine's `ctx.reply`, or a chart's `sendTo` the sender), and the reply comes to the
    /// port ([`Node::recv_port`]) with [`Correlation::Reply`] and the returned id. If none
    /// comes within `timeout`, or `to` leaves the bus or never receives the request, the
    /// port gets a [`REQUEST_ERROR_EVENT`] message instead, exactly once; a reply after that
    /// is dropped (counted in [`NodeStats::late_replies`](super::NodeStats)).
    ///
    /// At most [`PORT_REQUESTS`](super::PORT_REQUESTS) of a port's requests wait at once.
    pub fn request_from_port(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<RequestId, PlatformError> {
        if !self.local.ports.contains_key(port) {
            return Err(PlatformError::BadMachineId { id: port.into() });
        }
        let now = self.now();
        let table = self
            .local
            .port_requests
            .entry(port.to_string())
            .or_insert_with(|| {
                let mut p = Pending::new();
                // Ids of an earlier process with this port's id match nothing here.
                p.set_base(request_base());
                p
            });
        let id = table.open(now, to, timeout)?;
        match self.send_from_port_as(port, to, event, payload, id.request()) {
            Ok(_) => Ok(id),
            Err(e) => {
                if let Some(t) = self.local.port_requests.get_mut(port) {
                    t.withdraw(id);
                }
                Err(e)
            }
        }
    }

    /// Answers `message` (one [`Node::recv_port`] returned for `port`) with `event` and
    /// `payload`, to its sender: the reply to its request, when it was one.
    pub fn reply_from_port(
        &mut self,
        port: &str,
        message: &PortMessage,
        event: &str,
        payload: &[u8],
    ) -> Result<u64, PlatformError> {
        let correlation = match message.correlation {
            Correlation::Request(id) => Correlation::Reply(id),
            _ => Correlation::None,
        };
        self.send_from_port_as(port, &message.from, event, payload, correlation)
    }

    /// Whether `port`'s request `id` still waits for its reply.
    pub fn port_request_pending(&self, port: &str, id: RequestId) -> bool {
        self.local
            .port_requests
            .get(port)
            .is_some_and(|p| p.is_pending(id))
    }
}

/// A starting request id unlikely to be one a previous process used (the clock's
/// nanoseconds), so that its late replies match nothing.
pub(super) fn request_base() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(1)
}
