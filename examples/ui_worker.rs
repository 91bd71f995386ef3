//! The seed's quick start, for real: a UI process asks a worker process for work with a
//! request, and the worker replies after a delay. Two processes, one bus.
//!
//!     cargo run --example ui_worker            # the UI; it starts the worker itself
//!     cargo run --example ui_worker -- worker  # just the worker (joins a running bus)
//!     cargo run --example ui_worker -- kill    # the UI kills the worker mid-work
//!     cargo run --example ui_worker -- hang    # the UI stops (SIGSTOP) the worker mid-work
//!
//! The UI's request (`ctx.request`, 1 s timeout) ends in the reply, or visibly in
//! `xstate.error.request`: `target-gone` as soon as the killed worker leaves the bus (it had
//! acknowledged the request, which is not an answer), `timeout` when the hung worker never
//! answers. The worker answers from a later step (its work takes 300 ms), with the
//! `ReplyTo` it kept from the request.
//!
//! The bus is `$INTERSTATE_BUS` (default: `ui-worker`), in `$INTERSTATE_DIR` or the default
//! bus directory. The UI process serves the bus if no hub is running.

use std::cell::{Cell, RefCell};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::core::ReplyTo;
use interstate::Behaviors;
use serde::{Deserialize, Serialize};

const UI_CHART: &str = r#"{
  "id": "ui",
  "initial": "idle",
  "states": {
    "idle": { "on": { "START": "requesting" } },
    "requesting": {
      "entry": "onStartWork",
      "on": {
        "WORK_COMPLETE": { "target": "finished", "actions": "onWorkComplete" },
        "xstate.error.request": { "target": "failed", "actions": "onRequestFailed" }
      }
    },
    "finished": { "type": "final" },
    "failed": { "type": "final" }
  }
}"#;

const WORKER_CHART: &str = r#"{
  "id": "worker",
  "initial": "idle",
  "states": {
    "idle": { "on": { "DO_WORK": { "target": "working", "actions": "onDoWork" }, "STOP": "stopped" } },
    "working": { "after": { "300": { "target": "idle", "actions": "reply" } } },
    "stopped": { "type": "final" }
  }
}"#;

#[derive(Serialize, Deserialize, Debug)]
struct Task {
    task_id: u32,
}

#[derive(Serialize, Deserialize, Debug)]
struct Outcome {
    task_id: u32,
    result: String,
}

fn config() -> NodeConfig {
    let bus = std::env::var("INTERSTATE_BUS").unwrap_or_else(|_| "ui-worker".into());
    let mut c = NodeConfig::new(&bus);
    c.role = Role::Auto;
    c
}

fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let mut node = Node::new(config())?;
    let task = Rc::new(Cell::new(0u32));
    let (t1, t2) = (task.clone(), task.clone());
    // Whom to answer once the work is done (a later step: the timer's event has no sender).
    let asker: Rc<RefCell<Option<ReplyTo>>> = Rc::default();
    let (a1, a2) = (asker.clone(), asker.clone());
    let behaviors = Behaviors::new()
        .action("onDoWork", move |cx| {
            *a1.borrow_mut() = cx.reply_to();
            let Ok(task): Result<Task, _> = serde_json::from_slice(cx.payload()) else {
                return;
            };
            println!(
                "worker: processing task {} (pid {})",
                task.task_id,
                std::process::id()
            );
            t1.set(task.task_id);
        })
        .action("reply", move |cx| {
            let outcome = Outcome {
                task_id: t2.get(),
                result: "Success".into(),
            };
            let body = serde_json::to_vec(&outcome).unwrap_or_default();
            let Some(to) = a2.borrow_mut().take() else {
                eprintln!("worker: nobody to answer");
                return;
            };
            if let Err(e) = cx.send_reply(&to, "WORK_COMPLETE", &body) {
                eprintln!("worker: could not reply: {e}");
            }
        });
    add_json_machine(&mut node, "worker-1", WORKER_CHART, behaviors)?;
    println!("worker: joined bus '{}'", node.config().bus);
    node.run_until(Duration::from_secs(60), |n| {
        n.machine("worker-1").is_some_and(|m| m.is_done())
    })?;
    println!("worker: stopped");
    Ok(())
}

