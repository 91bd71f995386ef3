//! The recording `HubIo` the hub's tests drive the core `Hub` with (`hub_endpoint.rs`,
//! `hub_rules.rs`): every frame the hub sends or forwards, every close and log line; links
//! listed in `full` refuse frames.

// Each test file uses a different part of it.
#![allow(dead_code)]

use interstate_core::hub::{Handled, Hub, HubIo, LinkFull, LinkId, PeerCredentials};
use interstate_core::topic::SubscriptionSlots;
use interstate_core::wire::{Frame, Hello, MAGIC, PROTOCOL_VERSION};
use interstate_core::Instant;

/// The uid the test hubs admit.
pub const UID: u32 = 1000;

/// Records what the hub asks for; links listed in `full` refuse frames.
#[derive(Default)]
pub struct Recorder {
    pub sent: Vec<(LinkId, Vec<u8>)>,
    pub closed: Vec<(LinkId, String)>,
    pub logs: Vec<(LinkId, String)>,
    pub full: Vec<LinkId>,
    /// The stats requests the hub asked the platform to answer: (asker, nodes asked).
    pub stats_asked: Vec<(LinkId, u32)>,
}

impl Recorder {
    /// The frames sent or forwarded to `link`, in order.
    pub fn frames(&self, link: LinkId) -> Vec<Frame<'_>> {
        self.sent
            .iter()
            .filter(|(l, _)| *l == link)
            .map(|(_, b)| Frame::decode(b).expect("the hub sends valid frames"))
            .collect()
    }

    /// Forgets the frames recorded so far.
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

impl HubIo for Recorder {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        if self.full.contains(&link) {
            return Err(LinkFull);
        }
        self.sent.push((link, body(frame)));
        Ok(())
    }
    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        if self.full.contains(&link) {
            return Err(LinkFull);
        }
        self.sent.push((link, body.to_vec()));
        Ok(())
    }
    fn close(&mut self, link: LinkId, reason: &str) {
        self.closed.push((link, reason.to_string()));
    }
    fn log(&mut self, link: LinkId, message: &str) {
        self.logs.push((link, message.to_string()));
    }
    fn stats_requested(&mut self, asker: LinkId, nodes: u32) {
        self.stats_asked.push((asker, nodes));
    }
}

/// A frame's encoded body (without its length prefix).
pub fn body(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = frame.encode(&mut buf).expect("fits");
    buf[4..n].to_vec()
}

/// Opens a link for process `pid`, says hello and registers `machines`, as a client does.
pub fn join<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots>(
    hub: &mut Hub<L, M, W, T>,
    io: &mut dyn HubIo,
    pid: u32,
    machines: &[&str],
) -> LinkId {
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
        let register = body(&Frame::Register { machine: m });
        assert_eq!(
            hub.handle_frame(Instant::ZERO, link, &register, io),
            Handled::Done
        );
    }
    link
}

/// `link` confirms it has read the failure reports sent to it, as a client does: a second
/// later the hub asks again with the count of every report so far, and the link answers
/// that Ping. Releases the pairs the reports held. Returns the time it happened at.
pub fn confirm_reports<const L: usize, const M: usize, const W: usize>(
    hub: &mut Hub<L, M, W>,
    io: &mut Recorder,
    link: LinkId,
) -> Instant {
    let later = Instant::from_millis(1_100);
    hub.handle_timeout(later, io);
    let nonce = io
        .frames(link)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Ping { nonce } => Some(nonce),
            _ => None,
        })
        .next_back()
        .expect("a Ping follows the failure reports");
    hub.handle_frame(later, link, &body(&Frame::Pong { nonce }), io);
    later
}
