//! Target `hub`: an [`arbitrary`] [`HubSession`] of link events driving a small `Hub`
//! through a recording `HubIo`, with an independent model of the registry and checks after
//! every operation.
//!
//! This file holds the hub's settings and the run; `input.rs` what the fuzzer feeds it (the
//! session, the frames a client could send), `io.rs` the recording platform side, and
//! `checks.rs` the model and what is checked against it.

mod checks;
mod input;
mod io;

pub use input::{ClientFrame, HubOp, HubSession};

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use interstate_core::hub::{Handled, Hub, HubConfig, LinkId, PeerCredentials, LOCAL_LINK};
use interstate_core::wire::{Deliver, Frame, MAGIC, MIN_MAX_FRAME, PROTOCOL_VERSION};
use interstate_core::{Duration, Instant};

use checks::{check_ready_frame, sent_frames, settle, Model};
use input::{client_body, id};
use io::{encode_body, Out, RecIo};

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
                    correlation: Default::default(),
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
        model.count_reports(&all);
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
