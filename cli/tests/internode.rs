//! InterNode through a real MQTT broker: a private mosquitto per test on a free loopback
//! port (its own config in a temp dir, killed by pid at the end), two buses with separate
//! bus directories standing for two hosts, and `interstate bridge --mqtt` on each.
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `scripts/test.sh`, the README's
//! test command, installs it).

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        Broker::start_with(test, "persistence false\n")
    }

    /// A broker that keeps its sessions, queued messages and retained messages across a
    /// graceful restart (`restart_gracefully`).
    fn start_persistent(test: &str) -> Broker {
        Broker::start_with(test, "persistence true\npersistence_location DIR/\n")
    }

    fn start_with(test: &str, persistence: &str) -> Broker {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: apt-get install -y mosquitto (scripts/test.sh does)"
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
        // mosquitto started as root drops to its own user: the directory must be its to
        // write (persistence).
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let persistence = persistence.replace("DIR", &dir.display().to_string());
        // max_queued_messages 0: mosquitto's default (1000) drops QoS 1 messages queued for
        // a subscriber beyond it, silently; docs/internode.md asks brokers for no limit.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}max_queued_messages 0\nlog_dest stderr\n"
            ),
        )
        .unwrap();
        let child = Broker::spawn(&dir);
        let mut broker = Broker { child, dir, port };
        broker.wait_listening();
        broker
    }

    fn spawn(dir: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mosquitto.log"))
            .unwrap();
        Command::new(MOSQUITTO)
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto")
    }

    fn wait_listening(&mut self) {
        let end = Instant::now() + STEP_LIMIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Kills the broker (it keeps nothing: persistence is off) and starts it again on the
    /// same port.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Broker::spawn(&self.dir);
        self.wait_listening();
    }

    /// Stops the broker with SIGTERM (it publishes its clients' wills, saves what it keeps)
    /// and starts it again on the same port.
    fn restart_gracefully(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
        self.child = Broker::spawn(&self.dir);
        self.wait_listening();
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

/// How long a bridge waits for a node whose connection ended (its will) before taking it
/// down: shorter than the default (12 s) so that a killed bridge's node is down well within
/// the tests' step limit; longer than twice a broker restart here.
const NODE_GRACE_MS: &str = "4000";

fn start_bridge(bus: &mut Bus, broker: &Broker, node: &str) -> P {
    start_bridge_with_grace(bus, broker, node, NODE_GRACE_MS)
}

fn start_bridge_with_grace(bus: &mut Bus, broker: &Broker, node: &str, grace_ms: &str) -> P {
    let url = broker.url();
    let p = bus.interstate(
        &format!("bridge {node}"),
        &[
            "bridge",
            "--mqtt",
            &url,
            "--node",
            node,
            "--node-grace-ms",
            grace_ms,
        ],
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

/// Waits until the bridge has said it connected `n` times.
fn wait_connections(bus: &Bus, bridge: P, n: usize) {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let count = bus
            .err(bridge)
            .iter()
            .filter(|l| l.contains("connected to the broker"))
            .count();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "the bridge did not connect {n} times{}",
            bus.dump()
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn the_bridges_reconnect_after_the_broker_restarts_and_traffic_resumes() {
    let mut broker = Broker::start("restart");
    let mut a = Bus::new("inode-ra");
    let mut b = Bus::new("inode-rb");
    a.start_hub();
    b.start_hub();
    let bridge_a = start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    let _worker = b.start_sink("worker", &["--expect", "2"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));

    // The broker loses everything (no persistence): both bridges reconnect, publish their
    // registries again, and a new conversation works.
    broker.restart();
    wait_connections(&a, bridge_a, 2);
    wait_connections(&b, bridge_b, 2);
    assert!(
        a.err(bridge_a)
            .iter()
            .any(|l| l.contains("the broker closed the connection")
                || l.contains("reading from the broker")),
        "A's bridge noticed the loss{}",
        a.dump()
    );
    let source = a.probe("source sensor", &["source", "sensor", "worker", "2"]);
    let done = wait_summary(&a, &b, source);
    assert_eq!(
        done["acknowledged"],
        Value::Bool(true),
        "{done}{}{}",
        a.dump(),
        b.dump()
    );
    assert_eq!(done["tally"]["distinct"], 2, "{done}");
    assert_eq!(done["tally"]["duplicates"], 0, "{done}");
}

/// Issue 15, a broker restart is not a departure: mosquitto stopped with SIGTERM publishes
/// every bridge's will as it shuts down (and keeps it, retained, with the sessions and the
/// queued messages). Each bridge takes the other's will for an absence, not a departure:
/// the worker stays on bus A, the messages in flight and those sent meanwhile wait, and
/// when both nodes are back in the same run every one of 2,000 messages is delivered once,
/// in order, and acknowledged; none fails.
#[test]
fn a_graceful_broker_restart_mid_stream_fails_nothing_and_keeps_the_remote_machines() {
    let mut broker = Broker::start_persistent("graceful");
    let mut a = Bus::new("inode-ga");
    let mut b = Bus::new("inode-gb");
    a.start_hub();
    b.start_hub();
    let bridge_a = start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    let _worker = b.start_sink("worker", &["--expect", "2000", "--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));
    let source = a.probe(
        "source sensor",
        &[
            "source",
            "sensor",
            "worker",
            "2000",
            "--rate",
            "2000",
            "--timeout-ms",
            "120000",
            "--progress-every",
            "100",
        ],
    );
    a.wait_progress(source, 300);
    broker.restart_gracefully();
    wait_connections(&a, bridge_a, 2);
    wait_connections(&b, bridge_b, 2);
    let end = Instant::now() + Duration::from_secs(120);
    let done = loop {
        if let Some(v) = last_json(&a.out(source), "acknowledged") {
            break v;
        }
        assert!(Instant::now() < end, "no summary{}{}", a.dump(), b.dump());
        std::thread::sleep(POLL);
    };
    let tally = &done["tally"];
    assert_eq!(done["failed"], 0, "{done}{}{}", a.dump(), b.dump());
    assert_eq!(tally["distinct"], 2000, "{done}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    assert_eq!(done["unacknowledged"], 0, "{done}");
    let log_a = a.err(bridge_a);
    assert!(
        !log_a
            .iter()
            .any(|l| l.contains("node 'host-b' is down") || l.contains("new run")),
        "host-b was taken for gone{}",
        a.dump()
    );
    // The will was seen (the broker published it), and taken for an absence.
    assert!(
        log_a
            .iter()
            .any(|l| l.contains("node 'host-b' lost its connection to the broker")),
        "{}",
        a.dump()
    );
}

/// A node absent (its bridge killed: its will) holds back only the messages for it: with a
/// grace longer than the test, a message for host-b's worker waits in A's bridge, and one
/// sent after it to host-c's worker is delivered and answered meanwhile.
#[test]
fn an_absent_node_holds_back_only_the_messages_for_it() {
    let broker = Broker::start("absent");
    let mut a = Bus::new("inode-aa");
    let mut b = Bus::new("inode-ab");
    let mut c = Bus::new("inode-ac");
    for bus in [&mut a, &mut b, &mut c] {
        bus.start_hub();
    }
    let bridge_a = start_bridge_with_grace(&mut a, &broker, "host-a", "600000");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    start_bridge(&mut c, &broker, "host-c");
    let _worker_b = b.start_sink("worker-b", &["--timeout-ms", "120000"]);
    let _worker_c = c.start_sink("worker-c", &["--expect", "3", "--timeout-ms", "120000"]);
    a.wait_ps("both workers through the bridge", |l| {
        has(l, "worker-b") && has(l, "worker-c")
    });
    b.kill(bridge_b);
    a.wait_line(bridge_a, true, "host-b absent", STEP_LIMIT, |l| {
        l.contains("node 'host-b' lost its connection to the broker")
    });
    let to_b = a.probe(
        "source to-b",
        &["source", "to-b", "worker-b", "1", "--timeout-ms", "120000"],
    );
    sending_done(&mut a, to_b);
    let to_c = a.probe("source to-c", &["source", "to-c", "worker-c", "3"]);
    let done = wait_summary(&a, &c, to_c);
    assert_eq!(
        done["acknowledged"],
        Value::Bool(true),
        "{done}{}",
        a.dump()
    );
    assert_eq!(done["tally"]["distinct"], 3, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    // host-b is still absent (its grace is ten minutes) and worker-b still on bus A.
    assert!(has(&a.ps(), "worker-b"), "{}", a.dump());
    assert!(
        !a.err(bridge_a)
            .iter()
            .any(|l| l.contains("node 'host-b' is down")),
        "{}",
        a.dump()
    );
    assert_eq!(
        last_json(&a.out(to_b), "acknowledged"),
        None,
        "to-b still waits"
    );
}

#[test]
fn three_thousand_messages_cross_exactly_once_and_in_order() {
    let broker = Broker::start("volume");
    let mut a = Bus::new("inode-va");
    let mut b = Bus::new("inode-vb");
    a.start_hub();
    b.start_hub();
    start_bridge(&mut a, &broker, "host-a");
    start_bridge(&mut b, &broker, "host-b");
    let _worker = b.start_sink("worker", &["--expect", "3000", "--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));
    let source = a.probe(
        "source sensor",
        &[
            "source",
            "sensor",
            "worker",
            "3000",
            "--timeout-ms",
            "120000",
        ],
    );
    let end = Instant::now() + Duration::from_secs(120);
    let done = loop {
        if let Some(v) = last_json(&a.out(source), "acknowledged") {
            break v;
        }
        assert!(Instant::now() < end, "no summary{}{}", a.dump(), b.dump());
        std::thread::sleep(POLL);
    };
    let tally = &done["tally"];
    assert_eq!(tally["received"], 3000, "{done}{}{}", a.dump(), b.dump());
    assert_eq!(tally["distinct"], 3000, "{tally}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    assert_eq!(done["failed"], 0, "{done}");
    // Every message was acknowledged to the source, at the latest shortly after the
    // worker's reply (acknowledgements may follow a reply by the policy's delay a hop).
    assert_eq!(done["unacknowledged"], 0, "{done}");
}

#[test]
fn a_bridge_stopped_cleanly_marks_its_node_down() {
    let broker = Broker::start("stop");
    let mut a = Bus::new("inode-sa");
    let mut b = Bus::new("inode-sb");
    a.start_hub();
    b.start_hub();
    let _keeper = b.start_sink("keeper", &["--timeout-ms", "120000"]);
    let bridge_a = start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    a.wait_ps("keeper through the bridge", |l| has(l, "keeper"));
    b.term(bridge_b);
    b.wait_line(bridge_b, true, "the bridge's counters", STEP_LIMIT, |l| {
        l.contains("bridge stopped")
    });
    a.wait_line(bridge_a, true, "host-b down", STEP_LIMIT, |l| {
        l.contains("node 'host-b' is down")
    });
    a.wait_ps("keeper gone after B's bridge stopped", |l| {
        !has(l, "keeper")
    });
}

fn sending_done(bus: &mut Bus, source: P) {
    bus.wait_json(source, "the source's last send", STEP_LIMIT, |v| {
        v["sending_done"] == Value::Bool(true)
    });
}

/// Issue 15's end-to-end promise: A's bridge acknowledges a message to its sender only once
/// B's node answered. B's bridge frozen (SIGSTOP) holds five messages unanswered, then is
/// killed: its will marks host-b down and A's bridge fails all five to their sender as
/// `node-unreachable`. (Before, A's bridge acknowledged each as it took it: the sender
/// counted five delivered that no one had.)
#[test]
fn messages_awaiting_a_node_that_dies_fail_as_node_unreachable() {
    let broker = Broker::start("unreach");
    let mut a = Bus::new("inode-ua");
    let mut b = Bus::new("inode-ub");
    a.start_hub();
    b.start_hub();
    let bridge_a = start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    let _worker = b.start_sink("worker", &["--expect", "5", "--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));

    b.signal(bridge_b, rustix::process::Signal::STOP);
    let source = a.probe(
        "source sensor",
        &["source", "sensor", "worker", "5", "--timeout-ms", "60000"],
    );
    sending_done(&mut a, source);
    b.kill(bridge_b);
    let done = wait_summary(&a, &b, source);
    assert_eq!(done["failed"], 5, "{done}{}{}", a.dump(), b.dump());
    assert_eq!(done["reasons"]["node-unreachable"], 5, "{done}");
    assert_eq!(done["tally"], Value::Null, "{done}");
    assert_eq!(done["unacknowledged"], 0, "{done}");
    a.wait_line(bridge_a, true, "the failures logged", STEP_LIMIT, |l| {
        l.contains("failed as node-unreachable")
    });
}

/// A failure on the remote bus reaches the sender: B's worker, frozen with the messages in
/// its queue, is killed; every message is reported failed to the sender on bus A (by B's
/// bridge with bus B's reason, or, should the worker's removal reach A first, by A's bus as
/// for any receiver that leaves), none is counted delivered.
#[test]
fn a_receiver_dying_on_the_remote_bus_fails_the_messages_back_to_the_sender() {
    let broker = Broker::start("remote-fail");
    let mut a = Bus::new("inode-fa");
    let mut b = Bus::new("inode-fb");
    a.start_hub();
    b.start_hub();
    start_bridge(&mut a, &broker, "host-a");
    start_bridge(&mut b, &broker, "host-b");
    let worker = b.start_sink("worker", &["--expect", "3", "--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));

    b.signal(worker, rustix::process::Signal::STOP);
    let source = a.probe(
        "source sensor",
        &["source", "sensor", "worker", "3", "--timeout-ms", "60000"],
    );
    sending_done(&mut a, source);
    b.kill(worker);
    let done = wait_summary(&a, &b, source);
    assert_eq!(done["failed"], 3, "{done}{}{}", a.dump(), b.dump());
    let reasons = done["reasons"].as_object().expect("reasons");
    assert!(
        reasons
            .keys()
            .all(|r| r == "target-gone" || r == "unknown-target"),
        "{done}"
    );
    assert_eq!(done["tally"], Value::Null, "{done}");
    assert_eq!(done["unacknowledged"], 0, "{done}");
}

/// Issue 15, exactly once across a receiving bridge's restart. B's bridge, frozen with five
/// messages for its bus unread, is SIGKILLed: A's bridge fails the five as
/// `node-unreachable` (the will). B's bridge restarted under the same name resumes its
/// broker session, which hands it the five again: it must not deliver them (their sender
/// was told they failed). It drops them: they were sent to its earlier connection (the
/// `up:N` status each connection publishes, carried in every message), and no registry
/// record of their sender has reached the new process yet either. A later message from
/// another sender shows the worker got that one only.
#[test]
fn a_receiving_bridge_killed_and_restarted_delivers_nothing_reported_failed() {
    let broker = Broker::start("restart-rx");
    let mut a = Bus::new("inode-xa");
    let mut b = Bus::new("inode-xb");
    a.start_hub();
    b.start_hub();
    start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    let _worker = b.start_sink("worker", &["--expect", "1", "--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));

    b.signal(bridge_b, rustix::process::Signal::STOP);
    let first = a.probe(
        "source sensor",
        &["source", "sensor", "worker", "5", "--timeout-ms", "60000"],
    );
    sending_done(&mut a, first);
    b.kill(bridge_b);
    let done = wait_summary(&a, &b, first);
    assert_eq!(done["reasons"]["node-unreachable"], 5, "{done}");
    a.wait_ps("worker gone with host-b", |l| !has(l, "worker"));

    let restarted = start_bridge(&mut b, &broker, "host-b");
    a.wait_ps("worker back through the bridge", |l| has(l, "worker"));
    let marker = a.probe(
        "source marker",
        &["source", "marker", "worker", "1", "--timeout-ms", "60000"],
    );
    let done = wait_summary(&a, &b, marker);
    let tally = &done["tally"];
    assert_eq!(tally["received"], 1, "{done}{}{}", a.dump(), b.dump());
    assert_eq!(tally["by_sender"]["marker"], 1, "{tally}");
    assert_eq!(tally["by_sender"]["sensor"], Value::Null, "{tally}");
    // The restarted bridge was handed the five again (its resumed session) and answered
    // them failed instead of passing them on.
    b.term(restarted);
    let summary = b.wait_line(restarted, true, "the bridge's counters", STEP_LIMIT, |l| {
        l.contains("bridge stopped")
    });
    assert!(summary.contains("5 not deliverable"), "{summary}");
}

/// B's bridge SIGKILLed in the middle of a stream of 2,000 messages and started again:
/// every message is acknowledged as delivered or reported failed to the sender (nothing
/// left waiting, nothing lost silently) and the worker got none twice.
#[test]
fn a_receiving_bridge_killed_mid_stream_loses_nothing_silently_and_duplicates_nothing() {
    let broker = Broker::start("kill-stream");
    let mut a = Bus::new("inode-ka");
    let mut b = Bus::new("inode-kb");
    a.start_hub();
    b.start_hub();
    start_bridge(&mut a, &broker, "host-a");
    let bridge_b = start_bridge(&mut b, &broker, "host-b");
    let worker = b.start_sink("worker", &["--timeout-ms", "120000"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));
    let source = a.probe(
        "source sensor",
        &[
            "source",
            "sensor",
            "worker",
            "2000",
            "--timeout-ms",
            "120000",
            "--progress-every",
            "100",
            "--linger-ms",
            "5000",
        ],
    );
    a.wait_progress(source, 300);
    b.kill(bridge_b);
    start_bridge(&mut b, &broker, "host-b");
    let done = wait_summary(&a, &b, source);
    b.term(worker);
    let tally = b.wait_json(worker, "the worker's tally", STEP_LIMIT, |v| {
        v.get("distinct").is_some()
    });
    let sent = done["sent"].as_u64().unwrap() + done["errors"].as_u64().unwrap();
    let failed = done["failed"].as_u64().unwrap();
    let distinct = tally["distinct"].as_u64().unwrap();
    assert_eq!(sent, 2000, "{done}");
    assert_eq!(done["unacknowledged"], 0, "nothing left waiting: {done}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    assert!(
        distinct + failed + done["errors"].as_u64().unwrap() >= 2000,
        "lost silently: {distinct} delivered, {failed} failed of 2000{done}{tally}"
    );
    // Reported: how many were delivered though reported failed (not confirmed: taken by
    // B's bus before its bridge died, the answer lost with it).
    eprintln!(
        "delivered {distinct}, reported failed {failed}, both: {}",
        (distinct + failed).saturating_sub(2000)
    );
}

/// `NODE/ID` addresses machine `ID` of node `NODE` explicitly, even where the plain `ID` is
/// a local machine's (the conflict rule keeps it local): `host-b/twin` reaches bus B's
/// `twin`, and its reply comes back from `host-b/twin`, every message acknowledged end to
/// end. `interstate send host-b/twin` works the same way.
#[test]
fn node_slash_id_reaches_that_nodes_machine_even_where_the_id_is_taken() {
    let broker = Broker::start("node-id");
    let mut a = Bus::new("inode-na");
    let mut b = Bus::new("inode-nb");
    a.start_hub();
    b.start_hub();
    let _twin_a = a.start_sink("twin", &["--timeout-ms", "120000"]);
    let twin_b = b.start_sink("twin", &["--expect", "3", "--timeout-ms", "120000"]);
    start_bridge(&mut a, &broker, "host-a");
    start_bridge(&mut b, &broker, "host-b");
    a.wait_ps("host-b/twin through the bridge", |l| has(l, "host-b/twin"));
    // ps says where each machine lives: the bridged ones with their host and node (their
    // pid is the bridge's), the local ones on this host.
    let list = a.wait_ps("the hosts file", |l| {
        l.iter()
            .any(|e| e["machine"] == "host-b/twin" && e["node"] == "host-b")
    });
    let this_host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    for e in &list {
        match e["machine"].as_str() {
            Some("host-b/twin") => assert_eq!(e["host"], this_host.as_str(), "{e}"),
            Some("twin") => {
                assert_eq!(e["host"], this_host.as_str(), "{e}");
                assert_eq!(e["node"], Value::Null, "a local machine: {e}");
            }
            _ => {}
        }
    }
    let (_, out, _) = a.run(&["ps"]);
    let header = out.lines().next().unwrap_or_default();
    assert!(header.contains("HOST"), "{out}");

    let source = a.probe(
        "source sensor",
        &[
            "source",
            "sensor",
            "host-b/twin",
            "2",
            "--timeout-ms",
            "60000",
        ],
    );
    sending_done(&mut a, source);
    let (status, _, err) = a.run(&["send", "host-b/twin", "PING", "--data", "{\"n\":3}"]);
    assert!(status.success(), "{err}");
    let done = wait_summary(&a, &b, source);
    assert_eq!(done["failed"], 0, "{done}{}{}", a.dump(), b.dump());
    assert_eq!(done["unacknowledged"], 0, "{done}");
    let tally = b.wait_json(twin_b, "B's twin's tally", STEP_LIMIT, |v| {
        v.get("distinct").is_some()
    });
    assert_eq!(tally["distinct"], 3, "{tally}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
}
