//! The MQTT session on bytes in and out with a virtual clock: the test plays the broker
//! with the same codec (`mqttrs`).

use interstate_core::mqtt::bridge::{self, BridgeTopic, Envelope, RegistryRecord};
use interstate_core::mqtt::{
    ConnectOptions, ConnectRefusal, MqttError, Output, Received, Session, State, Will,
};
use interstate_core::Instant;
use mqttrs::{
    decode_slice, encode_slice, Connack, ConnectReturnCode, Packet, Pid, Publish, QosPid,
};
use proptest::prelude::*;

#[derive(Default)]
struct Wire(Vec<u8>);

impl Output for Wire {
    fn send(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl Wire {
    /// Every packet written so far, decoded, as (first byte, packet bytes).
    fn packets(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.0.len() {
            let rest = &self.0[at..];
            let mut len = 0usize;
            let mut i = 1;
            loop {
                let b = rest[i];
                len |= usize::from(b & 0x7f) << (7 * (i - 1));
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
            out.push(rest[..i + len].to_vec());
            at += i + len;
        }
        self.0.clear();
        out
    }
}

const MAX: usize = 64 * 1024;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn broker(p: Packet<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let n = encode_slice(&p, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn connack(code: ConnectReturnCode) -> Vec<u8> {
    broker(Packet::Connack(Connack {
        session_present: false,
        code,
    }))
}

fn options() -> ConnectOptions<'static> {
    ConnectOptions {
        client_id: "node-a",
        keep_alive_secs: 10,
        will: Some(Will {
            topic: "interstate/node-a/status",
            payload: b"down",
            retain: true,
        }),
        username: None,
        password: None,
    }
}

fn session() -> Session<Vec<u8>> {
    Session::new(vec![0u8; 4096])
}

fn connected(s: &mut Session<Vec<u8>>, w: &mut Wire, now: u64) {
    s.connect(t(now), &options(), w).unwrap();
    let ack = connack(ConnectReturnCode::Accepted);
    let (n, r) = s.receive(t(now), &ack, MAX, w).unwrap();
    assert_eq!(n, 4);
    assert!(matches!(r, Received::Connected { .. }));
    assert_eq!(s.state(), State::Connected);
}

#[test]
fn connect_asks_for_a_persistent_session_with_a_will() {
    let mut s = session();
    let mut w = Wire::default();
    s.connect(t(0), &options(), &mut w).unwrap();
    assert_eq!(s.state(), State::Connecting);
    let packets = w.packets();
    assert_eq!(packets.len(), 1);
    let Ok(Some(Packet::Connect(c))) = decode_slice(&packets[0]) else {
        panic!("not a CONNECT: {:?}", packets[0]);
    };
    assert!(!c.clean_session);
    assert_eq!(c.client_id, "node-a");
    assert_eq!(c.keep_alive, 10);
    let will = c.last_will.unwrap();
    assert_eq!(will.topic, "interstate/node-a/status");
    assert_eq!(will.message, b"down");
    assert!(will.retain);
}

#[test]
fn a_refused_connection_names_the_reason() {
    let mut s = session();
    let mut w = Wire::default();
    s.connect(t(0), &options(), &mut w).unwrap();
    let err = s
        .receive(
            t(1),
            &connack(ConnectReturnCode::BadUsernamePassword),
            MAX,
            &mut w,
        )
        .unwrap_err();
    assert_eq!(err, MqttError::Refused(ConnectRefusal::BadCredentials));
    assert_eq!(s.state(), State::Disconnected);
    assert!(err.to_string().contains("bad user name or password"));
}

#[test]
fn qos1_messages_are_kept_until_acknowledged() {
    let mut s = session();
    let mut w = Wire::default();
    connected(&mut s, &mut w, 0);
    w.packets();
    let pid = s
        .publish(t(1), "interstate/b/in", b"hello", true, false, &mut w)
        .unwrap()
        .unwrap();
    let packets = w.packets();
    let Ok(Some(Packet::Publish(p))) = decode_slice(&packets[0]) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(p.qospid, QosPid::AtLeastOnce(Pid::try_from(pid).unwrap()));
    assert!(!p.dup);
    assert_eq!(p.payload, b"hello");
    assert_eq!(s.unacknowledged(), 1);
    let ack = broker(Packet::Puback(Pid::try_from(pid).unwrap()));
    let (_, r) = s.receive(t(2), &ack, MAX, &mut w).unwrap();
    assert_eq!(r, Received::Acknowledged { pid });
    assert_eq!(s.unacknowledged(), 0);
    // A second PUBACK for it acknowledges nothing.
    let (_, r) = s.receive(t(3), &ack, MAX, &mut w).unwrap();
    assert_eq!(r, Received::Nothing);
}

#[test]
fn unacknowledged_messages_go_again_with_dup_after_a_reconnect() {
    let mut s = session();
    let mut w = Wire::default();
    connected(&mut s, &mut w, 0);
    let p1 = s
        .publish(t(1), "x/1", b"one", true, false, &mut w)
        .unwrap()
        .unwrap();
    let p2 = s
        .publish(t(1), "x/2", b"two", true, false, &mut w)
        .unwrap()
        .unwrap();
    // The first is acknowledged, the second is not when the connection drops.
    s.receive(
        t(2),
        &broker(Packet::Puback(Pid::try_from(p1).unwrap())),
        MAX,
        &mut w,
    )
    .unwrap();
    s.disconnected();
    // Published while away: kept, sent after the CONNACK without DUP.
    let p3 = s
        .publish(t(3), "x/3", b"three", true, false, &mut w)
        .unwrap()
        .unwrap();
    w.packets();
    s.connect(t(4), &options(), &mut w).unwrap();
    let ack = connack(ConnectReturnCode::Accepted);
    let (_, r) = s.receive(t(4), &ack, MAX, &mut w).unwrap();
    assert_eq!(
        r,
        Received::Connected {
            session_present: false,
            resent: 1
        }
    );
    let packets = w.packets();
    assert_eq!(packets.len(), 3, "CONNECT, then the two kept messages");
    let Ok(Some(Packet::Publish(again))) = decode_slice(&packets[1]) else {
        panic!("not a PUBLISH");
    };
    assert!(again.dup);
    assert_eq!(
        again.qospid,
        QosPid::AtLeastOnce(Pid::try_from(p2).unwrap())
    );
    assert_eq!(again.payload, b"two");
    let Ok(Some(Packet::Publish(first))) = decode_slice(&packets[2]) else {
        panic!("not a PUBLISH");
    };
    assert!(!first.dup);
    assert_eq!(
        first.qospid,
        QosPid::AtLeastOnce(Pid::try_from(p3).unwrap())
    );
    assert_eq!(s.stats().resent, 1);
    assert_eq!(s.unacknowledged(), 2);
}

#[test]
fn keepalive_pings_and_declares_a_silent_broker_lost() {
    let mut s = session();
    let mut w = Wire::default();
    connected(&mut s, &mut w, 0);
    w.packets();
    assert_eq!(s.next_deadline(), Some(t(10_000)));
    s.poll(t(9_999), &mut w).unwrap();
    assert!(w.packets().is_empty());
    s.poll(t(10_000), &mut w).unwrap();
    assert_eq!(w.packets(), vec![vec![0xc0, 0x00]], "a PINGREQ");
    // Answered: the next ping is an interval after the last send.
    s.receive(t(10_500), &[0xd0, 0x00], MAX, &mut w).unwrap();
    s.poll(t(19_999), &mut w).unwrap();
    assert!(w.packets().is_empty());
    s.poll(t(20_000), &mut w).unwrap();
    assert_eq!(w.packets().len(), 1);
    // Not answered within another interval: lost.
    assert_eq!(s.poll(t(30_000), &mut w), Err(MqttError::Timeout));
    assert_eq!(s.state(), State::Disconnected);
}

#[test]
fn a_missing_connack_times_out() {
    let mut s = session();
    let mut w = Wire::default();
    s.connect(t(0), &options(), &mut w).unwrap();
    s.poll(t(9_999), &mut w).unwrap();
    assert_eq!(s.poll(t(10_000), &mut w), Err(MqttError::Timeout));
}

#[test]
fn an_incoming_qos1_message_is_acknowledged() {
    let mut s = session();
    let mut w = Wire::default();
    connected(&mut s, &mut w, 0);
    w.packets();
    let msg = broker(Packet::Publish(Publish {
        dup: true,
        qospid: QosPid::AtLeastOnce(Pid::try_from(77).unwrap()),
        retain: true,
        topic_name: "interstate/b/registry/w",
        payload: b"rec",
    }));
    // Split across reads: nothing until it is whole.
    let (n, r) = s.receive(t(1), &msg[..5], MAX, &mut w).unwrap();
    assert_eq!((n, r), (0, Received::Nothing));
    let (n, r) = s.receive(t(1), &msg, MAX, &mut w).unwrap();
    assert_eq!(n, msg.len());
    assert_eq!(
        r,
        Received::Message {
            topic: "interstate/b/registry/w",
            payload: b"rec",
            retain: true,
            dup: true
        }
    );
    assert_eq!(w.packets(), vec![vec![0x40, 0x02, 0x00, 77]], "its PUBACK");
}

#[test]
fn subscribe_and_a_refused_filter() {
    let mut s = session();
    let mut w = Wire::default();
    assert_eq!(
        s.subscribe(t(0), &["a/#"], &mut w),
        Err(MqttError::NotConnected)
    );
    connected(&mut s, &mut w, 0);
    w.packets();
    let pid = s
        .subscribe(t(1), &["a/+/status", "a/b/in"], &mut w)
        .unwrap();
    let packets = w.packets();
    let Ok(Some(Packet::Subscribe(sub))) = decode_slice(&packets[0]) else {
        panic!("not a SUBSCRIBE");
    };
    assert_eq!(sub.pid.get(), pid);
    assert_eq!(sub.topics.len(), 2);
    assert_eq!(sub.topics[0].topic_path.as_str(), "a/+/status");
    let pid_bytes = pid.to_be_bytes();
    let suback = [0x90, 0x04, pid_bytes[0], pid_bytes[1], 0x01, 0x80];
    let (_, r) = s.receive(t(2), &suback, MAX, &mut w).unwrap();
    assert_eq!(
        r,
        Received::Subscribed {
            pid,
            granted: false
        }
    );
}

#[test]
fn a_full_store_refuses_until_acknowledgements_come() {
    let mut s = Session::new(vec![0u8; 200]);
    let mut w = Wire::default();
    connected(&mut s, &mut w, 0);
    let mut pids = Vec::new();
    loop {
        match s.publish(t(1), "t", &[7; 40], true, false, &mut w) {
            Ok(p) => pids.push(p.unwrap()),
            Err(e) => {
                assert_eq!(e, MqttError::StoreFull);
                break;
            }
        }
    }
    assert!(!pids.is_empty());
    let ack = broker(Packet::Puback(Pid::try_from(pids[0]).unwrap()));
    s.receive(t(2), &ack, MAX, &mut w).unwrap();
    assert!(s.publish(t(3), "t", &[7; 40], true, false, &mut w).is_ok());
}

#[test]
fn short_or_inconsistent_packets_are_errors_not_panics() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x40, 0x00], "PUBACK without its id"),
        (&[0x20, 0x01, 0x00], "short CONNACK"),
        (
            &[0x30, 0x03, 0x00, 0x09, b'a'],
            "topic longer than the PUBLISH",
        ),
        (
            &[0x32, 0x03, 0x00, 0x01, b'a'],
            "QoS 1 PUBLISH without its id",
        ),
        (&[0x90, 0x02, 0x00, 0x01], "SUBACK without codes"),
        (&[0x10, 0x00], "a CONNECT from the broker"),
        (&[0x34, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], "QoS 2"),
        (&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], "5-byte length"),
    ];
    for (bytes, what) in cases {
        let mut s = session();
        let mut w = Wire::default();
        connected(&mut s, &mut w, 0);
        assert!(s.receive(t(1), bytes, MAX, &mut w).is_err(), "{what}");
    }
}

