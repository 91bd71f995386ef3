//! The gateway from a second language: `grpc/examples/node/bus.js` (Node with @grpc/grpc-js,
//! locked in its package-lock.json) run against a private bus with the lamp machine, its output
//! checked line by line. Without `node` or the example's npm packages (`npm ci` in
//! grpc/examples/node, which scripts/test.sh runs) it says loudly that it skipped.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{wait_for, Bus};

fn skip(why: &str) {
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: the gateway's Node example did not run: {why}\n\
         !!! (scripts/test.sh runs `npm ci` in grpc/examples/node when npm is installed)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

#[test]
fn the_node_example_lists_asks_and_receives() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node");
    if Command::new("node").arg("--version").output().is_err() {
        return skip("no `node` on PATH");
    }
    if !example.join("node_modules/@grpc/grpc-js").is_dir() {
        return skip("grpc/examples/node/node_modules is missing");
    }
    let mut bus = Bus::start("node");
    bus.run_chart("lamp.json", "lamp");
    let socket = bus.gateway();
    // The lamp is on the bus (its `interstate run` registered it) before the example asks.
    wait_for("the lamp's registration", || {
        Command::new(support::interstate_bin())
            .args(["ps"])
            .env("INTERSTATE_DIR", &bus.dir)
            .env("INTERSTATE_BUS", &bus.name)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("lamp"))
    });
    let out = Command::new("node")
        .arg(example.join("bus.js"))
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node bus.js failed: {}\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        bus.dump()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "on the bus: lamp",
            r#"lamp answered PONG {"n":1}"#,
            r#"node-worker got PONG {"n":2} from lamp"#,
        ],
        "{}",
        bus.dump()
    );
}
