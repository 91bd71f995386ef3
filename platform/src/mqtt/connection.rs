//! The bridge's connection to the broker, as the node's loop drives it: connecting (and
//! again after a loss, after a pause), the MQTT session's start with its will, reading and
//! handling what the broker sends, and what a new connection publishes again.

use std::io::{self, Read};
use std::time::Duration as StdDuration;

use interstate_core::mqtt::bridge::{self, BridgeTopic};
use interstate_core::mqtt::{ConnectOptions, MqttError, Received, Will};
use mio::net::TcpStream;
use mio::Interest;

use super::link::{fatal_tls, BrokerStream};
use super::{BridgeError, Link, MqttBridge, Tx, BROKER, MAX_PACKET};
use crate::error::PlatformError;

impl MqttBridge {
    pub(super) fn drive_link(&mut self) -> Result<(), BridgeError> {
        match &mut self.link {
            Link::Down { retry_at } => {
                // The local registry must be known before it is published (and before records
                // of an earlier run are judged stale).
                if std::time::Instant::now() < *retry_at || !self.node.registry_synced() {
                    return Ok(());
                }
                let addr = self.config.broker[0];
                match TcpStream::connect(addr) {
                    Ok(mut stream) => {
                        self.node
                            .poll_registry()
                            .register(&mut stream, BROKER, Interest::READABLE | Interest::WRITABLE)
                            .map_err(|e| {
                                PlatformError::io("watching the broker connection", None, e)
                            })?;
                        self.link = Link::Opening(stream);
                        self.write_interest = true;
                    }
                    Err(e) => self.lost(&format!("cannot connect to {addr}: {e}")),
                }
            }
            Link::Opening(stream) => {
                if let Ok(Some(e)) | Err(e) = stream.take_error() {
                    let what = format!("cannot connect to {}: {e}", self.config.broker[0]);
                    self.lost(&what);
                    return Ok(());
                }
                match stream.peer_addr() {
                    Ok(_) => {
                        let _ = stream.set_nodelay(true);
                        let Link::Opening(stream) = std::mem::replace(
                            &mut self.link,
                            Link::Down {
                                retry_at: std::time::Instant::now(),
                            },
                        ) else {
                            return Ok(());
                        };
                        self.link = Link::Up(BrokerStream::new(stream, self.config.tls.as_ref())?);
                        self.start_session();
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => {
                        let what = format!("cannot connect to {}: {e}", self.config.broker[0]);
                        self.lost(&what);
                    }
                }
            }
            Link::Up(_) => {}
        }
        Ok(())
    }

    pub(super) fn start_session(&mut self) {
        let will_topic = self.topic(BridgeTopic::Status {
            node: &self.config.node_name,
        });
        let (user, pass) = match &self.config.credentials {
            Some((u, p)) => (Some(u.as_str()), Some(p.as_bytes())),
            None => (None, None),
        };
        // Every connection has its own number, which its will names: a will older than the
        // node's current connection is ignored by the others.
        let will = self.presence.next_connection();
        let options = ConnectOptions {
            client_id: &self.config.node_name,
            keep_alive_secs: self.config.keep_alive_secs,
            will: Some(Will {
                topic: &will_topic,
                payload: will.as_bytes(),
                retain: true,
            }),
            username: user,
            password: pass,
        };
        let now = self.node.now();
        self.rx.clear();
        self.readable = true;
        if let Err(e) = self.session.connect(now, &options, &mut Tx(&mut self.tx)) {
            self.lost(&format!("cannot start the MQTT session: {e}"));
        }
    }

    /// The connection is gone: the session keeps its unacknowledged messages, the
    /// reconnection waits `backoff` (doubling up to the configured bound).
    pub(super) fn lost(&mut self, why: &str) {
        match &mut self.link {
            Link::Up(s) => {
                let _ = self.node.poll_registry().deregister(s.tcp());
            }
            Link::Opening(s) => {
                let _ = self.node.poll_registry().deregister(s);
            }
            Link::Down { .. } => {}
        }
        let was_up = matches!(self.link, Link::Up(_));
        self.link = Link::Down {
            retry_at: std::time::Instant::now() + self.backoff,
        };
        self.session.disconnected();
        self.subscribed = false;
        // The other nodes' statuses are learnt again on the next connection: until then
        // messages for them wait, rather than go stamped with a run a node may have left.
        self.delivery.fresh.clear();
        self.tx.clear();
        self.rx.clear();
        self.readable = false;
        let why = format!("{why}; retrying in {} ms", self.backoff.as_millis());
        if was_up || self.backoff == StdDuration::from_millis(100) {
            self.log(&why);
        }
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    pub(super) fn read_broker(&mut self) -> Result<(), BridgeError> {
        let mut buf = std::mem::take(&mut self.read_chunk);
        buf.resize(16 * 1024, 0);
        let result = self.read_broker_into(&mut buf);
        self.read_chunk = buf;
        result
    }

    fn read_broker_into(&mut self, buf: &mut [u8]) -> Result<(), BridgeError> {
        loop {
            let Link::Up(stream) = &mut self.link else {
                self.readable = false;
                return Ok(());
            };
            match stream.read(buf) {
                Ok(0) => {
                    self.presence.heard();
                    self.lost("the broker closed the connection");
                    return Ok(());
                }
                Ok(n) => {
                    self.presence.heard();
                    self.rx.extend_from_slice(&buf[..n]);
                    // Read on until `WouldBlock` even after a short read: passing what came
                    // on may run the node's loop (waiting for the hub), which takes the
                    // socket's next readiness edge without telling this loop.
                    self.handle_input()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(problem) = fatal_tls(self.config.tls.as_ref(), &e) {
                        return Err(BridgeError::Tls { problem });
                    }
                    // A reset: the broker's host answered now.
                    self.presence.heard();
                    self.lost(&format!("reading from the broker: {e}"));
                    return Ok(());
                }
            }
        }
    }

    pub(super) fn handle_input(&mut self) -> Result<(), BridgeError> {
        let mut at = 0;
        let rx = std::mem::take(&mut self.rx);
        let result = loop {
            let now = self.node.now();
            let (n, received) =
                match self
                    .session
                    .receive(now, &rx[at..], MAX_PACKET, &mut Tx(&mut self.tx))
                {
                    Ok(r) => r,
                    Err(e @ MqttError::Refused(r)) => {
                        use interstate_core::mqtt::ConnectRefusal::*;
                        if matches!(
                            r,
                            BadCredentials | NotAuthorized | ClientId | ProtocolVersion
                        ) {
                            break Err(BridgeError::Refused(e));
                        }
                        self.lost(&format!("{e}"));
                        return Ok(());
                    }
                    Err(e) => {
                        self.lost(&format!("{e}"));
                        return Ok(());
                    }
                };
            if n == 0 {
                break Ok(());
            }
            at += n;
            self.received(received);
        };
        // What is left is the start of the next packet.
        self.rx = rx;
        self.rx.drain(..at);
        result
    }

    fn received(&mut self, r: Received<'_>) {
        match r {
            Received::Connected {
                session_present,
                resent,
            } => {
                self.stats.connects += 1;
                self.backoff = StdDuration::from_millis(100);
                let what = format!(
                    "connected to the broker (session {}; {resent} unacknowledged message(s) sent again)",
                    if session_present { "resumed" } else { "new" }
                );
                self.log(&what);
                self.connected_run(session_present);
                self.on_connected();
            }
            Received::Message { topic, payload, .. } => self.message(topic, payload),
            Received::Subscribed { granted: false, .. } => {
                self.log("the broker refused a subscription (check its ACL for this node)");
            }
            Received::Acknowledged { .. } | Received::Subscribed { .. } | Received::Nothing => {}
        }
    }

    pub(super) fn on_connected(&mut self) {
        let mut filters: [heapless::String<320>; 3] = Default::default();
        let now = self.node.now();
        if bridge::subscriptions(&self.config.prefix, &self.config.node_name, &mut filters).is_err()
        {
            self.log("the prefix is too long for the subscriptions");
            return;
        }
        let refs = filters.each_ref().map(|s| s.as_str());
        if let Err(e) = self.session.subscribe(now, &refs, &mut Tx(&mut self.tx)) {
            self.log(&format!("cannot subscribe: {e}"));
        }
        self.subscribed = true;
        let status = self.topic(BridgeTopic::Status {
            node: &self.config.node_name,
        });
        let up = self.presence.status_up();
        let _ = self.session.publish(
            now,
            &status,
            up.as_bytes(),
            true,
            true,
            &mut Tx(&mut self.tx),
        );
        // The other nodes' connections are learnt again from their statuses (retained, they
        // come with the subscription; after a broker restart, as each node reconnects):
        // until then messages for a node wait, rather than go to a connection it left. The
        // last one known stays, so that a change still fails what waited for the old one.
        self.delivery.fresh.clear();
        // Everything is published again on each connection: the broker may have lost it.
        self.published.clear();
        self.registry_published_at = None;
        self.publish_registry(true);
    }
}
