//! Conformance suite: every `cli/tests/conformance/cases/*.json` case is run through
//! `interstate simulate` and its trace is compared with the expected trace produced by XState v5
//! (see `cli/tests/conformance/README.md`; the expected traces are checked in, so this test needs no node).
//!
//! The comparison follows `/work/shared/conformance/run.py`: state values are compared as JSON
//! (object key order ignored), `actions` lists must be equal, `done` must be equal, and an expected
//! error line matches any error line at that step (the error text is not compared). Output lines
//! beyond the expected ones are ignored.
//!
//! All cases run in one test that collects every failing case before failing, so one run shows
//! every disagreement. Set `CONFORMANCE_FILTER=substring` to run only the cases whose file name
//! contains it (the minimum case count is then not enforced).

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIN_CASES: usize = 170;
const TIMEOUT: Duration = Duration::from_secs(20);

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("conformance")
        .join("cases")
}

/// Guard names the chart refers to: `guard` or `cond` values given as a string or as an object
/// with a string `type`, excluding the built-in state-in guards (which take no `--guard`).
fn guards_used(chart: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, found: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, x) in map {
                    if k == "guard" || k == "cond" {
                        let name = match x {
                            Value::String(s) => Some(s.as_str()),
                            Value::Object(o) => o.get("type").and_then(Value::as_str),
                            _ => None,
                        };
                        if let Some(name) = name {
                            if name != "xstate.stateIn" && name != "stateIn" {
                                found.insert(name.to_string());
                            }
                        }
                    }
                    walk(x, found);
                }
            }
            Value::Array(xs) => xs.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    walk(chart, &mut found);
    found
}

/// JSON text with object keys sorted at every level, for order-insensitive comparison.
fn canonical(v: &Value) -> String {
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
    serde_json::to_string(&sorted(v)).unwrap()
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

struct Run {
    stdout: String,
    stderr: String,
    status: String,
}

fn run_cli(
    chart_path: &Path,
    guards: &[(String, bool)],
    actors: &[(String, std::path::PathBuf)],
    stdin_text: String,
) -> Result<Run, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_interstate"));
    cmd.arg("simulate").arg(chart_path);
    for (name, val) in guards {
        cmd.arg("--guard").arg(format!("{name}={val}"));
    }
    for (src, path) in actors {
        cmd.arg("--actor").arg(format!("{src}={}", path.display()));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The CLI may exit early (e.g. after an error line); a broken pipe is fine.
        let _ = stdin.write_all(stdin_text.as_bytes());
    });
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    let _ = writer.join();
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Run {
        stdout,
        stderr,
        status: status.to_string(),
    })
}

/// Compares the CLI's output with the expected trace; `Err` describes the first disagreement.
fn compare(expected: &[Value], stdout: &str) -> Result<(), String> {
    let mut got = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => got.push(v),
            Err(_) => {
                return Err(format!(
                    "unparseable output line: {}",
                    line.chars().take(200).collect::<String>()
                ))
            }
        }
    }
    for (i, e) in expected.iter().enumerate() {
        let input = e.get("input").map(short).unwrap_or_default();
        let Some(g) = got.get(i) else {
            if e.get("error").is_some() && got.last().is_some_and(|l| l.get("error").is_some()) {
                return Ok(());
            }
            return Err(format!(
                "step {i}: missing output line\n      expected: {}",
                short(e)
            ));
        };
        if e.get("error").is_some() {
            if g.get("error").is_none() {
                return Err(format!(
                    "step {i}: expected an error line\n      expected: {}\n      got:      {}",
                    short(e),
                    short(g)
                ));
            }
            return Ok(());
        }
        if g.get("error").is_some() {
            return Err(format!(
                "step {i} ({input}): unexpected error\n      expected: {}\n      got:      {}",
                short(e),
                short(g)
            ));
        }
        let gv = g.get("value").cloned().unwrap_or(Value::Null);
        if canonical(&gv) != canonical(&e["value"]) {
            return Err(format!(
                "step {i} ({input}): state value differs\n      expected: {}\n      got:      {}",
                short(e),
                short(g)
            ));
        }
        if g.get("actions") != Some(&e["actions"]) {
            return Err(format!(
                "step {i} ({input}): actions differ\n      expected: {}\n      got:      {}",
                short(e),
                short(g)
            ));
        }
        if truthy(g.get("done")) != truthy(e.get("done")) {
            return Err(format!(
                "step {i} ({input}): done differs\n      expected: {}\n      got:      {}",
                short(e),
                short(g)
            ));
        }
    }
    Ok(())
}

