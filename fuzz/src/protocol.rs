//! Fuzz logic for the bus protocol: frame decoding, the hub and the client endpoint.
//!
//! - [`frame_decode`]: bytes as one frame body and as a length-delimited stream.
//! - [`hub`]: an [`arbitrary`] [`HubSession`] of link events (open with credentials, frames,
//!   raw bytes, close, drain, advance time) driving a small `Hub` through a recording
//!   [`HubIo`], with an independent model of the registry and checks after every operation.
//! - [`endpoint`]: an [`arbitrary`] [`EndpointSession`] driving an `Endpoint` the way the
//!   platform does (connect, frames from the hub, disconnects, time).

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use interstate_core::endpoint::{Endpoint, EndpointConfig, LinkState as EpState, Todo};
use interstate_core::hub::{
    valid_machine_id, Handled, Hub, HubConfig, HubIo, LinkFull, LinkId, PeerCredentials, LOCAL_LINK,
};
use interstate_core::wire::{
    split_frame, Deliver, DeliveryFailed, FailReason, Frame, Hello, RegisterStatus, RegistryEntry,
    Reject, RejectCode, Welcome, LEN_PREFIX, MAGIC, MIN_MAX_FRAME, PROTOCOL_VERSION,
};
use interstate_core::{Duration, Error, Instant, TransportKind};

// ---------------------------------------------------------------------------------------------
// frame_decode

/// Checks one frame body: decoding agrees with postcard's (and encoding with postcard's
/// output), never panics and fails only with `MalformedFrame`; a
/// decoded frame re-encodes (no longer than the input, `encoded_len` exact) to bytes that
/// decode to the same frame, and to the same bytes again (the encoding is canonical).
pub fn check_body(body: &[u8]) {
    // Deliver frames are read and written by hand: exactly as postcard reads and writes them.
    let by_postcard = match postcard::take_from_bytes::<Frame<'_>>(body) {
        Ok((f, [])) => Some(f),
        _ => None,
    };
    assert_eq!(
        Frame::decode(body).ok(),
        by_postcard,
        "Frame::decode and postcard disagree"
    );
    if let Some(f) = by_postcard {
        let mut ours = vec![0u8; body.len() + LEN_PREFIX];
        let n = f.encode(&mut ours).expect("re-encodes");
        let theirs = postcard::to_allocvec(&f).expect("postcard encodes");
        assert_eq!(
            &ours[LEN_PREFIX..n],
            &theirs[..],
            "Frame::encode and postcard disagree"
        );
    }
    match Frame::decode(body) {
        Ok(f) => {
            assert!(!f.kind().is_empty());
            let mut buf = vec![0u8; body.len() + LEN_PREFIX];
            let n = f.encode(&mut buf).unwrap_or_else(|e| {
                panic!("a decoded frame does not re-encode in as many bytes: {e}")
            });
            assert_eq!(n, f.encoded_len(), "encoded_len disagrees with encode");
            assert!(
                n - LEN_PREFIX <= body.len(),
                "re-encoding is longer than the input"
            );
            assert_eq!(
                u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
                n - LEN_PREFIX,
                "length prefix"
            );
            let again = Frame::decode(&buf[LEN_PREFIX..n])
                .unwrap_or_else(|e| panic!("a re-encoded frame does not decode: {e}"));
            assert_eq!(again, f, "the round trip changed the frame");
            let mut buf2 = vec![0u8; n];
            let m = again.encode(&mut buf2).expect("encodes again");
            assert_eq!(&buf[..n], &buf2[..m], "the encoding is not canonical");
            // Too small a buffer is an error, never a panic or a short write.
            if n > LEN_PREFIX {
                let mut small = vec![0u8; n - 1];
                assert!(
                    f.encode(&mut small).is_err(),
                    "encoded into too small a buffer"
                );
            }
        }
        Err(Error::MalformedFrame(_)) => {}
        Err(e) => panic!("Frame::decode failed with an unexpected error: {e:?}"),
    }
}

