//! The monitor: copies of every frame crossing the hub, for `interstate monitor`.

use interstate_core::wire::Frame;

use super::{Node, Side};

impl Node {
    /// Subscribes to copies of every message crossing the hub (`interstate monitor`).
    pub fn subscribe_monitor(&mut self) {
        if let Side::Client(c) = &mut self.side {
            c.monitor = true;
            if let Some(conn) = c.conn.as_mut() {
                let _ = conn.queue(&Frame::Subscribe {
                    registry: true,
                    monitor: true,
                });
            }
        }
    }

    /// The next monitored frame body (a postcard `Frame`), with the link it came from.
    pub fn next_monitored(&mut self) -> Option<Vec<u8>> {
        self.monitor_frames.pop_front()
    }

    /// Whether the registry snapshot has arrived (clients; always true for the hub).
    pub fn registry_synced(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.snapshot_done,
        }
    }
}
