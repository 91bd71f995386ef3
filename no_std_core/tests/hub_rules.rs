//! Hub rules beyond routing: the reserved `xstate.` namespace, and the bookkeeping of
//! state watches (who watches which machine, and telling owners when to report). Driven
//! with a virtual clock and a recording I/O, as `hub_endpoint.rs`.

use interstate_core::hub::{Handled, Hub, HubConfig, LinkId};
use interstate_core::wire::{Deliver, DeliveryFailed, FailReason, Frame, MAX_STOP_ERROR};
use interstate_core::Instant;

mod recorder;
use recorder::{body, confirm_reports, join, Recorder, UID};

fn hub() -> Hub<8, 16, 4> {
    Hub::new(HubConfig::new(UID, 1), "hub")
}

fn deliver<'a>(from: &'a str, to: &'a str, event: &'a str) -> Vec<u8> {
    body(&Frame::Deliver(Deliver {
        from,
        to,
        event,
        payload: b"{}",
        seq: 9,
        correlation: Default::default(),
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
    // Each refusal is a failure report; the first also holds the pair until the link answers
    // the Ping that follows it (the later two fail as held, with the same reason).
    let failed: Vec<Frame<'_>> = io
        .frames(a)
        .into_iter()
        .filter(|f| !matches!(f, Frame::Ping { .. }))
        .collect();
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
    // A name that merely starts alike is an ordinary event (once the link has confirmed the
    // reports, which releases the pair they held).
    let later = confirm_reports(&mut h, &mut io, a);
    let f = deliver("a", "b", "xstatex");
    assert_eq!(h.handle_frame(later, a, &f, &mut io), Handled::Done);
    assert_eq!(io.frames(b).len(), 1);
    // The check comes after ownership: a spoofed reserved event is a spoof.
    io.clear();
    let f = deliver("b", "a", "xstate.machine.up");
    h.handle_frame(Instant::ZERO, a, &f, &mut io);
    assert!(
        matches!(io.frames(a)[0], Frame::DeliveryFailed(d) if d.reason == FailReason::NotOwner)
    );
}

fn watch(h: &mut Hub<8, 16, 4>, io: &mut Recorder, link: LinkId, machine: &str, on: bool) {
    let f = body(&Frame::Watch { machine, on });
    assert_eq!(h.handle_frame(Instant::ZERO, link, &f, io), Handled::Done);
}

fn report(h: &mut Hub<8, 16, 4>, io: &mut Recorder, link: LinkId, machine: &str, json: &str) {
    let f = body(&Frame::State {
        machine,
        report: json.as_bytes(),
    });
    assert_eq!(h.handle_frame(Instant::ZERO, link, &f, io), Handled::Done);
}

/// The `Report` frames `link` was sent, as (machine, on).
fn reports(io: &Recorder, link: LinkId) -> Vec<(String, bool)> {
    io.frames(link)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Report { machine, on } => Some((machine.to_string(), on)),
            _ => None,
        })
        .collect()
}

/// The `State` reports `link` was sent.
fn states(io: &Recorder, link: LinkId) -> Vec<String> {
    io.frames(link)
        .into_iter()
        .filter_map(|f| match f {
            Frame::State { report, .. } => Some(String::from_utf8(report.to_vec()).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_owner_reports_only_while_someone_watches() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let owner = join(&mut h, &mut io, 10, &["m"]);
    let w1 = join(&mut h, &mut io, 11, &[]);
    let w2 = join(&mut h, &mut io, 12, &[]);
    io.clear();
    // Unwatched: a report goes nowhere, and the owner was never asked for one.
    report(&mut h, &mut io, owner, "m", "{\"n\":0}");
    assert!(states(&io, w1).is_empty());
    watch(&mut h, &mut io, w1, "m", true);
    assert_eq!(reports(&io, owner), vec![("m".into(), true)]);
    report(&mut h, &mut io, owner, "m", "{\"n\":1}");
    assert_eq!(states(&io, w1), vec!["{\"n\":1}"]);
    // A second watcher: the owner is asked again (for a fresh report), both get it.
    watch(&mut h, &mut io, w2, "m", true);
    assert_eq!(
        reports(&io, owner),
        vec![("m".into(), true), ("m".into(), true)]
    );
    report(&mut h, &mut io, owner, "m", "{\"n\":2}");
    assert_eq!(states(&io, w1).last().unwrap(), "{\"n\":2}");
    assert_eq!(states(&io, w2), vec!["{\"n\":2}"]);
    // One leaves: the owner keeps reporting; the last leaves (its link closes): it stops.
    watch(&mut h, &mut io, w1, "m", false);
    assert_eq!(reports(&io, owner).len(), 2);
    report(&mut h, &mut io, owner, "m", "{\"n\":3}");
    assert_eq!(states(&io, w1).len(), 2, "an ended watch gets nothing");
    h.link_closed(w2, &mut io);
    assert_eq!(reports(&io, owner).last(), Some(&("m".into(), false)));
    assert!(!h.is_watched("m"));
    assert_eq!(h.watch_count(), 0);
}

#[test]
fn a_watch_waits_for_its_machine_and_its_next_owner_reports() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let w = join(&mut h, &mut io, 11, &[]);
    watch(&mut h, &mut io, w, "later", true);
    let first = join(&mut h, &mut io, 10, &["later"]);
    assert_eq!(reports(&io, first), vec![("later".into(), true)]);
    report(&mut h, &mut io, first, "later", "{}");
    assert_eq!(states(&io, w).len(), 1);
    // Its owner goes, another process registers it: the watch holds, the new owner reports.
    h.link_closed(first, &mut io);
    io.clear();
    let second = join(&mut h, &mut io, 12, &["later"]);
    assert_eq!(reports(&io, second), vec![("later".into(), true)]);
}

#[test]
fn the_watch_table_is_bounded_and_refusals_are_logged() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let owner = join(&mut h, &mut io, 10, &["a", "b", "c", "d", "e"]);
    let w = join(&mut h, &mut io, 11, &[]);
    io.clear();
    for m in ["a", "b", "c", "d", "e"] {
        watch(&mut h, &mut io, w, m, true);
    }
    assert_eq!(h.watch_count(), 4);
    assert_eq!(h.stats().watches_refused, 1);
    assert!(io
        .logs
        .iter()
        .any(|(l, m)| *l == w && m.contains("watch table is full")));
    assert!(
        !reports(&io, owner).contains(&("e".into(), true)),
        "a refused watch asks for no report"
    );
    // A repeated watch takes no room; an ended one frees it.
    watch(&mut h, &mut io, w, "a", true);
    assert_eq!(h.stats().watches_refused, 1);
    watch(&mut h, &mut io, w, "a", false);
    watch(&mut h, &mut io, w, "e", true);
    assert_eq!(h.watch_count(), 4);
    assert!(reports(&io, owner).contains(&("e".into(), true)));
}

#[test]
fn only_its_owner_reports_a_machines_state() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let _owner = join(&mut h, &mut io, 10, &["m"]);
    let w = join(&mut h, &mut io, 11, &[]);
    let liar = join(&mut h, &mut io, 12, &[]);
    watch(&mut h, &mut io, w, "m", true);
    io.clear();
    report(&mut h, &mut io, liar, "m", "{\"state\":\"forged\"}");
    assert!(states(&io, w).is_empty());
    assert_eq!(h.stats().spoofed, 1);
    assert!(io
        .logs
        .iter()
        .any(|(l, m)| *l == liar && m.contains("does not own")));
    // Report frames are the hub's: a client sending one is closed.
    let f = body(&Frame::Report {
        machine: "m",
        on: true,
    });
    assert_eq!(
        h.handle_frame(Instant::ZERO, liar, &f, &mut io),
        Handled::Closed
    );
}

#[test]
fn the_hubs_own_machines_are_asked_and_report_like_others() {
    let (mut h, mut io) = (hub(), Recorder::default());
    assert_eq!(
        h.register_local(Instant::ZERO, "local", &mut io),
        interstate_core::wire::RegisterStatus::Ok
    );
    let w = join(&mut h, &mut io, 11, &[]);
    io.clear();
    watch(&mut h, &mut io, w, "local", true);
    assert_eq!(reports(&io, 0), vec![("local".into(), true)]);
    let f = body(&Frame::State {
        machine: "local",
        report: b"{}",
    });
    h.state_local("local", &f, &mut io);
    assert_eq!(states(&io, w), vec!["{}"]);
}

#[test]
fn monitors_see_routed_messages_and_delivery_failures() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let _b = join(&mut h, &mut io, 11, &["b"]);
    let mon = join(&mut h, &mut io, 12, &[]);
    let sub = body(&Frame::Subscribe {
        registry: false,
        monitor: true,
    });
    h.handle_frame(Instant::ZERO, mon, &sub, &mut io);
    io.clear();
    let later = Instant::from_millis(7);
    h.handle_frame(later, a, &deliver("a", "b", "E"), &mut io);
    h.handle_frame(later, a, &deliver("a", "nobody", "E"), &mut io);
    let copies: Vec<(u32, u64, Vec<u8>)> = io
        .frames(mon)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Monitored { link, at_ms, frame } => Some((link, at_ms, frame.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|(l, at, _)| *l == a && *at == 7));
    assert!(matches!(Frame::decode(&copies[0].2), Ok(Frame::Deliver(d)) if d.to == "b"));
    assert!(matches!(
        Frame::decode(&copies[1].2),
        Ok(Frame::DeliveryFailed(f)) if f.to == "nobody" && f.reason == FailReason::UnknownTarget
    ));
}

