//! Unit tests of the bus client's registration and grace rules (see `client.rs`).

extern crate std;
use super::*;
use crate::wire::Welcome;
use std::vec;
use std::vec::Vec;

struct Frames(Vec<std::string::String>);
impl FrameSink for Frames {
    fn send_frame(&mut self, f: &Frame<'_>) -> bool {
        self.0.push(std::format!("{f:?}"));
        true
    }
    fn send_body(&mut self, _: &[u8]) -> bool {
        true
    }
    fn has_pending(&self) -> bool {
        false
    }
}

type C = Client<Vec<u8>, Vec<PairSlot>, Vec<OwnerSlot>, 8>;

fn client() -> C {
    Client::new(
        EndpointConfig::new(1, "test"),
        Instant::ZERO,
        vec![0; 4096],
        vec![PairSlot::default(); 64],
        vec![OwnerSlot::default(); 64],
    )
}

fn welcome(c: &mut C, now: Instant, sink: &mut Frames) {
    c.connected(now, sink);
    let w = Frame::Welcome(Welcome {
        version: crate::wire::PROTOCOL_VERSION,
        max_frame: 65536,
        link: 1,
        hub_pid: 2,
    });
    assert!(matches!(
        c.handle_frame(now, w, sink),
        Incoming::Ready { .. }
    ));
}

fn answer(
    c: &mut C,
    now: Instant,
    status: RegisterStatus,
    sink: &mut Frames,
) -> RegistrationChange {
    match c.handle_frame(
        now,
        Frame::RegisterResult {
            machine: "s",
            status,
        },
        sink,
    ) {
        Incoming::Registered { change, .. } => change,
        other => panic!("{other:?}"),
    }
}

/// An id the hub still holds for this process's previous connection is asked for again
/// with backoff, logged once when held and once when regained.
#[test]
fn a_held_id_is_asked_for_again_and_logged_once_each_way() {
    let mut sink = Frames(Vec::new());
    let mut c = client();
    let t0 = Instant::ZERO;
    welcome(&mut c, t0, &mut sink);
    c.register("s", &mut sink).unwrap();
    assert_eq!(
        answer(&mut c, t0, RegisterStatus::Ok, &mut sink),
        RegistrationChange::None
    );
    assert!(c.may_send_as("s"));
    c.disconnected(t0);
    let t1 = Instant::from_millis(100);
    welcome(&mut c, t1, &mut sink);
    assert!(!c.may_send_as("s"), "waits for its registration");
    let mut changes = Vec::new();
    let mut now = t1;
    for _ in 0..4 {
        changes.push(answer(&mut c, now, RegisterStatus::Taken, &mut sink));
        assert!(!c.may_send_as("s"), "a held id's messages wait");
        let due = c.retry.poll_timeout().expect("a retry is scheduled");
        now = due;
        sink.0.clear();
        c.handle_timeout(now, &mut sink);
        assert!(
            sink.0.iter().any(|f| f.contains("Register")),
            "{:?}",
            sink.0
        );
    }
    changes.push(answer(&mut c, now, RegisterStatus::Ok, &mut sink));
    assert_eq!(
        changes,
        vec![
            RegistrationChange::HeldElsewhere,
            RegistrationChange::None,
            RegistrationChange::None,
            RegistrationChange::None,
            RegistrationChange::Regained
        ]
    );
    assert!(c.may_send_as("s"));
}

/// An id asked for on a connection lost before the hub answered may be held by the hub
/// for that connection: on the next one, `Taken` means "asked again", not "refused", so
/// its messages wait instead of failing as `not-owner` (found by the simulated bus).
#[test]
fn an_id_asked_for_on_a_lost_connection_is_asked_again_when_held() {
    let mut sink = Frames(Vec::new());
    let mut c = client();
    let t0 = Instant::ZERO;
    welcome(&mut c, t0, &mut sink);
    c.register("s", &mut sink).unwrap();
    // Lost before the answer came.
    c.disconnected(t0);
    let t1 = Instant::from_millis(100);
    welcome(&mut c, t1, &mut sink);
    assert_eq!(
        answer(&mut c, t1, RegisterStatus::Taken, &mut sink),
        RegistrationChange::HeldElsewhere
    );
    assert!(!c.may_send_as("s"), "its messages wait");
    let due = c.retry.poll_timeout().expect("asked for again");
    sink.0.clear();
    c.handle_timeout(due, &mut sink);
    assert!(
        sink.0.iter().any(|f| f.contains("Register")),
        "{:?}",
        sink.0
    );
    assert_eq!(
        answer(&mut c, due, RegisterStatus::Ok, &mut sink),
        RegistrationChange::Regained
    );
    assert!(c.may_send_as("s"));
}

