//! Closing a port: a bridge takes a remote machine's id off the bus when the remote node
//! withdraws it (see `crate::mqtt`). Reading one port's messages with the acknowledgement
//! held back: a gateway acknowledges only once its own client confirms (see
//! `interstate-grpc`).

use super::client_side::Sink;
use super::hub_side::HubIoImpl;
use super::local::Deferred;
use super::PortMessage;
use super::{Node, Side};

impl Node {
    /// The next message for the port `port`, not acknowledged to its sender: the caller
    /// acknowledges it with [`Node::acknowledge_port`] once whoever it relays the message to
    /// has it. One never acknowledged is reported to its sender as not delivered once the
    /// port closes or the process ends, as one left unread is.
    ///
    /// Acknowledgements are cumulative per sender: acknowledging a message acknowledges every
    /// earlier one from the same sender to the same port, so acknowledge in the order read.
    pub fn recv_port_unacknowledged(&mut self, port: &str) -> Option<PortMessage> {
        self.local.ports.get_mut(port)?.pop_front()
    }

    /// Acknowledges a message [`Node::recv_port_unacknowledged`] returned (and, cumulatively,
    /// the earlier ones from its sender to its port). Messages from this process (sequence
    /// number 0) need none.
    pub fn acknowledge_port(&mut self, message: &PortMessage) {
        if message.seq != 0 {
            self.side
                .received_mut()
                .handed(&message.port, &message.from, message.seq);
        }
    }

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
