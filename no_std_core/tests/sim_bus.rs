//! Each promise of `docs/guarantees.md` on the simulated bus (`sim`): the core's `Hub` and
//! `bus::Client`s with a node's host rules, on a virtual clock. Each test is named for the
//! process test it mirrors (`tests/guarantees.rs`, `tests/bus.rs`, `tests/hostile.rs`,
//! `tests/load.rs` at the workspace root), and ends with `sim::check`, which checks every
//! promise on everything the run recorded.

mod sim;

use interstate_core::wire::{FailReason, RegisterStatus};
use interstate_core::Duration;
use sim::{check, Note, Sim, SimConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

/// A bus with processes hosting the given machine ids, connected and registered.
fn bus(config: SimConfig, machines: &[&[&str]]) -> Sim {
    let mut s = Sim::new(config);
    for m in machines {
        s.add_process(m, &[]);
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    s
}

fn delivered_to(s: &Sim, to: &str) -> Vec<u64> {
    s.rec
        .delivered
        .iter()
        .filter(|d| d.to == to)
        .map(|d| d.n)
        .collect()
}

fn failures(s: &Sim) -> Vec<(u64, FailReason)> {
    s.rec.failed.iter().map(|f| (f.n, f.reason)).collect()
}

/// Three senders on links of different delays into one receiver, one sender's link cut
/// and the hub restarted mid-stream: each sender's events arrive in the order sent.
#[test]
fn order_is_kept_per_sender_and_receiver() {
    let mut s = bus(SimConfig::default(), &[&["sink"], &["a"], &["b"], &["c"]]);
    for (p, d) in [(1, 1), (2, 7), (3, 20)] {
        s.set_delay(p, ms(d));
    }
    for i in 0..300 {
        for (p, id) in [(1, "a"), (2, "b"), (3, "c")] {
            s.send(p, id, "sink").expect("room in the outbox");
        }
        if i % 10 == 0 {
            s.run_for(ms(3));
        }
        if i == 100 {
            s.cut(2, Duration::ZERO);
        }
        if i == 200 {
            s.restart_hub(ms(100));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let summary = check(&s).unwrap();
    assert_eq!(delivered_to(&s, "sink").len(), 900, "{summary:?}");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
}

/// A stream of 2 000 events, one a millisecond, with the hub restarted (and down 300 ms)
/// in the middle: every event delivered once, in order, none reported failed (the
/// sender's outstanding buffer holds what it sends meanwhile).
#[test]
fn hub_restart_mid_stream_loses_nothing() {
    let mut s = bus(SimConfig::default(), &[&["src"], &["dst"]]);
    let mut sent = Vec::new();
    for i in 0..2_000 {
        sent.push(s.send(0, "src", "dst").unwrap());
        s.run_for(ms(1));
        if i == 1_000 {
            s.restart_hub(ms(300));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), sent, "every event once, in order");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert_eq!(s.rec.connects, [2, 2], "both reconnected");
}

/// A durable receiver (its node journals its state and the highest sequence number it took
/// from each sender, and restores both: `Received::restore_delivered`) dies with the hub
/// mid-stream. Its sender keeps what was not acknowledged and sends it again once both are
/// back; the restored receiver drops as duplicates, and acknowledges, the events its earlier
/// incarnation took, and takes the others: every event once, in order, none reported
/// failed.
#[test]
fn a_durable_receiver_restored_from_its_journal_drops_retransmissions_and_acknowledges_them() {
    let mut s = bus(SimConfig::default(), &[&["dst"], &["src"]]);
    let mut sent = Vec::new();
    for i in 0..400 {
        sent.push(s.send(1, "src", "dst").unwrap());
        s.run_for(ms(1));
        if i == 200 {
            // What its journal holds: the events it took (its state), and the highest
            // number it took from `src`'s process.
            let taken = s.proc(0).accepted.clone();
            let high = s
                .rec
                .delivered
                .iter()
                .filter(|d| d.proc == 0 && d.from == "src")
                .map(|d| d.seq)
                .max()
                .expect("some taken before the crash");
            let src_pid = s.proc(1).pid;
            s.restart_hub(ms(300));
            s.kill(0);
            s.restart(0);
            let restored = s.proc_mut(0);
            restored.accepted = taken;
            assert!(restored
                .client
                .received_mut()
                .restore_delivered("dst", "src", src_pid, high));
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), sent, "every event once, in order");
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert!(
        s.rec
            .notes
            .iter()
            .any(|n| matches!(n, Note::Duplicate(0, ..))),
        "some retransmissions were of events taken before the crash"
    );
}

/// A sender killed and started again numbers its events above its previous incarnation's:
/// the receiver takes none of them for duplicates.
#[test]
fn a_restarted_sender_starts_a_new_sequence() {
    let mut s = bus(SimConfig::default(), &[&["worker"], &["src"]]);
    for _ in 0..10 {
        s.send(1, "src", "worker");
    }
    assert!(s.settle(SETTLE));
    s.kill(1);
    s.run_for(ms(1_000));
    s.restart(1);
    assert!(s.settle(SETTLE));
    for _ in 0..10 {
        s.send(1, "src", "worker");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "worker").len(), 20);
    let first = s
        .rec
        .sent
        .iter()
        .filter(|m| m.incarnation == 1)
        .map(|m| m.seq);
    let second = s
        .rec
        .sent
        .iter()
        .filter(|m| m.incarnation == 2)
        .map(|m| m.seq);
    assert!(second.min() > first.max());
    assert!(!s.rec.notes.iter().any(|n| matches!(n, Note::Duplicate(..))));
}

/// A port acknowledges an event only once its reader took it: the receiver dies with three
/// of five unread, and exactly those three are reported to the sender, as `target-gone`.
#[test]
fn a_port_acknowledges_only_what_it_has_handed_over() {
    let mut s = Sim::new(SimConfig::default());
    let rx = s.add_process(&[], &["inbox"]);
    let tx = s.add_process(&["src"], &[]);
    assert!(s.settle(SETTLE));
    let sent: Vec<u64> = (0..5)
        .map(|_| s.send(tx, "src", "inbox").unwrap())
        .collect();
    s.run_for(ms(100));
    assert_eq!(s.proc(rx).port_queue.len(), 5);
    assert_eq!(
        s.proc(tx).client.outstanding().len(),
        5,
        "none acknowledged"
    );
    let read = [s.read_port(rx).unwrap(), s.read_port(rx).unwrap()];
    s.run_for(ms(100));
    assert_eq!(s.proc(tx).client.outstanding().len(), 3, "the two read are");
    s.kill(rx);
    assert!(s.settle(SETTLE));
    check(&s).unwrap();
    assert_eq!(read, [sent[0], sent[1]]);
    let unread: Vec<_> = sent[2..]
        .iter()
        .map(|&n| (n, FailReason::TargetGone))
        .collect();
    assert_eq!(failures(&s), unread);
}

/// Two processes whose ports send to each other more than their outstanding buffers hold,
/// reading nothing: each acknowledges its ports' unread events while its own sends wait,
/// so neither waits for ever (without that rule they would).
#[test]
fn two_ports_sending_to_each_other_do_not_deadlock() {
    let run = |ack_while_blocked: bool| {
        let config = SimConfig {
            outstanding: 1024,
            outbox: 256,
            ..SimConfig::default()
        };
        let mut s = Sim::new(config);
        let a = s.add_process(&[], &["a"]);
        let b = s.add_process(&[], &["b"]);
        assert!(s.settle(SETTLE));
        for p in [a, b] {
            s.proc_mut(p).ack_unread_when_blocked = ack_while_blocked;
        }
        for _ in 0..200 {
            s.send(a, "a", "b").unwrap();
            s.send(b, "b", "a").unwrap();
        }
        let done = s.drive_until(ms(10_000), &mut |s| {
            s.proc(a).outbox.is_empty() && s.proc(b).outbox.is_empty()
        });
        (s, done)
    };
    let (_, stuck) = run(false);
    assert!(!stuck, "without the rule, both wait for ever");
    let (mut s, done) = run(true);
    assert!(done, "{}", s.describe());
    // The readers read again, until everything in flight has come.
    let read_all = &mut |s: &mut Sim| while s.read_port(0).is_some() || s.read_port(1).is_some() {};
    for _ in 0..100 {
        read_all(&mut s);
        s.run_for(ms(10));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(s.rec.delivered.len(), 400);
}

/// A process whose link broke reconnects while the hub still holds its ids for the old
/// link: it is told once, asks again until the hub lets the old link go, holds its events
/// meanwhile, and loses none (none fails as `not-owner`).
#[test]
fn a_node_whose_id_is_held_after_a_reconnect_asks_again_and_loses_nothing() {
    let mut s = bus(SimConfig::default(), &[&["src"], &["dst"]]);
    for _ in 0..20 {
        s.send(0, "src", "dst");
    }
    s.run_for(ms(5));
    // The hub notices the break only 2 s later.
    s.cut(0, ms(2_000));
    for _ in 0..20 {
        s.send(0, "src", "dst");
        s.run_for(ms(50));
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst").len(), 40);
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    let held: Vec<_> = s
        .rec
        .notes
        .iter()
        .filter(|n| matches!(n, Note::HeldElsewhere(..) | Note::Regained(..)))
        .collect();
    assert_eq!(
        held,
        [
            &Note::HeldElsewhere(0, "src".into()),
            &Note::Regained(0, "src".into())
        ]
    );
}

/// The same when the link broke after the process asked for its id and before the hub's
/// answer came: the hub holds the id for the old link, and the process asks again rather
/// than take it for refused (its events would fail as `not-owner`).
#[test]
fn an_id_asked_for_on_a_link_lost_before_the_answer_is_asked_for_again() {
    let mut s = Sim::new(SimConfig::default());
    s.add_process(&["src"], &[]);
    s.add_process(&["dst"], &[]);
    // Ready at 4 ms, the Register on its way: the answer would come at 8 ms.
    s.drive_until(ms(100), &mut |s| s.proc(0).client.is_ready());
    s.cut(0, ms(1_000));
    for _ in 0..10 {
        s.send(0, "src", "dst");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst").len(), 10);
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
    assert!(s.rec.notes.contains(&Note::HeldElsewhere(0, "src".into())));
}

/// A process that held an id and sent as it with the largest sequence numbers, then left:
/// the id's next owner's events are not taken for duplicates.
#[test]
fn a_squatter_cannot_poison_duplicate_suppression() {
    let mut s = bus(SimConfig::default(), &[&["dst"], &["s"]]);
    s.set_seq(1, "s", u64::MAX - 10);
    for _ in 0..3 {
        s.send(1, "s", "dst");
    }
    assert!(s.settle(SETTLE));
    s.kill(1);
    assert!(s.settle(SETTLE));
    let owner = s.add_process(&["s"], &[]);
    assert!(s.settle(SETTLE), "{}", s.describe());
    for _ in 0..10 {
        s.send(owner, "s", "dst");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst").len(), 13);
}

/// A sender flooding a receiver that hangs (reads nothing): the hub stops reading the
/// sender's link, bounded by its queue, without taking it for silent; once the hub closes
/// the hung receiver (idle timeout), every event is reported to the sender once, none as
/// `not-owner`, and the sender never lost its link.
#[test]
fn a_stalled_sender_keeps_its_id_and_learns_every_failure() {
    let config = SimConfig {
        hub_queue: 2048,
        outstanding: 16 * 1024,
        ..SimConfig::default()
    };
    let mut s = bus(config.clone(), &[&["src"], &["hung"]]);
    s.proc_mut(1).frozen = true;
    let mut sent = 0;
    for _ in 0..400 {
        if s.send(0, "src", "hung").is_some() {
            sent += 1;
        }
        s.run_for(ms(10));
    }
    assert!(s.rec.peak_hub_queue <= config.hub_queue);
    // The hub closes the hung process after its idle timeout.
    s.run_for(ms(40_000));
    s.kill(1);
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(s.rec.failed.len(), sent, "every event reported once");
    assert!(s
        .rec
        .failed
        .iter()
        .all(|f| matches!(f.reason, FailReason::TargetGone | FailReason::UnknownTarget)));
    assert_eq!(s.rec.connects[0], 1, "the sender kept its link");
}

/// A receiver killed mid-stream: every event it had not acknowledged is reported to the
/// sender once (`target-gone`; later ones `unknown-target`), and each event is delivered
/// or reported, never neither; both only for one delivered just before the kill whose
/// acknowledgement had not left ("not confirmed").
#[test]
fn sigkilled_client_leaves_the_registry_and_its_messages_fail() {
    let mut s = bus(SimConfig::default(), &[&["src"], &["dst"]]);
    for i in 0..200 {
        s.send(0, "src", "dst");
        s.run_for(ms(1));
        if i == 100 {
            s.kill(1);
        }
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    let summary = check(&s).unwrap();
    let settled =
        summary.delivered_once + summary.failed_once + summary.delivered_and_reported_failed;
    assert_eq!(settled, 200, "{summary:?}");
    let reasons: Vec<_> = s.rec.failed.iter().map(|f| f.reason).collect();
    assert!(reasons.contains(&FailReason::TargetGone), "{reasons:?}");
    assert!(reasons.contains(&FailReason::UnknownTarget), "{reasons:?}");
    assert!(s.hub.as_ref().unwrap().route("dst").is_none());
}

/// A receiver killed right after its step on an event and before its acknowledgement
/// left: the sender hears `target-gone` for an event that was processed. A failure report
/// means "not confirmed", not "not processed".
#[test]
fn a_failure_report_after_a_kill_means_not_confirmed() {
    let mut s = bus(SimConfig::default(), &[&["src"], &["dst"]]);
    let n = s.send(0, "src", "dst").unwrap();
    s.drive_until(ms(100), &mut |s| !s.rec.delivered.is_empty());
    s.kill(1);
    assert!(s.settle(SETTLE));
    let summary = check(&s).unwrap();
    assert_eq!(summary.delivered_and_reported_failed, 1);
    assert_eq!(failures(&s), [(n, FailReason::TargetGone)]);
}

/// A process sends as an id another process owns: refused as `not-owner`, once; and it
/// cannot register a live peer's id.
#[test]
fn spoofed_sender_is_refused() {
    let mut s = bus(SimConfig::default(), &[&["owner"], &["dst"], &["spoofer"]]);
    let n = s.send(2, "owner", "dst").unwrap();
    assert!(s.settle(SETTLE));
    assert_eq!(failures(&s), [(n, FailReason::NotOwner)]);
    assert!(delivered_to(&s, "dst").is_empty());
    let squatter = s.add_process(&["owner"], &[]);
    s.run_for(ms(100));
    assert!(s.rec.notes.contains(&Note::Refused(
        squatter,
        "owner".into(),
        RegisterStatus::Taken
    )));
    assert_eq!(s.hub.as_ref().unwrap().route("owner"), Some(1));
}

/// While the hub is down, events wait in the sender's outstanding buffer and are delivered
/// once it is back; once the buffer is full, sends fail at once as `disconnected`.
#[test]
fn sends_while_the_hub_is_down_wait_then_fail_as_disconnected_once_full() {
    let config = SimConfig {
        outstanding: 1024,
        ..SimConfig::default()
    };
    let mut s = bus(config, &[&["src"], &["dst"]]);
    s.restart_hub(ms(5_000));
    s.run_for(ms(10));
    let sent: Vec<u64> = (0..40).map(|_| s.send(0, "src", "dst").unwrap()).collect();
    s.run_for(ms(10));
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let delivered = delivered_to(&s, "dst");
    assert!(!delivered.is_empty() && delivered.len() < 40);
    assert_eq!(delivered, sent[..delivered.len()]);
    let disconnected: Vec<_> = sent[delivered.len()..]
        .iter()
        .map(|&n| (n, FailReason::Disconnected))
        .collect();
    assert_eq!(failures(&s), disconnected);
}

/// Bad bytes close only the link they came on, logged once; the process reconnects and
/// the others keep working.
#[test]
fn bad_bytes_close_only_their_link_each_logged_once() {
    let mut s = bus(SimConfig::default(), &[&["src"], &["dst"], &["bad"]]);
    s.inject(2, &[0xff, 0xff, 0xff, 0xff]);
    for _ in 0..50 {
        s.send(0, "src", "dst");
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst").len(), 50);
    assert_eq!(s.rec.hub_logs.len(), 1, "{:?}", s.rec.hub_logs);
    assert_eq!(s.rec.connects, [1, 1, 2]);
}

/// Eight processes flood one receiver through small hub queues: the hub never holds more
/// for a link than its queue, whatever the length of the flood, and everything arrives.
#[test]
fn many_clients_flood_one_hub_with_bounded_memory() {
    let flood = |per_sender: usize| {
        let config = SimConfig {
            hub_queue: 1024,
            ..SimConfig::default()
        };
        let ids: Vec<String> = (0..8).map(|i| format!("src{i}")).collect();
        let mut layout: Vec<Vec<&str>> = vec![vec!["sink"]];
        layout.extend(ids.iter().map(|i| vec![i.as_str()]));
        let layout: Vec<&[&str]> = layout.iter().map(|v| v.as_slice()).collect();
        let mut s = bus(config, &layout);
        for _ in 0..per_sender {
            for (p, id) in ids.iter().enumerate() {
                while s.send(p + 1, id, "sink").is_none() {
                    s.run_for(ms(1));
                }
            }
        }
        assert!(s.settle(SETTLE), "{}", s.describe());
        check(&s).unwrap();
        assert_eq!(delivered_to(&s, "sink").len(), 8 * per_sender);
        s.rec.peak_hub_queue
    };
    let short = flood(100);
    let long = flood(300);
    assert!(short <= 1024 && long <= 1024, "{short} {long}");
}

/// A sender whose link breaks after the receiver got an event and before the
/// acknowledgement reached it (the hub drops an acknowledgement for a sender that is gone),
/// and that is back only after receivers forget a departed sender (60 s), does not send the
/// event again (the receiver, which forgot it, would deliver it a second time): back after
/// 30 s or more, it reports it failed as `disconnected` ("not confirmed"). (Before, it sent
/// it again and it was delivered twice.)
#[test]
fn a_sender_away_longer_than_receivers_remember_it_reports_rather_than_sends_again() {
    let mut s = bus(SimConfig::default(), &[&["dst"], &["src"]]);
    let n = s.send(1, "src", "dst").unwrap();
    s.drive_until(ms(100), &mut |s| !s.rec.delivered.is_empty());
    // Delivered; the acknowledgement leaves 2 ms later: the sender's link breaks first.
    s.cut(1, Duration::ZERO);
    s.run_for(ms(10));
    // The sender is held up for longer than the receiver remembers it (a stopped process,
    // or a hub that refuses it meanwhile): here its host does not run for 61 s.
    s.proc_mut(1).frozen = true;
    s.run_for(ms(61_000));
    s.proc_mut(1).frozen = false;
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), [n], "delivered once");
    assert_eq!(failures(&s), [(n, FailReason::Disconnected)]);
}

/// A sender back within half of what receivers remember sends again what it had written,
/// as after any reconnect: delivered once, nothing reported.
#[test]
fn a_sender_back_within_half_of_what_receivers_remember_sends_again() {
    let mut s = bus(SimConfig::default(), &[&["dst"], &["src"]]);
    let a = s.send(1, "src", "dst").unwrap();
    // Written to the link, which breaks before the hub reads it: only sending it again
    // delivers it.
    s.run_for(Duration::ZERO);
    s.cut(1, Duration::ZERO);
    let b = s.send(1, "src", "dst").unwrap();
    s.proc_mut(1).frozen = true;
    s.run_for(ms(20_000));
    s.proc_mut(1).frozen = false;
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "dst"), [a, b]);
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
}

/// The `lamp` chart (`no_std_core/check/lamp.json`): TOGGLE sends `LAMP_ON` to `controller`
/// at once; 300 ms later a timer of the machine fires and sends `LAMP_OFF`.
static LAMP: &[u8] = include_bytes!("../check/lamp.isch");

/// A send that a machine's timer makes lives in the machine's timer table, not on the bus:
/// with the hub down when the timer comes due, it fires on time, waits in the sender's
/// outstanding buffer, and arrives once the hub is back, after the send before it.
#[test]
fn a_delayed_send_outlives_a_hub_restart() {
    use interstate_core::{image, Event, Machine, NoBehavior, Target};
    let mut s = bus(SimConfig::default(), &[&["lamp"], &["controller"]]);
    let mut lamp: Machine<'static> = Machine::new(image::decode(LAMP).unwrap(), "lamp").unwrap();
    lamp.start(s.now, &mut NoBehavior).unwrap();
    // The lamp's host hands what the machine sends to the bus.
    let mut events = Vec::new();
    let mut pump = |s: &mut Sim, lamp: &mut Machine<'static>| {
        for m in lamp.outbox() {
            assert_eq!(m.target, Target::Machine("controller"));
            events.push((
                s.send(0, "lamp", "controller").unwrap(),
                m.event.to_string(),
            ));
        }
        lamp.clear_outbox();
    };
    lamp.send(s.now, Event::new("TOGGLE"), &mut NoBehavior)
        .unwrap();
    pump(&mut s, &mut lamp);
    s.run_for(ms(50));
    s.restart_hub(ms(1_000));
    let due = lamp.poll_timeout().expect("the lamp's timer");
    s.drive_until(ms(1_000), &mut |s| s.now >= due);
    assert!(s.hub.is_none(), "the hub is down when the timer fires");
    lamp.handle_timeout(s.now, &mut NoBehavior).unwrap();
    pump(&mut s, &mut lamp);
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    let by_n = |n| events.iter().find(|e| e.0 == n).map(|e| e.1.as_str());
    let got: Vec<_> = delivered_to(&s, "controller")
        .into_iter()
        .map(by_n)
        .collect();
    assert_eq!(got, [Some("LAMP_ON"), Some("LAMP_OFF")]);
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
}

/// The receiver's link and the sender's link break (both half-open, the hub notices later),
/// the sender's link stalled behind the receiver's full queue. The hub closes the receiver's
/// old link and reports the events queued on it failed to the sender's old link, which it
/// closes next, so the reports are lost. The sender's later events, stalled on its old link,
/// are not forwarded to the receiver's new link: their pair has a failure the sender has not
/// confirmed reading, so they fail too (reports lost as well). After its reconnect the sender
/// sends them all again, in order, and each is delivered once. (Before the hub held such
/// pairs, the later events reached the receiver first and it dropped the earlier ones, sent
/// again, as duplicates: lost with no report. Found by `sim_properties.rs`.)
#[test]
fn both_links_breaking_around_a_stall_lose_nothing() {
    let config = SimConfig {
        delay: ms(2),
        outstanding: 1024,
        hub_queue: 400,
        outbox: 16,
        ..SimConfig::default()
    };
    let mut s = Sim::new(config);
    s.add_process(&["p0m0", "p0m1"], &[]);
    s.add_process(&["p1m0", "p1m1"], &[]);
    s.add_process(&["p2m0"], &["p2m1"]);
    s.run_for(ms(5));
    for _ in 0..15 {
        s.send(1, "p1m0", "p2m0");
    }
    // The receiver's link breaks (the hub notices at 61 ms), then the sender's (at 62 ms).
    s.cut(2, ms(56));
    s.run_for(ms(3));
    s.cut(1, ms(54));
    assert!(s.settle(SETTLE), "{}", s.describe());
    check(&s).unwrap();
    assert_eq!(delivered_to(&s, "p2m0").len(), 15, "{:?}", failures(&s));
    assert!(s.rec.failed.is_empty(), "{:?}", s.rec.failed);
}