/// A sweep that comes long after it was due (the host did not run: a stopped process, a
/// clock jump) forgets nothing that turn: the frames waiting to be read may show the
/// departed sender back. The next one, on time, does.
#[test]
fn an_overdue_sweep_forgets_nothing_that_turn() {
    let mut sink = Frames(Vec::new());
    let mut c = client();
    welcome(&mut c, Instant::ZERO, &mut sink);
    c.handle_frame(Instant::ZERO, Frame::SnapshotEnd, &mut sink);
    let r = c.received_mut();
    r.sender_registered("s", 7, 0);
    assert_eq!(r.accept("k", "s", 1, true), Accepted::New);
    r.emit(&mut |_, _, _| true);
    r.sender_departed("s", 0);
    c.handle_timeout(Instant::from_millis(61_000), &mut sink);
    assert_eq!(c.received().senders(), 1, "late: kept");
    c.handle_timeout(Instant::from_millis(62_000), &mut sink);
    assert_eq!(c.received().senders(), 0, "on time: forgotten");
}

/// During the grace after a connection, a message to a machine the registry copy does
/// not show waits; once the grace is ended (a one-shot sender), it goes out at once.
#[test]
fn ending_the_grace_sends_to_an_absent_machine_at_once() {
    struct Bodies(usize);
    impl FrameSink for Bodies {
        fn send_frame(&mut self, _: &Frame<'_>) -> bool {
            true
        }
        fn send_body(&mut self, _: &[u8]) -> bool {
            self.0 += 1;
            true
        }
        fn has_pending(&self) -> bool {
            false
        }
    }
    let mut sink = Frames(Vec::new());
    let mut c = client();
    welcome(&mut c, Instant::ZERO, &mut sink);
    c.handle_frame(Instant::ZERO, Frame::SnapshotEnd, &mut sink);
    let d = Deliver {
        from: "s",
        to: "ghost",
        event: "E",
        payload: b"",
        seq: 1,
        correlation: Default::default(),
    };
    c.send(Instant::ZERO, &d, 65536).unwrap();
    let mut bodies = Bodies(0);
    c.transmit(Instant::ZERO, &|_| false, &mut bodies);
    assert_eq!(bodies.0, 0, "held during the grace");
    c.end_grace();
    c.transmit(Instant::ZERO, &|_| false, &mut bodies);
    assert_eq!(bodies.0, 1, "sent once the grace is ended");
}

/// An id refused on a connection that stays up is refused for good (another process
/// holds it): its messages go out and fail visibly.
#[test]
fn an_id_taken_by_another_process_is_refused_for_good() {
    let mut sink = Frames(Vec::new());
    let mut c = client();
    welcome(&mut c, Instant::ZERO, &mut sink);
    c.register("s", &mut sink).unwrap();
    assert_eq!(
        answer(&mut c, Instant::ZERO, RegisterStatus::Taken, &mut sink),
        RegistrationChange::Refused
    );
    assert!(c.may_send_as("s"));
    assert!(c.retry.poll_timeout().is_none());
}

/// A delivery's acknowledgement waits for the policy (a batch, a write, or the delay); one
/// that must go before the process or an id leaves goes at once with `emit_acks_now`.
#[test]
fn owed_acknowledgements_wait_for_the_policy_unless_forced_out() {
    let mut sink = Frames(Vec::new());
    let mut c = client();
    welcome(&mut c, Instant::ZERO, &mut sink);
    c.handle_frame(Instant::ZERO, Frame::SnapshotEnd, &mut sink);
    c.received_mut().sender_registered("s", 7, 0);
    let d = Deliver {
        from: "s",
        to: "k",
        event: "E",
        payload: b"x",
        seq: 1,
        correlation: crate::wire::Correlation::None,
    };
    assert_eq!(c.accept(&d, true), Accepted::New);
    let acks = |sink: &Frames| sink.0.iter().filter(|f| f.starts_with("Ack")).count();
    let before = acks(&sink);
    c.emit_acks(Instant::ZERO, &mut sink);
    assert_eq!(
        acks(&sink),
        before,
        "one small delivery: held for the policy"
    );
    c.emit_acks_now(Instant::ZERO, &mut sink);
    assert_eq!(acks(&sink), before + 1, "forced out at once");
    c.emit_acks_now(Instant::ZERO, &mut sink);
    assert_eq!(acks(&sink), before + 1, "nothing owed twice");
}