/// What the UI does to its worker once the worker has the task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MidWork {
    /// Nothing: the worker answers.
    Nothing,
    /// SIGKILL: the request ends as `target-gone`.
    Kill,
    /// SIGSTOP: the request ends as `timeout`.
    Hang,
}

fn ui(mid_work: MidWork) -> Result<(), Box<dyn std::error::Error>> {
    let mut node = Node::new(config())?;
    let behaviors = Behaviors::new()
        .action("onStartWork", |cx| {
            let info = cx.process_info("worker-1");
            let where_ = info
                .map(|i| format!("pid {} ({})", i.pid, i.executable))
                .unwrap_or_else(|| "unknown process".into());
            println!("ui: requesting work from worker-1 in {where_}");
            let body = serde_json::to_vec(&Task { task_id: 123 }).unwrap_or_default();
            let timeout = interstate::Duration::from_millis(1000);
            match cx.request("worker-1", "DO_WORK", &body, timeout) {
                Ok(id) => println!("ui: request {} sent, waiting 1 s for the reply", id.0),
                Err(e) => eprintln!("ui: could not send: {e}"),
            }
        })
        .action("onWorkComplete", |cx| {
            let outcome: Result<Outcome, _> = serde_json::from_slice(cx.payload());
            println!("ui: work completed: {outcome:?}");
        })
        .action("onRequestFailed", |cx| {
            let error: serde_json::Value = serde_json::from_slice(cx.payload()).unwrap_or_default();
            println!(
                "ui: request failed: {}: {}",
                error["reason"].as_str().unwrap_or("?"),
                error["message"].as_str().unwrap_or("")
            );
        });
    add_json_machine(&mut node, "ui-main", UI_CHART, behaviors)?;
    println!(
        "ui: on bus '{}' ({})",
        node.config().bus,
        if node.is_hub() {
            "serving as hub"
        } else {
            "client"
        }
    );

    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("worker")
        .env("INTERSTATE_BUS", &node.config().bus)
        .env("INTERSTATE_DIR", &node.config().dir)
        .spawn()?;
    let joined = node.run_until(Duration::from_secs(20), |n| {
        n.registry().contains("worker-1")
    })?;
    if !joined {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the worker did not join the bus within 20 s".into());
    }
    node.send_local("ui-main", "START", &[])?;
    if mid_work != MidWork::Nothing {
        // The worker has the task once its process acknowledged the request.
        node.run_until(Duration::from_secs(20), |n| n.unacknowledged() == 0)?;
        let sig = if mid_work == MidWork::Kill {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::STOP
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32).ok_or("no worker pid")?;
        rustix::process::kill_process(pid, sig)?;
        println!(
            "ui: worker {} mid-work",
            if mid_work == MidWork::Kill {
                "killed"
            } else {
                "stopped"
            }
        );
    }
    let finished = node.run_until(Duration::from_secs(20), |n| {
        n.machine("ui-main").is_some_and(|m| m.is_done())
    })?;
    if mid_work == MidWork::Hang {
        // SIGKILL ends a stopped process too.
        let _ = child.kill();
    }
    // Stop the worker through the bus, then make sure it is gone.
    node.send_local("ui-main", "noop", &[]).ok();
    let _ = node.machine_ids().count();
    let port = format!("ui-control.{}", std::process::id());
    node.open_port(&port)?;
    node.send_from_port(&port, "worker-1", "STOP", &[])?;
    node.run_for(Duration::from_millis(100))?;
    for _ in 0..50 {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait()?.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    if !finished {
        return Err("ui-main did not finish within 20 s".into());
    }
    println!(
        "ui: done ({} messages received, {} sent across processes)",
        node.stats().received,
        node.stats().sent_remote
    );
    Ok(())
}

fn main() -> ExitCode {
    // The node's diagnostics (connections, reconnects) on stderr, as `interstate` prints them.
    let _ = interstate::bus::logging::install(log::LevelFilter::Info);
    let r = match std::env::args().nth(1).as_deref() {
        Some("worker") => worker(),
        Some("kill") => ui(MidWork::Kill),
        Some("hang") => ui(MidWork::Hang),
        _ => ui(MidWork::Nothing),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