#[test]
fn a_stopped_machine_leaves_and_messages_to_it_fail_as_target_stopped_with_its_error() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let m = join(&mut h, &mut io, 11, &["m"]);
    // Only its owner may say it stopped.
    let f = body(&Frame::Stopped {
        machine: "m",
        error: "eventless loop in state 'a'",
    });
    assert_eq!(h.handle_frame(Instant::ZERO, a, &f, &mut io), Handled::Done);
    assert_eq!(h.route("m"), Some(m));
    assert_eq!(h.stop_error("m"), None);
    assert_eq!(h.handle_frame(Instant::ZERO, m, &f, &mut io), Handled::Done);
    assert_eq!(h.route("m"), None, "it left the registry");
    io.clear();
    h.handle_frame(Instant::ZERO, a, &deliver("a", "m", "E"), &mut io);
    h.handle_frame(Instant::ZERO, a, &deliver("a", "other", "E"), &mut io);
    let reasons: Vec<(FailReason, String)> = io
        .frames(a)
        .into_iter()
        .filter_map(|f| match f {
            Frame::DeliveryFailed(d) => Some((d.reason, d.detail.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                FailReason::TargetStopped,
                "eventless loop in state 'a'".to_string()
            ),
            (FailReason::UnknownTarget, String::new())
        ]
    );
    // The sender's link confirms it read the reports (the Pong to the hub's Ping carrying the
    // count of reports: asked again a second later, with both counted), which releases the
    // pairs the failures held.
    let later = confirm_reports(&mut h, &mut io, a);
    // Registered again (a restarted process): messages reach it.
    let f = body(&Frame::Register { machine: "m" });
    h.handle_frame(later, m, &f, &mut io);
    io.clear();
    h.handle_frame(later, a, &deliver("a", "m", "E"), &mut io);
    assert_eq!(io.frames(m).len(), 1);
    assert!(io.frames(a).is_empty());
}

