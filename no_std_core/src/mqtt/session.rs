//! The MQTT 3.1.1 client session, sans-IO: bytes in, bytes out, time passed in.
//!
//! Packets are encoded and decoded by the `mqttrs` codec; this session adds what a client
//! must remember between packets:
//!
//! - CONNECT with `clean_session = false` (the broker keeps the subscriptions and the QoS 1
//!   messages queued for this client id while it is away), an optional last will, user name
//!   and password;
//! - QoS 1 publishing: every QoS 1 PUBLISH is kept, encoded, in the session's store until its
//!   PUBACK arrives; after a reconnect every one still kept is sent again with the DUP flag
//!   (MQTT 3.1.1, 4.4). A full store refuses the next publish ([`MqttError::StoreFull`]):
//!   backpressure, never a silent drop;
//! - QoS 1 receiving: the PUBACK is written as the message is handed to the caller (the
//!   caller passes it on before it flushes the output, so a message is acknowledged to the
//!   broker only once it left the session);
//! - keepalive: a PINGREQ when nothing was sent for the keepalive interval, and the
//!   connection declared lost ([`MqttError::Timeout`]) when its PINGRESP (or the CONNACK)
//!   does not come within another interval.
//!
//! Input from the broker is checked ([`packet_len`]) before the codec decodes it: `mqttrs`
//! 0.4 indexes its input without bounds checks, so a short or inconsistent packet would
//! panic inside it. The check also refuses packets a broker never sends to a client
//! (CONNECT, SUBSCRIBE, ...) and QoS 2, which this session does not use.

use core::fmt;

use mqttrs::{
    decode_slice, encode_slice, Connack, Connect, ConnectReturnCode, LastWill, Packet, Pid,
    Protocol, Publish, QoS, QosPid, Subscribe, SubscribeReturnCodes, SubscribeTopic,
};

use crate::{Duration, Instant};

/// The most topic filters one [`Session::subscribe`] takes (the codec's bound).
pub const MAX_FILTERS: usize = 5;

/// The longest topic filter [`Session::subscribe`] takes (the codec's bound).
pub const MAX_FILTER_LEN: usize = 256;

/// What went wrong in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MqttError {
    /// The broker sent bytes that are not a valid MQTT 3.1.1 packet for a client.
    Malformed(&'static str),
    /// The broker sent a packet that is valid but not allowed now (or one this session
    /// never asked for, such as QoS 2).
    Protocol(&'static str),
    /// The broker refused the connection (CONNACK return code 1 to 5).
    Refused(ConnectRefusal),
    /// No CONNACK or PINGRESP within the keepalive interval: the connection is lost.
    Timeout,
    /// The session's store has no room for another QoS 1 message (too many unacknowledged,
    /// or the message is larger than the store): try again once acknowledgements came.
    StoreFull,
    /// A packet larger than the caller's limit arrived.
    TooLarge,
    /// Not connected: only QoS 1 messages can be published before the CONNACK (they are
    /// kept and sent with it).
    NotConnected,
    /// A topic filter or client id the codec cannot carry (too long, too many filters).
    BadArgument(&'static str),
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::Malformed(what) => write!(f, "the broker sent a malformed packet: {what}"),
            MqttError::Protocol(what) => write!(f, "the broker broke the protocol: {what}"),
            MqttError::Refused(r) => write!(f, "the broker refused the connection: {}", r.as_str()),
            MqttError::Timeout => f.write_str("the broker did not answer within the keepalive interval"),
            MqttError::StoreFull => f.write_str(
                "too many unacknowledged QoS 1 messages for the session's store; wait for acknowledgements",
            ),
            MqttError::TooLarge => f.write_str("the broker sent a packet larger than the receive limit"),
            MqttError::NotConnected => f.write_str("not connected to the broker"),
            MqttError::BadArgument(what) => f.write_str(what),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for MqttError {}

/// Why a broker refused a CONNECT (CONNACK return codes 1 to 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectRefusal {
    /// 1: the broker does not speak MQTT 3.1.1.
    ProtocolVersion,
    /// 2: the client id is not allowed.
    ClientId,
    /// 3: the service is unavailable.
    Unavailable,
    /// 4: bad user name or password.
    BadCredentials,
    /// 5: not authorised.
    NotAuthorized,
}

impl ConnectRefusal {
    /// A reason a user can act on.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectRefusal::ProtocolVersion => "it does not accept MQTT 3.1.1",
            ConnectRefusal::ClientId => "the client id (the node name) is not allowed",
            ConnectRefusal::Unavailable => "the service is unavailable",
            ConnectRefusal::BadCredentials => "bad user name or password",
            ConnectRefusal::NotAuthorized => "not authorised",
        }
    }
}

