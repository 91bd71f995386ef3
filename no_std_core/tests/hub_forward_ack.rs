//! An acknowledgement the hub routes is handed to the platform decoded
//! ([`HubIo::forward_ack`]): a host that hosts machines in the hub's own process takes the
//! ids and sequence number from there instead of decoding the body again. The default
//! forwards the body, as before; the hub's rules for acknowledgements are unchanged.

use interstate_core::hub::{Handled, Hub, HubConfig, HubIo, LinkFull, LinkId};
use interstate_core::wire::Frame;
use interstate_core::Instant;

mod recorder;
use recorder::{body, join, Recorder, UID};

/// Records `forward_ack` calls and passes everything else to a [`Recorder`].
#[derive(Default)]
struct AckIo {
    rec: Recorder,
    acks: Vec<(LinkId, String, String, u64, Vec<u8>)>,
}

impl HubIo for AckIo {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        self.rec.send(link, frame)
    }
    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        self.rec.forward(link, body)
    }
    fn forward_ack(
        &mut self,
        link: LinkId,
        from: &str,
        to: &str,
        seq: u64,
        body: &[u8],
    ) -> Result<(), LinkFull> {
        if self.rec.full.contains(&link) {
            return Err(LinkFull);
        }
        self.acks
            .push((link, from.into(), to.into(), seq, body.to_vec()));
        Ok(())
    }
    fn close(&mut self, link: LinkId, reason: &str) {
        self.rec.close(link, reason)
    }
    fn log(&mut self, link: LinkId, message: &str) {
        self.rec.log(link, message)
    }
}

#[test]
fn an_acknowledgement_is_handed_over_decoded_with_its_body() {
    let mut hub: Hub<8, 16, 4> = Hub::new(HubConfig::new(UID, 1), "hub");
    let mut io = AckIo::default();
    hub.register_local(Instant::ZERO, "local", &mut io);
    let a = join(&mut hub, &mut io, 10, &["a"]);
    let b = join(&mut hub, &mut io, 11, &["b"]);
    // To the hub's own process, and to another link: both decoded, each with its body.
    let to_local = body(&Frame::Ack {
        from: "a",
        to: "local",
        seq: 41,
    });
    let to_b = body(&Frame::Ack {
        from: "a",
        to: "b",
        seq: 42,
    });
    assert_eq!(
        hub.handle_frame(Instant::ZERO, a, &to_local, &mut io),
        Handled::Done
    );
    assert_eq!(
        hub.handle_frame(Instant::ZERO, a, &to_b, &mut io),
        Handled::Done
    );
    assert_eq!(
        io.acks,
        vec![
            (0, "a".into(), "local".into(), 41, to_local),
            (b, "a".into(), "b".into(), 42, to_b.clone()),
        ]
    );
    // A full target stalls the sender, as a forwarded body did.
    io.rec.full.push(b);
    assert_eq!(
        hub.handle_frame(Instant::ZERO, a, &to_b, &mut io),
        Handled::Stalled(b)
    );
    // An ack from an id the link does not own is dropped, not handed over.
    let spoofed = body(&Frame::Ack {
        from: "b",
        to: "local",
        seq: 1,
    });
    assert_eq!(
        hub.handle_frame(Instant::ZERO, a, &spoofed, &mut io),
        Handled::Done
    );
    assert_eq!(io.acks.len(), 2);
}

#[test]
fn by_default_the_body_is_forwarded() {
    let mut hub: Hub<8, 16, 4> = Hub::new(HubConfig::new(UID, 1), "hub");
    let mut io = Recorder::default();
    let a = join(&mut hub, &mut io, 10, &["a"]);
    let b = join(&mut hub, &mut io, 11, &["b"]);
    io.clear();
    let ack = body(&Frame::Ack {
        from: "a",
        to: "b",
        seq: 7,
    });
    assert_eq!(
        hub.handle_frame(Instant::ZERO, a, &ack, &mut io),
        Handled::Done
    );
    assert_eq!(io.sent, vec![(b, ack)]);
}
