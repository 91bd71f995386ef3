//! The platform side of the fuzzed hub (`RecIo`): bounded queues per link, and everything the
//! hub hands over recorded as `Out`s for the checks.

use interstate_core::hub::{HubIo, LinkFull, LinkId, LOCAL_LINK};
use interstate_core::wire::{Frame, LEN_PREFIX};

use super::HUB_L;

/// A frame or body the hub handed to the platform.
#[derive(Debug, Clone)]
pub(super) enum Out {
    Sent(LinkId, Vec<u8>),
    Forwarded(LinkId, Vec<u8>),
    Closed(LinkId, String),
    Logged(LinkId, String),
}

/// The platform side of the fuzzed hub: bounded queues per link, and everything recorded.
pub(super) struct RecIo {
    /// Links the platform has open (opened and not yet reported closed).
    pub(super) open: [bool; HUB_L],
    /// Queued bodies per link.
    pub(super) queues: Vec<Vec<Vec<u8>>>,
    /// Queue capacity per link, in bytes.
    pub(super) room: [usize; HUB_L],
    /// Largest frame agreed per link (from its Welcome), for checks.
    pub(super) agreed: [u32; HUB_L],
    /// What happened during the current operation.
    pub(super) out: Vec<Out>,
    /// Frames given to the hub's own process.
    pub(super) local: Vec<Vec<u8>>,
    /// Rejects sent to refused connections (link `LinkId::MAX`).
    pub(super) refused: usize,
}

pub(super) fn encode_body(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; frame.encoded_len()];
    let n = frame.encode(&mut buf).expect("the hub's frames encode");
    buf.truncate(n);
    buf.drain(..LEN_PREFIX);
    buf
}

impl RecIo {
    fn used(&self, link: LinkId) -> usize {
        self.queues[link as usize]
            .iter()
            .map(|b| b.len() + LEN_PREFIX)
            .sum()
    }

    fn fits(&self, link: LinkId, body: usize) -> bool {
        self.used(link) + body + LEN_PREFIX <= self.room[link as usize]
    }

    fn push(&mut self, link: LinkId, body: Vec<u8>, forwarded: bool) -> Result<(), LinkFull> {
        let l = link as usize;
        assert!(l < HUB_L, "the hub addressed link {link}, past its table");
        assert!(
            self.open[l],
            "the hub queued a frame on link {link}, which is not open"
        );
        if self.agreed[l] != 0 {
            assert!(
                body.len() <= self.agreed[l] as usize,
                "a frame of {} bytes on link {link}, whose largest frame is {}",
                body.len(),
                self.agreed[l]
            );
        }
        if !self.fits(link, body.len()) {
            return Err(LinkFull);
        }
        self.queues[l].push(body.clone());
        self.out.push(if forwarded {
            Out::Forwarded(link, body)
        } else {
            Out::Sent(link, body)
        });
        Ok(())
    }
}

impl HubIo for RecIo {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        if link == LinkId::MAX {
            assert!(
                matches!(frame, Frame::Reject(_)),
                "only a Reject goes to a refused link"
            );
            self.refused += 1;
            return Ok(());
        }
        assert!(
            matches!(
                frame,
                Frame::Welcome(_)
                    | Frame::Reject(_)
                    | Frame::RegisterResult { .. }
                    | Frame::DeliveryFailed(_)
                    | Frame::RegistryEntry(_)
                    | Frame::RegistryRemoved { .. }
                    | Frame::SnapshotEnd
                    | Frame::Monitored { .. }
                    | Frame::Report { .. }
                    | Frame::Pong { .. }
                    // Asks a link to confirm it has read a failure report (a held pair).
                    | Frame::Ping { .. }
            ),
            "the hub sent a client's frame: {frame:?}"
        );
        let body = encode_body(frame);
        if link == LOCAL_LINK {
            self.local.push(body.clone());
            self.out.push(Out::Sent(link, body));
            return Ok(());
        }
        self.push(link, body, false)
    }

    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        assert!(
            matches!(
                Frame::decode(body),
                Ok(Frame::Deliver(_) | Frame::Ack { .. } | Frame::State { .. })
            ),
            "the hub forwarded something other than a Deliver, an Ack or a State"
        );
        if link == LOCAL_LINK {
            self.out.push(Out::Forwarded(link, body.to_vec()));
            return Ok(());
        }
        self.push(link, body.to_vec(), true)
    }

    fn close(&mut self, link: LinkId, reason: &str) {
        assert!(!reason.is_empty(), "a close without a reason");
        if link != LinkId::MAX {
            assert!(
                (link as usize) < HUB_L && self.open[link as usize],
                "the hub closed link {link}, which is not open"
            );
        }
        self.out.push(Out::Closed(link, reason.to_string()));
    }

    fn log(&mut self, link: LinkId, message: &str) {
        assert!(!message.is_empty(), "an empty log line");
        self.out.push(Out::Logged(link, message.to_string()));
    }
}