/// The hub keeps at most `MAX_STOP_ERROR` bytes of a stop error, cut at a character
/// boundary, from a client that sent more; its own process's machines are kept alike, and
/// their senders' reports carry the text too.
#[test]
fn a_stop_error_is_kept_bounded_and_reported_for_local_machines_too() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let m = join(&mut h, &mut io, 11, &["m"]);
    let long = "ü".repeat(MAX_STOP_ERROR);
    let f = body(&Frame::Stopped {
        machine: "m",
        error: &long,
    });
    h.handle_frame(Instant::ZERO, m, &f, &mut io);
    assert_eq!(
        h.stop_error("m"),
        Some("ü".repeat(MAX_STOP_ERROR / 2).as_str())
    );
    assert_eq!(
        h.register_local(Instant::ZERO, "local", &mut io),
        interstate_core::wire::RegisterStatus::Ok
    );
    h.stopped_local("local", "too many microsteps", &mut io);
    assert_eq!(h.route("local"), None);
    let a = join(&mut h, &mut io, 10, &["a"]);
    io.clear();
    h.handle_frame(Instant::ZERO, a, &deliver("a", "local", "E"), &mut io);
    assert!(
        io.frames(a)
            .iter()
            .any(|f| matches!(f, Frame::DeliveryFailed(d)
            if d.reason == FailReason::TargetStopped && d.detail == "too many microsteps")),
        "{:?}",
        io.frames(a)
    );
}

