//! The command line as a Unix tool: a closed stdout ends every verb quietly, `-` means stdin
//! or stdout, bad settings are named, `run` needs a value for every guard and named delay,
//! `interstate buses`, completions and the manual page, and the help's environment and exit
//! status sections. Each test runs the real binary; the bus tests use a private bus directory
//! (`tests/support/mod.rs`), removed when they end.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A machine that ignores everything.
const QUIET: &str = r#"{"id":"quiet","initial":"idle","states":{"idle":{}}}"#;

/// A gate with a guard and a named delay, logging where it goes.
const GATE: &str = r#"{
  "id": "gate", "initial": "closed",
  "states": {
    "closed": { "on": { "PING": [
      { "target": "opening", "guard": "allowed" },
      { "actions": [ { "type": "log", "message": "refused" } ] }
    ] } },
    "opening": {
      "entry": [ { "type": "log", "message": "opening" } ],
      "after": { "swing": "open" }
    },
    "open": { "entry": [ { "type": "log", "message": "open" } ] }
  }
}"#;

fn bin() -> Command {
    let mut c = Command::new(interstate_bin());
    c.env_remove("INTERSTATE_BUS")
        .env_remove("INTERSTATE_TRANSPORT")
        .env_remove("NO_COLOR");
    c
}

/// Runs the binary with `stdin` (closed when `None`) to completion.
fn run_with(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the interstate binary");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` with its stdout's reader closed before the chart reaches it on stdin, so that
/// its first write finds the pipe closed: (status code, stderr).
fn with_closed_stdout(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the interstate binary");
    drop(child.stdout.take());
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    (child.wait().expect("wait").code(), err)
}

#[test]
fn chart_verbs_end_quietly_on_a_closed_stdout() {
    let chart = std::fs::read("../examples/charts/traffic_light.json").expect("the example chart");
    for args in [
        vec!["diagram", "-"],
        vec!["diagram", "--format", "dot", "-"],
        vec!["check", "-"],
        vec![
            "simulate",
            "-",
            "--guard",
            "pedestrianWaiting=true",
            "--delay",
            "maxGreen=10",
            "PUSH_BUTTON",
            "@advance 3000",
        ],
        vec!["compile", "-", "-o", "-"],
        vec!["compile", "--rust", "-", "-o", "-"],
    ] {
        let (code, err) = with_closed_stdout(&args, &chart);
        assert_eq!(code, Some(0), "interstate {args:?}: stderr {err}");
        assert_eq!(err, "", "interstate {args:?} printed on stderr");
    }
}

#[test]
fn generated_text_ends_quietly_on_a_closed_stdout() {
    for args in [vec!["completions", "bash"], vec!["man"], vec!["--help"]] {
        let (code, err) = with_closed_stdout(&args, b"");
        assert_eq!(code, Some(0), "interstate {args:?}: stderr {err}");
        assert!(!err.contains("panicked"), "interstate {args:?}: {err}");
    }
}

/// Starts `interstate ARGS --bus NAME` on `bus` with its stdout's reader already closed.
fn spawn_closed(bus: &mut Bus, label: &str, args: &[&str]) -> P {
    let mut cmd = bus.command(&interstate_bin(), args);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {label}: {e}"));
    drop(child.stdout.take());
    let err: Lines = Arc::default();
    let sink = err.clone();
    let mut stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        sink.lock().unwrap().extend(s.lines().map(str::to_string));
    });
    bus.procs.push(Proc {
        label: label.to_string(),
        child,
        out: Arc::new(Mutex::new(Vec::new())),
        err,
        status: None,
    });
    P(bus.procs.len() - 1)
}