#[test]
fn conformance_with_xstate_v5() {
    let filter = std::env::var("CONFORMANCE_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", cases_dir().display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let total_found = paths.len();
    if let Some(f) = &filter {
        paths.retain(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(f.as_str())
        });
    } else {
        assert!(
            total_found >= MIN_CASES,
            "found only {total_found} conformance cases in {} (expected at least {MIN_CASES})",
            cases_dir().display()
        );
    }

    let tmp = std::env::temp_dir();
    let mut failures: Vec<String> = Vec::new();
    for (idx, path) in paths.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let case: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
        let name = case["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: missing name", path.display()))
            .to_string();
        let expected = case["expected"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: missing expected"));
        assert!(
            !expected.is_empty(),
            "{name}: empty expected trace (run cli/tests/conformance/regenerate.sh)"
        );
        let chart = &case["chart"];
        // `invoke-*` cases: the charts the chart invokes, by src (`--actor SRC=CHILD.json`).
        let actor_charts: Vec<(String, Value)> = case
            .get("actors")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut used = guards_used(chart);
        for (_, c) in &actor_charts {
            used.extend(guards_used(c));
        }
        let mut guards: Vec<(String, bool)> = Vec::new();
        if let Some(map) = case.get("guards").and_then(Value::as_object) {
            for (g, v) in map {
                if used.contains(g) {
                    guards.push((
                        g.clone(),
                        v.as_bool()
                            .unwrap_or_else(|| panic!("{name}: guard {g} is not a bool")),
                    ));
                }
            }
        }
        let inputs: Vec<&str> = case["inputs"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: missing inputs"))
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("{name}: inputs must be strings"))
            })
            .collect();
        let mut stdin_text = inputs.join("\n");
        stdin_text.push('\n');

        let chart_path = tmp.join(format!(
            "interstate-conformance-{}-{idx}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&chart_path, serde_json::to_string(chart).unwrap()).unwrap();
        let mut actors = Vec::new();
        for (src, c) in &actor_charts {
            let p = tmp.join(format!(
                "interstate-conformance-{}-{idx}-{name}-actor-{src}.json",
                std::process::id()
            ));
            std::fs::write(&p, serde_json::to_string(c).unwrap()).unwrap();
            actors.push((src.clone(), p));
        }
        let outcome = run_cli(&chart_path, &guards, &actors, stdin_text);
        let _ = std::fs::remove_file(&chart_path);
        for (_, p) in &actors {
            let _ = std::fs::remove_file(p);
        }

        let why = match outcome {
            Err(why) => Some(why),
            Ok(run) => match compare(expected, &run.stdout) {
                Ok(()) => None,
                Err(_) if run.stdout.trim().is_empty() => Some(format!(
                    "no output; {}; stderr: {}",
                    run.status,
                    run.stderr.trim().chars().take(300).collect::<String>()
                )),
                Err(why) => Some(why),
            },
        };
        if let Some(why) = why {
            failures.push(format!("  {name}: {why}"));
        }
    }

    let ran = paths.len();
    if !failures.is_empty() {
        panic!(
            "{} of {ran} conformance cases disagree with XState v5:\n{}\n(agree {}/{ran})",
            failures.len(),
            failures.join("\n"),
            ran - failures.len()
        );
    }
    eprintln!("conformance: all {ran} cases agree with XState v5");
}
