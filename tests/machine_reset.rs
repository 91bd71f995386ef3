//! `Machine::reset_for`: a machine used before (outbox, timers, context, history, children)
//! and reset for another chart behaves as a new machine of that chart, step for step.

use interstate::core::Target;
use interstate::{compile_str, Behaviors, Event, Instant, Machine};

type M<'c> = Machine<'c, 2, 16, 16, 8, 4, 512, 256, 0>;

/// Leaves much behind: a context, a history memory, pending timers, an unsent outbox, a child.
const USED: &str = r#"{
  "id": "u", "initial": "a", "context": {"count": 7, "name": "long enough to fill bytes"},
  "states": {
    "a": {
      "initial": "a1",
      "states": {"a1": {"on": {"NEXT": "a2"}}, "a2": {}, "h": {"type": "history", "history": "deep"}},
      "invoke": {"src": "worker", "id": "w"},
      "entry": [{"type": "sendTo", "to": "w", "event": "HELLO"}, {"type": "raise", "event": "LATER", "delay": 500}],
      "after": {"1000": "b"},
      "on": {"AWAY": "b"}
    },
    "b": {"on": {"BACK": "a.h"}}
  }
}"#;

/// Its own context, timers and messages, compared against a new machine's.
const FRESH: &str = r#"{
  "id": "f", "initial": "x", "context": {"n": 1},
  "states": {
    "x": {
      "entry": {"type": "sendTo", "to": "peer", "event": "HI"},
      "after": {"200": "y"},
      "on": {"GO": {"target": "y", "actions": {"type": "assign", "assignment": {"n": 2}}}}
    },
    "y": {"type": "final"}
  }
}"#;

fn snapshot(m: &M<'_>) -> String {
    let mut value = String::new();
    m.write_value(&mut value).unwrap();
    let out: Vec<String> = m
        .outbox()
        .map(|o| match o.target {
            Target::Machine(t) => format!("{t}:{}", o.event),
            other => format!("{other:?}:{}", o.event),
        })
        .collect();
    let timers: Vec<String> = m
        .pending_timers()
        .map(|(due, seq)| format!("{due:?}/{seq}"))
        .collect();
    format!(
        "id={} value={value} out={out:?} timers={timers:?} context={:?} done={} children={}",
        m.id(),
        m.context_json(),
        m.is_done(),
        m.live_children().count()
    )
}

#[test]
fn a_reset_machine_runs_as_a_new_one() {
    let used = compile_str(USED).unwrap();
    let fresh = compile_str(FRESH).unwrap();
    let used_chart = used.chart();
    let chart = fresh.chart();
    let mut bound_used = Behaviors::new().actor("worker").bind(&used_chart).unwrap();
    let mut m = M::new(used_chart, "u").unwrap();
    m.start(Instant::ZERO, &mut bound_used).unwrap();
    m.send(Instant::ZERO, Event::new("NEXT"), &mut bound_used)
        .unwrap();
    m.send(Instant::ZERO, Event::new("AWAY"), &mut bound_used)
        .unwrap();
    m.send(Instant::ZERO, Event::new("BACK"), &mut bound_used)
        .unwrap();
    assert!(m.outbox().count() > 0 && m.pending_timers().count() > 0);

    m.reset_for(chart, "f").unwrap();
    let mut new = M::new(chart, "f").unwrap();
    assert_eq!(snapshot(&m), snapshot(&new));

    let mut b1 = Behaviors::new().bind(&chart).unwrap();
    let mut b2 = Behaviors::new().bind(&chart).unwrap();
    m.start(Instant::ZERO, &mut b1).unwrap();
    new.start(Instant::ZERO, &mut b2).unwrap();
    assert_eq!(snapshot(&m), snapshot(&new));
    assert!(snapshot(&m).contains("peer:HI"), "{}", snapshot(&m));
    m.send(Instant::ZERO, Event::new("GO"), &mut b1).unwrap();
    new.send(Instant::ZERO, Event::new("GO"), &mut b2).unwrap();
    assert_eq!(snapshot(&m), snapshot(&new));
    assert!(m.is_done());
}

#[test]
fn a_chart_that_does_not_fit_leaves_the_machine_as_it_was() {
    let fresh = compile_str(FRESH).unwrap();
    let chart = fresh.chart();
    let mut b = Behaviors::new().bind(&chart).unwrap();
    let mut m = M::new(chart, "f").unwrap();
    m.start(Instant::ZERO, &mut b).unwrap();
    let before = snapshot(&m);
    let long_id = "x".repeat(1000);
    assert!(m.reset_for(chart, &long_id).is_err());
    assert_eq!(snapshot(&m), before);
}
