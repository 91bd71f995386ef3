//! Invoked children in processes of their own under `interstate up`: the node asks the
//! supervisor for them (it finds `INTERSTATE_SUPERVISOR` in its environment) instead of
//! spawning them itself. Against the real binary on a private bus: the child is the
//! supervisor's (listed in its output, its parent process is `up`), registered as
//! `runner/job`; SIGKILL is the parent's `xstate.error.actor.job`; leaving the invoking state
//! stops it, and so does its parent's process dying; `interstate down` stops it with the
//! app; the child gets the environment the manifest gives its parent's process. Every child
//! is looked for in /proc until it is gone.

mod support;

use std::time::Instant;

use serde_json::Value;
use support::{interstate_bin, Bus, P, STEP_LIMIT};

/// Starts the child `job` (src `worker`) per JOB, back in `idle` when it ends or on CANCEL.
const RUNNER: &str = r#"{"id":"runner","initial":"idle","states":{
 "idle":{"on":{"JOB":"working"}},
 "working":{
   "invoke":{"src":"worker","id":"job",
     "onDone":"done","onError":"failed"},
   "on":{"CANCEL":"idle"}},
 "done":{"on":{"JOB":"working"}},
 "failed":{"on":{"JOB":"working"}}}}"#;

/// A job that never finishes by itself.
const WAITER: &str = r#"{"id":"waiter","initial":"waiting","states":{"waiting":{}}}"#;

/// The pids `up` reported for the child `runner/job`, in order.
fn job_pids(bus: &Bus, up: P) -> Vec<u32> {
    bus.out(up)
        .iter()
        .filter_map(|l| {
            let rest = l.split_once("runner/job started (pid ")?.1;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits for the `n`th child `up` started; returns its pid.
fn wait_job(bus: &mut Bus, up: P, n: usize) -> u32 {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(&pid) = job_pids(bus, up).get(n - 1) {
            return pid;
        }
        assert!(
            Instant::now() < end,
            "up never started child {n}{}",
            bus.dump()
        );
        std::thread::sleep(support::POLL);
    }
}

/// Waits until process `pid` is gone from the process table (reaped: a zombie keeps its
/// /proc entry).
fn wait_gone(bus: &Bus, pid: u32) {
    let end = Instant::now() + STEP_LIMIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < end,
            "process {pid} is still there{}",
            bus.dump()
        );
        std::thread::sleep(support::POLL);
    }
}

fn parent_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

fn send(bus: &mut Bus, to: &str, event: &str) {
    let (status, _, err) = bus.run(&["send", to, event]);
    assert!(status.success(), "send {event}: {err}{}", bus.dump());
}

fn wait_state(bus: &mut Bus, state: &str) {
    bus.wait_ps(&format!("the runner in {state}"), |l| {
        l.iter()
            .any(|e| e["machine"] == "runner" && e["state"].to_string().contains(state))
    });
}

