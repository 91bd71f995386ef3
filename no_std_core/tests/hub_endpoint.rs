//! The hub and endpoint state machines, driven with a virtual clock and a recording I/O: no
//! sockets, no threads, deterministic.

use interstate_core::endpoint::{Endpoint, EndpointConfig, LinkState, Todo};
use interstate_core::hub::{Handled, Hub, HubConfig, LinkId, PeerCredentials};
use interstate_core::wire::{
    Deliver, FailReason, Frame, Hello, RegisterStatus, RejectCode, MAGIC, PROTOCOL_VERSION,
};
use interstate_core::{Duration, Instant};

mod recorder;
use recorder::{body, Recorder, UID};

fn hello() -> Vec<u8> {
    body(&Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: 65536,
        pid: 42,
        executable: "test",
    }))
}

fn hub() -> Hub<8, 16> {
    Hub::new(HubConfig::new(UID, 1), "hub")
}

/// Opens a link, says hello and registers `machines`.
fn join(hub: &mut Hub<8, 16>, io: &mut Recorder, pid: u32, machines: &[&str]) -> LinkId {
    let link = hub
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid,
                uid: UID,
                gid: 0,
            },
            io,
        )
        .expect("admitted");
    assert_eq!(
        hub.handle_frame(Instant::ZERO, link, &hello(), io),
        Handled::Done
    );
    for m in machines {
        assert_eq!(
            hub.handle_frame(
                Instant::ZERO,
                link,
                &body(&Frame::Register { machine: m }),
                io
            ),
            Handled::Done
        );
    }
    link
}

fn deliver<'a>(from: &'a str, to: &'a str, seq: u64) -> Frame<'a> {
    Frame::Deliver(Deliver {
        from,
        to,
        event: "E",
        payload: b"p",
        seq,
        correlation: Default::default(),
    })
}

#[test]
fn handshake_welcomes_and_registers() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let link = join(&mut h, &mut io, 7, &["a"]);
    let frames = io.frames(link);
    assert!(
        matches!(frames[0], Frame::Welcome(w) if w.version == PROTOCOL_VERSION && w.link == link)
    );
    assert!(matches!(
        frames[1],
        Frame::RegisterResult {
            machine: "a",
            status: RegisterStatus::Ok
        }
    ));
    assert_eq!(h.route("a"), Some(link));
}

#[test]
fn wrong_version_and_magic_are_rejected_with_a_reason() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let link = h
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 1,
                uid: UID,
                gid: 0,
            },
            &mut io,
        )
        .unwrap();
    let old = body(&Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION + 1,
        max_frame: 65536,
        pid: 1,
        executable: "x",
    }));
    assert_eq!(
        h.handle_frame(Instant::ZERO, link, &old, &mut io),
        Handled::Closed
    );
    assert!(matches!(io.frames(link)[0], Frame::Reject(r) if r.code == RejectCode::Version));
    assert_eq!(io.closed.len(), 1);

    let link = h
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 1,
                uid: UID,
                gid: 0,
            },
            &mut io,
        )
        .unwrap();
    assert_eq!(
        h.handle_frame(
            Instant::ZERO,
            link,
            &body(&Frame::Ping { nonce: 1 }),
            &mut io
        ),
        Handled::Closed
    );
    assert!(io
        .frames(link)
        .iter()
        .any(|f| matches!(f, Frame::Reject(r) if r.code == RejectCode::NotInterstate)));
    assert_eq!(h.stats().rejected, 2);
}

#[test]
fn other_users_are_refused_unless_allowed() {
    let (mut h, mut io) = (hub(), Recorder::default());
    assert_eq!(
        h.link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 1,
                uid: 4242,
                gid: 0
            },
            &mut io
        ),
        None
    );
    assert!(
        matches!(io.frames(LinkId::MAX)[0], Frame::Reject(r) if r.code == RejectCode::NotAllowed)
    );
    let mut config = HubConfig::new(UID, 1);
    config.allowed_gids.push(77).unwrap();
    let mut h: Hub<8, 16> = Hub::new(config, "hub");
    assert!(h
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 1,
                uid: 4242,
                gid: 77
            },
            &mut io
        )
        .is_some());
}

#[test]
fn ids_owned_by_a_live_peer_cannot_be_taken_and_free_up_when_it_leaves() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["worker"]);
    let b = join(&mut h, &mut io, 2, &[]);
    h.handle_frame(
        Instant::ZERO,
        b,
        &body(&Frame::Register { machine: "worker" }),
        &mut io,
    );
    assert!(io.frames(b).iter().any(|f| matches!(
        f,
        Frame::RegisterResult {
            status: RegisterStatus::Taken,
            ..
        }
    )));
    h.link_closed(a, &mut io);
    assert_eq!(h.route("worker"), None);
    h.handle_frame(
        Instant::ZERO,
        b,
        &body(&Frame::Register { machine: "worker" }),
        &mut io,
    );
    assert_eq!(h.route("worker"), Some(b));
}

