//! Requests and replies on the simulated bus (`sim`), on the virtual clock: every request is
//! settled exactly once, by its reply, its timeout, its target leaving the bus or a delivery
//! failure; a reply after that is dropped as late. The process tests are
//! `cli/tests/requests.rs`; `docs/guarantees.md` names each promise's tests.

mod sim;

use interstate_core::request::RequestFailure;
use interstate_core::wire::FailReason;
use interstate_core::{Duration, Error};
use sim::{check, Outcome, Sim, SimConfig, REQUESTS};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SETTLE: Duration = Duration::from_millis(60_000);

/// A requester `a` (process 0) and a worker `w` (process 1), connected and registered.
fn pair(answers: bool) -> Sim {
    let mut s = Sim::new(SimConfig::default());
    s.add_process(&["a"], &[]);
    let w = s.add_process(&["w"], &[]);
    s.proc_mut(w).answers = answers;
    assert!(s.settle(SETTLE), "{}", s.describe());
    s
}

/// Runs until the bus is quiescent and no request waits (each timed out at the latest),
/// then checks every promise.
fn finish(s: &mut Sim) {
    let done = s.drive_until(SETTLE, &mut |s| {
        s.quiescent() && s.procs.iter().flatten().all(|p| p.requests.is_empty())
    });
    assert!(done, "{}", s.describe());
    s.check_requests().unwrap();
    check(s).unwrap();
}

#[test]
fn a_reply_settles_its_request_once() {
    let mut s = pair(true);
    let (n, id) = s.request(0, "a", "w", ms(1000)).unwrap();
    finish(&mut s);
    let o = s.outcome(0, id).expect("settled");
    assert_eq!(o.outcome, Outcome::Replied(sim::reply_number(n)));
    assert!(s.rec.late_replies.is_empty());
}

/// The case: the worker took the request (its process acknowledged it on receipt)
/// and was killed before it answered. The requester gets one `target-gone`, when the
/// registry says the worker left: well within the timeout.
#[test]
fn a_worker_killed_after_acknowledging_the_request_ends_it_once_within_the_timeout() {
    let mut s = pair(false);
    let timeout = ms(30_000);
    let (n, id) = s.request(0, "a", "w", timeout).unwrap();
    let opened = s.now;
    // Delivered and acknowledged: nothing of it is outstanding at the requester any more.
    assert!(s.drive_until(SETTLE, &mut |s| {
        s.rec.delivered.iter().any(|d| d.n == n) && s.proc(0).client.outstanding().is_empty()
    }));
    assert!(
        s.outcome(0, id).is_none(),
        "not settled by the acknowledgement"
    );
    s.kill(1);
    finish(&mut s);
    let o = s.outcome(0, id).expect("settled");
    assert_eq!(o.outcome, Outcome::Failed(RequestFailure::TargetGone));
    assert!(o.at < opened + timeout, "settled at {:?}", o.at);
    assert_eq!(s.rec.settled.len(), 1);
}

#[test]
fn a_request_without_a_reply_times_out_on_the_virtual_clock() {
    let mut s = pair(false);
    let (_, id) = s.request(0, "a", "w", ms(500)).unwrap();
    let opened = s.now;
    finish(&mut s);
    s.run_for(ms(1000));
    let o = s.outcome(0, id).expect("settled");
    assert_eq!(o.outcome, Outcome::Failed(RequestFailure::Timeout));
    assert_eq!(o.at, opened + ms(500));
    s.check_requests().unwrap();
}

/// The reply is on its way (a slow link) when the timeout settles the request: it arrives
/// late and is dropped, counted, never a second settlement.
#[test]
fn a_reply_after_the_timeout_is_dropped_as_late() {
    let mut s = pair(true);
    s.set_delay(1, ms(400));
    let (_, id) = s.request(0, "a", "w", ms(300)).unwrap();
    finish(&mut s);
    let o = s.outcome(0, id).expect("settled");
    assert_eq!(o.outcome, Outcome::Failed(RequestFailure::Timeout));
    assert_eq!(s.rec.late_replies.len(), 1);
    assert_eq!(s.rec.settled.len(), 1);
}

#[test]
fn a_request_to_an_unknown_machine_fails_as_unknown_target() {
    let mut s = pair(true);
    let (_, id) = s.request(0, "a", "nobody", ms(30_000)).unwrap();
    finish(&mut s);
    let o = s.outcome(0, id).expect("settled");
    assert_eq!(
        o.outcome,
        Outcome::Failed(RequestFailure::Undelivered(FailReason::UnknownTarget))
    );
}

#[test]
fn a_full_request_table_is_an_error_the_requester_sees() {
    let mut s = pair(false);
    for _ in 0..REQUESTS {
        s.request(0, "a", "w", ms(1000)).unwrap();
    }
    assert_eq!(
        s.request(0, "a", "w", ms(1000)).map(|_| ()),
        Err(Error::RequestsFull { capacity: REQUESTS })
    );
    s.run_for(ms(1500));
    // Each timed out: room again.
    s.request(0, "a", "w", ms(1000)).unwrap();
    finish(&mut s);
    s.run_for(ms(1500));
    s.check_requests().unwrap();
}

/// Many requests while the hub restarts, links are cut and workers are killed and
/// restarted: every request of a requester alive at the end is settled exactly once, and
/// the replies that arrive are never more than one per request.
#[test]
fn every_request_is_settled_exactly_once_through_disruptions() {
    let mut s = Sim::new(SimConfig::default());
    s.add_process(&["a"], &[]);
    for w in ["w1", "w2", "w3"] {
        let p = s.add_process(&[w], &[]);
        s.proc_mut(p).answers = true;
    }
    assert!(s.settle(SETTLE), "{}", s.describe());
    for i in 0..200u64 {
        let w = ["w1", "w2", "w3"][(i % 3) as usize];
        let _ = s.request(0, "a", w, ms(200 + (i % 7) * 50));
        s.run_for(ms(3 + i % 5));
        match i {
            40 => s.kill(2),
            60 => s.restart(2),
            90 => s.cut(3, Duration::ZERO),
            120 => s.restart_hub(ms(50)),
            150 => s.set_delay(1, ms(150)),
            _ => {}
        }
        for p in 1..4 {
            if s.is_alive(p) {
                s.proc_mut(p).answers = true;
            }
        }
    }
    finish(&mut s);
    s.run_for(ms(2000));
    s.check_requests().unwrap();
    let replied = s
        .rec
        .settled
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Replied(_)))
        .count();
    let failed = s.rec.settled.len() - replied;
    assert!(
        replied > 0 && failed > 0,
        "{replied} replied, {failed} failed"
    );
}
