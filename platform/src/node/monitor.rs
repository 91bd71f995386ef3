//! The monitor: copies of every frame crossing the hub, for `interstate monitor`.

use std::collections::VecDeque;

use super::client_side::Sink;
use super::{Node, Side};

/// Monitored frames waiting for the application: their bodies one after another in one
/// buffer, reused (a monitor gets a copy of every message on the bus: one allocation per copy
/// would be most of its work).
#[derive(Default)]
pub(super) struct MonitorQueue {
    /// (the hub's time of it, its body's length), oldest first.
    frames: VecDeque<(u64, usize)>,
    bytes: Vec<u8>,
    /// Where the oldest frame's body starts in `bytes` (the bytes before are taken).
    start: usize,
}

impl MonitorQueue {
    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    pub(super) fn push(&mut self, at_ms: u64, body: &[u8]) {
        // Taken bytes are dropped once they are most of the buffer (an application that
        // takes frames one at a time, never all, must not make it grow for ever).
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(body);
        self.frames.push_back((at_ms, body.len()));
    }

    /// Hands the oldest frame to `f` and forgets it.
    fn pop_with<R>(&mut self, f: impl FnOnce(u64, &[u8]) -> R) -> Option<R> {
        let (at_ms, len) = self.frames.pop_front()?;
        let end = self.start + len;
        let r = f(at_ms, &self.bytes[self.start..end]);
        self.start = end;
        if self.frames.is_empty() {
            self.bytes.clear();
            self.start = 0;
        }
        Some(r)
    }
}

impl Node {
    /// Subscribes to copies of every message crossing the hub (`interstate monitor`).
    pub fn subscribe_monitor(&mut self) {
        if let Side::Client(c) = &mut self.side {
            let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
            c.client.subscribe_monitor(&mut sink);
        }
    }

    /// The next monitored frame body (a postcard `Frame`), with the link it came from.
    pub fn next_monitored(&mut self) -> Option<Vec<u8>> {
        self.monitor_frames.pop_with(|_, body| body.to_vec())
    }

    /// The next monitored frame body with the hub's time of it (milliseconds since the Unix
    /// epoch). The body is a `Deliver` the hub routed, a `DeliveryFailed` it reported, or a
    /// `NodeFailure` a node reported (a failure it found itself).
    pub fn next_monitored_at(&mut self) -> Option<(u64, Vec<u8>)> {
        self.monitor_frames
            .pop_with(|at_ms, body| (at_ms, body.to_vec()))
    }

    /// Hands every monitored frame waiting to `f`, oldest first, with the hub's time of it
    /// (as [`next_monitored_at`](Self::next_monitored_at) does, without copying each body).
    pub fn drain_monitored(&mut self, f: &mut dyn FnMut(u64, &[u8])) {
        while self.monitor_frames.pop_with(&mut *f).is_some() {}
    }

    /// Whether the registry snapshot has arrived (clients; always true for the hub).
    pub fn registry_synced(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.client.registry_synced(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MonitorQueue;

    #[test]
    fn frames_come_out_in_order_and_taken_bytes_are_dropped() {
        let mut q = MonitorQueue::default();
        let mut taken = Vec::new();
        for i in 0..1000u64 {
            q.push(i, &[i as u8; 3]);
            q.push(i + 1, &[(i as u8).wrapping_add(1); 5]);
            // One frame taken a turn: the queue never empties.
            taken.push(q.pop_with(|at, body| (at, body.to_vec())).unwrap());
        }
        assert_eq!(taken[0], (0, vec![0; 3]));
        assert_eq!(taken[1], (1, vec![1; 5]));
        assert_eq!(taken[2], (1, vec![1; 3]));
        assert_eq!(q.len(), 1000);
        assert!(q.bytes.len() <= 2 * 8 * 1000 + 8, "{}", q.bytes.len());
        while q.pop_with(|_, _| ()).is_some() {}
        assert_eq!((q.len(), q.bytes.len(), q.start), (0, 0, 0));
    }
}
