//! Target `endpoint`: an [`arbitrary`] [`EndpointSession`] driving an `Endpoint` the way the
//! platform does (connect, frames from the hub, disconnects, time).

use arbitrary::Arbitrary;
use interstate_core::endpoint::{Endpoint, EndpointConfig, LinkState as EpState, Todo};
use interstate_core::wire::{Deliver, Frame, Reject, RejectCode, Welcome, MAGIC, PROTOCOL_VERSION};
use interstate_core::{Duration, Instant};

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
                        correlation: Default::default(),
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
