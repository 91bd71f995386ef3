//! The orchestrated context: what actions can do, and that every overflow is visible.

use std::cell::RefCell;
use std::rc::Rc;

use interstate::core::context::{Behavior, Target};
use interstate::core::{
    ActionContext, ActionId, DelayId, Duration, Error, Event, GuardContext, GuardId, Instant,
    Status,
};
use interstate::{compile_str, Behaviors, LocalDirectory, Machine};
use serde::{Deserialize, Serialize};

const CHART: &str = r#"{
  "id": "m",
  "initial": "idle",
  "states": {
    "idle": { "on": { "GO": { "target": "busy", "actions": "act" }, "TICK": { "actions": "act" } } },
    "busy": { "after": { "slow": "idle" }, "on": { "BACK": "idle" } }
  }
}"#;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    id: u32,
    name: String,
}

/// A behavior whose one action runs a closure the test sets.
struct Scripted {
    act: Box<dyn FnMut(&mut ActionContext<'_>)>,
    slow: Option<Duration>,
}

impl Behavior for Scripted {
    fn action(&mut self, _: ActionId, cx: &mut ActionContext<'_>) {
        (self.act)(cx)
    }
    fn guard(&mut self, _: GuardId, _: &GuardContext<'_>) -> bool {
        true
    }
    fn delay(&mut self, _: DelayId) -> Option<Duration> {
        self.slow
    }
}

fn outbox<
    const W: usize,
    const Q: usize,
    const O: usize,
    const T: usize,
    const H: usize,
    const B: usize,
>(
    m: &Machine<'_, W, Q, O, T, H, B>,
) -> Vec<(String, String, Vec<u8>)> {
    m.outbox()
        .map(|o| {
            let t = match o.target {
                Target::ThisMachine => "<self>".to_string(),
                Target::Machine(t) => t.to_string(),
                Target::Topic(t) => format!("<topic {t}>"),
                Target::Broadcast => "<all>".to_string(),
            };
            (t, o.event.to_string(), o.payload.to_vec())
        })
        .collect()
}

#[test]
fn sends_are_queued_and_handed_over_after_the_step() {
    let compiled = compile_str(CHART).unwrap();
    let chart = compiled.chart();
    let mut m: Machine<'_> = Machine::new(chart, "ui-main").unwrap();
    let seen_id = Rc::new(RefCell::new(String::new()));
    let s = seen_id.clone();
    let mut b = Scripted {
        act: Box::new(move |cx| {
            *s.borrow_mut() = cx.machine_id().to_string();
            let job: Job = cx.payload_as().unwrap();
            assert_eq!(
                job,
                Job {
                    id: 7,
                    name: "scan".into()
                }
            );
            cx.send("worker-1", "DO_WORK", b"raw").unwrap();
            cx.send_value("worker-1", "JOB", &job).unwrap();
            cx.send_self("NOTE", &[]).unwrap();
        }),
        slow: Some(Duration::from_millis(100)),
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    let payload = postcard::to_stdvec(&Job {
        id: 7,
        name: "scan".into(),
    })
    .unwrap();
    m.send(
        Instant::ZERO,
        Event::new("GO").with_payload(&payload),
        &mut b,
    )
    .unwrap();
    assert_eq!(*seen_id.borrow(), "ui-main");
    let out = outbox(&m);
    assert_eq!(
        out[0],
        ("worker-1".into(), "DO_WORK".into(), b"raw".to_vec())
    );
    assert_eq!(out[1].1, "JOB");
    assert_eq!(
        postcard::from_bytes::<Job>(&out[1].2).unwrap(),
        Job {
            id: 7,
            name: "scan".into()
        }
    );
    assert_eq!(out[2], ("<self>".into(), "NOTE".into(), vec![]));
    m.clear_outbox();
    assert_eq!(m.outbox_len(), 0);
}

#[test]
fn delayed_sends_wait_in_the_machine_and_can_be_cancelled() {
    let compiled = compile_str(CHART).unwrap();
    let mut m: Machine<'_> = Machine::new(compiled.chart(), "m").unwrap();
    let ids = Rc::new(RefCell::new(Vec::new()));
    let ids2 = ids.clone();
    let mut b = Scripted {
        act: Box::new(move |cx| {
            let keep = cx
                .send_after(
                    Target::Machine("w"),
                    "LATER",
                    Duration::from_millis(50),
                    b"k",
                )
                .unwrap();
            let drop = cx
                .send_after(Target::ThisMachine, "NEVER", Duration::from_millis(20), &[])
                .unwrap();
            assert!(cx.cancel(drop));
            assert!(!cx.cancel(drop), "cancelling twice finds nothing");
            ids2.borrow_mut().push(keep);
        }),
        slow: Some(Duration::from_millis(1_000)),
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("TICK"), &mut b).unwrap();
    assert_eq!(m.outbox_len(), 0);
    assert_eq!(m.poll_timeout(), Some(Instant::from_millis(50)));
    assert!(!m.handle_timeout(Instant::from_millis(49), &mut b).unwrap());
    assert!(m.handle_timeout(Instant::from_millis(50), &mut b).unwrap());
    assert_eq!(
        outbox(&m),
        vec![("w".into(), "LATER".into(), b"k".to_vec())]
    );
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_full_outbox_is_an_error_the_action_and_the_host_see() {
    let compiled = compile_str(CHART).unwrap();
    let mut m: Machine<'_, 2, 8, 2> = Machine::new(compiled.chart(), "m").unwrap();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let e2 = errors.clone();
    let mut b = Scripted {
        act: Box::new(move |cx| {
            for _ in 0..3 {
                if let Err(e) = cx.send("w", "E", &[]) {
                    e2.borrow_mut().push(e);
                }
            }
        }),
        slow: None,
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("TICK"), &mut b).unwrap();
    assert_eq!(*errors.borrow(), vec![Error::OutboxFull { capacity: 2 }]);
    assert_eq!(m.stats().send_failures, 1);
    assert_eq!(m.outbox_len(), 2, "what fitted is kept, in order");
}

#[test]
fn an_action_cannot_send_an_event_of_the_reserved_xstate_namespace() {
    let compiled = compile_str(CHART).unwrap();
    let mut m: Machine<'_, 2, 8, 8, 4> = Machine::new(compiled.chart(), "m").unwrap();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let e2 = errors.clone();
    let mut b = Scripted {
        act: Box::new(move |cx| {
            let results = [
                cx.send("w", "xstate.machine.down", b"{}"),
                cx.send_self("xstate.error.delivery", &[]),
                cx.send_after(
                    Target::Machine("w"),
                    "xstate.x",
                    Duration::from_millis(5),
                    &[],
                )
                .map(|_| ()),
                cx.send("w", "xstatex", &[]),
            ];
            e2.borrow_mut().extend(results);
        }),
        slow: None,
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("TICK"), &mut b).unwrap();
    let reserved = Err(Error::ReservedEvent);
    assert_eq!(*errors.borrow(), vec![reserved, reserved, reserved, Ok(())]);
    assert_eq!(outbox(&m), vec![("w".into(), "xstatex".into(), vec![])]);
    assert!(Error::ReservedEvent
        .to_string()
        .contains("xstate.* are reserved"));
}

#[test]
fn named_delays_come_from_the_host_and_missing_ones_fail_the_step() {
    let compiled = compile_str(CHART).unwrap();
    let mut m: Machine<'_> = Machine::new(compiled.chart(), "m").unwrap();
    let mut b = Scripted {
        act: Box::new(|_| {}),
        slow: Some(Duration::from_millis(300)),
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut b).unwrap();
    assert_eq!(m.poll_timeout(), Some(Instant::from_millis(300)));
    m.handle_timeout(Instant::from_millis(300), &mut b).unwrap();
    let mut value = String::new();
    m.write_value(&mut value).unwrap();
    assert_eq!(value, "\"idle\"");

    let mut m: Machine<'_> = Machine::new(compiled.chart(), "m").unwrap();
    let mut unbound = Scripted {
        act: Box::new(|_| {}),
        slow: None,
    };
    m.start(Instant::ZERO, &mut unbound).unwrap();
    assert!(matches!(
        m.send(Instant::ZERO, Event::new("GO"), &mut unbound),
        Err(Error::UnboundDelay { .. })
    ));
    assert_eq!(m.status(), Status::Failed);
    assert_eq!(
        m.send(Instant::ZERO, Event::new("BACK"), &mut unbound),
        Err(Error::NotRunning)
    );
}

#[test]
fn binding_reports_every_unbound_name_at_once() {
    let compiled = compile_str(
        r#"{"initial":"a","states":{"a":{"entry":["one","two"],"on":{"GO":{"target":"b","guard":"ok"}}},"b":{"after":{"pause":"a"}}}}"#,
    )
    .unwrap();
    let err = match Behaviors::new()
        .action("one", |_| {})
        .bind(&compiled.chart())
    {
        Err(e) => e,
        Ok(_) => panic!("two and ok and pause are unbound"),
    };
    assert_eq!(err.actions, vec!["two"]);
    assert_eq!(err.guards, vec!["ok"]);
    assert_eq!(err.delays, vec!["pause"]);
    assert_eq!(
        err.to_string(),
        "the chart uses names that are not bound: actions 'two'; guards 'ok'; delays 'pause'"
    );
}

#[test]
fn process_info_answers_from_the_directory() {
    let compiled =
        compile_str(r#"{"initial":"a","states":{"a":{"on":{"GO":{"actions":"look"}}}}}"#).unwrap();
    let found = Rc::new(RefCell::new(None));
    let f2 = found.clone();
    let (mut bound, _) = Behaviors::new()
        .action("look", move |cx| {
            *f2.borrow_mut() = Some((cx.process_info("peer"), cx.process_info("stranger")));
        })
        .bind_lenient(&compiled.chart());
    bound.set_directory(Box::new(LocalDirectory::new(
        ["peer"],
        Instant::from_millis(5),
    )));
    let mut m: Machine<'_> = Machine::new(compiled.chart(), "me").unwrap();
    m.start(Instant::ZERO, &mut bound).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut bound).unwrap();
    let (peer, stranger) = found.borrow_mut().take().unwrap();
    let peer = peer.expect("a local machine is known");
    assert_eq!(peer.pid, std::process::id());
    assert!(peer.local);
    assert_eq!(peer.registered_at, Instant::from_millis(5));
    assert!(stranger.is_none());
}

#[test]
fn an_eventless_loop_is_an_error_not_a_hang() {
    let compiled = compile_str(
        r#"{"initial":"a","states":{"a":{"on":{"GO":"b"}},"b":{"always":"c"},"c":{"always":"b"}}}"#,
    )
    .unwrap();
    let mut m: Machine<'_> = Machine::new(compiled.chart(), "m").unwrap();
    let mut b = interstate::core::NoBehavior;
    m.start(Instant::ZERO, &mut b).unwrap();
    assert_eq!(
        m.send(Instant::ZERO, Event::new("GO"), &mut b),
        Err(Error::MicrostepLimit { limit: 1000 })
    );
    assert_eq!(m.status(), Status::Failed);
}

#[test]
fn raise_overflowing_the_internal_queue_is_an_error() {
    let raises: Vec<String> = (0..9)
        .map(|_| r#"{"type":"xstate.raise","event":"X"}"#.to_string())
        .collect();
    let json = format!(
        r#"{{"initial":"a","states":{{"a":{{"on":{{"GO":{{"actions":[{}]}}}}}}}}}}"#,
        raises.join(",")
    );
    let compiled = compile_str(&json).unwrap();
    let mut m: Machine<'_, 2, 8> = Machine::new(compiled.chart(), "m").unwrap();
    let mut b = interstate::core::NoBehavior;
    m.start(Instant::ZERO, &mut b).unwrap();
    assert_eq!(
        m.send(Instant::ZERO, Event::new("GO"), &mut b),
        Err(Error::QueueFull { capacity: 8 })
    );
}

#[test]
fn a_delayed_send_due_into_a_full_outbox_waits_for_room() {
    let compiled = compile_str(CHART).unwrap();
    // Two outbox messages, four timers, 64 bytes.
    let mut m: Machine<'_, 2, 4, 2, 4, 4, 64> = Machine::new(compiled.chart(), "m").unwrap();
    let mut b = Scripted {
        act: Box::new(|cx| {
            cx.send_after(
                Target::Machine("w"),
                "LATER",
                Duration::from_millis(10),
                b"k",
            )
            .unwrap();
            cx.send("w", "NOW1", &[]).unwrap();
            cx.send("w", "NOW2", &[]).unwrap();
        }),
        slow: None,
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("TICK"), &mut b).unwrap();
    assert_eq!(m.outbox_len(), 2);

    let due = Instant::from_millis(10);
    assert_eq!(
        m.handle_timeout(due, &mut b),
        Err(Error::OutboxFull { capacity: 2 })
    );
    assert_eq!(
        m.status(),
        Status::Active,
        "waiting for room is not a failure"
    );
    assert_eq!(m.poll_timeout(), Some(due), "the send is kept, still due");
    assert_eq!(m.outbox_len(), 2, "nothing was added");

    m.clear_outbox();
    assert_eq!(m.handle_timeout(due, &mut b), Ok(true));
    assert_eq!(
        outbox(&m),
        vec![("w".into(), "LATER".into(), b"k".to_vec())]
    );
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.stats().send_failures, 0);
}

#[test]
fn a_delayed_send_due_into_full_byte_space_waits_and_takes_no_bytes() {
    let compiled = compile_str(CHART).unwrap();
    // Four outbox messages, but only 16 bytes behind them.
    let mut m: Machine<'_, 2, 4, 4, 4, 4, 16> = Machine::new(compiled.chart(), "m").unwrap();
    let calls = Rc::new(RefCell::new(0));
    let c2 = calls.clone();
    let mut b = Scripted {
        act: Box::new(move |cx| {
            *c2.borrow_mut() += 1;
            if *c2.borrow() == 1 {
                cx.send_after(
                    Target::Machine("w"),
                    "LATER",
                    Duration::from_millis(10),
                    &[],
                )
                .unwrap();
                // "w" and a 13-byte name: 14 of the 16 bytes.
                cx.send("w", "FILLS_BYTES_1", &[]).unwrap();
            } else {
                // Two bytes: fits only if the refused copy took none.
                cx.send("w", "X", &[]).unwrap();
            }
        }),
        slow: None,
    };
    m.start(Instant::ZERO, &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("TICK"), &mut b).unwrap();

    let due = Instant::from_millis(10);
    assert_eq!(
        m.handle_timeout(due, &mut b),
        Err(Error::PayloadSpaceFull { capacity: 16 })
    );
    assert_eq!(m.status(), Status::Active);
    assert_eq!(m.poll_timeout(), Some(due));
    m.send(due, Event::new("TICK"), &mut b).unwrap();
    assert_eq!(
        outbox(&m)
            .into_iter()
            .map(|(_, e, _)| e)
            .collect::<Vec<_>>(),
        vec!["FILLS_BYTES_1", "X"]
    );

    m.clear_outbox();
    assert_eq!(m.handle_timeout(due, &mut b), Ok(true));
    assert_eq!(outbox(&m), vec![("w".into(), "LATER".into(), vec![])]);
}