/// Sends `event` to `target` until `p` exits; its exit status.
fn send_until_exit(bus: &mut Bus, p: P, target: &str, event: &str) -> std::process::ExitStatus {
    let end = Instant::now() + STEP_LIMIT;
    while bus.try_status(p).is_none() {
        assert!(
            Instant::now() < end,
            "{} did not end on its closed stdout{}",
            bus.procs[p.0].label,
            bus.dump()
        );
        let (status, _, err) = bus.run(&["send", target, event]);
        // A send may fail only because its target just ended. Its link closes (and the hub
        // reports `target-gone`) a moment before the process is seen to exit: give it time.
        let ended =
            !status.success() && target == bus.procs[p.0].label.trim_start_matches("run ") && {
                let seen = Instant::now() + STEP_LIMIT;
                while bus.try_status(p).is_none() && Instant::now() < seen {
                    std::thread::sleep(Duration::from_millis(10));
                }
                bus.try_status(p).is_some()
            };
        assert!(
            status.success() || ended,
            "send failed: {err}{}",
            bus.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bus.wait_exit(p, STEP_LIMIT)
}

#[test]
fn bus_verbs_end_quietly_on_a_closed_stdout() {
    let mut bus = Bus::new("closed");
    bus.start_hub();
    let quiet = bus.write("quiet.json", QUIET);
    bus.start_machine(&quiet, "other");
    let chart = bus.write("gate.json", GATE);

    let monitor = spawn_closed(&mut bus, "monitor", &["monitor"]);
    std::thread::sleep(Duration::from_millis(200));
    let status = send_until_exit(&mut bus, monitor, "other", "PING");
    assert_eq!(status.code(), Some(0), "monitor{}", bus.dump());
    assert_eq!(bus.err(monitor), Vec::<String>::new(), "monitor's stderr");

    // (Its stderr is read once it has ended: its subscription line shows then.)
    let sub = spawn_closed(&mut bus, "subscribe", &["subscribe", "x/#"]);
    let end = Instant::now() + STEP_LIMIT;
    while bus.try_status(sub).is_none() {
        assert!(Instant::now() < end, "subscribe did not end{}", bus.dump());
        let (status, _, err) = bus.run(&["publish", "x/1", "E"]);
        // It may fail once: the subscriber leaving with the publication unacknowledged.
        assert!(
            status.success() || err.contains("not delivered"),
            "{err}{}",
            bus.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = bus.wait_exit(sub, STEP_LIMIT);
    assert_eq!(status.code(), Some(0), "subscribe{}", bus.dump());
    assert_eq!(
        bus.err(sub).len(),
        1,
        "subscribe's stderr: {:?}",
        bus.err(sub)
    );

    for args in [
        &["ps"][..],
        &["ps", "--json"],
        &["send", "other", "PING"],
        &["publish", "x/1", "E"],
        &["status", "other"],
        &["status", "other", "--json"],
        &["status", "other", "--watch"],
    ] {
        let p = spawn_closed(&mut bus, &format!("{args:?}"), args);
        let status = bus.wait_exit(p, STEP_LIMIT);
        assert_eq!(status.code(), Some(0), "{args:?}{}", bus.dump());
        assert_eq!(bus.err(p), Vec::<String>::new(), "{args:?}'s stderr");
    }

    // A machine whose log lines nobody reads any more ends quietly too.
    let run = spawn_closed(
        &mut bus,
        "run gate",
        &[
            "run",
            &chart,
            "--id",
            "gate",
            "--client",
            "--guard",
            "allowed=false",
            "--delay",
            "swing=1",
            "--quiet",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = send_until_exit(&mut bus, run, "gate", "PING");
    assert_eq!(status.code(), Some(0), "run{}", bus.dump());
    assert_eq!(bus.err(run), Vec::<String>::new(), "run's stderr");
}

#[test]
fn run_refuses_a_chart_with_guards_or_named_delays_that_have_no_value() {
    let dir = std::env::temp_dir().join(format!("interstate-unix-{}-run", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chart = dir.join("gate.json");
    std::fs::write(&chart, GATE).unwrap();
    let mut cmd = bin();
    cmd.env("INTERSTATE_DIR", dir.join("bus")).args([
        "run",
        chart.to_str().unwrap(),
        "--id",
        "gate",
    ]);
    let out = run_with(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("guard(s) 'allowed'") && err.contains("named delay(s) 'swing'"),
        "{err}"
    );
    assert!(
        err.contains("--guard NAME=true|false") && err.contains("--delay NAME=MS"),
        "{err}"
    );
    // Nothing started: no bus socket was made.
    assert!(!dir.join("bus").join("default.sock").exists());

    let mut cmd = bin();
    cmd.env("INTERSTATE_DIR", dir.join("bus")).args([
        "run",
        chart.to_str().unwrap(),
        "--id",
        "gate",
        "--guard",
        "allowed=maybe",
    ]);
    let out = run_with(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "interstate: --guard allowed=maybe: bad value 'maybe' (expected true or false)\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_hosts_guards_and_named_delays_from_its_flags() {
    let mut bus = Bus::new("values");
    bus.start_hub();
    let chart = bus.write("gate.json", GATE);
    for (allowed, lines) in [
        ("true", &["[g-true] opening", "[g-true] open"][..]),
        ("false", &["[g-false] refused"][..]),
    ] {
        let id = format!("g-{allowed}");
        let guard = format!("allowed={allowed}");
        let p = bus.interstate(
            &id,
            &[
                "run", &chart, "--id", &id, "--client", "--guard", &guard, "--delay", "swing=20",
            ],
        );
        bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
            l.contains("joined bus")
        });
        let (status, _, err) = bus.run(&["send", &id, "PING"]);
        assert!(status.success(), "{err}");
        for want in lines {
            bus.wait_line(p, false, want, STEP_LIMIT, |l| l == *want);
        }
    }
}

#[test]
fn a_bad_setting_is_named_with_its_value_and_the_allowed_values() {
    let dir = std::env::temp_dir().join(format!("interstate-unix-{}-env", std::process::id()));
    for args in [
        &["ps"][..],
        &["ps", "--bus", "x"],
        &["hub"],
        &["monitor"],
        &["send", "a", "B"],
        &["buses"],
    ] {
        let mut cmd = bin();
        cmd.env("INTERSTATE_DIR", &dir)
            .env("INTERSTATE_TRANSPORT", "bogus")
            .args(args);
        let out = run_with(cmd, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            "interstate: INTERSTATE_TRANSPORT is set to 'bogus', which is not a valid value: \
             use unix (the default), fifo or shm\n",
            "{args:?}"
        );
    }
    for (value, args) in [
        ("relative/dir", &["ps"][..]),
        ("/etc/passwd", &["ps", "--bus", "x"][..]),
        ("relative", &["down", "--bus", "x"][..]),
    ] {
        let mut cmd = bin();
        cmd.env("INTERSTATE_DIR", value).args(args);
        let out = run_with(cmd, None);
        assert_eq!(out.status.code(), Some(2), "{value} {args:?}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "interstate: INTERSTATE_DIR is set to '{value}', which is not a valid value: \
                 use the absolute path of a directory (created, mode 0700, when it does not \
                 exist)\n"
            ),
            "{args:?}"
        );
    }
    let mut cmd = bin();
    cmd.env("INTERSTATE_DIR", &dir)
        .env("INTERSTATE_BUS", "no/slash")
        .arg("ps");
    let out = run_with(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("INTERSTATE_BUS is set to 'no/slash'") && err.contains("letters, digits"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn buses(bus: &Bus, args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.env("INTERSTATE_DIR", &bus.dir).arg("buses").args(args);
    run_with(cmd, None)
}

#[test]
fn buses_lists_each_bus_with_its_hub_pid_and_machine_count() {
    let mut bus = Bus::new("buses");
    let hub = bus.start_hub();
    let chart = bus.write("quiet.json", QUIET);
    for id in ["a", "b"] {
        bus.start_machine(&chart, id);
    }
    // A socket left by a hub that died.
    std::os::unix::net::UnixListener::bind(bus.dir.join("gone.sock")).unwrap();

    let out = buses(&bus, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["bus"], "gone");
    assert_eq!(list[0]["hub_pid"], Value::Null);
    assert_eq!(list[1]["bus"], bus.name.as_str());
    assert_eq!(list[1]["hub_pid"], bus.pid(hub));
    assert_eq!(list[1]["machines"], 2);

    let out = buses(&bus, &[]);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("BUS") && lines[0].contains("HUB PID"));
    assert!(lines[1].starts_with("gone") && lines[1].contains("no hub answers"));
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        row,
        [bus.name.as_str(), &bus.pid(hub).to_string(), "2"],
        "{table}"
    );

    // A bus with no hub: the error lists the buses that are served.
    let (status, _, err) = {
        let mut cmd = bin();
        cmd.env("INTERSTATE_DIR", &bus.dir)
            .args(["ps", "--bus", "nobody"]);
        let out = run_with(cmd, None);
        (out.status, text(&out.stdout), text(&out.stderr))
    };
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("no hub serves this bus"), "{err}");
    assert!(
        err.contains(&format!(
            "buses served in {}: {}",
            bus.dir.display(),
            bus.name
        )),
        "{err}"
    );
}

#[test]
fn dash_reads_the_chart_from_stdin_and_compile_writes_to_stdout() {
    let chart = std::fs::read("../examples/charts/traffic_light.json").expect("the example chart");
    let run = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args);
        run_with(cmd, Some(&chart))
    };
    let out = run(&["check", "-"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("<stdin>: ok: 11 states"));

    let out = run(&["diagram", "-"]);
    assert!(text(&out.stdout).starts_with("stateDiagram-v2"));

    let out = run(&[
        "simulate",
        "-",
        "--guard",
        "pedestrianWaiting=true",
        "--delay",
        "maxGreen=10000",
        "PUSH_BUTTON",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);

    let out = run(&["compile", "-", "-o", "-"]);
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"ISCH"), "an image on stdout");
    assert!(
        text(&out.stderr).contains("bytes (11 states"),
        "summary on stderr"
    );
    // The image on stdout checks like the chart.
    let mut cmd = bin();
    cmd.args(["check", "-"]);
    let again = run_with(cmd, Some(&out.stdout));
    assert!(text(&again.stdout).contains("ok: 11 states"));
}

#[test]
fn compile_rust_writes_no_absolute_path() {
    let chart = std::fs::canonicalize("../examples/charts/traffic_light.json").unwrap();
    let mut cmd = bin();
    cmd.args(["compile", "--rust", chart.to_str().unwrap(), "-o", "-"]);
    let out = run_with(cmd, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let source = text(&out.stdout);
    assert!(source.contains("traffic_light.json"), "{source}");
    let root = std::fs::canonicalize("..").unwrap();
    assert!(
        !source.contains(root.to_str().unwrap()) && !source.contains("/examples/"),
        "an absolute path in the module:\n{}",
        &source[..400.min(source.len())]
    );
    // A relative path is kept as given: the command that regenerates the file.
    let mut cmd = bin();
    cmd.args([
        "compile",
        "--rust",
        "../examples/charts/traffic_light.json",
        "-o",
        "-",
    ]);
    let out = run_with(cmd, None);
    assert!(text(&out.stdout)
        .contains("`interstate compile --rust ../examples/charts/traffic_light.json`"));
}

/// Every verb a user sees (the hidden ones left out).
const VERBS: &[&str] = &[
    "check",
    "simulate",
    "compile",
    "diagram",
    "hub",
    "send",
    "ps",
    "status",
    "buses",
    "monitor",
    "publish",
    "subscribe",
    "run",
    "up",
    "down",
    "demo",
    "bench",
    "serial-bridge",
    "completions",
    "man",
];

#[test]
fn completions_name_every_verb() {
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = bin();
        cmd.args(["completions", shell]);
        let out = run_with(cmd, None);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        for verb in VERBS {
            assert!(script.contains(verb), "{shell} completion lacks {verb}");
        }
    }
}

#[test]
fn the_manual_page_names_every_verb_and_renders() {
    let mut cmd = bin();
    cmd.arg("man");
    let out = run_with(cmd, None);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.contains(".TH interstate 1"), "{page}");
    // roff writes a hyphen as `\-`.
    let words = page.replace("\\-", "-");
    for verb in VERBS {
        assert!(words.contains(verb), "the man page lacks {verb}");
    }
    assert!(
        page.contains("INTERSTATE_TRANSPORT"),
        "the environment section"
    );
    // Rendered by man(1) where it is installed.
    let path = std::env::temp_dir().join(format!("interstate-{}.1", std::process::id()));
    std::fs::write(&path, &page).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output();
    let _ = std::fs::remove_file(&path);
    if let Ok(r) = rendered {
        if r.status.success() {
            assert!(
                text(&r.stdout).contains("buses"),
                "man -l rendered no verbs"
            );
        }
    }
}

#[test]
fn help_lists_the_environment_and_the_exit_statuses() {
    let mut cmd = bin();
    cmd.arg("--help");
    let out = run_with(cmd, None);
    let help = text(&out.stdout);
    for var in [
        "INTERSTATE_DIR",
        "INTERSTATE_BUS",
        "INTERSTATE_TRANSPORT",
        "XDG_RUNTIME_DIR",
        "NO_COLOR",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
    assert!(help.contains("EXIT STATUS"), "{help}");
    for code in ["  0  ", "  1  ", "  2  "] {
        assert!(help.contains(code), "--help lacks exit status {code}");
    }
    // Every INTERSTATE_* variable the code reads is in the help.
    let mut read = std::collections::BTreeSet::new();
    for dir in ["../platform/src", "../src", "src"] {
        collect_env_vars(std::path::Path::new(dir), &mut read);
    }
    assert!(read.contains("INTERSTATE_TRANSPORT"), "{read:?}");
    for var in &read {
        assert!(
            help.contains(var.as_str()),
            "--help lacks {var}, which the code reads"
        );
    }
}

/// The `INTERSTATE_*` names quoted in the Rust sources under `dir`.
fn collect_env_vars(dir: &std::path::Path, into: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_env_vars(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for piece in source.split("\"INTERSTATE_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if piece[name.len()..].starts_with('"') && !name.is_empty() {
                    into.insert(format!("INTERSTATE_{name}"));
                }
            }
        }
    }
}

#[test]
fn demo_quiet_prints_its_last_line_only() {
    let mut cmd = bin();
    cmd.args(["demo", "--quiet", "--pace", "0"]);
    let out = run_with(cmd, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].starts_with("demo: done in"), "{stdout}");
}

#[test]
fn hub_and_run_say_more_with_verbose_and_nothing_with_quiet() {
    let mut bus = Bus::new("verbosity");
    let hub = bus.interstate("hub", &["hub", "--verbose"]);
    bus.wait_line(hub, true, "the hub's settings line", STEP_LIMIT, |l| {
        l.contains("hub settings:")
    });
    let chart = bus.write("gate.json", GATE);
    let verbose = bus.interstate(
        "run verbose",
        &[
            "run",
            &chart,
            "--id",
            "v",
            "--client",
            "--guard",
            "allowed=true",
            "--delay",
            "swing=5",
            "-v",
        ],
    );
    bus.wait_line(
        verbose,
        true,
        "the machine's values line",
        STEP_LIMIT,
        |l| l.contains(r#"guards [("allowed", true)], delays (ms) [("swing", 5)]"#),
    );
    let quiet = bus.interstate(
        "run quiet",
        &[
            "run",
            &chart,
            "--id",
            "q",
            "--client",
            "--guard",
            "allowed=true",
            "--delay",
            "swing=5",
            "-q",
        ],
    );
    bus.wait_ps("machine q", |list| list.iter().any(|e| e["machine"] == "q"));
    let (status, _, err) = bus.run(&["send", "q", "PING"]);
    assert!(status.success(), "{err}");
    bus.wait_line(quiet, false, "q's log line", STEP_LIMIT, |l| {
        l == "[q] open"
    });
    assert_eq!(
        bus.err(quiet),
        Vec::<String>::new(),
        "run --quiet said something"
    );
    assert!(
        bus.try_status(quiet).is_none(),
        "run --quiet ended{}",
        bus.dump()
    );
}

/// `hub --quiet` logs no connection or disconnection (those are `info:` lines).
#[test]
fn a_quiet_hub_logs_no_connections() {
    let mut bus = Bus::new("quiethub");
    let hub = bus.interstate("hub", &["hub", "--quiet"]);
    let end = Instant::now() + STEP_LIMIT;
    while !bus.run(&["ps", "--json"]).0.success() {
        assert!(Instant::now() < end, "the hub never served{}", bus.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
    let chart = bus.write("quiet.json", QUIET);
    let m = bus.start_machine(&chart, "m");
    bus.kill(m);
    bus.wait_ps("m gone", |list| list.iter().all(|e| e["machine"] != "m"));
    bus.term(hub);
    bus.wait_exit(hub, STEP_LIMIT);
    assert_eq!(
        bus.err(hub),
        Vec::<String>::new(),
        "hub --quiet said something"
    );
}

/// `interstate demo` with its stdout on a terminal (a pseudo-terminal here): all it wrote.
fn demo_on_a_terminal(no_color: Option<&str>) -> String {
    let pty = interstate_platform::serial::open_pty().expect("a pseudo-terminal pair");
    let mut cmd = bin();
    cmd.args(["demo", "--pace", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    // The command holds the terminal side until it is dropped with it below.
    let mut child = cmd.spawn().expect("start interstate demo");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once every holder of the terminal side has exited.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    let status = child.wait().expect("wait for the demo");
    assert!(status.success(), "demo failed: {status:?}");
    text(&reader.join().expect("the reader thread"))
}

#[test]
fn no_color_turns_off_the_status_blocks_colors_on_a_terminal() {
    let colored = demo_on_a_terminal(None);
    assert!(colored.contains("── demo ──"), "{colored:?}");
    assert!(
        colored.contains("\x1b[32m") && colored.contains("\x1b[1m"),
        "no color on a terminal: {colored:?}"
    );
    for value in ["1", "yes"] {
        let plain = demo_on_a_terminal(Some(value));
        assert!(plain.contains("── demo ──"), "{plain:?}");
        assert!(
            !plain.contains("\x1b[3") && !plain.contains("\x1b[1m") && !plain.contains("\x1b[0m"),
            "color with NO_COLOR={value}: {plain:?}"
        );
    }
    // An empty NO_COLOR asks for nothing.
    assert!(demo_on_a_terminal(Some("")).contains("\x1b[32m"));
}
