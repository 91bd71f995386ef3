//! Invoked actors in a node: a machine's `invoke`s run a service bound from Rust and a child
//! chart, each started when its state is entered and stopped when it is left.
//!
//! - `sensor` is a blocking service (a serial port's reads, here a thread that sleeps a
//!   little between readings): it runs on a thread of its own, sends each reading to its
//!   parent and ends with a summary, the parent's `xstate.done.actor.port`;
//! - `worker` is a child chart, run as the machine `collector/job` of the same node (on
//!   the bus, as `interstate ps` would list it): its parent hands it the readings, it
//!   reports progress with `sendParent`, and its final state's `output` is the parent's
//!   `xstate.done.actor.job`.
//!
//!     cargo run --example invoked_service
//!
//! The same charts run under `interstate run` with `--actor worker=CHILD.json` (a child
//! chart; services need Rust): see `examples/charts/job_runner.json`.

use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;

const COLLECTOR: &str = r#"{
  "id": "collector",
  "initial": "reading",
  "states": {
    "reading": {
      "invoke": {
        "src": "sensor", "id": "port", "input": { "samples": 3 },
        "onDone": { "target": "storing", "actions": "summary" },
        "onError": { "target": "failed", "actions": "failure" }
      },
      "on": { "READING": { "actions": "reading" } }
    },
    "storing": {
      "entry": { "type": "sendTo", "to": "job", "event": "STORE", "data": { "from": "event" } },
      "invoke": {
        "src": "worker", "id": "job",
        "onDone": { "target": "done", "actions": "stored" },
        "onError": { "target": "failed", "actions": "failure" }
      },
      "on": { "PROGRESS": { "actions": "progress" } }
    },
    "done": { "type": "final" },
    "failed": { "type": "final" }
  }
}"#;

const WORKER: &str = r#"{
  "id": "worker",
  "initial": "ready",
  "states": {
    "ready": { "on": { "STORE": "writing" } },
    "writing": {
      "entry": { "type": "sendParent", "event": "PROGRESS", "data": { "stage": "writing" } },
      "after": { "20": "stored" }
    },
    "stored": { "type": "final", "output": { "status": "stored" } }
  }
}"#;

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = NodeConfig::new(&format!("invoked-{}", std::process::id()));
    config.role = Role::Hub;
    let mut node = Node::new(config)?;

    let behaviors = Behaviors::new()
        .action("reading", |cx| {
            println!("collector: reading {}", text(cx.payload()))
        })
        .action("summary", |cx| {
            println!("collector: sensor done, {}", text(cx.payload()))
        })
        .action("progress", |cx| {
            println!(
                "collector: {} reports {}",
                cx.sender().unwrap_or("?"),
                text(cx.payload())
            )
        })
        .action("stored", |cx| {
            println!("collector: worker done, {}", text(cx.payload()))
        })
        .action("failure", |cx| {
            println!("collector: failed, {}", text(cx.payload()))
        })
        // Blocking reads on a thread of their own, 4 events of room each way.
        .blocking_service("sensor", 4, |port| {
            let samples = port
                .input()
                .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                .and_then(|v| v["samples"].as_u64())
                .unwrap_or(1);
            let mut sum = 0;
            for i in 0..samples {
                std::thread::sleep(Duration::from_millis(5)); // a read that blocks
                let value = 20 + i;
                sum += value;
                port.send_parent("READING", format!("{{\"celsius\":{value}}}").as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!("{{\"samples\":{samples},\"sum\":{sum}}}").into_bytes())
        })
        .child_chart("worker", interstate::compile_str(WORKER)?, Behaviors::new);
    add_json_machine(&mut node, "collector", COLLECTOR, behaviors)?;

    let finished = node.run_until(Duration::from_secs(10), |n| {
        n.machine("collector").is_some_and(|m| m.is_done())
    })?;
    println!("collector finished: {finished}");
    Ok(())
}
