//! A node living inside an existing daemon's event loop.
//!
//! The daemon owns a source of its own (here a pipe another thread writes commands into),
//! registers it with the node's mio registry under a token at or above `USER_TOKEN_BASE`, and
//! drives everything with `run_once_with`: bus traffic, machine timers and its own events in
//! one loop, no extra thread for the bus.
//!
//!     cargo run --example daemon_loop

use std::io::{Read, Write};
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role, USER_TOKEN_BASE};
use interstate::Behaviors;
use mio::{Interest, Token};

const CONTROLLER: &str = r#"{
  "id": "controller",
  "initial": "stopped",
  "states": {
    "stopped": { "on": { "START": "running" } },
    "running": {
      "entry": "report",
      "after": { "50": { "target": "running", "reenter": true } },
      "on": { "STOP": "stopped", "QUIT": "done" }
    },
    "done": { "type": "final" }
  }
}"#;

const COMMANDS: Token = Token(USER_TOKEN_BASE);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's diagnostics (connections, reconnects) on stderr, as `interstate` prints them.
    let _ = interstate::bus::logging::install(log::LevelFilter::Info);
    let mut config = NodeConfig::new(&format!("daemon-{}", std::process::id()));
    config.role = Role::Hub;
    let mut node = Node::new(config)?;
    let mut ticks = 0u32;
    let behaviors = Behaviors::new().action("report", move |cx| {
        ticks += 1;
        println!(
            "controller: running, tick {ticks} (machine {})",
            cx.machine_id()
        );
    });
    add_json_machine(&mut node, "controller", CONTROLLER, behaviors)?;

    // The daemon's own source: a pipe that a "control thread" writes commands into.
    let (mut sender, mut receiver) = mio::unix::pipe::new()?;
    node.poll_registry()
        .register(&mut receiver, COMMANDS, Interest::READABLE)?;
    let control = std::thread::spawn(move || {
        for cmd in ["START\n", "STOP\n", "START\n", "QUIT\n"] {
            std::thread::sleep(Duration::from_millis(120));
            // A full pipe would only delay the command; this one is tiny.
            let _ = sender.write_all(cmd.as_bytes());
        }
    });

    let mut pending = String::new();
    let mut commands = Vec::new();
    while !node.machine("controller").is_some_and(|m| m.is_done()) {
        node.run_once_with(Some(Duration::from_millis(500)), &mut |event| {
            if event.token() == COMMANDS {
                let mut buf = [0u8; 256];
                while let Ok(n) = receiver.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                while let Some(i) = pending.find('\n') {
                    commands.push(pending[..i].to_string());
                    pending.drain(..=i);
                }
            }
        })?;
        for cmd in commands.drain(..) {
            println!("daemon: command {cmd}");
            node.send_local("controller", &cmd, &[])?;
        }
    }
    let _ = control.join();
    println!("daemon: controller finished; exiting");
    Ok(())
}