/// A failure a node found itself (`NodeFailure`) goes to the monitors unchanged, marked with
/// the link it came from; with no monitor, or from a link that owns neither the sender nor
/// the receiver, it goes nowhere.
#[test]
fn a_node_found_failure_reaches_monitors_only() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["a"]);
    let b = join(&mut h, &mut io, 11, &["b"]);
    let failure = DeliveryFailed {
        from: "a",
        to: "b",
        event: "BIG",
        seq: 4,
        reason: FailReason::TooLarge,
        detail: "",
    };
    let f = body(&Frame::NodeFailure(failure));
    io.clear();
    // Nobody monitors: dropped, nothing sent anywhere, the link stays open.
    assert!(!h.monitored());
    assert_eq!(h.handle_frame(Instant::ZERO, a, &f, &mut io), Handled::Done);
    assert!(io.frames(a).is_empty() && io.frames(b).is_empty());
    let mon = join(&mut h, &mut io, 12, &[]);
    let sub = body(&Frame::Subscribe {
        registry: false,
        monitor: true,
    });
    h.handle_frame(Instant::ZERO, mon, &sub, &mut io);
    assert!(h.monitored());
    io.clear();
    let later = Instant::from_millis(9);
    assert_eq!(h.handle_frame(later, a, &f, &mut io), Handled::Done);
    // From a link that owns neither `from` nor `to`: not copied (a forged monitor line).
    assert_eq!(h.handle_frame(later, mon, &f, &mut io), Handled::Done);
    let copies: Vec<(u32, u64, Vec<u8>)> = io
        .frames(mon)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Monitored { link, at_ms, frame } => Some((link, at_ms, frame.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!((copies[0].0, copies[0].1), (a, 9));
    assert_eq!(Frame::decode(&copies[0].2), Ok(Frame::NodeFailure(failure)));
    assert!(io.frames(a).is_empty() && io.frames(b).is_empty());
    // The hub's own process reports the same way, as link 0.
    io.clear();
    let local = DeliveryFailed {
        reason: FailReason::Reserved,
        event: "xstate.x",
        ..failure
    };
    h.node_failure_local(&local, &mut io);
    assert!(matches!(io.frames(mon).as_slice(),
        [Frame::Monitored { link: 0, frame, .. }]
            if Frame::decode(frame) == Ok(Frame::NodeFailure(local))));
}

/// A `NodeFailure` from the link that owns the message's *receiver* is that receiver
/// refusing a message it had taken (an MQTT bridge whose remote machine did not get it):
/// the hub reports it to the sender's link as a `DeliveryFailed` with the reason and detail
/// the receiver gave, holding the pair until the sender confirms, as for its own reports.
/// From a link owning neither, it is a spoof: counted, nothing sent.
#[test]
fn a_receivers_refusal_reaches_the_sender_as_a_failure_report() {
    let (mut h, mut io) = (hub(), Recorder::default());
    let a = join(&mut h, &mut io, 10, &["sender"]);
    let bridge = join(&mut h, &mut io, 11, &["remote-worker"]);
    let other = join(&mut h, &mut io, 12, &["other"]);
    let refusal = DeliveryFailed {
        from: "sender",
        to: "remote-worker",
        event: "GO",
        seq: 41,
        reason: FailReason::NodeUnreachable,
        detail: "node 'host-b' went down",
    };
    let f = body(&Frame::NodeFailure(refusal));
    io.clear();
    let spoofed = h.stats().spoofed;
    assert_eq!(
        h.handle_frame(Instant::ZERO, other, &f, &mut io),
        Handled::Done
    );
    assert!(
        io.frames(a).is_empty(),
        "a link owning neither id is not heard"
    );
    assert_eq!(h.stats().spoofed, spoofed + 1);

    assert_eq!(
        h.handle_frame(Instant::ZERO, bridge, &f, &mut io),
        Handled::Done
    );
    let frames = io.frames(a);
    assert!(
        matches!(frames.first(), Some(Frame::DeliveryFailed(d)) if *d == refusal),
        "{frames:?}"
    );
    assert!(
        io.frames(bridge).is_empty(),
        "nothing goes back to the refusing link"
    );
    // The pair is held until the sender confirms it read the report, as for a report the
    // hub made itself: a later message of the pair fails the same way meanwhile.
    io.clear();
    let later = body(&Frame::Deliver(Deliver {
        from: "sender",
        to: "remote-worker",
        event: "GO",
        payload: b"{}",
        seq: 42,
        correlation: Default::default(),
    }));
    h.handle_frame(Instant::ZERO, a, &later, &mut io);
    assert!(io.frames(bridge).is_empty());
    assert!(io
        .frames(a)
        .iter()
        .any(|f| matches!(f, Frame::DeliveryFailed(d) if d.seq == 42 && d.reason == FailReason::NodeUnreachable)));
    let t = confirm_reports(&mut h, &mut io, a);
    io.clear();
    h.handle_frame(t, a, &later, &mut io);
    assert_eq!(io.frames(bridge).len(), 1, "released once confirmed");
}