#[test]
fn under_up_the_supervisor_runs_the_child_processes_a_node_invokes() {
    let mut bus = Bus::new("ipsup");
    let runner = bus.write("runner.json", RUNNER);
    let waiter = bus.write("waiter.json", WAITER);
    let bin = interstate_bin();
    let manifest = bus.write(
        "app.toml",
        &format!(
            "bus = \"ignored\"\n[[process]]\nname = \"runner\"\ncommand = {:?}\nargs = [\"run\", \
             {runner:?}, \"--id\", \"runner\", \"--client\", \"--actor\", \
             \"worker=process:{waiter}\", \"--child-grace\", \"2000\"]\nprovides = \
             [\"runner\"]\n",
            bin.to_str().unwrap()
        ),
    );
    let up = bus.interstate("up", &["up", &manifest, "--plain"]);
    bus.wait_line(up, false, "the app's readiness", STEP_LIMIT, |l| {
        l.contains("every process is ready")
    });

    // A job: the supervisor starts the worker (its child, not the runner's), which joins
    // the bus as runner/job.
    send(&mut bus, "runner", "JOB");
    let first = wait_job(&mut bus, up, 1);
    assert_eq!(parent_pid(first), Some(bus.pid(up)), "{}", bus.dump());
    bus.wait_ps("runner/job", |l| {
        support::ps_pid(l, "runner/job") == Some(u64::from(first))
    });
    assert!(
        bus.out(up)
            .iter()
            .any(|l| l.contains("'runner/job' asked of the supervisor")),
        "{}",
        bus.dump()
    );

    // SIGKILL: the runner gets xstate.error.actor.job (its onError), the supervisor goes on.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_state(&mut bus, "failed");
    wait_gone(&bus, first);
    bus.wait_line(up, false, "the runner's error line", STEP_LIMIT, |l| {
        l.contains(&format!(
            "'runner/job' (pid {first}, src 'worker') was killed by signal 9"
        ))
    });

    // Leaving the invoking state stops the child (the supervisor's SIGTERM, on which
    // `interstate run` ends cleanly).
    send(&mut bus, "runner", "JOB");
    let second = wait_job(&mut bus, up, 2);
    bus.wait_ps("the second runner/job", |l| {
        support::ps_pid(l, "runner/job") == Some(u64::from(second))
    });
    send(&mut bus, "runner", "CANCEL");
    wait_gone(&bus, second);
    bus.wait_line(up, false, "the stop's line", STEP_LIMIT, |l| {
        l.contains(&format!("'runner/job' (pid {second}) stopped"))
    });
    bus.wait_line(up, false, "the supervisor's line", STEP_LIMIT, |l| {
        l.contains(&format!(
            "runner/job (pid {second}) exited with status 0, as asked"
        ))
    });
    wait_state(&mut bus, "idle");

    // `down` stops the app, the child with it.
    send(&mut bus, "runner", "JOB");
    let third = wait_job(&mut bus, up, 3);
    bus.wait_ps("the third runner/job", |l| {
        support::ps_pid(l, "runner/job") == Some(u64::from(third))
    });
    // The runner killed: the child it asked for is stopped (no state is left to stop it);
    // `up` restarts the runner.
    let runner_pid = support::ps_pid(&bus.ps(), "runner").expect("the runner's pid") as u32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(runner_pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_gone(&bus, third);
    bus.wait_line(up, false, "the orphan's stop", STEP_LIMIT, |l| {
        l.contains("runner/job: whoever asked for it left the bus; stopping it")
    });
    bus.wait_ps("the runner back", |l| {
        support::ps_pid(l, "runner").is_some_and(|p| p != u64::from(runner_pid))
    });
    send(&mut bus, "runner", "JOB");
    let fourth = wait_job(&mut bus, up, 4);
    bus.wait_ps("the fourth runner/job", |l| {
        support::ps_pid(l, "runner/job") == Some(u64::from(fourth))
    });
    let (status, _, err) = bus.run(&["down"]);
    assert!(status.success(), "down: {err}{}", bus.dump());
    assert!(bus.wait_exit(up, STEP_LIMIT).success(), "{}", bus.dump());
    wait_gone(&bus, fourth);
}

/// Forwards its child's output (onDone) and error (onError) to `collector`.
const FORWARDER: &str = r#"{"id":"fwd","initial":"idle","states":{
 "idle":{"on":{"JOB":"working"}},
 "working":{
   "invoke":{"src":"worker","id":"job","input":{"job":true},
     "onDone":{"target":"idle","actions":{"type":"sendTo","to":"collector","event":"RESULT","data":{"from":"event"}}},
     "onError":{"target":"idle","actions":{"type":"sendTo","to":"collector","event":"FAILED","data":{"from":"event"}}}}}}}"#;

const COLLECTOR: &str = r#"{"id":"collector","initial":"on","states":{"on":{}}}"#;

