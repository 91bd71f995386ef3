//! InterNode through a real MQTT broker: a private mosquitto per test on a free loopback
//! port (its own config in a temp dir, killed by pid at the end), two buses with separate
//! bus directories standing for two hosts, and `interstate bridge --mqtt` on each.
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `.ci/run` installs it).

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use support::*;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A private broker; killed (by its pid) and its directory removed when dropped.
struct Broker {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Broker {
    fn start(test: &str) -> Broker {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: apt-get install -y mosquitto (.ci/run does)"
        );
        let dir = std::env::temp_dir().join(format!("istr-mqtt-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A free port: bound by the kernel's choice, released, then given to the broker.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("start mosquitto");
        let broker = Broker { child, dir, port };
        let end = Instant::now() + STEP_LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < end,
                "mosquitto did not listen on {port}: {}",
                broker.log()
            );
            std::thread::sleep(POLL);
        }
        broker
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_bridge(bus: &mut Bus, broker: &Broker, node: &str) -> P {
    let url = broker.url();
    let p = bus.interstate(
        &format!("bridge {node}"),
        &["bridge", "--mqtt", &url, "--node", node],
    );
    bus.wait_line(p, true, "the bridge's connection", STEP_LIMIT, |l| {
        l.contains("connected to the broker")
    });
    p
}

/// The source's summary line (both buses' processes shown if it does not come).
fn wait_summary(a: &Bus, b: &Bus, source: P) -> Value {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(v) = last_json(&a.out(source), "acknowledged") {
            return v;
        }
        assert!(
            Instant::now() < end,
            "no summary from the source{}{}",
            a.dump(),
            b.dump()
        );
        std::thread::sleep(POLL);
    }
}

fn has(list: &[Value], machine: &str) -> bool {
    list.iter().any(|e| e["machine"] == machine)
}

#[test]
fn a_machine_on_one_bus_sends_to_one_on_another_through_mosquitto_and_gets_a_reply() {
    let broker = Broker::start("send");
    let mut a = Bus::new("inode-a");
    let mut b = Bus::new("inode-b");
    a.start_hub();
    b.start_hub();
    // The same id on both buses before the bridges start (each bus's own keeps it there);
    // `keeper` stays on bus B for the whole test.
    let _twin_a = a.start_sink("twin", &["--timeout-ms", "120000"]);
    let _twin_b = b.start_sink("twin", &["--timeout-ms", "120000"]);
    let _keeper = b.start_sink("keeper", &["--timeout-ms", "120000"]);
    let bridge_a = start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");

    // `worker` lives on bus B; bus A sees it, hosted by A's bridge.
    let _worker = b.start_sink("worker", &["--expect", "3"]);
    let list = a.wait_ps("worker through the bridge", |l| has(l, "worker"));
    assert_eq!(
        ps_pid(&list, "worker"),
        Some(u64::from(a.pid(bridge_a))),
        "worker is reached through A's bridge: {list:?}"
    );

    // A machine of bus A sends three events to it; its reply (the tally) comes back.
    let source = a.probe("source sensor", &["source", "sensor", "worker", "3"]);
    let done = wait_summary(&a, &b, source);
    assert_eq!(
        done["acknowledged"],
        Value::Bool(true),
        "{done}{}{}",
        a.dump(),
        b.dump()
    );
    let tally = &done["tally"];
    assert_eq!(tally["received"], 3, "{tally}");
    assert_eq!(tally["distinct"], 3, "{tally}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    assert_eq!(done["failed"], 0, "{done}");

    // Each bridge reports the conflict over `twin`; the local one keeps it.
    for (bus, bridge) in [(&mut a, bridge_a), (&mut b, bridge_b)] {
        bus.wait_line(bridge, true, "the conflict report", STEP_LIMIT, |l| {
            l.contains("conflict: machine id 'twin'")
        });
    }

    // B's bridge killed: its will marks host-b down, and B's machines leave A's registry.
    assert!(has(&a.ps(), "keeper"), "{}", a.dump());
    b.kill(bridge_b);
    a.wait_ps("keeper gone after B's bridge died", |l| !has(l, "keeper"));
    a.wait_line(bridge_a, true, "host-b down", STEP_LIMIT, |l| {
        l.contains("node 'host-b' is down")
    });
    drop(broker);
}

#[test]
fn a_bad_broker_url_is_refused_with_the_form_to_use() {
    let mut a = Bus::new("inode-url");
    a.start_hub();
    let (status, _, err) = a.run(&["bridge", "--mqtt", "http://example:80"]);
    assert!(!status.success());
    assert!(err.contains("use mqtt://HOST:PORT"), "{err}");
}
