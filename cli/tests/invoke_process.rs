//! Invoked children in processes of their own (`interstate run --actor SRC=process:CHILD.json`
//! and `SRC=exec:PROGRAM`), against the real binary on a private bus: a runner invoking a
//! worker process per job and collecting its result, a worker killed with SIGKILL (the
//! parent's `xstate.error.actor.<id>`), leaving the invoking state stopping the process
//! (SIGTERM; SIGKILL after the grace), a child reached by `sendTo`, and a plain program's
//! output and exit status. Every child is looked for in /proc until it is gone: reaped, no
//! zombie. The parent's view comes from `monitor --json` on the messages it forwards to a
//! `collector` machine.

mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use support::{parse_json, Bus, P, STEP_LIMIT};

/// Starts the child `job` (src `worker`) per JOB; forwards what it hears to `collector`.
const RUNNER: &str = r#"{"id":"runner","initial":"idle","states":{
 "idle":{"on":{"JOB":"working"}},
 "working":{
   "entry":{"type":"sendTo","to":"job","event":"START","data":{"from":"event"}},
   "invoke":{"src":"worker","id":"job","input":{"job":true},
     "onDone":{"target":"idle","actions":{"type":"sendTo","to":"collector","event":"RESULT","data":{"from":"event"}}},
     "onError":{"target":"idle","actions":{"type":"sendTo","to":"collector","event":"FAILED","data":{"from":"event"}}}},
   "on":{
     "PROGRESS":{"actions":{"type":"sendTo","to":"collector","event":"PROGRESS","data":{"from":"event"}}},
     "PING":{"actions":{"type":"sendTo","to":"job","event":"PING","data":{"from":"event"}}},
     "PONG":{"actions":{"type":"sendTo","to":"collector","event":"PONGED","data":{"from":"event"}}},
     "CANCEL":"idle"}}}}"#;

/// A job: tells its parent it started (with START's data), finishes after a short timer.
const WORKER: &str = r#"{"id":"worker","initial":"ready","states":{
 "ready":{"on":{"START":"working"}},
 "working":{"entry":{"type":"sendParent","event":"PROGRESS","data":{"from":"event"}},
   "after":{"50":"stored"}},
 "stored":{"type":"final","output":{"status":"stored"}}}}"#;

/// A job that never finishes by itself; answers PING with PONG to its parent.
const WAITER: &str = r#"{"id":"waiter","initial":"ready","states":{
 "ready":{"on":{"START":"working"}},
 "working":{"entry":{"type":"sendParent","event":"PROGRESS","data":{"from":"event"}},
   "on":{"PING":{"actions":{"type":"sendParent","event":"PONG","data":{"from":"event"}}}}}}}"#;

const COLLECTOR: &str = r#"{"id":"collector","initial":"on","states":{"on":{}}}"#;

