//! `interstate compile --rust`: the generated module for the `lamp` chart, checked in at
//! `no_std_core/check/src/generated_chart.rs` (and used by the `no_std` check crate and the
//! serial device example), is compiled into this test and run.
//!
//! - The machine on the generated statics behaves exactly like the simulator on the chart's
//!   JSON: the same trace (state value, actions, messages sent, done) for the same inputs.
//! - The checked-in module and image are what the command writes today: regenerate them
//!   with the commands in `no_std_core/check/src/lib.rs` when this fails.

use std::path::Path;
use std::process::Command;

use interstate::core::{
    ActionContext, ActionId, Behavior, Chart, Duration, Event, GuardContext, GuardId, Instant,
    Machine, Target,
};
use serde_json::{json, Value};

#[allow(dead_code)]
mod lamp {
    include!("../../no_std_core/check/src/generated_chart.rs");
}

const JSON: &str = "no_std_core/check/lamp.json";
const MODULE: &str = "no_std_core/check/src/generated_chart.rs";
const IMAGE: &str = "no_std_core/check/lamp.isch";

/// The workspace root (this test belongs to `cli/`).
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Records the actions by name, answers the one guard.
struct Recorder {
    chart: Chart<'static>,
    actions: Vec<String>,
    manual_off: bool,
}

impl Behavior for Recorder {
    fn action(&mut self, action: ActionId, _cx: &mut ActionContext<'_>) {
        self.actions
            .push(self.chart.action_name(action).to_string());
    }
    fn guard(&mut self, guard: GuardId, _cx: &GuardContext<'_>) -> bool {
        assert_eq!(guard, lamp::guards::MANUAL_OFF);
        self.manual_off
    }
}

/// The trace of the generated chart, in the simulator's format.
fn generated_trace(inputs: &[&str], manual_off: bool) -> Vec<Value> {
    let chart = lamp::chart();
    let mut m: Machine<'static> = Machine::new(chart, "lamp").unwrap();
    let mut b = Recorder {
        chart,
        actions: Vec::new(),
        manual_off,
    };
    let mut now = Instant::ZERO;
    m.start(now, &mut b).unwrap();
    let mut trace = vec![line(0, Value::Null, &mut m, &mut b)];
    for (i, input) in inputs.iter().enumerate() {
        if let Some(ms) = input.strip_prefix("@advance ") {
            now = now + Duration::from_millis(ms.parse().unwrap());
            while m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now, &mut b).unwrap();
            }
        } else {
            m.send(now, Event::new(input), &mut b).unwrap();
        }
        trace.push(line(i + 1, json!(input), &mut m, &mut b));
    }
    trace
}

fn line(step: usize, input: Value, m: &mut Machine<'static>, b: &mut Recorder) -> Value {
    let mut value = String::new();
    m.write_value(&mut value).unwrap();
    let mut l = json!({
        "step": step,
        "input": input,
        "value": serde_json::from_str::<Value>(&value).unwrap(),
        "actions": std::mem::take(&mut b.actions),
        "done": m.is_done(),
    });
    let sent: Vec<Value> = m
        .outbox()
        .map(|o| match o.target {
            Target::Machine(to) => json!({"to": to, "event": o.event}),
            Target::ThisMachine => json!({"to": "lamp", "event": o.event}),
            Target::Topic(t) => json!({"topic": t, "event": o.event}),
            Target::Broadcast => json!({"broadcast": true, "event": o.event}),
        })
        .collect();
    m.clear_outbox();
    if !sent.is_empty() {
        l["sent"] = Value::Array(sent);
    }
    l
}

/// The simulator's trace of the chart's JSON.
fn simulated_trace(inputs: &[&str], manual_off: bool) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(JSON)).unwrap();
    let compiled = interstate::compile_str(&text).unwrap();
    let mut options = interstate::simulate::Options::default();
    options.guards.insert("manualOff".into(), manual_off);
    let mut out = Vec::new();
    let ok = interstate::simulate::run(
        &compiled.chart(),
        &options,
        inputs.iter().map(|s| s.to_string()),
        &mut out,
    )
    .unwrap();
    assert!(ok);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_generated_module_runs_like_the_simulator_on_the_json() {
    let inputs = [
        "TOGGLE",
        "@advance 100",
        "TOGGLE",
        "@advance 200",
        "TOGGLE",
        "NOT_AN_EVENT",
        "@advance 1000",
    ];
    for manual_off in [false, true] {
        let generated = generated_trace(&inputs, manual_off);
        let simulated = simulated_trace(&inputs, manual_off);
        assert_eq!(
            generated, simulated,
            "manualOff = {manual_off}\ngenerated: {generated:#?}\nsimulated: {simulated:#?}"
        );
    }
    // The trace says what the chart does: on, back off after 300 ms (or at once when
    // `manualOff` holds), telling the controller both times.
    let t = generated_trace(&inputs, false);
    assert_eq!(t[1]["value"], "on");
    assert_eq!(
        t[1]["sent"],
        json!([{"to": "controller", "event": "LAMP_ON"}])
    );
    assert_eq!(t[4]["value"], "off");
    assert_eq!(
        t[4]["sent"],
        json!([{"to": "controller", "event": "LAMP_OFF"}])
    );
    let t = generated_trace(&inputs, true);
    assert_eq!(t[3]["value"], "off");
}

#[test]
fn the_generated_module_and_the_json_compile_to_the_same_tables() {
    let text = std::fs::read_to_string(root().join(JSON)).unwrap();
    let compiled = interstate::compile_str(&text).unwrap();
    assert_eq!(*compiled.chart().tables(), lamp::TABLES);
    let image = std::fs::read(root().join(IMAGE)).unwrap();
    let from_image = interstate::core::image::decode(&image).unwrap();
    assert_eq!(*from_image.tables(), lamp::TABLES);
    assert_eq!(lamp::events::TOGGLE, lamp::chart().event("TOGGLE").unwrap());
    assert_eq!(
        lamp::actions::LED_ON,
        lamp::chart().action("ledOn").unwrap()
    );
    assert_eq!(
        lamp::states::LAMP_ON,
        lamp::chart().find_state("lamp.on").unwrap()
    );
}

#[test]
fn the_checked_in_module_and_image_are_up_to_date() {
    let dir = std::env::temp_dir().join(format!("interstate-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _cleanup = Cleanup(&dir);
    let bin = env!("CARGO_BIN_EXE_interstate");
    for (args, checked_in) in [
        (vec!["compile", "--rust", JSON, "-o"], MODULE),
        (vec!["compile", JSON, "-o"], IMAGE),
        // The serial device example's second machine.
        (
            vec!["compile", "--rust", "examples/charts/sensor.json", "-o"],
            "examples/charts/sensor_chart.rs",
        ),
    ] {
        let out = dir.join(Path::new(checked_in).file_name().unwrap());
        let status = Command::new(bin)
            .current_dir(root())
            .args(&args)
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let fresh = std::fs::read(&out).unwrap();
        let old = std::fs::read(root().join(checked_in)).unwrap();
        assert!(
            fresh == old,
            "{checked_in} is out of date; regenerate it from the repository root with\n  \
             cargo run -- {} {checked_in}",
            args.join(" ")
        );
    }
}
