//! Every conformance case and every case of the differential batch, run twice: through the
//! interpreter (`interstate::simulate::run`) and through the machine generated for its chart
//! (`interstate::simulate::run_native`, compiled by `build.rs`). The two traces must be the
//! same, line for line (values, actions, logs, messages sent, done, errors); and the native
//! trace must agree with the trace XState printed for the case (as `cli/tests/conformance.rs`
//! and `tests/differential.rs` compare them). A chart the generator refuses must be refused
//! with a message naming the feature and the state.
//!
//! All disagreements are listed before the test fails; the counts are printed
//! (`cargo test -p interstate-native-agreement -- --nocapture`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// The cases as `build.rs` read them, in the same order.
fn cases() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    let mut files = |dir: &Path| {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap());
        }
    };
    files(&root.join("cli/tests/conformance/cases"));
    if let Some(extra) = option_env!("INTERSTATE_NATIVE_EXTRA_CASES") {
        files(Path::new(extra));
    }
    let text = std::fs::read_to_string(root.join("tests/differential/generated.jsonl")).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        out.push(serde_json::from_str(line).unwrap());
    }
    out
}

fn options(case: &Value) -> interstate::simulate::Options {
    let mut o = interstate::simulate::Options::default();
    if let Some(map) = case.get("guards").and_then(Value::as_object) {
        o.guards = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
            .collect::<HashMap<_, _>>();
    }
    if let Some(map) = case.get("delays").and_then(Value::as_object) {
        o.delays = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
    }
    o
}

fn inputs(case: &Value) -> Vec<String> {
    case["inputs"]
        .as_array()
        .map(|xs| {
            xs.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(xs) => Value::Array(xs.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The first difference from XState's trace, as the conformance and differential tests
/// compare (key order ignored; an expected error matches any error; lines beyond the
/// expected ones ignored).
fn against_expected(expected: &[Value], got: &[Value]) -> Option<String> {
    for (i, e) in expected.iter().enumerate() {
        let Some(g) = got.get(i) else {
            return Some(format!("step {i}: expected {e}, nothing printed"));
        };
        if e.get("error").is_some() || g.get("error").is_some() {
            if e.get("error").is_some() && g.get("error").is_some() {
                return None;
            }
            return Some(format!("step {i}: expected {e}\n      got {g}"));
        }
        let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let logs = |v: &Value| v.get("logs").cloned().unwrap_or(Value::Array(Vec::new()));
        let same = sorted(&field(e, "value")) == sorted(&field(g, "value"))
            && field(e, "actions") == field(g, "actions")
            && field(e, "done") == field(g, "done")
            && (e.get("logs").is_none() || logs(e) == logs(g));
        if !same {
            return Some(format!("step {i}: expected {e}\n      got {g}"));
        }
    }
    None
}

#[test]
fn generated_machines_print_the_interpreters_traces() {
    // The simulator's machines (64 KiB arenas each) are built on the stack before they are
    // boxed, which unoptimised code does in several copies: more than a test thread's 2 MiB.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(agree)
        .unwrap()
        .join()
        .unwrap();
}

fn agree() {
    let cases = cases();
    let list = interstate_native_agreement::CASES;
    assert_eq!(cases.len(), list.len(), "build.rs read other cases");
    assert!(list.len() >= 500, "only {} cases", list.len());
    let (mut native, mut refused, mut failures) = (0, Vec::new(), Vec::new());
    for (i, (case, &(name, status))) in cases.iter().zip(list).enumerate() {
        if let Err(why) = status {
            assert!(
                why.starts_with("cannot compile to native code: ") && why.contains("(state '#"),
                "{name}: a refusal must name the feature and the state: {why}"
            );
            refused.push((name, why));
            continue;
        }
        native += 1;
        let compiled = interstate::compile_value(&case["chart"]).unwrap();
        let mut interpreted = Vec::new();
        interstate::simulate::run(
            &compiled.chart(),
            &options(case),
            inputs(case),
            &mut interpreted,
        )
        .unwrap();
        let mut generated = Vec::new();
        interstate_native_agreement::run(i, &options(case), inputs(case), &mut generated)
            .expect("a generated machine")
            .unwrap();
        let (a, b) = (lines(&interpreted), lines(&generated));
        if a != b {
            let step = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            failures.push(format!(
                "{name}: step {step}: interpreter {}\n      native      {}",
                a.get(step).map_or("(none)".into(), Value::to_string),
                b.get(step).map_or("(none)".into(), Value::to_string)
            ));
            continue;
        }
        if let Some(expected) = case["expected"].as_array() {
            if let Some(d) = against_expected(expected, &b) {
                failures.push(format!("{name} (against XState): {d}"));
            }
        }
    }
    let mut by_feature: HashMap<&str, usize> = HashMap::new();
    for (_, why) in &refused {
        let feature = why
            .trim_start_matches("cannot compile to native code: ")
            .split(" (state")
            .next()
            .unwrap_or("");
        *by_feature.entry(feature).or_default() += 1;
    }
    println!(
        "{} cases: {native} compiled to native and run, {} refused ({by_feature:?}), {} disagreements",
        list.len(),
        refused.len(),
        failures.len()
    );
    // The same by where the cases came from (conformance, differential, extra).
    let source = |name: &str| name.split('/').next().unwrap_or("").to_string();
    let mut by_source: std::collections::BTreeMap<String, [usize; 3]> = Default::default();
    for &(name, status) in list {
        let counts = by_source.entry(source(name)).or_default();
        counts[0] += 1;
        counts[1] += usize::from(status.is_err());
    }
    for f in &failures {
        by_source.entry(source(f)).or_default()[2] += 1;
    }
    for (source, [cases, refused, failed]) in by_source {
        println!(
            "  {source}: {cases} cases, {} compiled, {refused} refused, {failed} disagreements",
            cases - refused
        );
    }
    assert!(
        native * 2 > list.len(),
        "fewer than half the cases compiled"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