/// Where the session writes the bytes for the broker.
pub trait Output {
    /// Queues `bytes` for the broker, in order.
    fn send(&mut self, bytes: &[u8]);
}

/// The last will: what the broker publishes for this client when it loses the connection
/// without a DISCONNECT (always QoS 1).
#[derive(Clone, Copy, Debug)]
pub struct Will<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// Whether the broker keeps it as the topic's retained message.
    pub retain: bool,
}

/// How to connect.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions<'a> {
    /// The client id: the broker keeps the session (subscriptions, queued messages) under it.
    pub client_id: &'a str,
    /// Seconds; 0 turns keepalive off. The broker drops the client after 1.5 intervals of
    /// silence.
    pub keep_alive_secs: u16,
    /// The last will.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password (MQTT 3.1.1 sends it only with a user name).
    pub password: Option<&'a [u8]>,
}

/// What arrived from the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// The CONNACK accepted the connection; the kept QoS 1 messages were sent again.
    Connected {
        /// Whether the broker still had this client's session (subscriptions included).
        session_present: bool,
        /// How many kept messages were sent again (with DUP).
        resent: usize,
    },
    /// A message on a subscribed topic (its PUBACK is written, for QoS 1).
    Message {
        /// Its topic.
        topic: &'a str,
        /// Its payload (empty for the removal of a retained message).
        payload: &'a [u8],
        /// Whether it is a retained message sent because of a (re)subscription.
        retain: bool,
        /// Whether the broker marked it as a possible duplicate.
        dup: bool,
    },
    /// The broker acknowledged our QoS 1 message `pid`; it left the store.
    Acknowledged {
        /// Its packet id, as [`Session::publish`] returned it.
        pid: u16,
    },
    /// The SUBACK of [`Session::subscribe`]'s `pid`.
    Subscribed {
        /// The packet id.
        pid: u16,
        /// Whether every filter was granted (false: the broker refused one, e.g. by ACL).
        granted: bool,
    },
    /// A PINGRESP, an UNSUBACK, or an acknowledgement of nothing we keep.
    Nothing,
}

/// The connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// No connection (or it was lost): call [`Session::connect`] once one is open.
    Disconnected,
    /// CONNECT sent, waiting for the CONNACK.
    Connecting,
    /// Connected.
    Connected,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// PUBLISH packets sent (first sends).
    pub published: u64,
    /// QoS 1 messages the broker acknowledged.
    pub acknowledged: u64,
    /// Messages sent again with DUP after a reconnect.
    pub resent: u64,
    /// Messages received.
    pub received: u64,
    /// PINGREQs sent.
    pub pings: u64,
    /// Connections accepted.
    pub connects: u64,
}

/// The length of the first whole packet in `input` (`None` while it is incomplete), after
/// checking that it is a packet a broker may send a client and that its parts fit in it.
/// `max` bounds a packet's total length.
pub fn packet_len(input: &[u8], max: usize) -> Result<Option<usize>, MqttError> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut i = 1;
    loop {
        if i > 4 {
            return Err(MqttError::Malformed("remaining length longer than 4 bytes"));
        }
        let Some(&b) = input.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let total = i + remaining;
    if total > max {
        return Err(MqttError::TooLarge);
    }
    let Some(body) = input.get(i..total) else {
        return Ok(None);
    };
    check_body(first, body)?;
    Ok(Some(total))
}

fn check_body(first: u8, body: &[u8]) -> Result<(), MqttError> {
    let two = |what| {
        if body.len() == 2 && first & 0x0f == 0 {
            Ok(())
        } else {
            Err(MqttError::Malformed(what))
        }
    };
    match first >> 4 {
        2 => two("a CONNACK is 2 bytes"),
        3 => {
            let qos = (first >> 1) & 3;
            if qos == 2 {
                return Err(MqttError::Protocol(
                    "a QoS 2 message (subscriptions are QoS 1)",
                ));
            }
            if qos == 3 {
                return Err(MqttError::Malformed("QoS 3"));
            }
            let [a, b, ..] = *body else {
                return Err(MqttError::Malformed("a PUBLISH without a topic"));
            };
            let need = 2 + usize::from(u16::from_be_bytes([a, b])) + if qos == 1 { 2 } else { 0 };
            if body.len() < need {
                return Err(MqttError::Malformed("a PUBLISH shorter than its topic"));
            }
            Ok(())
        }
        4 => two("a PUBACK is 2 bytes"),
        11 => two("an UNSUBACK is 2 bytes"),
        9 if first & 0x0f == 0 && (3..=2 + MAX_FILTERS).contains(&body.len()) => Ok(()),
        9 => Err(MqttError::Malformed(
            "a SUBACK with no or too many return codes",
        )),
        13 if body.is_empty() && first & 0x0f == 0 => Ok(()),
        13 => Err(MqttError::Malformed("a PINGRESP has no body")),
        5..=7 => Err(MqttError::Protocol(
            "a QoS 2 acknowledgement (this client never uses QoS 2)",
        )),
        _ => Err(MqttError::Protocol(
            "a packet a broker never sends to a client",
        )),
    }
}

