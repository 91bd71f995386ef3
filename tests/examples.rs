//! Every example runs to completion, quickly, and says what it is meant to say.
//!
//! `cargo test` builds the examples before it runs any test, so their binaries sit in
//! `target/<profile>/examples/` next to this test's own directory. When only this test was
//! built (`cargo test --test examples`), there is nothing to run: build them with
//! `cargo test --test examples --examples`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest an example may take; each replays simulated time and should take milliseconds.
const TIMEOUT: Duration = Duration::from_secs(30);

fn example_binary(name: &str) -> Option<PathBuf> {
    // This test runs from target/<profile>/deps/.
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let path = deps
        .parent()?
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    path.exists().then_some(path)
}

/// Runs an example and returns its stdout; `None` when it was not built.
fn run_example(name: &str) -> Option<String> {
    let Some(path) = example_binary(name) else {
        eprintln!(
            "example '{name}' is not built; run `cargo test --test examples --examples` to build it"
        );
        return None;
    };
    let mut child = Command::new(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let started = Instant::now();
    while child.try_wait().expect("poll the example").is_none() {
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("example '{name}' ran longer than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child
        .wait_with_output()
        .expect("collect the example's output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example '{name}' failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "example '{name}' reported errors:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[test]
fn traffic_light_runs_its_script_to_the_final_state() {
    let Some(out) = run_example("traffic_light") else {
        return;
    };
    assert!(
        out.contains("[  3000 ms] timer        -> {\"operating\":{\"cars\":\"yellow\""),
        "{out}"
    );
    assert!(out.contains("outbox: LIGHT_FAULT to maintenance"), "{out}");
    assert!(out.trim_end().ends_with("done: true"), "{out}");
}

#[test]
fn orchestrated_context_serves_one_order_and_loses_the_other() {
    let Some(out) = run_example("orchestrated_context") else {
        return;
    };
    assert!(out.contains("kitchen runs in process"), "{out}");
    assert!(
        out.contains("patience timer cancelled (was pending: true)"),
        "{out}"
    );
    assert!(out.contains("customer: \"satisfied\""), "{out}");
    assert!(out.contains("customer: \"leftHungry\""), "{out}");
}

#[test]
fn counter_snapshot_restores_the_count_and_the_timer() {
    let Some(out) = run_example("counter_snapshot") else {
        return;
    };
    assert!(
        out.contains("restored: Tally { count: 3, last_key: Some(99) }"),
        "{out}"
    );
    assert!(
        out.contains("restored: the pause timer is due in 3000 ms"),
        "{out}"
    );
    assert!(out.contains("count: 4, last_key: Some(100)"), "{out}");
    assert!(
        out.contains(r#"json context restored: {"count":3,"key":"z"}"#),
        "{out}"
    );
    assert!(out.contains("the revised chart refused it"), "{out}");
}

#[test]
fn chart_image_runs_from_the_image_bytes() {
    let Some(out) = run_example("chart_image") else {
        return;
    };
    assert!(out.contains("\"sleeping\""), "{out}");
    assert!(out.contains("blinking again in 500 ms"), "{out}");
    assert!(
        out.contains("with NoBehavior, after 500 ms: \"sleeping\""),
        "{out}"
    );
}

#[test]
fn daemon_loop_drives_the_node_and_its_own_source_in_one_loop() {
    let Some(path) = example_binary("daemon_loop") else {
        eprintln!(
            "example 'daemon_loop' is not built; run `cargo test --test examples --examples`"
        );
        return;
    };
    // A private bus directory: the example serves a bus of its own.
    let dir =
        std::env::temp_dir().join(format!("interstate-example-daemon-{}", std::process::id()));
    let out = Command::new(&path)
        .env("INTERSTATE_DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the example");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "daemon: command START",
        "daemon: command STOP",
        "daemon: command QUIT",
        "controller: running, tick 1",
        "daemon: controller finished",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn invoked_service_runs_a_blocking_service_then_a_child_chart() {
    let Some(out) = run_example("invoked_service") else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "collector: reading {\"celsius\":20}",
            "collector: reading {\"celsius\":21}",
            "collector: reading {\"celsius\":22}",
            "collector: sensor done, {\"samples\":3,\"sum\":63}",
            "collector: collector/job reports {\"stage\":\"writing\"}",
            "collector: worker done, {\"status\":\"stored\"}",
            "collector finished: true",
        ],
        "{out}"
    );
}
