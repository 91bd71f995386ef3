//! Hub rules beyond routing: the reserved `xstate.` namespace, and the bookkeeping of
//! state watches (who watches which machine, and telling owners when to report). Driven
//! with a virtual clock and a recording I/O, as `hub_endpoint.rs`.

use interstate_core::hub::{Handled, Hub, HubConfig, HubIo, LinkFull, LinkId, PeerCredentials};
use interstate_core::wire::{Deliver, FailReason, Frame, Hello, MAGIC, PROTOCOL_VERSION};
use interstate_core::Instant;

/// Records what the hub asks for.
#[derive(Default)]
struct Recorder {
    sent: Vec<(LinkId, Vec<u8>)>,
    closed: Vec<(LinkId, String)>,
    logs: Vec<(LinkId, String)>,
}

impl Recorder {
    fn frames(&self, link: LinkId) -> Vec<Frame<'_>> {
        self.sent
            .iter()
            .filter(|(l, _)| *l == link)
            .map(|(_, b)| Frame::decode(b).expect("the hub sends valid frames"))
            .collect()
    }
    fn clear(&mut self) {
        self.sent.clear();
    }
}

impl HubIo for Recorder {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        let mut buf = vec![0u8; 1024];
        let n = frame.encode(&mut buf).expect("fits");
        self.sent.push((link, buf[4..n].to_vec()));
        Ok(())
    }
    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        self.sent.push((link, body.to_vec()));
        Ok(())
    }
    fn close(&mut self, link: LinkId, reason: &str) {
        self.closed.push((link, reason.to_string()));
    }
    fn log(&mut self, link: LinkId, message: &str) {
        self.logs.push((link, message.to_string()));
    }
}

const UID: u32 = 1000;

fn body(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = frame.encode(&mut buf).unwrap();
    buf[4..n].to_vec()
}

fn hub() -> Hub<8, 16> {
    Hub::new(HubConfig::new(UID, 1), "hub")
}

/// Opens a link, says hello and registers `machines`.
fn join(hub: &mut Hub<8, 16>, io: &mut Recorder, pid: u32, machines: &[&str]) -> LinkId {
    let peer = PeerCredentials {
        pid,
        uid: UID,
        gid: 0,
    };
    let link = hub.link_opened(Instant::ZERO, peer, io).expect("admitted");
    let hello = body(&Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: 65536,
        pid,
        executable: "test",
    }));
    assert_eq!(
        hub.handle_frame(Instant::ZERO, link, &hello, io),
        Handled::Done
    );
    for m in machines {
        let f = body(&Frame::Register { machine: m });
        assert_eq!(hub.handle_frame(Instant::ZERO, link, &f, io), Handled::Done);
    }
    link
}

fn deliver<'a>(from: &'a str, to: &'a str, event: &'a str) -> Vec<u8> {
    body(&Frame::Deliver(Deliver {
        from,
        to,
        event,
        payload: b"{}",
        seq: 9,
    }))
}

#[test]
fn a_client_cannot_send_an_event_of_the_reserved_namespace() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    io.clear();
    for event in ["xstate.machine.down", "xstate.error.delivery", "xstate."] {
        let f = deliver("a", "b", event);
        assert_eq!(h.handle_frame(Instant::ZERO, a, &f, &mut io), Handled::Done);
    }
    assert!(io.frames(b).is_empty(), "nothing reached the target");
    let failed = io.frames(a);
    assert_eq!(failed.len(), 3);
    for f in failed {
        assert!(
            matches!(f, Frame::DeliveryFailed(d) if d.reason == FailReason::Reserved && d.to == "b"),
            "{f:?}"
        );
    }
    assert_eq!(h.stats().reserved, 3);
    assert!(io
        .logs
        .iter()
        .any(|(l, m)| *l == a && m.contains("reserved")));
    assert!(
        io.closed.is_empty(),
        "the link stays open: it is refused per message"
    );
    // A name that merely starts alike is an ordinary event.
    let f = deliver("a", "b", "xstatex");
    assert_eq!(h.handle_frame(Instant::ZERO, a, &f, &mut io), Handled::Done);
    assert_eq!(io.frames(b).len(), 1);
    // The check comes after ownership: a spoofed reserved event is a spoof.
    io.clear();
    let f = deliver("b", "a", "xstate.machine.up");
    h.handle_frame(Instant::ZERO, a, &f, &mut io);
    assert!(
        matches!(io.frames(a)[0], Frame::DeliveryFailed(d) if d.reason == FailReason::NotOwner)
    );
}