/// The packet id of a stored QoS 1 PUBLISH (the session wrote it, so it is well formed).
fn stored_pid(packet: &[u8]) -> (usize, u16) {
    let mut i = 1;
    let mut remaining = 0usize;
    loop {
        let b = packet[i];
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let topic_len = usize::from(u16::from_be_bytes([packet[i], packet[i + 1]]));
    let p = i + 2 + topic_len;
    (
        i + remaining,
        u16::from_be_bytes([packet[p], packet[p + 1]]),
    )
}

/// An MQTT 3.1.1 client session (see the module docs). `S` is the store of unacknowledged
/// QoS 1 messages; its tail is also where packets are encoded, so it bounds the largest
/// packet too.
pub struct Session<S> {
    store: S,
    /// Bytes of kept QoS 1 packets at the start of the store, back to back.
    used: usize,
    kept: usize,
    next_pid: u16,
    state: State,
    keep_alive: Duration,
    last_sent: Instant,
    /// When the unanswered PINGREQ (or the CONNECT) went out.
    waiting_since: Option<Instant>,
    stats: SessionStats,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Session<S> {
    /// A disconnected session over `store`.
    pub fn new(store: S) -> Self {
        Session {
            store,
            used: 0,
            kept: 0,
            next_pid: 0,
            state: State::Disconnected,
            keep_alive: Duration::ZERO,
            last_sent: Instant::ZERO,
            waiting_since: None,
            stats: SessionStats::default(),
        }
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// QoS 1 messages sent (or waiting to be) and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.kept
    }

    /// The store's size: no packet larger than it can be published.
    pub fn capacity(&self) -> usize {
        self.store.as_ref().len()
    }

    /// The store's free bytes: a QoS 1 packet larger than that waits for acknowledgements
    /// ([`MqttError::StoreFull`]).
    pub fn room(&self) -> usize {
        self.capacity() - self.used
    }

    /// Whether packet id `pid` is still unacknowledged.
    pub fn is_unacknowledged(&self, pid: u16) -> bool {
        self.kept_packets().any(|(_, _, p)| p == pid)
    }

    fn kept_packets(&self) -> impl Iterator<Item = (usize, usize, u16)> + '_ {
        let store = &self.store.as_ref()[..self.used];
        let mut at = 0;
        core::iter::from_fn(move || {
            if at >= store.len() {
                return None;
            }
            let (len, pid) = stored_pid(&store[at..]);
            let item = (at, len, pid);
            at += len;
            Some(item)
        })
    }

    fn send(&mut self, now: Instant, bytes_at: usize, len: usize, out: &mut dyn Output) {
        out.send(&self.store.as_ref()[bytes_at..bytes_at + len]);
        self.last_sent = now;
    }

    /// Encodes `packet` in the store's free tail and sends it.
    fn send_packet(
        &mut self,
        now: Instant,
        packet: &Packet<'_>,
        out: &mut dyn Output,
    ) -> Result<(), MqttError> {
        let used = self.used;
        let n = encode_slice(packet, &mut self.store.as_mut()[used..])
            .map_err(|_| MqttError::StoreFull)?;
        self.send(now, used, n, out);
        Ok(())
    }

    /// The connection was lost (or closed): the next step is [`connect`](Self::connect) on
    /// a new one. Kept QoS 1 messages stay and go out again after the CONNACK.
    pub fn disconnected(&mut self) {
        self.state = State::Disconnected;
        self.waiting_since = None;
    }

    /// Writes the CONNECT for a freshly opened connection.
    pub fn connect(
        &mut self,
        now: Instant,
        options: &ConnectOptions<'_>,
        out: &mut dyn Output,
    ) -> Result<(), MqttError> {
        if options.client_id.is_empty() || options.client_id.len() > u16::MAX as usize {
            return Err(MqttError::BadArgument(
                "the client id must be 1 to 65535 bytes",
            ));
        }
        let packet = Packet::Connect(Connect {
            protocol: Protocol::MQTT311,
            keep_alive: options.keep_alive_secs,
            client_id: options.client_id,
            clean_session: false,
            last_will: options.will.map(|w| LastWill {
                topic: w.topic,
                message: w.payload,
                qos: QoS::AtLeastOnce,
                retain: w.retain,
            }),
            username: options.username,
            password: options.password,
        });
        self.send_packet(now, &packet, out)?;
        self.keep_alive = Duration::from_millis(u64::from(options.keep_alive_secs) * 1000);
        self.state = State::Connecting;
        self.waiting_since = Some(now);
        Ok(())
    }

    /// Writes a DISCONNECT (the broker then discards the will) and ends the connection.
    pub fn disconnect(&mut self, now: Instant, out: &mut dyn Output) {
        if self.state == State::Connected {
            // Two bytes always fit: the store is never smaller than a CONNECT.
            let _ = self.send_packet(now, &Packet::Disconnect, out);
        }
        self.disconnected();
    }

    fn take_pid(&mut self) -> u16 {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            if self.next_pid != 0 && !self.is_unacknowledged(self.next_pid) {
                return self.next_pid;
            }
        }
    }

    /// Publishes `payload` on `topic`. QoS 1 (`at_least_once`) messages are kept until
    /// acknowledged and may be published while disconnected (they go out after the
    /// CONNACK); the packet id is returned for them. QoS 0 needs a connection.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        at_least_once: bool,
        retain: bool,
        out: &mut dyn Output,
    ) -> Result<Option<u16>, MqttError> {
        if !at_least_once {
            if self.state != State::Connected {
                return Err(MqttError::NotConnected);
            }
            let packet = Packet::Publish(Publish {
                dup: false,
                qospid: QosPid::AtMostOnce,
                retain,
                topic_name: topic,
                payload,
            });
            self.send_packet(now, &packet, out)?;
            self.stats.published += 1;
            return Ok(None);
        }
        if self.kept >= usize::from(u16::MAX) - 1 {
            // Every packet id is taken by an unacknowledged message.
            return Err(MqttError::StoreFull);
        }
        let pid = self.take_pid();
        let packet = Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(Pid::try_from(pid).map_err(|_| MqttError::StoreFull)?),
            retain,
            topic_name: topic,
            payload,
        });
        let used = self.used;
        let n = encode_slice(&packet, &mut self.store.as_mut()[used..])
            .map_err(|_| MqttError::StoreFull)?;
        self.used += n;
        self.kept += 1;
        if self.state == State::Connected {
            self.send(now, used, n, out);
            self.stats.published += 1;
            // Any later send of it is a possible duplicate.
            self.store.as_mut()[used] |= 0x08;
        }
        Ok(Some(pid))
    }

    /// Subscribes to `filters` at QoS 1; returns the packet id its SUBACK will name.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: &[&str],
        out: &mut dyn Output,
    ) -> Result<u16, MqttError> {
        if self.state != State::Connected {
            return Err(MqttError::NotConnected);
        }
        if filters.is_empty() || filters.len() > MAX_FILTERS {
            return Err(MqttError::BadArgument(
                "subscribe to 1 to 5 filters at a time",
            ));
        }
        let mut topics = heapless07::Vec::<SubscribeTopic, MAX_FILTERS>::new();
        for f in filters {
            let mut path = heapless07::String::<MAX_FILTER_LEN>::new();
            path.push_str(f)
                .map_err(|_| MqttError::BadArgument("a topic filter is longer than 256 bytes"))?;
            // Room was checked above.
            let _ = topics.push(SubscribeTopic {
                topic_path: path,
                qos: QoS::AtLeastOnce,
            });
        }
        let pid = self.take_pid();
        let p = Pid::try_from(pid).map_err(|_| MqttError::StoreFull)?;
        self.send_packet(now, &Packet::Subscribe(Subscribe::new(p, topics)), out)?;
        Ok(pid)
    }

    /// Handles the first whole packet of `input` (see [`packet_len`] for `max`); returns how
    /// many bytes it took (0: incomplete, read more) and what it was.
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        input: &'a [u8],
        max: usize,
        out: &mut dyn Output,
    ) -> Result<(usize, Received<'a>), MqttError> {
        let Some(len) = packet_len(input, max)? else {
            return Ok((0, Received::Nothing));
        };
        let packet = match decode_slice(&input[..len]) {
            Ok(Some(p)) => p,
            Ok(None) => return Err(MqttError::Malformed("an incomplete packet")),
            Err(_) => return Err(MqttError::Malformed("the codec refused it")),
        };
        let received = match packet {
            Packet::Connack(Connack {
                session_present,
                code,
            }) => self.connack(now, session_present, code, out)?,
            _ if self.state != State::Connected => {
                return Err(MqttError::Protocol("a packet before the CONNACK"));
            }
            Packet::Publish(p) => {
                self.stats.received += 1;
                if let QosPid::AtLeastOnce(pid) = p.qospid {
                    self.send_packet(now, &Packet::Puback(pid), out)?;
                }
                Received::Message {
                    topic: p.topic_name,
                    payload: p.payload,
                    retain: p.retain,
                    dup: p.dup,
                }
            }
            Packet::Puback(pid) => self.acknowledged(pid.get()),
            Packet::Suback(s) => Received::Subscribed {
                pid: s.pid.get(),
                granted: s
                    .return_codes
                    .iter()
                    .all(|c| !matches!(c, SubscribeReturnCodes::Failure)),
            },
            Packet::Pingresp => {
                self.waiting_since = None;
                Received::Nothing
            }
            _ => Received::Nothing,
        };
        Ok((len, received))
    }

    fn connack(
        &mut self,
        now: Instant,
        session_present: bool,
        code: ConnectReturnCode,
        out: &mut dyn Output,
    ) -> Result<Received<'static>, MqttError> {
        if self.state != State::Connecting {
            return Err(MqttError::Protocol("a CONNACK outside the handshake"));
        }
        let refusal = match code {
            ConnectReturnCode::Accepted => None,
            ConnectReturnCode::RefusedProtocolVersion => Some(ConnectRefusal::ProtocolVersion),
            ConnectReturnCode::RefusedIdentifierRejected => Some(ConnectRefusal::ClientId),
            ConnectReturnCode::ServerUnavailable => Some(ConnectRefusal::Unavailable),
            ConnectReturnCode::BadUsernamePassword => Some(ConnectRefusal::BadCredentials),
            ConnectReturnCode::NotAuthorized => Some(ConnectRefusal::NotAuthorized),
        };
        if let Some(r) = refusal {
            self.disconnected();
            return Err(MqttError::Refused(r));
        }
        self.state = State::Connected;
        self.waiting_since = None;
        self.stats.connects += 1;
        // Everything kept goes again, in order. A stored packet carries the DUP flag from its
        // first send on: one published while disconnected goes out now without it.
        let mut resent = 0;
        let mut at = 0;
        while at < self.used {
            let (len, _) = stored_pid(&self.store.as_ref()[at..]);
            let first = self.store.as_ref()[at];
            if first & 0x08 != 0 {
                resent += 1;
            } else {
                self.stats.published += 1;
            }
            self.send(now, at, len, out);
            self.store.as_mut()[at] = first | 0x08;
            at += len;
        }
        self.stats.resent += resent as u64;
        Ok(Received::Connected {
            session_present,
            resent,
        })
    }

    fn acknowledged(&mut self, pid: u16) -> Received<'static> {
        let Some((at, len, _)) = self.kept_packets().find(|&(_, _, p)| p == pid) else {
            return Received::Nothing;
        };
        let used = self.used;
        self.store.as_mut().copy_within(at + len..used, at);
        self.used -= len;
        self.kept -= 1;
        self.stats.acknowledged += 1;
        Received::Acknowledged { pid }
    }

    /// Timers: sends a PINGREQ when nothing was sent for the keepalive interval; fails with
    /// [`MqttError::Timeout`] (and the session is disconnected) when the CONNACK or a
    /// PINGRESP is a whole interval late. Call it at [`next_deadline`](Self::next_deadline).
    pub fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Result<(), MqttError> {
        if self.state == State::Disconnected || self.keep_alive == Duration::ZERO {
            return Ok(());
        }
        if let Some(since) = self.waiting_since {
            if now >= since + self.keep_alive {
                self.disconnected();
                return Err(MqttError::Timeout);
            }
            return Ok(());
        }
        if self.state == State::Connected && now >= self.last_sent + self.keep_alive {
            self.send_packet(now, &Packet::Pingreq, out)?;
            self.stats.pings += 1;
            self.waiting_since = Some(now);
        }
        Ok(())
    }

    /// When [`poll`](Self::poll) has something to do next (`None`: nothing timed).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.state == State::Disconnected || self.keep_alive == Duration::ZERO {
            return None;
        }
        Some(match self.waiting_since {
            Some(since) => since + self.keep_alive,
            None => self.last_sent + self.keep_alive,
        })
    }
}
