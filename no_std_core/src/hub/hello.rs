//! What a hub requires of a peer's Hello, and how it refuses one.

use crate::wire::{Frame, Hello, Reject, RejectCode, MAGIC, MIN_MAX_FRAME, PROTOCOL_VERSION};

/// Why a peer's Hello is refused: what goes in the Reject it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// The reason, for programs.
    pub code: RejectCode,
    /// The reason, for people.
    pub message: &'static str,
}

impl Refusal {
    /// The Reject frame that tells the peer.
    pub fn reject(&self) -> Frame<'static> {
        Frame::Reject(Reject {
            code: self.code,
            version: PROTOCOL_VERSION,
            message: self.message,
        })
    }
}

/// What a hub requires of a peer's Hello: the interstate magic, this protocol version, and a
/// largest frame of at least `min_frame`. The hub checks processes with [`HelloRules::PROCESS`];
/// the serial bridge checks devices with [`crate::serial::DEVICE_HELLO`] (a device's receive
/// buffer may be far smaller than a process's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HelloRules {
    /// The smallest largest-frame the peer may announce.
    pub min_frame: u32,
    /// The refusal message when it announces less (it names the minimum).
    pub too_small: &'static str,
}

impl HelloRules {
    /// The rules for a process (over a socket, FIFO or shared memory).
    pub const PROCESS: HelloRules = HelloRules {
        min_frame: MIN_MAX_FRAME,
        too_small: "the client's largest frame is below the minimum of 512 bytes",
    };

    /// Checks `hello`. Returns the largest frame body both ends accept (the peer's, capped at
    /// the hub's `max_frame`: what the Welcome says), or why the peer is refused.
    pub fn check(&self, hello: &Hello<'_>, max_frame: u32) -> Result<u32, Refusal> {
        let refuse = |code, message| Err(Refusal { code, message });
        if hello.magic != MAGIC {
            refuse(
                RejectCode::NotInterstate,
                "not an interstate client (bad magic)",
            )
        } else if hello.version != PROTOCOL_VERSION {
            refuse(
                RejectCode::Version,
                "protocol version mismatch: client and hub must speak the same version",
            )
        } else if hello.max_frame < self.min_frame {
            refuse(RejectCode::FrameSize, self.too_small)
        } else {
            Ok(hello.max_frame.min(max_frame))
        }
    }
}