#[test]
fn deliveries_are_forwarded_unchanged_and_failures_reported() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let b = join(&mut h, &mut io, 2, &["b"]);
    let msg = body(&deliver("a", "b", 5));
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &msg, &mut io),
        Handled::Done
    );
    assert_eq!(io.sent.last().unwrap(), &(b, msg));
    h.handle_frame(Instant::ZERO, a, &body(&deliver("a", "nobody", 6)), &mut io);
    assert!(io.frames(a).iter().any(|f| matches!(f, Frame::DeliveryFailed(d) if d.seq == 6 && d.reason == FailReason::UnknownTarget)));
    assert_eq!(h.stats().delivered, 1);
    assert_eq!(h.stats().failed, 1);
}

#[test]
fn a_sender_cannot_speak_for_a_machine_it_does_not_own() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let b = join(&mut h, &mut io, 2, &["b"]);
    let before = io.frames(b).len();
    h.handle_frame(Instant::ZERO, a, &body(&deliver("b", "b", 1)), &mut io);
    assert_eq!(io.frames(b).len(), before, "nothing reaches the victim");
    assert!(io
        .frames(a)
        .iter()
        .any(|f| matches!(f, Frame::DeliveryFailed(d) if d.reason == FailReason::NotOwner)));
    assert_eq!(h.stats().spoofed, 1);
    assert!(io
        .logs
        .iter()
        .any(|(l, m)| *l == a && m.contains("does not own")));
}

#[test]
fn a_full_target_stalls_the_sender_instead_of_dropping() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let b = join(&mut h, &mut io, 2, &["b"]);
    io.full.push(b);
    let msg = body(&deliver("a", "b", 1));
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &msg, &mut io),
        Handled::Stalled(b)
    );
    assert_eq!(h.stats().delivered, 0);
    io.full.clear();
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &msg, &mut io),
        Handled::Done,
        "the same frame goes through once drained"
    );
    assert_eq!(h.stats().delivered, 1);
}

#[test]
fn malformed_frames_close_only_that_link() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let b = join(&mut h, &mut io, 2, &["b"]);
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &[0xFF, 0xFF, 0xFF], &mut io),
        Handled::Closed
    );
    assert_eq!(h.route("a"), None);
    assert_eq!(h.route("b"), Some(b));
    assert_eq!(h.stats().protocol_errors, 1);
    assert!(io.logs.iter().any(|(l, _)| *l == a));
}

#[test]
fn silent_links_and_missing_hellos_time_out() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let quiet = h
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 3,
                uid: UID,
                gid: 0,
            },
            &mut io,
        )
        .unwrap();
    let hello_deadline = h.poll_timeout().unwrap();
    h.handle_timeout(hello_deadline, &mut io);
    assert!(io
        .closed
        .iter()
        .any(|(l, r)| *l == quiet && r.contains("hello")));
    assert_eq!(
        h.route("a"),
        Some(a),
        "a link that said hello is not closed by the hello timeout"
    );
    let idle = Instant::ZERO + h.config().idle_timeout;
    h.handle_timeout(idle, &mut io);
    assert!(io
        .closed
        .iter()
        .any(|(l, r)| *l == a && r.contains("silent")));
    assert_eq!(h.route("a"), None);
}

#[test]
fn registry_subscribers_get_a_snapshot_then_updates() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let _a = join(&mut h, &mut io, 1, &["a"]);
    let watcher = join(&mut h, &mut io, 2, &[]);
    h.handle_frame(
        Instant::ZERO,
        watcher,
        &body(&Frame::Subscribe {
            registry: true,
            monitor: false,
        }),
        &mut io,
    );
    let c = join(&mut h, &mut io, 3, &["c"]);
    h.link_closed(c, &mut io);
    let kinds: Vec<_> = io.frames(watcher).iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds,
        [
            "welcome",
            "registry-entry",
            "snapshot-end",
            "registry-entry",
            "registry-removed"
        ]
    );
}

#[test]
fn undeliverable_frames_go_back_to_their_sender() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    h.undeliverable(&body(&deliver("a", "gone", 9)), &mut io);
    assert!(io.frames(a).iter().any(|f| matches!(f, Frame::DeliveryFailed(d) if d.seq == 9 && d.reason == FailReason::TargetGone)));
}

