//! A fixed batch of generated charts, run through the simulator and compared with XState v5.
//!
//! `tests/differential/generated.jsonl` holds one case per line: a random chart from the
//! differential tester's generator (`scripts/difftest/`), its guards, named delays and inputs,
//! and the trace XState 5.33.3 printed for it (`expected`). Each case runs through
//! `interstate::simulate` (in process, no node needed) and must agree step by step: the state
//! value (object key order ignored), the actions in order, the `log` messages, `done`; an
//! expected error line matches any error line at that step. All disagreements are listed before
//! the test fails. `tests/differential/invoke.jsonl` holds cases of the `invoke` profile in the
//! same format, with the child charts as `actors`. Regenerate the files with the commands in
//! `scripts/difftest/README.md`.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

const MIN_CASES: usize = 300;
const MIN_INVOKE_CASES: usize = 60;

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(xs) => Value::Array(xs.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn field<'v>(v: &'v Value, k: &str) -> &'v Value {
    v.get(k).unwrap_or(&Value::Null)
}

fn logs(v: &Value) -> Value {
    v.get("logs").cloned().unwrap_or(Value::Array(Vec::new()))
}

/// The first difference between the traces, if any.
fn compare(expected: &[Value], got: &[Value]) -> Option<String> {
    for i in 0..expected.len().max(got.len()) {
        let (Some(e), Some(g)) = (expected.get(i), got.get(i)) else {
            return Some(format!(
                "step {i}: {} expected lines, {} printed",
                expected.len(),
                got.len()
            ));
        };
        let (ee, ge) = (e.get("error").is_some(), g.get("error").is_some());
        if ee || ge {
            if ee && ge {
                continue;
            }
            return Some(format!("step {i}: expected {e}\n      got {g}"));
        }
        let same = sorted(field(e, "value")) == sorted(field(g, "value"))
            && field(e, "actions") == field(g, "actions")
            && field(e, "done") == field(g, "done")
            && logs(e) == logs(g);
        if !same {
            return Some(format!("step {i}: expected {e}\n      got {g}"));
        }
    }
    None
}

fn run_case(case: &Value) -> Result<Vec<Value>, String> {
    let compiled = interstate::compile_value(&case["chart"]).map_err(|e| e.to_string())?;
    let mut options = interstate::simulate::Options::default();
    if let Some(map) = case["guards"].as_object() {
        let guards: HashMap<String, bool> = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bool().unwrap()))
            .collect();
        options.guards = guards;
    }
    if let Some(map) = case["delays"].as_object() {
        options.delays = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
    }
    if let Some(map) = case["actors"].as_object() {
        for (src, chart) in map {
            let compiled = interstate::compile_value(chart).map_err(|e| e.to_string())?;
            options.actors.insert(src.clone(), compiled);
        }
    }
    let inputs: Vec<String> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let mut out = Vec::new();
    interstate::simulate::run(&compiled.chart(), &options, inputs, &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn generated_cases_agree_with_xstate_v5() {
    check_batch("tests/differential/generated.jsonl", MIN_CASES);
}

/// The `invoke` profile's charts: states invoke the generated child charts `c0` and `c1`
/// (the case's `actors`), children send their parent events, finish and fail.
#[test]
fn generated_invoking_cases_agree_with_xstate_v5() {
    check_batch("tests/differential/invoke.jsonl", MIN_INVOKE_CASES);
}

fn check_batch(file: &str, min_cases: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut failures = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        n += 1;
        let case: Value = serde_json::from_str(line).expect("a JSON case per line");
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let expected = case["expected"].as_array().expect("expected trace");
        match run_case(&case) {
            Err(e) => failures.push(format!("  {name}: {e}")),
            Ok(got) => {
                if let Some(why) = compare(expected, &got) {
                    failures.push(format!("  {name}: {why}"));
                }
            }
        }
    }
    assert!(
        n >= min_cases,
        "only {n} generated cases in {file} (at least {min_cases})"
    );
    assert!(
        failures.is_empty(),
        "{} of {n} generated cases of {file} disagree with XState v5:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