/// Target `frame_decode`: the input as one frame body, then as a stream of length-prefixed
/// frames split with `split_frame` under a largest frame chosen by the first two bytes.
pub fn frame_decode(data: &[u8]) {
    check_body(data);
    let max = match data {
        [a, b, ..] => u32::from(u16::from_le_bytes([*a, *b])) * 4,
        _ => 64,
    };
    let mut rest = data;
    loop {
        match split_frame(rest, max) {
            Ok(Some((body, used))) => {
                assert_eq!(used, LEN_PREFIX + body.len(), "consumed");
                assert!(used <= rest.len(), "consumed past the end");
                assert!(body.len() as u32 <= max, "a body above the largest frame");
                assert_eq!(
                    body,
                    &rest[LEN_PREFIX..used],
                    "the body is not the bytes after the prefix"
                );
                check_body(body);
                rest = &rest[used..];
            }
            Ok(None) => {
                if rest.len() >= LEN_PREFIX {
                    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    assert!(len <= max && rest.len() < LEN_PREFIX + len as usize);
                }
                break;
            }
            Err(Error::FrameTooLarge { len, max: m }) => {
                assert!(len > m && m == max, "refused a frame that fits");
                break;
            }
            Err(e) => panic!("split_frame failed with an unexpected error: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hub

/// Links of the fuzzed hub (the local link 0 included).
pub const HUB_L: usize = 6;
/// Machine ids the fuzzed hub routes.
pub const HUB_M: usize = 8;
/// Machine ids per link.
const PER_LINK: usize = 3;
const HELLO_TIMEOUT: u64 = 5_000;
const IDLE_TIMEOUT: u64 = 30_000;
const HUB_MAX_FRAME: u32 = 2048;
const OWN_UID: u32 = 1000;

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

fn id(i: u8) -> &'static str {
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

/// A frame or body the hub handed to the platform.
#[derive(Debug, Clone)]
enum Out {
    Sent(LinkId, Vec<u8>),
    Forwarded(LinkId, Vec<u8>),
    Closed(LinkId, String),
    Logged(LinkId, String),
}

/// The platform side of the fuzzed hub: bounded queues per link, and everything recorded.
struct RecIo {
    /// Links the platform has open (opened and not yet reported closed).
    open: [bool; HUB_L],
    /// Queued bodies per link.
    queues: Vec<Vec<Vec<u8>>>,
    /// Queue capacity per link, in bytes.
    room: [usize; HUB_L],
    /// Largest frame agreed per link (from its Welcome), for checks.
    agreed: [u32; HUB_L],
    /// What happened during the current operation.
    out: Vec<Out>,
    /// Frames given to the hub's own process.
    local: Vec<Vec<u8>>,
    /// Rejects sent to refused connections (link `LinkId::MAX`).
    refused: usize,
}

fn encode_body(frame: &Frame<'_>) -> Vec<u8> {
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

/// The harness's own model of the hub: link states and the registry.
#[derive(Default)]
struct Model {
    /// Links that completed the handshake, with their agreed largest frame.
    ready: BTreeMap<LinkId, u32>,
    /// Links waiting for their Hello.
    awaiting: BTreeSet<LinkId>,
    /// machine id -> owner link.
    owner: BTreeMap<String, LinkId>,
    /// Links subscribed to the registry.
    registry: BTreeSet<LinkId>,
    /// A frame each stalled link waits to hand in again, and the link it waits on.
    stalled: BTreeMap<LinkId, (Vec<u8>, LinkId)>,
    /// Machines that stopped on an error, oldest first (the hub keeps `STOPPED_KEPT`).
    stopped: Vec<String>,
}

impl Model {
    fn ids_of(&self, link: LinkId) -> usize {
        self.owner.values().filter(|&&l| l == link).count()
    }

    /// The status the hub must answer to a Register, and whether the route changes.
    fn register(&mut self, link: LinkId, machine: &str) -> RegisterStatus {
        if !valid_machine_id(machine) {
            return RegisterStatus::BadId;
        }
        match self.owner.get(machine) {
            Some(&l) if l == link => RegisterStatus::Ok,
            Some(_) => RegisterStatus::Taken,
            None if link != LOCAL_LINK && self.ids_of(link) >= PER_LINK => RegisterStatus::TooMany,
            None if self.owner.len() >= HUB_M => RegisterStatus::HubFull,
            None => {
                self.owner.insert(machine.to_string(), link);
                self.stopped.retain(|m| m != machine);
                RegisterStatus::Ok
            }
        }
    }

    fn closed(&mut self, link: LinkId) {
        self.ready.remove(&link);
        self.awaiting.remove(&link);
        self.registry.remove(&link);
        self.stalled.remove(&link);
        self.owner.retain(|_, l| *l != link);
    }
}

fn client_body(frame: &ClientFrame) -> Vec<u8> {
    let exe = "x".repeat(200);
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
            }),
            4 => Frame::RegistryEntry(RegistryEntry {
                machine: "a",
                pid: 1,
                uid: 1,
                executable: "x",
                transport: TransportKind::UnixSocket,
                since_ms: 0,
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
    };
    encode_body(&f)
}

/// Runs the platform's side after an operation: links the hub asked to close are closed
/// (`link_closed`, then every frame still queued on them handed back as undeliverable), as
/// `Node::settle` does, until nothing is left to close. Returns the outputs of that work.
fn settle(
    hub: &mut Hub<HUB_L, HUB_M>,
    io: &mut RecIo,
    model: &mut Model,
    mut out: Vec<Out>,
) -> Vec<Out> {
    let mut all = Vec::new();
    loop {
        let closes: Vec<LinkId> = out
            .iter()
            .filter_map(|o| match o {
                Out::Closed(l, _) if *l != LinkId::MAX => Some(*l),
                _ => None,
            })
            .collect();
        all.append(&mut out);
        if closes.is_empty() {
            return all;
        }
        for link in closes {
            let l = link as usize;
            if !io.open[l] {
                continue;
            }
            hub.link_closed(link, io);
            // Before undeliverable: the hub may still report to the link's own senders, so
            // the model's ownership must go first.
            model.closed(link);
            let unwritten = std::mem::take(&mut io.queues[l]);
            io.open[l] = false;
            io.agreed[l] = 0;
            for body in unwritten {
                let before = io.out.len();
                hub.undeliverable(&body, io);
                check_undeliverable(&body, &io.out[before..], model, io);
            }
        }
        out = std::mem::take(&mut io.out);
    }
}

/// A frame queued on a closed link: a Deliver goes back to its sender as `TargetGone` (when
/// the sender is still on the bus and its queue has room); anything else is dropped.
fn check_undeliverable(body: &[u8], out: &[Out], model: &Model, _io: &RecIo) {
    // (Copies of the failure report for monitoring links aside.)
    let sent: Vec<&Out> = out
        .iter()
        .filter(|o| match o {
            Out::Sent(_, b) => !matches!(Frame::decode(b), Ok(Frame::Monitored { .. })),
            o => matches!(o, Out::Forwarded(..)),
        })
        .collect();
    match Frame::decode(body) {
        Ok(Frame::Deliver(d)) => {
            for o in &sent {
                let Out::Sent(link, b) = o else {
                    panic!("undeliverable forwarded something");
                };
                assert_eq!(
                    model.owner.get(d.from),
                    Some(link),
                    "a failure went to a link that does not own the sender"
                );
                match Frame::decode(b) {
                    Ok(Frame::DeliveryFailed(f)) => {
                        assert_eq!(
                            (f.from, f.to, f.event, f.seq),
                            (d.from, d.to, d.event, d.seq)
                        );
                        assert_eq!(f.reason, FailReason::TargetGone);
                    }
                    other => panic!("undeliverable sent {other:?}"),
                }
            }
            assert!(sent.len() <= 1);
        }
        _ => assert!(
            sent.is_empty(),
            "undeliverable answered a frame that is not a Deliver"
        ),
    }
}

fn sent_frames(out: &[Out], link: LinkId) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Out::Sent(l, b) if *l == link => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// Checks what the hub did with a well-formed frame from a Ready link, against the model.
fn check_ready_frame(
    link: LinkId,
    body: &[u8],
    handled: Handled,
    out: &[Out],
    model: &mut Model,
    io: &RecIo,
    monitors: &BTreeSet<LinkId>,
) {
    let frame = Frame::decode(body).expect("checked by the caller");
    let forwards: Vec<(LinkId, &Vec<u8>)> = out
        .iter()
        .filter_map(|o| match o {
            Out::Forwarded(l, b) => Some((*l, b)),
            _ => None,
        })
        .collect();
    let failures: Vec<DeliveryFailed<'_>> = out
        .iter()
        .filter_map(|o| match o {
            Out::Sent(l, b) if *l == link => match Frame::decode(b) {
                Ok(Frame::DeliveryFailed(f)) => Some(f),
                _ => None,
            },
            _ => None,
        })
        .collect();
    match frame {
        Frame::Deliver(d) => {
            let owner_from = model.owner.get(d.from).copied();
            let target = model.owner.get(d.to).copied();
            match handled {
                Handled::Stalled(t) => {
                    assert!(
                        forwards.is_empty() && failures.is_empty(),
                        "a stalled Deliver had effects"
                    );
                    assert!(io.open[t as usize], "stalled on a link that is not open");
                    model.stalled.insert(link, (body.to_vec(), t));
                }
                Handled::Closed => panic!("a well-formed Deliver closed its link"),
                Handled::Done => {
                    let expected = if owner_from != Some(link) {
                        Err(FailReason::NotOwner)
                    } else if let Some(t) = target {
                        let limit = if t == LOCAL_LINK {
                            HUB_MAX_FRAME
                        } else {
                            model.ready.get(&t).copied().unwrap_or(0)
                        };
                        if body.len() > limit as usize {
                            Err(FailReason::TooLarge)
                        } else {
                            Ok(t)
                        }
                    } else if model.stopped.iter().any(|m| m == d.to) {
                        Err(FailReason::TargetStopped)
                    } else {
                        Err(FailReason::UnknownTarget)
                    };
                    match expected {
                        Ok(t) => {
                            assert!(failures.is_empty(), "a routed message also failed");
                            assert_eq!(
                                forwards.len(),
                                1,
                                "a Deliver from its owner was not forwarded exactly once"
                            );
                            assert_eq!(
                                forwards[0].0, t,
                                "forwarded to a link that does not own the target"
                            );
                            assert_eq!(
                                forwards[0].1.as_slice(),
                                body,
                                "the forwarded body changed"
                            );
                            // Monitor copies only to monitoring links.
                            for o in out {
                                if let Out::Sent(l, b) = o {
                                    if let Ok(Frame::Monitored {
                                        frame,
                                        link: from_link,
                                        ..
                                    }) = Frame::decode(b)
                                    {
                                        assert!(
                                            monitors.contains(l),
                                            "a monitor copy to a link that did not ask"
                                        );
                                        assert_eq!((frame, from_link), (body, link));
                                    }
                                }
                            }
                        }
                        Err(reason) => {
                            assert!(
                                forwards.is_empty(),
                                "a refused Deliver was forwarded: {reason:?}"
                            );
                            assert_eq!(
                                failures.len(),
                                1,
                                "a refused Deliver was not reported exactly once"
                            );
                            let f = failures[0];
                            assert_eq!(
                                (f.from, f.to, f.event, f.seq, f.reason),
                                (d.from, d.to, d.event, d.seq, reason)
                            );
                        }
                    }
                }
            }
        }
        Frame::Ack { from, to, .. } => match handled {
            Handled::Stalled(t) => {
                assert!(forwards.is_empty());
                model.stalled.insert(link, (body.to_vec(), t));
            }
            Handled::Closed => panic!("a well-formed Ack closed its link"),
            Handled::Done => {
                let target = model.owner.get(to).copied();
                if model.owner.get(from) == Some(&link) && target.is_some() {
                    assert_eq!(forwards.len(), 1, "an Ack from its owner was not forwarded");
                    assert_eq!(Some(forwards[0].0), target);
                    assert_eq!(forwards[0].1.as_slice(), body);
                } else {
                    assert!(
                        forwards.is_empty(),
                        "a spoofed or unroutable Ack was forwarded"
                    );
                }
                assert!(
                    failures.is_empty(),
                    "an Ack was answered with DeliveryFailed"
                );
            }
        },
        Frame::Register { machine } => {
            let status = model.register(link, machine);
            let results: Vec<_> = sent_frames(out, link)
                .into_iter()
                .filter_map(|b| match Frame::decode(&b) {
                    Ok(Frame::RegisterResult { machine: m, status }) => {
                        Some((m.to_string(), status))
                    }
                    _ => None,
                })
                .collect();
            match handled {
                Handled::Done => assert_eq!(
                    results,
                    vec![(machine.to_string(), status)],
                    "register result"
                ),
                Handled::Stalled(t) => {
                    assert_eq!(t, link, "a Register stalls only on its own link");
                    assert!(results.is_empty());
                    model.stalled.insert(link, (body.to_vec(), t));
                }
                Handled::Closed => panic!("a Register closed its link"),
            }
        }
        Frame::Unregister { machine } => {
            if model.owner.get(machine) == Some(&link) {
                model.owner.remove(machine);
            }
            assert_eq!(handled, Handled::Done);
        }
        Frame::Stopped { machine } => {
            if model.owner.get(machine) == Some(&link) {
                model.owner.remove(machine);
                if model.stopped.len() == interstate_core::hub::STOPPED_KEPT {
                    model.stopped.remove(0);
                }
                model.stopped.push(machine.to_string());
            }
            assert_eq!(handled, Handled::Done);
        }
        // A first registry subscription: a snapshot, one entry per route (this link's own
        // included), then the end, unless it did not fit and the link was closed.
        Frame::Subscribe { registry: true, .. } if model.registry.insert(link) => {
            let frames = sent_frames(out, link);
            if handled == Handled::Done {
                let entries = frames
                    .iter()
                    .filter(|b| matches!(Frame::decode(b), Ok(Frame::RegistryEntry(_))))
                    .count();
                assert_eq!(entries, model.owner.len(), "the snapshot misses routes");
                assert!(matches!(
                    frames.last().map(|b| Frame::decode(b)),
                    Some(Ok(Frame::SnapshotEnd))
                ));
            }
        }
        Frame::Ping { nonce } => match handled {
            Handled::Done => {
                let frames = sent_frames(out, link);
                assert_eq!(frames.len(), 1);
                assert_eq!(Frame::decode(&frames[0]).ok(), Some(Frame::Pong { nonce }));
            }
            Handled::Stalled(t) => {
                assert_eq!(t, link);
                model.stalled.insert(link, (body.to_vec(), t));
            }
            Handled::Closed => panic!("a Ping closed its link"),
        },
        _ => {}
    }
}

/// Target `hub`: decodes a [`HubSession`] and runs it.
pub fn hub(data: &[u8]) {
    if let Ok(session) = HubSession::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_hub(&session);
    }
}

/// Runs a hub session, checking every invariant after every operation.
pub fn run_hub(session: &HubSession) {
    let mut config = HubConfig::new(OWN_UID, 7);
    config.max_frame = HUB_MAX_FRAME;
    config.machines_per_link = PER_LINK;
    config.hello_timeout = Duration::from_millis(HELLO_TIMEOUT);
    config.idle_timeout = Duration::from_millis(IDLE_TIMEOUT);
    let _ = config.allowed_gids.push(77);
    let mut hub: Box<Hub<HUB_L, HUB_M>> = Box::new(Hub::new(config, "fuzz-hub"));
    let mut io = RecIo {
        open: [false; HUB_L],
        queues: vec![Vec::new(); HUB_L],
        room: [1 << 16; HUB_L],
        agreed: [0; HUB_L],
        out: Vec::new(),
        local: Vec::new(),
        refused: 0,
    };
    io.open[0] = true;
    let mut model = Model::default();
    model.ready.insert(LOCAL_LINK, HUB_MAX_FRAME);
    model.registry.insert(LOCAL_LINK);
    let mut monitors: BTreeSet<LinkId> = BTreeSet::new();
    let mut now = Instant::ZERO;

    for op in session.ops.iter().take(512) {
        // Links for which the op is a frame, and the body handed in.
        let mut framed: Option<(LinkId, Vec<u8>, Handled)> = None;
        match op {
            HubOp::Open {
                own_uid,
                allowed_gid,
            } => {
                let peer = PeerCredentials {
                    pid: 9,
                    uid: if *own_uid { OWN_UID } else { 5 },
                    gid: if *allowed_gid { 77 } else { 5 },
                };
                let allowed = *own_uid || *allowed_gid;
                let free = (1..HUB_L).find(|&l| !io.open[l]);
                let refused_before = io.refused;
                // The platform must know the slot is open before the hub answers on it.
                let got = hub.link_opened(now, peer, &mut io);
                match (allowed, free, got) {
                    (true, Some(f), Some(l)) => {
                        assert_eq!(
                            l as usize, f,
                            "the hub picked a slot the platform thinks is taken"
                        );
                        io.open[f] = true;
                        io.queues[f].clear();
                        model.awaiting.insert(l);
                    }
                    (false, _, None) | (true, None, None) => {
                        assert_eq!(io.refused, refused_before + 1, "a refusal without a Reject");
                        let logs = io
                            .out
                            .iter()
                            .filter(|o| matches!(o, Out::Logged(LinkId::MAX, _)))
                            .count();
                        assert_eq!(logs, 1, "a refused connection must be logged exactly once");
                    }
                    other => panic!(
                        "link_opened: allowed {allowed}, free slot {free:?}, got {:?}",
                        other.2
                    ),
                }
            }
            HubOp::Frame { link, frame } => {
                let link = 1 + (*link as LinkId % (HUB_L as LinkId - 1));
                // The platform reads no further frame from a stalled link, nor from a closed one.
                if io.open[link as usize] && !model.stalled.contains_key(&link) {
                    let body = client_body(frame);
                    let h = hub.handle_frame(now, link, &body, &mut io);
                    framed = Some((link, body, h));
                }
            }
            HubOp::Close(link) => {
                let link = 1 + (*link as LinkId % (HUB_L as LinkId - 1));
                if io.open[link as usize] {
                    io.out
                        .push(Out::Closed(link, "peer closed the connection".into()));
                }
            }
            HubOp::Drain(link) => {
                let link = (*link as LinkId) % HUB_L as LinkId;
                io.queues[link as usize].clear();
                // Links waiting on it hand their frame in again.
                let waiting: Vec<(LinkId, Vec<u8>)> = model
                    .stalled
                    .iter()
                    .filter(|(_, (_, t))| *t == link)
                    .map(|(l, (b, _))| (*l, b.clone()))
                    .collect();
                for (l, body) in waiting {
                    model.stalled.remove(&l);
                    if io.open[l as usize] {
                        let h = hub.handle_frame(now, l, &body, &mut io);
                        // Only the first re-handed frame is checked against the model;
                        // the rest are checked for crashes and the global invariants.
                        if framed.is_none() {
                            framed = Some((l, body, h));
                            continue;
                        }
                        match Frame::decode(&body) {
                            Ok(Frame::Register { machine }) => {
                                model.register(l, machine);
                            }
                            Ok(Frame::Unregister { machine })
                                if model.owner.get(machine) == Some(&l) =>
                            {
                                model.owner.remove(machine);
                            }
                            _ => {}
                        }
                        if let Handled::Stalled(t) = h {
                            model.stalled.insert(l, (body, t));
                        }
                    }
                }
            }
            HubOp::Room { link, room } => {
                let link = (*link as usize) % HUB_L;
                io.room[link] = (*room as usize) * 16;
            }
            HubOp::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(*ms) * 8);
                hub.handle_timeout(now, &mut io);
                let closes = io
                    .out
                    .iter()
                    .filter(|o| matches!(o, Out::Closed(..)))
                    .count();
                let logs = io
                    .out
                    .iter()
                    .filter(|o| matches!(o, Out::Logged(..)))
                    .count();
                assert!(
                    logs >= closes,
                    "a link closed by a timeout without a log line"
                );
                assert!(
                    hub.poll_timeout().is_none_or(|t| t > now),
                    "handle_timeout left a timeout due"
                );
                for o in &io.out {
                    if let Out::Closed(l, _) = o {
                        model.closed(*l);
                    }
                }
            }
            HubOp::LocalRegister(i) => {
                let machine = id(*i);
                let expected = model.register(LOCAL_LINK, machine);
                let got = hub.register_local(now, machine, &mut io);
                assert_eq!(got, expected, "register_local '{machine}'");
            }
            HubOp::LocalDeliver { from, to, seq } => {
                let d = Deliver {
                    from: id(*from),
                    to: id(*to),
                    event: "L",
                    payload: b"",
                    seq: *seq,
                };
                let body = encode_body(&Frame::Deliver(d));
                let h = hub.deliver_local(now, d, &body, &mut io);
                if let Handled::Stalled(t) = h {
                    assert!(io.open[t as usize]);
                }
                for o in &io.out {
                    if let Out::Forwarded(l, b) = o {
                        assert_eq!(b.as_slice(), body.as_slice());
                        assert_eq!(model.owner.get(d.to), Some(l));
                        assert_eq!(model.owner.get(d.from), Some(&LOCAL_LINK));
                    }
                }
            }
        }
        let out = std::mem::take(&mut io.out);

        if let Some((link, body, handled)) = framed {
            let closed_link = out
                .iter()
                .any(|o| matches!(o, Out::Closed(l, _) if *l == link));
            if handled == Handled::Closed {
                assert!(closed_link, "Handled::Closed but the link was not closed");
            }
            let decoded = Frame::decode(&body);
            let was_ready = model.ready.contains_key(&link);
            let was_awaiting = model.awaiting.contains(&link);
            match (&decoded, was_awaiting, was_ready) {
                (Err(_), _, _) => assert_eq!(
                    handled,
                    Handled::Closed,
                    "a malformed frame did not close its link"
                ),
                (Ok(Frame::Hello(h)), true, _) => {
                    let welcome =
                        sent_frames(&out, link)
                            .into_iter()
                            .find_map(|b| match Frame::decode(&b) {
                                Ok(Frame::Welcome(w)) => Some(w),
                                _ => None,
                            });
                    let ok = h.magic == MAGIC
                        && h.version == PROTOCOL_VERSION
                        && h.max_frame >= MIN_MAX_FRAME;
                    if ok && handled == Handled::Done {
                        let w = welcome.expect("an accepted Hello without a Welcome");
                        assert_eq!(w.max_frame, h.max_frame.min(HUB_MAX_FRAME));
                        assert_eq!(w.link, link);
                        model.awaiting.remove(&link);
                        model.ready.insert(link, w.max_frame);
                        io.agreed[link as usize] = w.max_frame;
                    } else {
                        assert!(
                            welcome.is_none() && handled == Handled::Closed,
                            "a bad Hello was welcomed"
                        );
                    }
                }
                (Ok(_), true, _) => assert_eq!(
                    handled,
                    Handled::Closed,
                    "a first frame other than Hello was accepted"
                ),
                (Ok(Frame::Hello(_)), false, true) => {
                    assert_eq!(handled, Handled::Closed, "a second Hello was accepted")
                }
                (Ok(Frame::Goodbye { .. }), false, true) => assert_eq!(handled, Handled::Closed),
                (
                    Ok(
                        Frame::Welcome(_)
                        | Frame::Reject(_)
                        | Frame::RegisterResult { .. }
                        | Frame::DeliveryFailed(_)
                        | Frame::RegistryEntry(_)
                        | Frame::RegistryRemoved { .. }
                        | Frame::SnapshotEnd
                        | Frame::Monitored { .. }
                        | Frame::Report { .. },
                    ),
                    false,
                    true,
                ) => assert_eq!(
                    handled,
                    Handled::Closed,
                    "a hub-only frame from a client was accepted"
                ),
                (Ok(f), false, true) => {
                    if let Frame::Subscribe { monitor, .. } = f {
                        if *monitor {
                            monitors.insert(link);
                        } else {
                            monitors.remove(&link);
                        }
                    }
                    let mons = monitors.clone();
                    check_ready_frame(link, &body, handled, &out, &mut model, &io, &mons);
                }
                (Ok(_), false, false) => panic!("a frame on link {link} in no known state"),
            }
        }

        // The platform closes what the hub asked to close.
        let all = settle(&mut hub, &mut io, &mut model, out);
        // Every close but a goodbye or a peer's own close comes with a log line for that link.
        for o in &all {
            if let Out::Closed(l, reason) = o {
                if !reason.starts_with("goodbye") && reason != "peer closed the connection" {
                    assert!(
                        all.iter()
                            .any(|x| matches!(x, Out::Logged(m, msg) if m == l && !msg.is_empty())),
                        "link {l} closed ({reason}) without a log line"
                    );
                }
            }
        }
        for o in &all {
            if let Out::Closed(l, _) = o {
                if *l != LinkId::MAX {
                    model.closed(*l);
                    monitors.remove(l);
                }
            }
        }

        // The registry is exactly the model's.
        let routes: BTreeMap<String, LinkId> =
            hub.machines().map(|(m, l)| (m.to_string(), l)).collect();
        assert_eq!(
            routes, model.owner,
            "the hub's registry differs from the model"
        );
        for (m, l) in &routes {
            assert!(
                io.open[*l as usize],
                "'{m}' routes to link {l}, which is closed"
            );
            assert_eq!(hub.route(m), Some(*l));
        }
        let open = (1..HUB_L).filter(|&l| io.open[l]).count() as u32;
        assert_eq!(
            hub.stats().links,
            open,
            "the hub counts {} links, {open} are open",
            hub.stats().links
        );
        for l in 1..HUB_L {
            assert_eq!(
                hub.peer(l as LinkId).is_some(),
                io.open[l],
                "peer() of link {l}"
            );
        }
        assert!(
            hub.poll_timeout().is_some() == (open > 0),
            "poll_timeout with {open} links"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// endpoint

/// A frame from the hub to the endpoint.
#[derive(Arbitrary, Debug, Clone)]
pub enum HubFrame {
    /// Welcome with this largest frame (times 8) and link.
    Welcome(u16, u8),
    /// Reject with this code (index).
    Reject(u8),
    /// A ping.
    Ping(u64),
    /// A pong.
    Pong(u64),
    /// Goodbye.
    Goodbye,
    /// A message.
    Deliver,
    /// Arbitrary bytes, handled only if they decode.
    Raw(Vec<u8>),
}

/// What happens to an endpoint.
#[derive(Arbitrary, Debug, Clone)]
pub enum EndpointOp {
    /// Time passes, then `handle_timeout` runs if due; `connect_ok` says whether a
    /// connection attempt it asks for succeeds.
    Advance {
        /// Milliseconds.
        ms: u16,
        /// A connection attempt succeeds.
        connect_ok: bool,
    },
    /// A frame from the hub (only while connected).
    Frame(HubFrame),
    /// The connection breaks (only while connected).
    Lost,
}

/// An `endpoint` input: settings and operations.
#[derive(Arbitrary, Debug, Clone)]
pub struct EndpointSession {
    /// Keepalive (ms, at least 1).
    pub keepalive: u16,
    /// Dead after (ms, at least 1).
    pub dead_after: u16,
    /// Backoff bounds (ms, at least 1).
    pub backoff: (u16, u16),
    /// Give up after this many attempts.
    pub max_attempts: Option<u8>,
    /// Largest frame (times 8).
    pub max_frame: u16,
    /// Operations.
    pub ops: Vec<EndpointOp>,
}

/// Target `endpoint`: decodes an [`EndpointSession`] and runs it.
pub fn endpoint(data: &[u8]) {
    if let Ok(session) = EndpointSession::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_endpoint(&session);
    }
}

fn reject_code(i: u8) -> RejectCode {
    [
        RejectCode::NotInterstate,
        RejectCode::Version,
        RejectCode::NotAllowed,
        RejectCode::TooManyLinks,
        RejectCode::FrameSize,
    ][i as usize % 5]
}

/// Runs an endpoint session the way `Node` drives its endpoint, checking after every step.
pub fn run_endpoint(s: &EndpointSession) {
    let mut config = EndpointConfig::new(3, "fuzz");
    config.keepalive = Duration::from_millis(u64::from(s.keepalive.max(1)));
    config.dead_after = Duration::from_millis(u64::from(s.dead_after.max(1)));
    config.backoff_min = Duration::from_millis(u64::from(s.backoff.0.max(1)));
    config.backoff_max = Duration::from_millis(u64::from(s.backoff.1.max(1)));
    config.max_attempts = s.max_attempts.map(u32::from);
    config.max_frame = u32::from(s.max_frame) * 8;
    let longest_wait = config.backoff_min.max(config.backoff_max);
    let mut now = Instant::from_millis(1000);
    let mut ep = Endpoint::new(config.clone(), now);
    let mut connected = false;
    let mut nonce: Option<u64> = None;
    let mut failures_in_a_row: u32 = 0;

    let check = |ep: &Endpoint, now: Instant, connected: bool| {
        match ep.state() {
            EpState::Failed => assert!(
                ep.poll_timeout().is_none(),
                "a failed endpoint wants a timeout"
            ),
            EpState::Disconnected { retry_at } => {
                assert!(!connected, "disconnected with a connection open");
                assert_eq!(ep.poll_timeout(), Some(retry_at));
                assert!(
                    retry_at - now <= longest_wait,
                    "a retry later than the largest backoff"
                );
            }
            EpState::Handshaking => assert!(connected),
            EpState::Ready { max_frame, .. } => {
                assert!(connected);
                assert!(
                    max_frame <= config.max_frame,
                    "agreed a frame larger than ours"
                );
            }
        }
        assert_eq!(ep.is_ready(), matches!(ep.state(), EpState::Ready { .. }));
    };

    for op in s.ops.iter().take(512) {
        match op {
            EndpointOp::Advance { ms, connect_ok } => {
                now = now + Duration::from_millis(u64::from(*ms));
                let due = ep.poll_timeout().is_some_and(|t| t <= now);
                if !due {
                    continue;
                }
                let before = ep.state();
                match ep.handle_timeout(now) {
                    Todo::Connect => {
                        assert!(
                            matches!(before, EpState::Disconnected { .. }),
                            "Connect from {before:?}"
                        );
                        if *connect_ok {
                            ep.connected(now);
                            connected = true;
                            assert!(
                                matches!(ep.hello(), Frame::Hello(h) if h.magic == MAGIC && h.max_frame == config.max_frame)
                            );
                        } else {
                            ep.disconnected(now);
                            failures_in_a_row += 1;
                        }
                    }
                    Todo::Send(f) => {
                        assert!(
                            connected && matches!(before, EpState::Ready { .. }),
                            "a ping while not ready"
                        );
                        match f {
                            Frame::Ping { nonce: n } => {
                                assert!(nonce.is_none_or(|p| n != p), "a ping reused its nonce");
                                nonce = Some(n);
                            }
                            other => panic!("handle_timeout sent {other:?}"),
                        }
                    }
                    Todo::Close => {
                        assert!(connected, "Close without a connection");
                        connected = false;
                        failures_in_a_row += 1;
                    }
                    Todo::Nothing | Todo::Ready => {}
                }
                // A due timeout is never left due: no busy loop.
                assert!(
                    ep.poll_timeout().is_none_or(|t| t > now),
                    "handle_timeout left the endpoint due at once ({:?})",
                    ep.state()
                );
            }
            EndpointOp::Frame(hf) => {
                if !connected {
                    continue;
                }
                let raw;
                let frame = match hf {
                    HubFrame::Welcome(m, l) => Frame::Welcome(Welcome {
                        version: PROTOCOL_VERSION,
                        max_frame: u32::from(*m) * 8,
                        link: u32::from(*l),
                        hub_pid: 1,
                    }),
                    HubFrame::Reject(c) => Frame::Reject(Reject {
                        code: reject_code(*c),
                        version: 1,
                        message: "no",
                    }),
                    HubFrame::Ping(n) => Frame::Ping { nonce: *n },
                    HubFrame::Pong(n) => Frame::Pong { nonce: *n },
                    HubFrame::Goodbye => Frame::Goodbye { reason: "bye" },
                    HubFrame::Deliver => Frame::Deliver(Deliver {
                        from: "a",
                        to: "b",
                        event: "E",
                        payload: b"",
                        seq: 1,
                    }),
                    HubFrame::Raw(bytes) => {
                        raw = bytes.clone();
                        match Frame::decode(&raw) {
                            Ok(f) => f,
                            Err(_) => continue,
                        }
                    }
                };
                let before = ep.state();
                let todo = ep.handle_frame(now, &frame);
                match (&frame, todo) {
                    (Frame::Welcome(w), Todo::Ready) => {
                        assert_eq!(
                            before,
                            EpState::Handshaking,
                            "welcomed outside the handshake"
                        );
                        assert_eq!(
                            ep.state(),
                            EpState::Ready {
                                max_frame: w.max_frame.min(config.max_frame),
                                link: w.link
                            }
                        );
                        failures_in_a_row = 0;
                    }
                    (Frame::Welcome(_), Todo::Nothing) => {
                        assert_ne!(
                            before,
                            EpState::Handshaking,
                            "a Welcome during the handshake was ignored"
                        );
                        assert_eq!(
                            ep.state(),
                            before,
                            "an unexpected Welcome changed the state"
                        );
                    }
                    (Frame::Reject(r), Todo::Close) => {
                        assert_eq!(ep.rejection(), Some(r.code));
                        connected = false;
                        match r.code {
                            RejectCode::TooManyLinks => {
                                failures_in_a_row += 1;
                                if config.max_attempts.is_none_or(|m| failures_in_a_row < m) {
                                    assert!(
                                        matches!(ep.state(), EpState::Disconnected { .. }),
                                        "TooManyLinks is worth retrying"
                                    );
                                }
                            }
                            _ => assert_eq!(
                                ep.state(),
                                EpState::Failed,
                                "{:?} cannot be fixed by retrying",
                                r.code
                            ),
                        }
                    }
                    (Frame::Ping { nonce }, Todo::Send(Frame::Pong { nonce: n })) => {
                        assert_eq!(*nonce, n)
                    }
                    (_, Todo::Nothing) => {
                        assert_eq!(ep.state(), before, "{frame:?} changed the state")
                    }
                    (f, t) => panic!("frame {f:?} answered with {t:?}"),
                }
                // The platform treats a Goodbye as a lost connection.
                if matches!(frame, Frame::Goodbye { .. }) && connected {
                    connected = false;
                    if matches!(ep.state(), EpState::Ready { .. } | EpState::Handshaking) {
                        ep.disconnected(now);
                        failures_in_a_row += 1;
                    }
                }
            }
            EndpointOp::Lost => {
                if !connected {
                    continue;
                }
                connected = false;
                if matches!(ep.state(), EpState::Ready { .. } | EpState::Handshaking) {
                    ep.disconnected(now);
                    failures_in_a_row += 1;
                }
            }
        }
        if let Some(m) = config.max_attempts {
            if failures_in_a_row >= m.max(1) && !connected {
                assert_eq!(
                    ep.state(),
                    EpState::Failed,
                    "{failures_in_a_row} failures in a row, limit {m}"
                );
            }
        }
        check(&ep, now, connected);
    }
}

// ---------------------------------------------------------------------------------------------
// conn: the platform's framed stream (`interstate_platform::conn::Conn`) over a fake socket

/// What the fake socket does on the next read.
#[derive(Arbitrary, Debug, Clone)]
pub enum ReadStep {
    /// Hands out up to this many of the peer's bytes.
    Bytes(u16),
    /// Nothing now.
    WouldBlock,
    /// Interrupted by a signal.
    Interrupted,
    /// The peer closed.
    Eof,
    /// An I/O error.
    Error,
}

/// What the node does with the connection.
#[derive(Arbitrary, Debug, Clone)]
pub enum ConnOp {
    /// `fill`, then take every complete frame.
    Read,
    /// Queue a frame (a Deliver with this payload length).
    Queue(u16),
    /// Queue a raw body.
    QueueBody(Vec<u8>),
    /// `flush`, the socket taking at most this many bytes per write.
    Flush(u16),
    /// The socket's writes fail with WouldBlock until the next Flush.
    Block,
}

/// A `conn` input.
#[derive(Arbitrary, Debug, Clone)]
pub struct ConnSession {
    /// Largest frame (16 + this modulo 4096).
    pub max_frame: u16,
    /// Write queue capacity.
    pub write_capacity: u16,
    /// The peer's byte stream.
    pub incoming: Vec<u8>,
    /// How the socket hands it out.
    pub reads: Vec<ReadStep>,
    /// What the node does.
    pub ops: Vec<ConnOp>,
}

struct FakeSocket {
    incoming: Vec<u8>,
    pos: usize,
    reads: Vec<ReadStep>,
    next_read: usize,
    written: Vec<u8>,
    write_limit: usize,
    blocked: bool,
}

impl std::io::Read for FakeSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        let step = self
            .reads
            .get(self.next_read)
            .cloned()
            .unwrap_or(ReadStep::WouldBlock);
        self.next_read += 1;
        match step {
            ReadStep::Bytes(n) => {
                let n = (n as usize)
                    .max(1)
                    .min(buf.len())
                    .min(self.incoming.len() - self.pos);
                if n == 0 && self.pos == self.incoming.len() {
                    return Err(ErrorKind::WouldBlock.into());
                }
                buf[..n].copy_from_slice(&self.incoming[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
            ReadStep::WouldBlock => Err(ErrorKind::WouldBlock.into()),
            ReadStep::Interrupted => Err(ErrorKind::Interrupted.into()),
            ReadStep::Eof => Ok(0),
            ReadStep::Error => Err(Error::other("boom")),
        }
    }
}

impl std::io::Write for FakeSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.blocked || self.write_limit == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.write_limit);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Target `conn`: decodes a [`ConnSession`] and runs it.
pub fn conn(data: &[u8]) {
    if let Ok(s) = ConnSession::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_conn(&s);
    }
}

/// Runs a conn session: the frames read are exactly those `split_frame` finds in the bytes
/// the socket handed out, up to the first oversized prefix; what was written plus what is
/// still queued is exactly what was queued, and the unwritten whole frames are its tail.
pub fn run_conn(s: &ConnSession) {
    use interstate_platform::conn::Conn;
    // Small buffers keep the fuzzer fast; the logic does not depend on their size.
    let max_frame = 16 + u32::from(s.max_frame % 4096);
    let sock = FakeSocket {
        incoming: s.incoming.clone(),
        pos: 0,
        reads: s.reads.iter().take(256).cloned().collect(),
        next_read: 0,
        written: Vec::new(),
        write_limit: 0,
        blocked: false,
    };
    let mut c = Conn::new(sock, max_frame, s.write_capacity as usize % 8192);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut broken = false;
    let mut queued: Vec<u8> = Vec::new();
    let payload = [0x5Au8; 4200];
    for op in s.ops.iter().take(256) {
        match op {
            ConnOp::Read => {
                if c.dead {
                    continue;
                }
                c.fill();
                loop {
                    match c.peek_frame() {
                        Ok(Some(body)) => {
                            assert!(body.len() as u32 <= max_frame);
                            got.push(body.to_vec());
                            c.consume_frame();
                        }
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    break;
                }
            }
            ConnOp::Queue(n) => {
                let f = Frame::Deliver(Deliver {
                    from: "a",
                    to: "b",
                    event: "E",
                    payload: &payload[..(*n as usize % payload.len())],
                    seq: 1,
                });
                let before = c.pending();
                match c.queue(&f) {
                    Ok(()) => {
                        let mut buf = vec![0u8; f.encoded_len()];
                        let k = f.encode(&mut buf).expect("encodes");
                        assert_eq!(c.pending(), before + k);
                        queued.extend_from_slice(&buf[..k]);
                    }
                    Err(LinkFull) => {
                        assert_eq!(c.pending(), before, "a refused frame changed the queue")
                    }
                }
            }
            ConnOp::QueueBody(b) => {
                let before = c.pending();
                match c.queue_body(b) {
                    Ok(()) => {
                        assert!(b.len() as u32 <= max_frame);
                        queued.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        queued.extend_from_slice(b);
                        assert_eq!(c.pending(), before + LEN_PREFIX + b.len());
                    }
                    Err(LinkFull) => assert_eq!(c.pending(), before),
                }
            }
            ConnOp::Flush(limit) => {
                c.stream.blocked = false;
                c.stream.write_limit = *limit as usize;
                let all = c.flush();
                assert_eq!(all, c.pending() == 0);
            }
            ConnOp::Block => c.stream.blocked = true,
        }
        // Written + pending is what was queued.
        let written = c.stream.written.len();
        assert_eq!(
            written + c.pending(),
            queued.len(),
            "bytes lost or made up in the write queue"
        );
        assert_eq!(
            &c.stream.written[..],
            &queued[..written],
            "written bytes differ from the queued ones"
        );
        // The unwritten whole frames are the queue's tail.
        let unwritten: Vec<u8> = c
            .unwritten_frames()
            .iter()
            .flat_map(|b| {
                (b.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(b.iter().copied())
            })
            .collect();
        assert!(
            queued.ends_with(&unwritten),
            "unwritten_frames is not the tail of the queue"
        );
        assert!(
            unwritten.len() <= c.pending(),
            "more unwritten than pending"
        );
    }
    // The frames read are the stream's, in order.
    let handed = &c.stream.incoming[..c.stream.pos];
    let mut rest = handed;
    let mut expected: Vec<Vec<u8>> = Vec::new();
    loop {
        match split_frame(rest, max_frame) {
            Ok(Some((body, used))) => {
                expected.push(body.to_vec());
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(_) => {
                assert!(
                    broken || got.len() <= expected.len(),
                    "read past an oversized prefix"
                );
                break;
            }
        }
    }
    assert!(
        got.len() <= expected.len(),
        "more frames read than the stream holds"
    );
    assert_eq!(
        &got[..],
        &expected[..got.len()],
        "the frames read differ from the stream's"
    );
}