/// The monitor's lines about messages to the collector.
fn collected(bus: &Bus, mon: P) -> Vec<Value> {
    bus.out(mon)
        .iter()
        .filter_map(|l| support::parse_json(l))
        .filter(|v| v["to"] == "collector")
        .collect()
}

#[test]
fn under_up_a_childs_output_and_a_failed_start_reach_the_parent() {
    let mut bus = Bus::new("ipsupout");
    let fwd = bus.write("fwd.json", FORWARDER);
    let collector = bus.write("collector.json", COLLECTOR);
    // Echoes its input back as its output, with what its parent's process was given by the
    // manifest (`GREETING`, which `up` itself does not have).
    let ok = bus.write(
        "ok.sh",
        "printf '{\"input\":%s,\"greeting\":\"%s\"}' \"$INTERSTATE_INPUT\" \"$GREETING\" \
         > /proc/self/fd/$INTERSTATE_RESULT_FD\n",
    );
    let bin = interstate_bin();
    let bin = bin.to_str().unwrap();
    let process = |name: &str, args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[process]]\nname = {name:?}\ncommand = {bin:?}\nargs = [{}]\nprovides = \
             [{name:?}]\nenv = {{ GREETING = \"hello from {name}\" }}\n",
            args.join(", ")
        )
    };
    let manifest = format!(
        "bus = \"ignored\"\n{}{}{}",
        process(
            "collector",
            &["run", &collector, "--id", "collector", "--client"]
        ),
        process(
            "runner-ok",
            &[
                "run",
                &fwd,
                "--id",
                "runner-ok",
                "--client",
                "--actor",
                &format!("worker=exec:sh {ok}")
            ]
        ),
        process(
            "runner-bad",
            &[
                "run",
                &fwd,
                "--id",
                "runner-bad",
                "--client",
                "--actor",
                "worker=exec:/nonexistent/program"
            ]
        ),
    );
    let manifest = bus.write("app.toml", &manifest);
    let up = bus.interstate("up", &["up", &manifest, "--plain"]);
    bus.wait_line(up, false, "the app's readiness", STEP_LIMIT, |l| {
        l.contains("every process is ready")
    });
    let mon = bus.interstate("monitor", &["monitor", "--json", "--machine", "collector"]);
    // The monitor shows what crosses the hub once it has subscribed: send until it shows.
    let end = Instant::now() + STEP_LIMIT;
    while !collected(&bus, mon).iter().any(|v| v["event"] == "HELLO") {
        assert!(
            Instant::now() < end,
            "the monitor never started{}",
            bus.dump()
        );
        send(&mut bus, "collector", "HELLO");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    send(&mut bus, "runner-ok", "JOB");
    send(&mut bus, "runner-bad", "JOB");
    let end = Instant::now() + STEP_LIMIT;
    let has = |b: &Bus, e: &str| collected(b, mon).iter().any(|v| v["event"] == e);
    while !(has(&bus, "RESULT") && has(&bus, "FAILED")) {
        assert!(Instant::now() < end, "no result and failure{}", bus.dump());
        std::thread::sleep(support::POLL);
    }
    let list = collected(&bus, mon);
    let result = list.iter().find(|v| v["event"] == "RESULT").unwrap();
    assert_eq!(result["from"], "runner-ok", "{result}");
    assert_eq!(
        result["data"],
        serde_json::json!({"input": {"job": true}, "greeting": "hello from runner-ok"}),
        "{result}"
    );
    let failed = list.iter().find(|v| v["event"] == "FAILED").unwrap();
    assert_eq!(failed["from"], "runner-bad", "{failed}");
    let message = failed["data"]["message"].as_str().unwrap_or("");
    assert!(message.contains("could not be started"), "{failed}");
    assert_eq!(failed["data"]["pid"], Value::Null, "{failed}");
    // The app goes on: a failed start is the parent's business.
    assert!(bus.try_status(up).is_none(), "{}", bus.dump());
    bus.term(up);
    assert!(bus.wait_exit(up, STEP_LIMIT).success(), "{}", bus.dump());
}