proptest! {
    #[test]
    fn any_bytes_from_the_broker_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut s = session();
        let mut w = Wire::default();
        connected(&mut s, &mut w, 0);
        let mut input = &bytes[..];
        while let Ok((n, _)) = s.receive(t(1), input, MAX, &mut w) {
            if n == 0 {
                break;
            }
            input = &input[n..];
        }
    }
}

proptest! {
    /// Well-framed packets of every type a broker may send, with arbitrary bodies: what the
    /// codec decodes is checked first, so nothing panics.
    #[test]
    fn framed_packets_with_any_body_never_panic(
        first in prop::sample::select(vec![0x20u8, 0x30, 0x31, 0x32, 0x3a, 0x34, 0x40, 0x50, 0x62, 0x90, 0xb0, 0xd0, 0x10, 0x80]),
        body in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut s = session();
        let mut w = Wire::default();
        connected(&mut s, &mut w, 0);
        let mut packet = vec![first, body.len() as u8];
        packet.extend_from_slice(&body);
        let _ = s.receive(t(1), &packet, MAX, &mut w);
    }
}

#[test]
fn the_topic_layout_round_trips() {
    let mut topic = String::new();
    BridgeTopic::Registry {
        node: "b",
        machine: "line/worker-7",
    }
    .write("plant", &mut topic)
    .unwrap();
    assert_eq!(topic, "plant/b/registry/line/worker-7");
    assert_eq!(
        bridge::parse_topic("plant", &topic),
        Some(BridgeTopic::Registry {
            node: "b",
            machine: "line/worker-7"
        })
    );
    assert_eq!(
        bridge::parse_topic("plant", "plant/b/in"),
        Some(BridgeTopic::Inbox { node: "b" })
    );
    assert_eq!(bridge::parse_topic("plant", "plantx/b/in"), None);
    assert_eq!(bridge::parse_topic("plant", "plant/b/other"), None);
    assert!(!bridge::valid_node_name("a/b"));
    assert!(!bridge::valid_node_name("+"));
    assert!(!bridge::bridgeable_id("a#b"));
    assert!(bridge::valid_prefix("site/1"));
    assert!(!bridge::valid_prefix("site/#"));
    let mut subs: [heapless::String<64>; 3] = Default::default();
    bridge::subscriptions("p", "a", &mut subs).unwrap();
    assert_eq!(
        subs.each_ref().map(|s| s.as_str()),
        ["p/+/status", "p/+/registry/#", "p/a/in"]
    );
}

