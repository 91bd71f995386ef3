//! The monitor: copies of every frame crossing the hub, for `interstate monitor`.

use super::client_side::Sink;
use super::{Node, Side};

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
        self.monitor_frames.pop_front().map(|(_, body)| body)
    }

    /// The next monitored frame body with the hub's time of it (milliseconds since the Unix
    /// epoch). The body is a `Deliver` the hub routed, a `DeliveryFailed` it reported, or a
    /// `NodeFailure` a node reported (a failure it found itself).
    pub fn next_monitored_at(&mut self) -> Option<(u64, Vec<u8>)> {
        self.monitor_frames.pop_front()
    }

    /// Whether the registry snapshot has arrived (clients; always true for the hub).
    pub fn registry_synced(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.client.registry_synced(),
        }
    }
}
