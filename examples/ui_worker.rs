//! The seed's quick start, for real: a UI process asks a worker process for work, and the
//! worker replies after a delay. Two processes, one bus.
//!
//!     cargo run --example ui_worker            # the UI; it starts the worker itself
//!     cargo run --example ui_worker -- worker  # just the worker (joins a running bus)
//!
//! The bus is `$INTERSTATE_BUS` (default: `ui-worker`), in `$INTERSTATE_DIR` or the default
//! bus directory. The UI process serves the bus if no hub is running.

use std::cell::Cell;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
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
        "xstate.error.delivery": { "target": "retrying", "actions": "onDeliveryError" }
      }
    },
    "retrying": { "after": { "200": "requesting" } },
    "finished": { "type": "final" }
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
    let behaviors = Behaviors::new()
        .action("onDoWork", move |cx| {
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
            if let Err(e) = cx.send("ui-main", "WORK_COMPLETE", &body) {
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

fn ui() -> Result<(), Box<dyn std::error::Error>> {
    let mut node = Node::new(config())?;
    let behaviors = Behaviors::new()
        .action("onStartWork", |cx| {
            let info = cx.process_info("worker-1");
            let where_ = info
                .map(|i| format!("pid {} ({})", i.pid, i.executable))
                .unwrap_or_else(|| "unknown process".into());
            println!("ui: requesting work from worker-1 in {where_}");
            let body = serde_json::to_vec(&Task { task_id: 123 }).unwrap_or_default();
            if let Err(e) = cx.send("worker-1", "DO_WORK", &body) {
                eprintln!("ui: could not send: {e}");
            }
        })
        .action("onWorkComplete", |cx| {
            let outcome: Result<Outcome, _> = serde_json::from_slice(cx.payload());
            println!("ui: work completed: {outcome:?}");
        })
        .action("onDeliveryError", |cx| {
            println!(
                "ui: delivery failed ({}); retrying",
                String::from_utf8_lossy(cx.payload())
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
    let finished = node.run_until(Duration::from_secs(20), |n| {
        n.machine("ui-main").is_some_and(|m| m.is_done())
    })?;
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
    let r = match std::env::args().nth(1).as_deref() {
        Some("worker") => worker(),
        _ => ui(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
