//! The ways a process's id leaves the bus on purpose, as a node's host does them: an id
//! unregistered (a machine taken off the bus, a port closed), a machine stopped on an error,
//! and the whole process shutting down (its acknowledgements forced out, then `Goodbye`, then
//! its link closes). A kill ([`Sim::kill`]) is the other way, and sends nothing.

use interstate_core::wire::Frame;

use super::{Sim, Sink};

impl Sim {
    /// The host of process `p` takes `id` off the bus (`Client::unregister`): a machine
    /// that ends, or a port that closes.
    pub fn unregister(&mut self, p: usize, id: &str) {
        let now = self.now;
        let Some(pr) = self.procs[p].as_mut() else {
            return;
        };
        pr.machines.retain(|m| m != id);
        pr.ports.retain(|m| m != id);
        pr.port_queue.retain(|(port, ..)| port != id);
        let conn = pr.conn.map(|c| &mut self.conns[c]);
        let mut sink = Sink { conn, now };
        pr.client.unregister(id, &mut sink);
    }

    /// Machine `id` of process `p` stopped on `error` (`Client::stopped`).
    pub fn stopped(&mut self, p: usize, id: &str, error: &str) {
        let now = self.now;
        let Some(pr) = self.procs[p].as_mut() else {
            return;
        };
        pr.machines.retain(|m| m != id);
        let conn = pr.conn.map(|c| &mut self.conns[c]);
        let mut sink = Sink { conn, now };
        pr.client.stopped(id, error, &mut sink);
    }

    /// Process `p` shuts down as a node does: every acknowledgement it owes goes now
    /// (`Client::emit_acks_now`), then `Goodbye`; the process is gone, and its link closes
    /// once the hub has read what it wrote.
    pub fn shutdown(&mut self, p: usize) {
        let now = self.now;
        let Some(mut pr) = self.procs[p].take() else {
            return;
        };
        let Some(c) = pr.conn else {
            return;
        };
        let mut sink = Sink {
            conn: Some(&mut self.conns[c]),
            now,
        };
        pr.client.emit_acks_now(now, &mut sink);
        sink.send_frame_checked(&Frame::Goodbye {
            reason: "shutting down",
        });
        let conn = &mut self.conns[c];
        conn.client_open = false;
        // The hub reads what was written first (it closes the link on the Goodbye).
        let last = conn.up.back().map_or(now, |(at, _)| *at);
        conn.hub_close_at = Some(last + interstate_core::Duration::from_millis(1));
    }
}

impl Sink<'_> {
    fn send_frame_checked(&mut self, frame: &Frame<'_>) {
        let taken = interstate_core::bus::FrameSink::send_frame(self, frame);
        assert!(taken, "the simulated link takes every frame");
    }
}