#[test]
fn payloads_round_trip() {
    let env = Envelope {
        from: "sensor",
        to: "worker-7",
        event: "READING",
        payload: b"{\"v\":1}",
        seq: 42,
    };
    let mut buf = [0u8; 128];
    let bytes = bridge::encode(&env, &mut buf).unwrap().to_vec();
    assert_eq!(bridge::decode::<Envelope<'_>>(&bytes), Some(env));
    let rec = RegistryRecord {
        host: "box-2",
        pid: 1234,
        executable: "worker",
        transport: "unix",
    };
    let bytes = bridge::encode(&rec, &mut buf).unwrap().to_vec();
    assert_eq!(bridge::decode::<RegistryRecord<'_>>(&bytes), Some(rec));
    assert_eq!(bridge::decode::<Envelope<'_>>(&[0xff]), None);
}

#[test]
fn the_first_node_name_keeps_a_contested_id_whatever_the_order() {
    assert_eq!(bridge::claim_kept_by("b", "a"), "a");
    assert_eq!(bridge::claim_kept_by("a", "b"), "a");
    assert!(bridge::is_new(None, 1));
    assert!(bridge::is_new(Some(4), 5));
    assert!(!bridge::is_new(Some(5), 5));
    assert!(!bridge::is_new(Some(5), 3));
}
