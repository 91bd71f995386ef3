//! A machine remembers the event its last external event's name was found to be: events
//! named in any order (repeated, alternating, unknown, after a reset for another chart) are
//! taken as the same events looked up afresh each time.

use interstate::{compile_str, Behaviors, Event, Instant, Machine};

type M<'c> = Machine<'c, 2, 16, 16, 8, 4, 512, 256, 0>;

const CHART: &str = r#"{
  "id": "n", "initial": "a", "context": {"n": 0},
  "states": {
    "a": {"on": {"X": "b", "Y": {"target": "a", "actions": {"type": "assign", "assignment": {"n": 1}}}}},
    "b": {"on": {"X": "a", "Z": "c"}},
    "c": {"on": {"Y": "a", "W": "b"}}
  }
}"#;

/// Few events, and other names: ids the first chart's names could leave behind.
const OTHER: &str = r#"{
  "id": "o", "initial": "p",
  "states": {"p": {"on": {"GO": "q"}}, "q": {"on": {"GO": "p"}}}
}"#;

fn state(m: &M<'_>) -> String {
    let mut value = String::new();
    m.write_value(&mut value).unwrap();
    format!("{value} {:?}", m.context_json())
}

#[test]
fn events_by_name_step_as_events_by_id() {
    let compiled = compile_str(CHART).unwrap();
    let chart = compiled.chart();
    let (mut b1, mut b2) = (
        Behaviors::new().bind(&chart).unwrap(),
        Behaviors::new().bind(&chart).unwrap(),
    );
    let (mut by_name, mut by_id) = (M::new(chart, "n").unwrap(), M::new(chart, "n").unwrap());
    by_name.start(Instant::ZERO, &mut b1).unwrap();
    by_id.start(Instant::ZERO, &mut b2).unwrap();
    let names = [
        "X", "X", "X", "Y", "NOPE", "X", "Z", "Z", "W", "NOPE", "NOPE", "X", "Y",
    ];
    for round in 0..3 {
        for (i, name) in names.iter().enumerate() {
            let name = if (i + round) % 4 == 0 {
                *name
            } else {
                names[(i * 7 + round) % names.len()]
            };
            by_name
                .send(Instant::ZERO, Event::new(name), &mut b1)
                .unwrap();
            let event = match by_id.event_id(name) {
                Some(id) => Event::from_id(&chart, id),
                None => Event::new(name),
            };
            by_id.send(Instant::ZERO, event, &mut b2).unwrap();
            assert_eq!(state(&by_name), state(&by_id), "after {name}");
        }
    }
}

#[test]
fn a_reset_machine_forgets_the_event_it_remembered() {
    let compiled = compile_str(CHART).unwrap();
    let other = compile_str(OTHER).unwrap();
    let (chart, other_chart) = (compiled.chart(), other.chart());
    let mut b = Behaviors::new().bind(&chart).unwrap();
    let mut m = M::new(chart, "n").unwrap();
    m.start(Instant::ZERO, &mut b).unwrap();
    // The last of the chart's events, by name: the id remembered is past the other chart's.
    m.send(Instant::ZERO, Event::new("Z"), &mut b).unwrap();
    m.send(Instant::ZERO, Event::new("Z"), &mut b).unwrap();
    m.reset_for(other_chart, "o").unwrap();
    let mut b = Behaviors::new().bind(&other_chart).unwrap();
    m.start(Instant::ZERO, &mut b).unwrap();
    for (name, expect) in [("Z", "p"), ("GO", "q"), ("GO", "p"), ("X", "p")] {
        m.send(Instant::ZERO, Event::new(name), &mut b).unwrap();
        let mut value = String::new();
        m.write_value(&mut value).unwrap();
        assert!(value.contains(expect), "after {name}: {value}");
    }
}

#[test]
fn an_event_is_named_by_its_own_bytes_only() {
    // Prefixes of each other, the same length with other bytes, and a non-ASCII name.
    let compiled = compile_str(
        r#"{
  "id": "p", "initial": "a",
  "states": {"a": {"on": {"X": "a", "XX": "a", "XY": "a", "Xé": "a", "é": "a", "Y": "a"}}}
}"#,
    )
    .unwrap();
    let chart = compiled.chart();
    let names = ["X", "XX", "XY", "Xé", "é", "Y"];
    let others = ["", "x", "XXX", "X\u{0}", "Xe", "\u{e8}", "Z"];
    for name in names {
        let id = chart.event(name).unwrap();
        for other in names.iter().chain(others.iter()) {
            assert_eq!(
                chart.event_is_named(id, other),
                *other == name,
                "{name} against {other:?}"
            );
        }
    }
}
