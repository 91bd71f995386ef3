//! Machine context and snapshots through the public API: typed and JSON contexts, overflow
//! reported by the step, snapshots refused for another chart, another chart revision, another
//! format version or corrupt bytes, timers restored with the time they had left.

use interstate::core::machine::{ContextFormat, Status, SNAPSHOT_VERSION};
use interstate::core::{Error, NoBehavior};
use interstate::{Behaviors, Event, Instant, Machine};
use serde::{Deserialize, Serialize};

const COUNTER: &str = r#"{
  "id": "counter",
  "context": {"count": 0},
  "initial": "idle",
  "states": {
    "idle": {
      "on": {
        "INC": {"actions": {"type": "assign", "assignment": {"count": {"$add": 1}}}},
        "NAME": {"actions": {"type": "assign", "assignment": {"name": {"$event": "name"}}}},
        "GO": {"target": "waiting", "guard": {"type": "context", "key": "count", "op": ">=", "value": 2}}
      }
    },
    "waiting": {"after": {"1000": "idle"}, "on": {"BACK": "idle"}}
  }
}"#;

fn snapshot_of<const C: usize>(m: &Machine<'_, 2, 4, 4, 2, 4, 40, C>, now: Instant) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = m.snapshot(now, &mut buf).expect("snapshot");
    buf.truncate(n);
    buf
}