#[test]
fn acks_are_routed_only_from_the_owner() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let b = join(&mut h, &mut io, 2, &["b"]);
    let ack = body(&Frame::Ack {
        from: "b",
        to: "a",
        seq: 3,
    });
    h.handle_frame(Instant::ZERO, b, &ack, &mut io);
    assert_eq!(io.sent.last().unwrap(), &(a, ack.clone()));
    let n = io.sent.len();
    h.handle_frame(Instant::ZERO, a, &ack, &mut io);
    assert_eq!(io.sent.len(), n, "an ack in someone else's name is dropped");
}

/// An endpoint connected and welcomed at time zero.
fn ready_endpoint() -> Endpoint {
    let mut e = endpoint();
    e.connected(Instant::ZERO);
    let welcome = Frame::Welcome(interstate_core::wire::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: 4096,
        link: 1,
        hub_pid: 9,
    });
    e.handle_frame(Instant::ZERO, &welcome);
    e
}

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig::new(1, "test"), Instant::ZERO)
}

#[test]
fn endpoint_reconnects_with_bounded_exponential_backoff() {
    let mut e = endpoint();
    assert_eq!(e.handle_timeout(Instant::ZERO), Todo::Connect);
    let mut now = Instant::ZERO;
    let mut delays = Vec::new();
    for _ in 0..8 {
        e.disconnected(now);
        let LinkState::Disconnected { retry_at } = e.state() else {
            panic!("disconnected")
        };
        delays.push((retry_at - now).as_millis());
        now = retry_at;
        assert_eq!(e.handle_timeout(now), Todo::Connect);
    }
    assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    e.connected(now);
    let welcome = Frame::Welcome(interstate_core::wire::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: 4096,
        link: 3,
        hub_pid: 9,
    });
    assert_eq!(e.handle_frame(now, &welcome), Todo::Ready);
    assert_eq!(
        e.state(),
        LinkState::Ready {
            max_frame: 4096,
            link: 3
        }
    );
    e.disconnected(now);
    let LinkState::Disconnected { retry_at } = e.state() else {
        panic!()
    };
    assert_eq!(
        (retry_at - now).as_millis(),
        50,
        "a successful connection resets the backoff"
    );
}

#[test]
fn endpoint_pings_when_idle_and_declares_a_silent_hub_dead() {
    let mut e = ready_endpoint();
    let t = e.poll_timeout().unwrap();
    assert_eq!(t, Instant::ZERO + Duration::from_millis(5_000));
    assert!(matches!(
        e.handle_timeout(t),
        Todo::Send(Frame::Ping { .. })
    ));
    let dead = e.poll_timeout().unwrap();
    assert_eq!(e.handle_timeout(dead), Todo::Close);
    assert!(matches!(e.state(), LinkState::Disconnected { .. }));
}

/// A link the platform is not reading (it is stalled behind a full receiver) is not timed
/// out as silent while the platform says so; once it stops saying so, the timeout runs again.
#[test]
fn a_stalled_link_is_not_blamed_for_silence() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let idle = h.config().idle_timeout;
    let half = Duration::from_millis(idle.as_millis() / 2);
    let mut now = Instant::ZERO;
    for _ in 0..4 {
        now = now + half;
        h.link_stalled(a, now);
        h.handle_timeout(now, &mut io);
    }
    assert_eq!(
        h.route("a"),
        Some(a),
        "closed while stalled: {:?}",
        io.closed
    );
    h.handle_timeout(now + idle, &mut io);
    assert_eq!(h.route("a"), None);
    assert!(io
        .closed
        .iter()
        .any(|(l, r)| *l == a && r.contains("silent")));
}

/// An endpoint whose writes the hub is not reading (backpressure) takes the hub for alive
/// while the platform says so, instead of declaring it dead for unanswered pings.
#[test]
fn endpoint_waits_out_a_busy_hub() {
    let mut e = ready_endpoint();
    let ping_at = e.poll_timeout().unwrap();
    assert!(matches!(
        e.handle_timeout(ping_at),
        Todo::Send(Frame::Ping { .. })
    ));
    let dead_at = e.poll_timeout().unwrap();
    // Just before the ping would go unanswered for too long, the hub is known busy.
    let now = Instant::from_millis(dead_at.as_millis() - 1);
    e.hub_busy(now);
    assert!(e.poll_timeout().unwrap() > dead_at);
    assert!(e.is_ready());
    // Not said again: the next ping, then death, as usual.
    let t = e.poll_timeout().unwrap();
    assert!(matches!(
        e.handle_timeout(t),
        Todo::Send(Frame::Ping { .. })
    ));
    assert_eq!(e.handle_timeout(e.poll_timeout().unwrap()), Todo::Close);
}

