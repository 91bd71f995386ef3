//! What the fuzzer feeds the hub: machine ids to pick from, the frames a client could send,
//! the operations of a session, and their encoding as frame bodies.

use arbitrary::Arbitrary;
use interstate_core::wire::{
    Deliver, DeliveryFailed, FailReason, Frame, Hello, RegisterStatus, RegistryEntry, Reject,
    RejectCode, Welcome, MAGIC, PROTOCOL_VERSION,
};
use interstate_core::TransportKind;

use super::io::encode_body;

/// Machine ids the operations pick from: valid ones that collide, and invalid ones.
const IDS: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "",
    "bad\u{1}id",
    "0123456789012345678901234567890123456789012345678901234567890123", // 64 bytes: valid
    "01234567890123456789012345678901234567890123456789012345678901234", // 65 bytes
    "é",
];

pub(super) fn id(i: u8) -> &'static str {
    IDS[i as usize % IDS.len()]
}

/// A frame a client could send, structured so that the interesting cases are likely.
#[derive(Arbitrary, Debug, Clone)]
pub enum ClientFrame {
    /// A Hello, possibly wrong.
    Hello {
        /// Right magic?
        magic_ok: bool,
        /// Right version?
        version_ok: bool,
        /// The announced largest frame (times 8).
        max_frame: u16,
        /// Executable name length.
        exe: u8,
    },
    /// Register an id.
    Register(u8),
    /// Unregister an id.
    Unregister(u8),
    /// A message.
    Deliver {
        /// `from` id.
        from: u8,
        /// `to` id.
        to: u8,
        /// Payload length (times 16).
        payload: u8,
        /// Sequence number.
        seq: u64,
    },
    /// An acknowledgement.
    Ack {
        /// `from` id.
        from: u8,
        /// `to` id.
        to: u8,
        /// Sequence number.
        seq: u64,
    },
    /// Registry and monitor subscriptions.
    Subscribe {
        /// Registry.
        registry: bool,
        /// Monitor.
        monitor: bool,
    },
    /// A ping.
    Ping(u64),
    /// A pong.
    Pong(u64),
    /// Goodbye.
    Goodbye(u8),
    /// A frame only the hub sends.
    HubOnly(u8),
    /// Arbitrary bytes as a frame body.
    Raw(Vec<u8>),
    /// A machine stopped on an error.
    Stopped {
        /// The id.
        machine: u8,
        /// The error's length in two-byte characters (past the bound the hub keeps).
        error: u8,
    },
    /// A failure the client found itself, for monitors.
    NodeFailure {
        /// `from` id.
        from: u8,
        /// `to` id.
        to: u8,
    },
}

/// What the platform and the clients do to the hub.
#[derive(Arbitrary, Debug, Clone)]
pub enum HubOp {
    /// A connection arrives with these credentials.
    Open {
        /// The hub's own uid (else a stranger's).
        own_uid: bool,
        /// A group in the allow list.
        allowed_gid: bool,
    },
    /// A frame from a client link.
    Frame {
        /// Which link (1..L).
        link: u8,
        /// The frame.
        frame: ClientFrame,
    },
    /// The peer of a link went away.
    Close(u8),
    /// A link's queue is written out.
    Drain(u8),
    /// A link's queue capacity changes (bytes, times 16).
    Room {
        /// Which link.
        link: u8,
        /// Capacity in 16-byte units.
        room: u8,
    },
    /// Time passes; due timeouts run.
    Advance(u16),
    /// The hub's own process registers an id.
    LocalRegister(u8),
    /// The hub's own process sends a message.
    LocalDeliver {
        /// `from` id.
        from: u8,
        /// `to` id.
        to: u8,
        /// Sequence number.
        seq: u64,
    },
}

/// A `hub` input.
#[derive(Arbitrary, Debug, Clone)]
pub struct HubSession {
    /// Operations in order.
    pub ops: Vec<HubOp>,
}

pub(super) fn client_body(frame: &ClientFrame) -> Vec<u8> {
    let exe = "x".repeat(200);
    let error = "é".repeat(255);
    let payload = vec![0xA5u8; 4096];
    let f = match frame {
        ClientFrame::Hello {
            magic_ok,
            version_ok,
            max_frame,
            exe: e,
        } => Frame::Hello(Hello {
            magic: if *magic_ok { MAGIC } else { MAGIC ^ 1 },
            version: if *version_ok {
                PROTOCOL_VERSION
            } else {
                PROTOCOL_VERSION + 1
            },
            max_frame: u32::from(*max_frame) * 8,
            pid: 42,
            executable: &exe[..(*e as usize % 120)],
        }),
        ClientFrame::Register(i) => Frame::Register { machine: id(*i) },
        ClientFrame::Unregister(i) => Frame::Unregister { machine: id(*i) },
        ClientFrame::Deliver {
            from,
            to,
            payload: p,
            seq,
        } => Frame::Deliver(Deliver {
            from: id(*from),
            to: id(*to),
            event: "E",
            payload: &payload[..(*p as usize * 16).min(payload.len())],
            seq: *seq,
            correlation: Default::default(),
        }),
        ClientFrame::Ack { from, to, seq } => Frame::Ack {
            from: id(*from),
            to: id(*to),
            seq: *seq,
        },
        ClientFrame::Subscribe { registry, monitor } => Frame::Subscribe {
            registry: *registry,
            monitor: *monitor,
        },
        ClientFrame::Ping(n) => Frame::Ping { nonce: *n },
        ClientFrame::Pong(n) => Frame::Pong { nonce: *n },
        ClientFrame::Goodbye(n) => Frame::Goodbye {
            reason: &exe[..(*n as usize % 150)],
        },
        ClientFrame::HubOnly(k) => match k % 8 {
            0 => Frame::Welcome(Welcome {
                version: 1,
                max_frame: 512,
                link: 1,
                hub_pid: 1,
            }),
            1 => Frame::Reject(Reject {
                code: RejectCode::Version,
                version: 1,
                message: "no",
            }),
            2 => Frame::RegisterResult {
                machine: "a",
                status: RegisterStatus::Ok,
            },
            3 => Frame::DeliveryFailed(DeliveryFailed {
                from: "a",
                to: "b",
                event: "E",
                seq: 1,
                reason: FailReason::TargetGone,
                detail: "",
            }),
            4 => Frame::RegistryEntry(RegistryEntry {
                machine: "a",
                pid: 1,
                uid: 1,
                executable: "x",
                transport: TransportKind::UnixSocket,
                since_ms: 0,
                durable: false,
            }),
            5 => Frame::RegistryRemoved { machine: "a" },
            6 => Frame::SnapshotEnd,
            _ => Frame::Monitored {
                link: 1,
                at_ms: 0,
                frame: b"\x0d\x00",
            },
        },
        ClientFrame::Raw(bytes) => return bytes.clone(),
        ClientFrame::Stopped { machine, error: n } => Frame::Stopped {
            machine: id(*machine),
            error: &error[..2 * (*n as usize)],
        },
        ClientFrame::NodeFailure { from, to } => Frame::NodeFailure(DeliveryFailed {
            from: id(*from),
            to: id(*to),
            event: "E",
            seq: 1,
            reason: FailReason::TooLarge,
            detail: "",
        }),
    };
    encode_body(&f)
}