#[test]
fn json_context_assign_guard_and_snapshot() {
    let compiled = interstate::compile_str(COUNTER).unwrap();
    let mut m: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    assert_eq!(m.context_json(), Some(r#"{"count":0}"#));
    let t0 = Instant::ZERO;
    m.start(t0, &mut NoBehavior).unwrap();
    m.send(t0, Event::new("GO"), &mut NoBehavior).unwrap();
    assert!(m.is_active(compiled.chart().find_state("counter.idle").unwrap()));
    for _ in 0..2 {
        m.send(t0, Event::new("INC"), &mut NoBehavior).unwrap();
    }
    m.send(
        t0,
        Event::new("NAME").with_payload(br#"{"name":"kim"}"#),
        &mut NoBehavior,
    )
    .unwrap();
    assert_eq!(m.context_json(), Some(r#"{"count":2,"name":"kim"}"#));
    m.send(t0, Event::new("GO"), &mut NoBehavior).unwrap();
    let waiting = compiled.chart().find_state("counter.waiting").unwrap();
    assert!(m.is_active(waiting));

    // 400 ms later: the `after` timer has 600 ms left.
    let snap = snapshot_of(&m, Instant::from_millis(400));
    let mut r: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    // Restored on another clock: due 600 ms after this `now`.
    let later = Instant::from_millis(50_000);
    r.restore(later, &snap).unwrap();
    assert_eq!(r.status(), Status::Active);
    assert!(r.is_active(waiting));
    assert_eq!(r.context_json(), m.context_json());
    assert_eq!(r.poll_timeout(), Some(Instant::from_millis(50_600)));
    assert!(!r
        .handle_timeout(Instant::from_millis(50_599), &mut NoBehavior)
        .unwrap());
    assert!(r
        .handle_timeout(Instant::from_millis(50_600), &mut NoBehavior)
        .unwrap());
    assert!(!r.is_active(waiting));
}

#[test]
fn json_context_overflow_fails_the_step() {
    let compiled = interstate::compile_str(COUNTER).unwrap();
    // 16 bytes: `{"count":0}` fits, a name of 10 more does not.
    let mut m: Machine<'_, 2, 4, 4, 2, 4, 40, 16> = Machine::new(compiled.chart(), "c").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    let r = m.send(
        Instant::ZERO,
        Event::new("NAME").with_payload(br#"{"name":"abcdefghij"}"#),
        &mut NoBehavior,
    );
    assert_eq!(
        r,
        Err(Error::ContextFull {
            needed: 31,
            capacity: 16
        })
    );
    assert_eq!(m.status(), Status::Failed);
    // The context is left as it was before the assign.
    assert_eq!(m.context_json(), Some(r#"{"count":0}"#));
    // And a chart whose initial context does not fit is refused when the machine is made.
    assert!(matches!(
        Machine::<'_, 2, 4, 4, 2, 4, 40, 4>::new(compiled.chart(), "c").err(),
        Some(Error::ContextFull { .. })
    ));
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct Tally {
    seen: u32,
    last: Option<u8>,
}

const LAMP: &str = r#"{"id":"lamp","initial":"off","states":{
  "off":{"on":{"FLIP":{"target":"on","guard":"few"}}},
  "on":{"entry":"count","on":{"FLIP":"off"}}}}"#;

fn lamp_behavior() -> interstate::Bound {
    let compiled = interstate::compile_str(LAMP).unwrap();
    Behaviors::new()
        .action("count", |cx| {
            let byte = cx.payload().first().copied();
            cx.update_context(|t: &mut Tally| {
                t.seen += 1;
                t.last = byte;
            })
            .unwrap();
        })
        .guard("few", |g| g.context::<Tally>().map_or(true, |t| t.seen < 2))
        .bind(&compiled.chart())
        .unwrap()
}

#[test]
fn typed_context_through_actions_guards_and_a_snapshot() {
    let compiled = interstate::compile_str(LAMP).unwrap();
    let chart = compiled.chart();
    let mut b = lamp_behavior();
    let mut m: Machine<'_> = Machine::new(chart, "lamp").unwrap();
    assert_eq!(m.context_format(), ContextFormat::None);
    m.start(Instant::ZERO, &mut b).unwrap();
    let on = chart.find_state("lamp.on").unwrap();
    for (i, payload) in [[7u8], [8], [9]].iter().enumerate() {
        m.send(
            Instant::ZERO,
            Event::new("FLIP").with_payload(payload),
            &mut b,
        )
        .unwrap();
        m.send(Instant::ZERO, Event::new("FLIP"), &mut b).unwrap();
        assert!(!m.is_active(on), "round {i}");
    }
    // The guard let two FLIPs through, then read `seen == 2` from the context.
    assert_eq!(
        m.context::<Tally>(),
        Ok(Tally {
            seen: 2,
            last: Some(8)
        })
    );
    let mut buf = [0u8; 256];
    let n = m.snapshot(Instant::ZERO, &mut buf).unwrap();
    let mut r: Machine<'_> = Machine::new(chart, "lamp").unwrap();
    r.restore(Instant::ZERO, &buf[..n]).unwrap();
    assert_eq!(r.context_format(), ContextFormat::Postcard);
    assert_eq!(r.context::<Tally>(), m.context::<Tally>());
    // Typed access to a JSON context is refused, not misread.
    let counter = interstate::compile_str(COUNTER).unwrap();
    let j: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(counter.chart(), "c").unwrap();
    assert_eq!(j.context::<Tally>(), Err(Error::ContextDecode));
}

#[test]
fn typed_context_overflow_keeps_the_old_value_and_fails_the_step() {
    let compiled = interstate::compile_str(LAMP).unwrap();
    let chart = compiled.chart();
    let mut b = Behaviors::new()
        .action("count", |cx| {
            let big: &[u8] = &[1u8; 40];
            assert!(matches!(
                cx.set_context(&big),
                Err(Error::ContextFull { capacity: 32, .. })
            ));
        })
        .guard("few", |_| true)
        .bind(&chart)
        .unwrap();
    let mut m: Machine<'_> = Machine::new(chart, "lamp").unwrap();
    m.set_context(&7u32).unwrap();
    m.start(Instant::ZERO, &mut b).unwrap();
    let r = m.send(Instant::ZERO, Event::new("FLIP"), &mut b);
    assert!(matches!(r, Err(Error::ContextFull { capacity: 32, .. })));
    assert_eq!(m.status(), Status::Failed);
    assert_eq!(m.context::<u32>(), Ok(7));
    let mut buf = [0u8; 256];
    assert!(matches!(
        m.snapshot(Instant::ZERO, &mut buf),
        Err(Error::SnapshotState(_))
    ));
}

#[test]
fn snapshots_of_another_chart_revision_or_version_are_refused() {
    let compiled = interstate::compile_str(COUNTER).unwrap();
    let mut m: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    let snap = snapshot_of(&m, Instant::ZERO);

    // Another revision of the same chart: one delay changed.
    let revised = interstate::compile_str(&COUNTER.replace("1000", "2000")).unwrap();
    let mut r: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(revised.chart(), "c").unwrap();
    let e = r.restore(Instant::ZERO, &snap).unwrap_err();
    assert!(matches!(e, Error::SnapshotChart { .. }), "{e:?}");
    assert!(e.to_string().contains("another chart or chart revision"));
    assert_eq!(r.status(), Status::Idle);
    // Still usable: it starts fresh.
    r.start(Instant::ZERO, &mut NoBehavior).unwrap();

    // Another format version (the version is the byte after the 4-byte magic).
    let mut old = snap.clone();
    old[4] = (SNAPSHOT_VERSION + 1) as u8;
    let mut r: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    assert_eq!(
        r.restore(Instant::ZERO, &old),
        Err(Error::SnapshotVersion {
            expected: SNAPSHOT_VERSION,
            found: SNAPSHOT_VERSION + 1
        })
    );
    // Not a snapshot; cut short; trailing bytes.
    assert!(matches!(
        r.restore(Instant::ZERO, b"ISCH\x02..."),
        Err(Error::InvalidSnapshot(_))
    ));
    for cut in 0..snap.len() {
        assert!(
            matches!(
                r.restore(Instant::ZERO, &snap[..cut]),
                Err(Error::InvalidSnapshot(_))
            ),
            "cut at {cut}"
        );
        assert_eq!(r.status(), Status::Idle);
    }
    let mut long = snap.clone();
    long.push(0);
    assert_eq!(
        r.restore(Instant::ZERO, &long),
        Err(Error::InvalidSnapshot("bytes after the end"))
    );
    // A buffer too small is an error, not a partial snapshot.
    let mut small = [0u8; 8];
    assert_eq!(
        m.snapshot(Instant::ZERO, &mut small),
        Err(Error::SnapshotBufferTooSmall { capacity: 8 })
    );
    // A started machine is not restored over.
    assert!(matches!(
        m.restore(Instant::ZERO, &snap),
        Err(Error::SnapshotState(_))
    ));
    // The real thing restores.
    r.restore(Instant::ZERO, &snap).unwrap();
    assert_eq!(r.status(), Status::Active);
}

#[test]
fn an_illegal_configuration_is_refused() {
    // Two children of one compound state active: rewrite the configuration list of a real
    // snapshot (the active states are the first u16 list after the context).
    let compiled = interstate::compile_str(COUNTER).unwrap();
    let mut m: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    let snap = snapshot_of(&m, Instant::ZERO);
    // [.., 2 (count), 0 (root), 1 (idle), ..]: find it and make it 3 states: 0, 1, 2.
    let at = snap
        .windows(3)
        .position(|w| w == [2, 0, 1])
        .expect("the configuration list");
    let mut bad = snap[..at].to_vec();
    bad.extend_from_slice(&[3, 0, 1, 2]);
    bad.extend_from_slice(&snap[at + 3..]);
    let mut r: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(compiled.chart(), "c").unwrap();
    assert!(matches!(
        r.restore(Instant::ZERO, &bad),
        Err(Error::InvalidSnapshot(why)) if why.contains("illegal configuration")
    ));
    // An active state the chart does not have.
    let mut bad = snap.clone();
    bad[at + 2] = 9;
    assert!(matches!(
        r.restore(Instant::ZERO, &bad),
        Err(Error::InvalidSnapshot(_))
    ));
    assert_eq!(r.active_states().count(), 0);
}

#[test]
fn a_history_memory_of_several_children_round_trips() {
    // XState's history quirk: on X, q's transition to the shallow history T (standing for p's
    // initial q) and i's transition to r run in one microstep, leaving q and r both active
    // under p. Leaving records both in T (as XState does); the snapshot keeps them, and BACK
    // after the restore enters both again (cli/tests/conformance/cases/
    // history-shallow-records-quirk-children.json has XState's trace).
    let chart = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cli/tests/conformance/cases/history-shallow-records-quirk-children.json"
    ))
    .unwrap();
    let case: serde_json::Value = serde_json::from_str(&chart).unwrap();
    let compiled = interstate::compile_str(&case["chart"].to_string()).unwrap();
    let chart = compiled.chart();
    let mut m: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(chart, "m").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    for e in ["X", "LEAVE"] {
        m.send(Instant::ZERO, Event::new(e), &mut NoBehavior)
            .unwrap();
    }
    let snap = snapshot_of(&m, Instant::ZERO);
    let mut r: Machine<'_, 2, 4, 4, 2, 4, 40, 64> = Machine::new(chart, "m").unwrap();
    r.restore(Instant::ZERO, &snap).unwrap();
    let names = |m: &Machine<'_, 2, 4, 4, 2, 4, 40, 64>| {
        let mut v: Vec<String> = m
            .active_states()
            .map(|s| chart.key(s).to_string())
            .collect();
        v.sort();
        v
    };
    for machine in [&mut m, &mut r] {
        machine
            .send(Instant::ZERO, Event::new("BACK"), &mut NoBehavior)
            .unwrap();
    }
    assert_eq!(names(&r), names(&m));
    assert!(names(&r).contains(&"q".to_string()) && names(&r).contains(&"r".to_string()));
}
