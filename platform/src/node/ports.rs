//! Closing a port: a bridge takes a remote machine's id off the bus when the remote node
//! withdraws it (see `crate::mqtt`).

use super::client_side::Sink;
use super::hub_side::HubIoImpl;
use super::local::Deferred;
use super::{Node, Side};

impl Node {
    /// Closes a port opened with [`Node::open_port`]: its id leaves the bus (the hub answers
    /// later messages to it with `unknown-target`), what it had received unread is discarded
    /// unacknowledged (its senders hear of it as from any machine that leaves the bus), and
    /// its subscriptions end.
    /// Returns whether `id` was a port of this node.
    pub fn close_port(&mut self, id: &str) -> bool {
        if !self.local.ports.contains_key(id) {
            return false;
        }
        // What the port sent goes to the hub before its Unregister: the hub refuses a
        // message from an id that is no longer registered (`not-owner`).
        self.flush();
        self.local.ports.remove(id);
        self.local.registry.remove(id);
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                h.hub.unregister_local(id, &mut io);
                self.settle(deferred);
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.client.unregister(id, &mut sink);
                c.topics.forget(id);
            }
        }
        true
    }
}
