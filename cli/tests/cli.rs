//! The `interstate` command-line tool, run as a user runs it: the built binary, real files,
//! arguments and stdin, exit codes, stdout and stderr.
//!
//! Exit codes: 0 success; 1 a simulation printed an error line; 2 the command itself failed
//! (unreadable file, invalid chart, bad option), with `interstate: ...` on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A file under the system temp directory, unique to this process and call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempFile(
            std::env::temp_dir().join(format!("interstate-cli-{}-{n}-{name}", std::process::id())),
        )
    }
    fn with(name: &str, contents: &str) -> Self {
        let f = Self::new(name);
        std::fs::write(&f.0, contents).expect("write a temp file");
        f
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8 here")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the binary with `args`, feeding `stdin` (or nothing: stdin is closed).
fn interstate(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_interstate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the interstate binary");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("write the binary's stdin");
        }
    }
    child.wait_with_output().expect("wait for the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// A traffic light: entry/exit actions, a guard, an `after` timer, a final state.
const LIGHT: &str = r#"{
  "id": "light",
  "initial": "green",
  "states": {
    "green": { "entry": "enterGreen", "on": { "TIMER": { "target": "yellow", "guard": "carsWaiting" } } },
    "yellow": { "after": { "500": "red" } },
    "red": { "exit": "leaveRed", "on": { "TIMER": "green", "STOP": "off" } },
    "off": { "type": "final" }
  }
}"#;

const LIGHT_SUMMARY: &str = "5 states, 4 transitions, 4 events, 2 actions, 1 guards";

/// The trace of `LIGHT` for `LIGHT_INPUTS` with `carsWaiting=true`.
const LIGHT_INPUTS: [&str; 4] = ["TIMER", "@advance 499", "@advance 1", "STOP"];
const LIGHT_TRACE: &str = r#"{"step":0,"input":null,"value":"green","actions":["enterGreen"],"done":false}
{"step":1,"input":"TIMER","value":"yellow","actions":[],"done":false}
{"step":2,"input":"@advance 499","value":"yellow","actions":[],"done":false}
{"step":3,"input":"@advance 1","value":"red","actions":[],"done":false}
{"step":4,"input":"STOP","value":"off","actions":["leaveRed"],"done":true}
"#;

fn simulate_light(extra: &[&str], stdin: Option<&str>) -> Output {
    let chart = TempFile::with("light.json", LIGHT);
    let mut args = vec!["simulate", chart.arg(), "--guard", "carsWaiting=true"];
    args.extend_from_slice(extra);
    interstate(&args, stdin)
}