/// A hub, the collector machine, and `monitor --json` on the collector's messages, ready.
fn setup(bus: &mut Bus) -> P {
    bus.start_hub();
    let collector = bus.write("collector.json", COLLECTOR);
    bus.start_machine(&collector, "collector");
    let mon = bus.interstate("monitor", &["monitor", "--json", "--machine", "collector"]);
    // The monitor shows what crosses the hub once it has subscribed: send until it shows.
    let end = Instant::now() + STEP_LIMIT;
    while !collected(bus, mon).iter().any(|v| v["event"] == "HELLO") {
        assert!(
            Instant::now() < end,
            "the monitor never started{}",
            bus.dump()
        );
        let (status, _, err) = bus.run(&["send", "collector", "HELLO"]);
        assert!(status.success(), "send: {err}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    mon
}

/// The monitor's lines about messages to the collector, in order.
fn collected(bus: &Bus, mon: P) -> Vec<Value> {
    bus.out(mon)
        .iter()
        .filter_map(|l| parse_json(l))
        .filter(|v| v["to"] == "collector")
        .collect()
}

fn wait_collected(bus: &mut Bus, mon: P, what: &str, pred: impl Fn(&[Value]) -> bool) {
    let end = Instant::now() + STEP_LIMIT;
    while !pred(&collected(bus, mon)) {
        assert!(
            Instant::now() < end,
            "the collector never got {what}; it got {:?}{}",
            collected(bus, mon),
            bus.dump()
        );
        std::thread::sleep(support::POLL);
    }
}

fn count(list: &[Value], event: &str) -> usize {
    list.iter().filter(|v| v["event"] == event).count()
}

/// `interstate run RUNNER --id runner --client ARGS...`, once it has joined.
fn start_runner(bus: &mut Bus, id: &str, args: &[&str]) -> P {
    let runner = bus.write(
        &format!("{id}.json"),
        &RUNNER.replace("\"runner\"", &format!("\"{id}\"")),
    );
    let mut all = vec!["run", runner.as_str(), "--id", id, "--client"];
    all.extend_from_slice(args);
    let p = bus.interstate(id, &all);
    bus.wait_line(p, true, "the runner's join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    p
}

fn send(bus: &mut Bus, to: &str, event: &str, data: &str) {
    let (status, _, err) = bus.run(&["send", to, event, "--data", data]);
    assert!(status.success(), "send {event}: {err}{}", bus.dump());
}

/// The pids of the child processes the runner started, in order (from its log lines; under
/// `up`, from the supervisor's, which starts them).
fn child_pids(bus: &Bus, runner: P) -> Vec<u32> {
    bus.err(runner)
        .iter()
        .chain(bus.out(runner).iter())
        .filter_map(|l| {
            let rest = match l.split_once("child process ") {
                Some((_, rest)) => rest,
                None => l.split_once("up: runner/job ")?.1,
            };
            let rest = rest.split_once("started (pid ")?.1;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until process `pid` is gone from the process table: exited and reaped by its
/// parent (a zombie still has its /proc entry).
fn wait_gone(bus: &Bus, pid: u32) {
    let end = Instant::now() + STEP_LIMIT;
    let dir = format!("/proc/{pid}");
    while Path::new(&dir).exists() {
        if Instant::now() >= end {
            let state = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
            let state = state
                .lines()
                .find(|l| l.starts_with("State:"))
                .unwrap_or("");
            panic!("child process {pid} is still there ({state}){}", bus.dump());
        }
        std::thread::sleep(support::POLL);
    }
}

#[test]
fn a_runner_starts_a_worker_process_per_job_and_collects_each_result() {
    let mut bus = Bus::new("ipjobs");
    let mon = setup(&mut bus);
    let worker = bus.write("worker.json", WORKER);
    let actor = format!("worker=process:{worker}");
    let runner = start_runner(&mut bus, "runner", &["--actor", &actor]);
    for n in 1..=3usize {
        // START, sent in the invoking state's entry before the child exists, is held for
        // it and reaches it: its data comes back in PROGRESS.
        send(&mut bus, "runner", "JOB", &format!("{{\"n\":{n}}}"));
        wait_collected(&mut bus, mon, &format!("job {n}'s result"), |l| {
            count(l, "RESULT") == n
        });
        let list = collected(&bus, mon);
        let progress: Vec<&Value> = list.iter().filter(|v| v["event"] == "PROGRESS").collect();
        assert_eq!(progress.len(), n, "{list:?}");
        assert_eq!(progress[n - 1]["data"], json!({"n": n}), "{list:?}");
        assert_eq!(progress[n - 1]["from"], "runner", "{list:?}");
        let result = list.iter().filter(|v| v["event"] == "RESULT").nth(n - 1);
        assert_eq!(
            result.unwrap()["data"],
            json!({"status": "stored"}),
            "{list:?}"
        );
        assert_eq!(count(&list, "FAILED"), 0, "{list:?}");
    }
    let pids = child_pids(&bus, runner);
    assert_eq!(pids.len(), 3, "one worker process per job{}", bus.dump());
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2],
        "{pids:?}{}",
        bus.dump()
    );
    for pid in pids {
        wait_gone(&bus, pid);
    }
}

#[test]
fn a_worker_killed_with_sigkill_is_the_parents_error_actor_event() {
    let mut bus = Bus::new("ipkill");
    let mon = setup(&mut bus);
    let waiter = bus.write("waiter.json", WAITER);
    let actor = format!("worker=process:{waiter}");
    let runner = start_runner(&mut bus, "runner", &["--actor", &actor]);
    send(&mut bus, "runner", "JOB", r#"{"n":1}"#);
    wait_collected(&mut bus, mon, "the job's start", |l| {
        count(l, "PROGRESS") == 1
    });
    let pid = child_pids(&bus, runner)[0];
    let target = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(target, rustix::process::Signal::KILL).unwrap();
    wait_collected(&mut bus, mon, "the job's failure", |l| {
        count(l, "FAILED") == 1
    });
    let list = collected(&bus, mon);
    let failed = list.iter().find(|v| v["event"] == "FAILED").unwrap();
    assert_eq!(failed["data"]["signal"], json!(9), "{failed}");
    assert_eq!(failed["data"]["status"], Value::Null, "{failed}");
    assert_eq!(failed["data"]["pid"], json!(pid), "{failed}");
    let message = failed["data"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("runner/job") && message.contains("signal 9"),
        "{failed}"
    );
    assert_eq!(count(&list, "RESULT"), 0, "{list:?}");
    wait_gone(&bus, pid);
    // The runner goes on: the next job gets a new worker.
    send(&mut bus, "runner", "JOB", r#"{"n":2}"#);
    wait_collected(&mut bus, mon, "the next job's start", |l| {
        count(l, "PROGRESS") == 2
    });
}

#[test]
fn leaving_the_invoking_state_stops_the_process_without_a_done_or_error_event() {
    let mut bus = Bus::new("ipstop");
    let mon = setup(&mut bus);
    let waiter = bus.write("waiter.json", WAITER);
    let actor = format!("worker=process:{waiter}");
    let runner = start_runner(&mut bus, "runner", &["--actor", &actor]);
    send(&mut bus, "runner", "JOB", r#"{"n":1}"#);
    wait_collected(&mut bus, mon, "the job's start", |l| {
        count(l, "PROGRESS") == 1
    });
    let pid = child_pids(&bus, runner)[0];
    send(&mut bus, "runner", "CANCEL", "{}");
    // SIGTERM: `interstate run` ends cleanly, and the runner reaps it.
    wait_gone(&bus, pid);
    bus.wait_line(runner, true, "the stop's log line", STEP_LIMIT, |l| {
        l.contains(&format!("'runner/job' (pid {pid}) stopped"))
    });
    // Anything the stop made the runner say would be before the next job's start.
    send(&mut bus, "runner", "JOB", r#"{"n":2}"#);
    wait_collected(&mut bus, mon, "the next job's start", |l| {
        count(l, "PROGRESS") == 2
    });
    let list = collected(&bus, mon);
    assert_eq!(
        count(&list, "RESULT") + count(&list, "FAILED"),
        0,
        "{list:?}"
    );
}

#[test]
fn a_child_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let mut bus = Bus::new("ipgrace");
    let _mon = setup(&mut bus);
    let script = bus.write("stubborn.sh", "trap '' TERM\nwhile :; do sleep 1; done\n");
    let actor = format!("worker=exec:sh {script}");
    let runner = start_runner(
        &mut bus,
        "runner",
        &["--actor", &actor, "--child-grace", "200"],
    );
    send(&mut bus, "runner", "JOB", r#"{"n":1}"#);
    bus.wait_line(runner, true, "the child's start", STEP_LIMIT, |l| {
        l.contains("started (pid ")
    });
    let pid = child_pids(&bus, runner)[0];
    send(&mut bus, "runner", "CANCEL", "{}");
    wait_gone(&bus, pid);
    bus.wait_line(runner, true, "the stop's log line", STEP_LIMIT, |l| {
        l.contains(&format!("(pid {pid}) stopped: it was killed by signal 9"))
    });
}

#[test]
fn the_parent_reaches_its_child_process_by_send_to_and_the_child_answers_by_send_parent() {
    let mut bus = Bus::new("ipsendto");
    let mon = setup(&mut bus);
    let waiter = bus.write("waiter.json", WAITER);
    let actor = format!("worker=process:{waiter}");
    let _runner = start_runner(&mut bus, "runner", &["--actor", &actor]);
    send(&mut bus, "runner", "JOB", r#"{"n":1}"#);
    wait_collected(&mut bus, mon, "the job's start", |l| {
        count(l, "PROGRESS") == 1
    });
    // The child is on the bus as runner/job, in `ps` too.
    bus.wait_ps("runner/job", |list| {
        support::ps_pid(list, "runner/job").is_some()
    });
    for k in 1..=3 {
        send(&mut bus, "runner", "PING", &format!("{{\"k\":{k}}}"));
        wait_collected(&mut bus, mon, &format!("pong {k}"), |l| {
            count(l, "PONGED") == k
        });
    }
    let list = collected(&bus, mon);
    let pongs: Vec<&Value> = list
        .iter()
        .filter(|v| v["event"] == "PONGED")
        .map(|v| &v["data"])
        .collect();
    assert_eq!(pongs, [&json!({"k":1}), &json!({"k":2}), &json!({"k":3})]);
}

#[test]
fn a_plain_program_hands_back_its_output_and_its_exit_status() {
    let mut bus = Bus::new("ipexec");
    let mon = setup(&mut bus);
    // Echoes its input back as its output.
    let ok = bus.write(
        "ok.sh",
        "printf '%s' \"$INTERSTATE_INPUT\" > /proc/self/fd/$INTERSTATE_RESULT_FD\n",
    );
    let fails = bus.write("fails.sh", "exit 3\n");
    let ok_actor = format!("worker=exec:sh {ok}");
    let fails_actor = format!("worker=exec:sh {fails}");
    let a = start_runner(&mut bus, "runner-ok", &["--actor", &ok_actor]);
    let b = start_runner(&mut bus, "runner-fails", &["--actor", &fails_actor]);
    send(&mut bus, "runner-ok", "JOB", "{}");
    wait_collected(&mut bus, mon, "the program's output", |l| {
        count(l, "RESULT") == 1
    });
    send(&mut bus, "runner-fails", "JOB", "{}");
    wait_collected(&mut bus, mon, "the program's failure", |l| {
        count(l, "FAILED") == 1
    });
    let list = collected(&bus, mon);
    let result = list.iter().find(|v| v["event"] == "RESULT").unwrap();
    assert_eq!(result["from"], "runner-ok", "{result}");
    assert_eq!(result["data"], json!({"job": true}), "{result}");
    let failed = list.iter().find(|v| v["event"] == "FAILED").unwrap();
    assert_eq!(failed["from"], "runner-fails", "{failed}");
    assert_eq!(failed["data"]["status"], json!(3), "{failed}");
    assert_eq!(failed["data"]["signal"], Value::Null, "{failed}");
    for pid in child_pids(&bus, a).into_iter().chain(child_pids(&bus, b)) {
        wait_gone(&bus, pid);
    }
}

/// `examples/apps/jobs.toml` as it is: `up` runs the runner, which asks it for a worker
/// process per job; the worker's progress reaches the runner by `sendParent`, and the runner is back
/// in `idle` once the worker finished.
#[test]
fn the_jobs_app_runs_a_worker_process_per_job() {
    let mut bus = Bus::new("ipapp");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps/jobs.toml");
    let up = bus.interstate("up", &["up", manifest.to_str().unwrap(), "--plain"]);
    // `up` serves the bus once its hub is up; the runner is on it once ready.
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let (status, out, _) = bus.run(&["ps", "--json"]);
        let list = serde_json::from_str::<Value>(&out).unwrap_or_default();
        if status.success()
            && support::ps_pid(list.as_array().unwrap_or(&vec![]), "runner").is_some()
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the runner never joined{}",
            bus.dump()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mon = bus.interstate("monitor", &["monitor", "--json", "--machine", "runner"]);
    let stored = |b: &Bus| {
        b.out(mon).iter().filter_map(|l| parse_json(l)).any(|v| {
            v["from"] == "runner/job" && v["event"] == "PROGRESS" && v["data"]["stage"] == "store"
        })
    };
    // The monitor shows what crosses the hub once it has subscribed: send jobs until one
    // was seen through (a job sent while the runner works is ignored by its chart).
    let end = Instant::now() + STEP_LIMIT;
    while !stored(&bus) {
        assert!(Instant::now() < end, "no job went through{}", bus.dump());
        let (status, _, err) = bus.run(&["send", "runner", "JOB", "--data", r#"{"job":1}"#]);
        assert!(status.success(), "send: {err}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bus.wait_ps("the runner back in idle", |l| {
        l.iter()
            .any(|e| e["machine"] == "runner" && e["state"].to_string().contains("idle"))
    });
    let pids = child_pids(&bus, up);
    assert!(!pids.is_empty(), "{}", bus.dump());
    for pid in pids {
        wait_gone(&bus, pid);
    }
    // `up` stops the runner when it is told to stop.
    bus.term(up);
    bus.wait_exit(up, STEP_LIMIT);
}
