//! The order in which atomic states became active survives the machine's renumbering of its
//! entry stamps (one byte per state, renumbered when they run out after 255 entries).
//!
//! Two regions each have an eventless transition out of the parallel state, enabled only once
//! a third region reaches `c2`; they conflict, and XState lets the one of the atomic state
//! that became active first win (its state set keeps insertion order). Region `ra` toggles
//! hundreds of times before, so the stamps wrap around. The expected outcomes are XState
//! 5.33.3's (checked with `scripts/difftest/difftest.mjs trace`).

use serde_json::{json, Value};

fn chart(b_moves: bool) -> Value {
    let ready = json!({"type": "stateIn", "state": "#m.p.rc.c2"});
    let leave = |to: &str, action: &str| json!({"guard": ready, "target": to, "actions": action});
    let rb = if b_moves {
        json!({"initial": "b1", "states": {
            "b1": {"on": {"Y": "b2"}},
            "b2": {"always": leave("#m.qb", "t_b")}}})
    } else {
        json!({"initial": "b1", "states": {"b1": {"always": leave("#m.qb", "t_b")}}})
    };
    json!({"id": "m", "initial": "p", "states": {
        "p": {"type": "parallel", "states": {
            "ra": {"initial": "a1", "states": {
                "a1": {"on": {"X": "a2"}, "always": leave("#m.qa", "t_a")},
                "a2": {"on": {"X": "a1"}, "always": leave("#m.qa", "t_a")}}},
            "rb": rb,
            "rc": {"initial": "c1", "states": {"c1": {"on": {"GO": "c2"}}, "c2": {}}}}},
        "qa": {}, "qb": {}}})
}

/// The last line of the simulator's trace.
fn last_step(chart: &Value, inputs: Vec<String>) -> Value {
    let compiled = interstate::compile_value(chart).expect("the chart compiles");
    let mut out = Vec::new();
    interstate::simulate::run(
        &compiled.chart(),
        &interstate::simulate::Options::default(),
        inputs,
        &mut out,
    )
    .expect("the run");
    let text = String::from_utf8(out).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn a_region_that_stayed_wins_after_the_stamps_wrapped() {
    // `rb` entered at the start and stayed; `ra` entered 600 times since.
    let mut inputs = vec!["X".to_string(); 600];
    inputs.push("GO".into());
    let last = last_step(&chart(false), inputs);
    assert_eq!(last["value"], json!("qb"), "{last}");
    assert_eq!(last["actions"], json!(["t_b"]), "{last}");
}

#[test]
fn a_region_that_moved_last_loses_after_the_stamps_wrapped() {
    // `ra` last entered at the 300th X, `rb` moved to b2 after it.
    let mut inputs = vec!["X".to_string(); 300];
    inputs.push("Y".into());
    inputs.push("GO".into());
    let last = last_step(&chart(true), inputs);
    assert_eq!(last["value"], json!("qa"), "{last}");
    assert_eq!(last["actions"], json!(["t_a"]), "{last}");
}