#[test]
fn endpoint_gives_up_on_refusals_retrying_cannot_fix() {
    let mut e = endpoint();
    e.connected(Instant::ZERO);
    let reject = Frame::Reject(interstate_core::wire::Reject {
        code: RejectCode::Version,
        version: 2,
        message: "upgrade",
    });
    assert_eq!(e.handle_frame(Instant::ZERO, &reject), Todo::Close);
    assert_eq!(e.state(), LinkState::Failed);
    assert_eq!(e.rejection(), Some(RejectCode::Version));
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn frames_larger_than_the_target_accepts_fail_as_too_large() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["a"]);
    let small = h
        .link_opened(
            Instant::ZERO,
            PeerCredentials {
                pid: 2,
                uid: UID,
                gid: 0,
            },
            &mut io,
        )
        .unwrap();
    let hello = body(&Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: 512,
        pid: 2,
        executable: "small",
    }));
    h.handle_frame(Instant::ZERO, small, &hello, &mut io);
    h.handle_frame(
        Instant::ZERO,
        small,
        &body(&Frame::Register { machine: "small" }),
        &mut io,
    );
    let big = vec![b'x'; 600];
    let msg = body(&Frame::Deliver(Deliver {
        from: "a",
        to: "small",
        event: "BIG",
        payload: &big,
        seq: 1,
        correlation: Default::default(),
    }));
    assert_eq!(
        h.handle_frame(Instant::ZERO, a, &msg, &mut io),
        Handled::Done
    );
    assert!(io
        .frames(a)
        .iter()
        .any(|f| matches!(f, Frame::DeliveryFailed(d) if d.reason == FailReason::TooLarge)));
    assert!(!io.sent.iter().any(|(l, b)| *l == small && b.len() > 512));
}

/// After a failure reported on a link, later messages of the same pair from that link fail
/// too (with the same reason), other pairs are routed, and the pair is routed again once the
/// link answers the Ping queued after the last report: a report lost with the link must not
/// let a later message of its pair reach the receiver first.
#[test]
fn a_failed_pair_is_held_on_its_link_until_the_report_is_confirmed() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["s"]);
    let t = Instant::ZERO;
    h.handle_frame(t, a, &body(&deliver("s", "r", 1)), &mut io);
    let b = join(&mut h, &mut io, 2, &["r", "x"]);
    let to_b = |io: &Recorder| {
        io.frames(b)
            .iter()
            .filter_map(|f| match f {
                Frame::Deliver(d) => Some((d.to.to_string(), d.seq)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // `r` is there now, but the report of seq 1 is not confirmed: seq 2 fails as 1 did.
    h.handle_frame(t, a, &body(&deliver("s", "r", 2)), &mut io);
    h.handle_frame(t, a, &body(&deliver("s", "x", 3)), &mut io);
    assert_eq!(to_b(&io), [("x".to_string(), 3)], "only the other pair");
    let kinds: Vec<_> = io.frames(a).iter().map(|f| f.kind()).collect();
    assert_eq!(
        &kinds[kinds.len() - 3..],
        ["delivery-failed", "ping", "delivery-failed"]
    );
    let failed: Vec<_> = io
        .frames(a)
        .iter()
        .filter_map(|f| match f {
            Frame::DeliveryFailed(d) => Some((d.seq, d.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [
            (1, FailReason::UnknownTarget),
            (2, FailReason::UnknownTarget)
        ]
    );
    // The Pong of the first Ping does not cover the second report: asked again.
    h.handle_frame(t, a, &body(&Frame::Pong { nonce: 1 }), &mut io);
    h.handle_frame(t, a, &body(&deliver("s", "r", 4)), &mut io);
    assert!(!to_b(&io).contains(&("r".to_string(), 4)));
    assert!(matches!(
        io.frames(a)[io.frames(a).len() - 2],
        Frame::Ping { nonce: 2 }
    ));
    // A Ping that goes unanswered is sent again.
    let later = Instant::from_millis(1_500);
    assert!(h.poll_timeout().is_some_and(|p| p <= later));
    h.handle_timeout(later, &mut io);
    assert!(matches!(
        io.frames(a).last(),
        Some(Frame::Ping { nonce: 3 })
    ));
    h.handle_frame(later, a, &body(&Frame::Pong { nonce: 3 }), &mut io);
    h.handle_frame(later, a, &body(&deliver("s", "r", 5)), &mut io);
    assert_eq!(to_b(&io).last(), Some(&("r".to_string(), 5)), "released");
}

/// A failure report with no room on its sender's link closes that link (the sender sends
/// the message again after reconnecting) rather than being dropped.
#[test]
fn a_report_with_no_room_closes_the_senders_link() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 1, &["s"]);
    io.full.push(a);
    h.undeliverable(&body(&deliver("s", "gone", 9)), &mut io);
    assert!(io.closed.iter().any(|(l, _)| *l == a), "{:?}", io.closed);
    assert_eq!(h.route("s"), None, "its ids are free for the reconnection");
}
