//! Ports: opening one, its sends (sequence numbers, the wait for room) and taking its
//! messages; a hosted id's sends to ids of this process.

use std::collections::VecDeque;
use std::time::Duration as StdDuration;

use interstate_core::wire::{is_reserved_event, Deliver};
use interstate_core::{Correlation, Event};

use crate::error::PlatformError;

use super::hosting::{sequence_base, Routed};
use super::local::Deferred;
use super::{Node, PortMessage};

impl Node {
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
        // Whether `to` is hosted here is looked up once a try (a port of this process is
        // hosted here, so one elsewhere is never full).
        let mut hosted = self.local.hosts(to);
        // A full port of this process: waiting would not help (its reader is the caller's
        // program), and queueing beyond the bound would grow without end.
        if hosted && self.local.port_full(to) {
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
            let routed = self.route_known(
                None,
                Deliver {
                    from: port,
                    to,
                    event,
                    payload,
                    seq,
                    correlation,
                },
                hosted,
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
            // The turn may have started a machine under that id (an invoked child).
            hosted = self.local.hosts(to);
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
}