#[test]
fn check_prints_a_one_line_summary() {
    let chart = TempFile::with("light.json", LIGHT);
    let out = interstate(&["check", chart.arg()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}: ok: {LIGHT_SUMMARY}\n", chart.arg())
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn check_refuses_an_invalid_chart_naming_the_json_path() {
    let chart = TempFile::with(
        "bad.json",
        r##"{"id":"m","initial":"idle","states":{"idle":{},"running":{"on":{"STOP":[{"target":"idle","guard":"g"},{"target":"#idle2"}]}}}}"##,
    );
    let out = interstate(&["check", chart.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "interstate: {}: states.running.on.STOP[1].target: no state '#idle2'\n",
            chart.arg()
        )
    );
}

#[test]
fn check_refuses_what_is_not_a_chart() {
    let text = TempFile::with("text.json", "this is not JSON");
    let out = interstate(&["check", text.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("interstate: {}: not valid JSON: ", text.arg())),
        "{}",
        stderr(&out)
    );

    let binary = TempFile::new("binary.bin");
    std::fs::write(binary.path(), [0xff, 0xfe, 0x00, 0x01]).expect("write");
    let out = interstate(&["check", binary.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "interstate: {}: neither a chart image nor UTF-8 JSON\n",
            binary.arg()
        )
    );

    // The image magic followed by garbage is a broken image, not JSON.
    let broken = TempFile::new("broken.isch");
    std::fs::write(broken.path(), b"ISCH\x01garbage").expect("write");
    let out = interstate(&["check", broken.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a chart image"),
        "{}",
        stderr(&out)
    );

    let missing = TempFile::new("missing.json");
    let out = interstate(&["check", missing.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("interstate: {}: ", missing.arg())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diagram_prints_mermaid_by_default_and_dot_on_request() {
    let chart = TempFile::with("light.json", LIGHT);
    let mermaid = interstate(&["diagram", chart.arg()], None);
    assert!(mermaid.status.success(), "{}", stderr(&mermaid));
    let m = stdout(&mermaid);
    assert!(m.starts_with("stateDiagram-v2\n    [*] --> light\n"), "{m}");
    for line in [
        "        [*] --> light_green",
        "        light_green : entry / enterGreen",
        "        light_off --> [*]",
        "    light_green --> light_yellow : TIMER [carsWaiting]",
        "    light_yellow --> light_red : after 500ms",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    let explicit = interstate(&["diagram", "--format", "mermaid", chart.arg()], None);
    assert_eq!(stdout(&explicit), m);

    let dot = interstate(&["diagram", "--format", "dot", chart.arg()], None);
    assert!(dot.status.success(), "{}", stderr(&dot));
    let d = stdout(&dot);
    assert!(d.starts_with("digraph \"light\" {\n"), "{d}");
    assert!(d.ends_with("}\n"), "{d}");
    assert!(d.contains("subgraph \"cluster_light\" {"), "{d}");
    assert!(
        d.contains("\"light_green\" -> \"light_yellow\" [label=\"TIMER [carsWaiting]\"];"),
        "{d}"
    );
    assert!(
        d.contains("\"light_off\" [label=\"off\", peripheries=2];"),
        "{d}"
    );

    let bad = interstate(&["diagram", "--format", "svg", chart.arg()], None);
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown format");
    assert!(stderr(&bad).contains("svg"), "{}", stderr(&bad));
}

#[test]
fn a_compiled_image_checks_and_simulates_like_its_json() {
    let chart = TempFile::with("light.json", LIGHT);
    let image = TempFile::new("light.isch");
    let out = interstate(&["compile", chart.arg(), "-o", image.arg()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(image.path()).expect("the image was written");
    assert!(bytes.starts_with(b"ISCH"));
    assert_eq!(
        stdout(&out),
        format!("{}: {} bytes ({LIGHT_SUMMARY})\n", image.arg(), bytes.len())
    );

    let check = interstate(&["check", image.arg()], None);
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        format!("{}: ok: {LIGHT_SUMMARY}\n", image.arg())
    );

    let mut args = vec!["simulate", image.arg(), "--guard", "carsWaiting=true"];
    args.extend_from_slice(&LIGHT_INPUTS);
    let from_image = interstate(&args, None);
    assert!(from_image.status.success(), "{}", stderr(&from_image));
    assert_eq!(stdout(&from_image), LIGHT_TRACE);
    assert_eq!(stdout(&simulate_light(&LIGHT_INPUTS, None)), LIGHT_TRACE);

    // Both draw the same picture too.
    let json_picture = interstate(&["diagram", chart.arg()], None);
    let image_picture = interstate(&["diagram", image.arg()], None);
    assert_eq!(stdout(&json_picture), stdout(&image_picture));
}

#[test]
fn compile_refuses_an_invalid_chart_and_writes_nothing() {
    let chart = TempFile::with("bad.json", r#"{"initial":"a","states":{"b":{}}}"#);
    let image = TempFile::new("never.isch");
    let out = interstate(&["compile", chart.arg(), "-o", image.arg()], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "interstate: {}: initial: no child state 'a' (children: b)\n",
            chart.arg()
        )
    );
    assert!(!image.path().exists());
}

#[test]
fn simulate_reads_events_from_the_arguments() {
    let out = simulate_light(&LIGHT_INPUTS, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), LIGHT_TRACE);
    assert_eq!(stderr(&out), "");
}

#[test]
fn simulate_reads_events_from_stdin_when_none_are_given() {
    // Blank lines are skipped and surrounding spaces trimmed.
    let out = simulate_light(&[], Some("TIMER\n\n@advance 499\n  @advance 1  \nSTOP\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), LIGHT_TRACE);

    // No input at all: only the start line.
    let out = simulate_light(&[], Some(""));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "{\"step\":0,\"input\":null,\"value\":\"green\",\"actions\":[\"enterGreen\"],\"done\":false}\n"
    );
}

#[test]
fn simulate_takes_json_event_objects_with_data() {
    let stop = r#"{"type":"STOP","data":{"reason":"maintenance","lanes":[1,2]}}"#;
    let out = simulate_light(&["TIMER", "@advance 500", stop], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out).lines().last().expect("a line").to_string();
    let line: serde_json::Value = serde_json::from_str(&last).expect("JSON line");
    assert_eq!(line["step"], 3);
    assert_eq!(line["input"], stop, "the input is echoed as given");
    assert_eq!(line["value"], "off");
    assert_eq!(line["actions"], serde_json::json!(["leaveRed"]));
    assert_eq!(line["done"], true);
}

#[test]
fn simulate_lists_messages_sent_to_other_machines() {
    let chart = TempFile::with(
        "sender.json",
        r#"{"id":"sender","initial":"idle","states":{"idle":{"on":{"GO":{"target":"sent","actions":
            {"type":"xstate.sendTo","to":"receiver","event":"PING","data":{"n":1}}}}},"sent":{}}}"#,
    );
    let out = interstate(&["simulate", chart.arg(), "GO"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().nth(1),
        Some(
            r#"{"step":1,"input":"GO","value":"sent","actions":[],"done":false,"sent":[{"to":"receiver","event":"PING","data":{"n":1}}]}"#
        )
    );
}

#[test]
fn simulate_advances_the_virtual_clock_through_timers() {
    let out = simulate_light(&["TIMER", "@advance 10000"], None);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).lines().nth(2),
        Some(r#"{"step":2,"input":"@advance 10000","value":"red","actions":[],"done":false}"#)
    );
    // A named delay takes its value from --delay.
    let chart = TempFile::with(
        "named.json",
        r#"{"id":"m","initial":"a","states":{"a":{"after":{"slow":"b"}},"b":{}}}"#,
    );
    let out = interstate(
        &[
            "simulate",
            chart.arg(),
            "--delay",
            "slow=200",
            "@advance 199",
            "@advance 1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let values: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["value"].to_string())
        .collect();
    assert_eq!(values, ["\"a\"", "\"a\"", "\"b\""]);
}

#[test]
fn simulate_names_a_guard_that_has_no_value() {
    let chart = TempFile::with("light.json", LIGHT);
    let out = interstate(&["simulate", chart.arg(), "TIMER"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "{\"step\":0,\"error\":\"the chart uses guard(s) 'carsWaiting' with no value: pass --guard NAME=true|false for each\"}\n"
    );
}

#[test]
fn simulate_names_a_named_delay_that_has_no_value() {
    let chart = TempFile::with(
        "named.json",
        r#"{"id":"m","initial":"a","states":{"a":{"after":{"slow":"b"}},"b":{}}}"#,
    );
    let out = interstate(&["simulate", chart.arg()], Some(""));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "{\"step\":0,\"error\":\"the chart uses named delay(s) 'slow' with no value: pass --delay NAME=MS for each\"}\n"
    );
}

#[test]
fn simulate_refuses_malformed_options() {
    let chart = TempFile::with("light.json", LIGHT);
    for (option, message) in [
        ("carsWaiting", "--guard carsWaiting: expected NAME=VALUE"),
        (
            "carsWaiting=maybe",
            "--guard carsWaiting=maybe: bad value 'maybe' (expected true or false)",
        ),
    ] {
        let out = interstate(&["simulate", chart.arg(), "--guard", option, "TIMER"], None);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stderr(&out), format!("interstate: {message}\n"));
        assert_eq!(stdout(&out), "");
    }
    let out = interstate(
        &["simulate", chart.arg(), "--delay", "slow=soon", "TIMER"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "interstate: --delay slow=soon: bad value 'soon' (expected milliseconds)\n"
    );
}

#[test]
fn simulate_reports_an_eventless_loop_at_its_step() {
    let chart = TempFile::with(
        "loop.json",
        r#"{"id":"m","initial":"a","states":{"a":{"on":{"GO":"b"}},"b":{"always":"c"},"c":{"always":"b"}}}"#,
    );
    let out = interstate(&["simulate", chart.arg(), "GO", "NEVER_REACHED"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the run stops at the error: {text}");
    let error: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON line");
    assert_eq!(error["step"], 1);
    let message = error["error"].as_str().expect("an error message");
    assert!(message.starts_with("infinite loop: "), "{message}");
    assert!(message.contains("1000 microsteps"), "{message}");
}

#[test]
fn simulate_reports_a_bad_input_line_and_stops() {
    for (input, message) in [
        (
            "@frobnicate",
            "unknown directive '@frobnicate' (only '@advance MS')",
        ),
        (
            "@advance soon",
            "'@advance' takes a whole number of milliseconds, not 'soon'",
        ),
        ("{\"data\":1}", "a JSON event needs a string 'type'"),
        (
            "{oops",
            "not a JSON event object: key must be a string at line 1 column 2",
        ),
    ] {
        let out = simulate_light(&["TIMER", input, "STOP"], None);
        assert_eq!(out.status.code(), Some(1), "{input}");
        let text = stdout(&out);
        let last = text.lines().last().expect("a line");
        assert_eq!(
            last,
            serde_json::json!({"step": 2, "error": message}).to_string(),
            "{input}"
        );
        assert_eq!(text.lines().count(), 3, "nothing runs after the error");
    }
}

#[test]
fn unknown_commands_and_missing_arguments_are_usage_errors() {
    let out = interstate(&["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("frobnicate"), "{}", stderr(&out));
    let out = interstate(&["check"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = interstate(&["--help"], None);
    assert!(out.status.success());
    for command in ["check", "simulate", "compile", "diagram"] {
        assert!(stdout(&out).contains(command), "{}", stdout(&out));
    }
}
