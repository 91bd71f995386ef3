//! The gateway from a Rust (tonic) client: a private hub, a JSON machine run by `interstate
//! run`, and `interstate-grpc`, each a child process.

mod support;

use interstate_grpc::pb;
use interstate_grpc::pb::bus_client::BusClient;
use interstate_grpc::pb::receive_request::Kind as Up;
use interstate_grpc::pb::receive_response::Kind as Down;
use support::{client, wait_for, wait_machine, Bus, STEP_LIMIT};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

type UpSender = mpsc::Sender<pb::ReceiveRequest>;

/// Opens a Receive stream registering `ids`; returns its sending side and its events, or the
/// status the registration failed with.
async fn open(
    client: &mut BusClient<Channel>,
    ids: &[&str],
) -> Result<(UpSender, Streaming<pb::ReceiveResponse>), tonic::Status> {
    open_with_topics(client, ids, &[]).await
}

/// [`open`], subscribing the first id to `topics`.
async fn open_with_topics(
    client: &mut BusClient<Channel>,
    ids: &[&str],
    topics: &[&str],
) -> Result<(UpSender, Streaming<pb::ReceiveResponse>), tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ReceiveRequest {
        kind: Some(Up::Register(pb::Register {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
            window: 0,
        })),
    })
    .await
    .expect("queue the Register");
    let mut events = client.receive(ReceiverStream::new(rx)).await?.into_inner();
    match next(&mut events).await? {
        Down::Registered(r) => assert_eq!(r.ids, ids),
        other => panic!("expected Registered first, got {other:?}"),
    }
    Ok((tx, events))
}

/// The next message of a Receive stream (within [`STEP_LIMIT`]).
async fn next(events: &mut Streaming<pb::ReceiveResponse>) -> Result<Down, tonic::Status> {
    let message = tokio::time::timeout(STEP_LIMIT, events.message())
        .await
        .expect("a message on the Receive stream in time")?;
    Ok(message
        .and_then(|m| m.kind)
        .expect("the stream goes on and its messages have a kind"))
}

async fn next_event(events: &mut Streaming<pb::ReceiveResponse>) -> pb::Event {
    match next(events).await.expect("an event") {
        Down::Event(e) => e,
        other => panic!("expected an Event, got {other:?}"),
    }
}

fn send(to: &str, event: &str, data: &str, from: &str) -> pb::SendRequest {
    pb::SendRequest {
        to: to.into(),
        event: event.into(),
        data: data.as_bytes().to_vec(),
        from: from.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_to_a_json_machine_and_its_answer_comes_back_on_the_stream() {
    let mut bus = Bus::start("roundtrip");
    let lamp = bus.run_chart("lamp.json", "lamp");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    wait_machine(&mut c, "lamp").await;

    let (up, mut events) = open(&mut c, &["rx"]).await.expect("register rx");
    let sent = c
        .send(send("lamp", "PING", r#"{"n":7}"#, "rx"))
        .await
        .expect("Send")
        .into_inner();
    assert!(sent.seq > 0);
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.to.as_str(), e.from.as_str(), e.event.as_str()),
        ("rx", "lamp", "PONG"),
        "{}",
        bus.dump()
    );
    assert_eq!(e.data, br#"{"n":7}"#);
    assert_eq!((e.delivery, e.request, e.topic.as_str()), (1, 0, ""));
    up.send(pb::ReceiveRequest {
        kind: Some(Up::Ack(pb::Ack {
            delivery: e.delivery,
        })),
    })
    .await
    .expect("queue the Ack");
    wait_for("the machine's log line", || {
        bus.out(lamp).iter().any(|l| l == "[lamp] got PING")
    });

    // The same machine answers a Request (its sendTo-the-sender is the reply).
    let reply = c
        .request(pb::RequestRequest {
            to: "lamp".into(),
            event: "PING".into(),
            data: br#"{"n":8}"#.to_vec(),
            timeout_ms: 10_000,
        })
        .await
        .expect("Request")
        .into_inner();
    assert_eq!(
        (reply.event.as_str(), reply.from.as_str()),
        ("PONG", "lamp")
    );
    assert_eq!(reply.data, br#"{"n":8}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_reply_times_out_and_an_unknown_target_is_not_found() {
    let mut bus = Bus::start("timeout");
    bus.run_chart("lamp.json", "lamp");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    wait_machine(&mut c, "lamp").await;

    let status = c
        .request(pb::RequestRequest {
            to: "lamp".into(),
            event: "IGNORE".into(),
            data: vec![],
            timeout_ms: 300,
        })
        .await
        .expect_err("the machine never replies to IGNORE");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("timeout"), "{status:?}");

    let status = c
        .request(pb::RequestRequest {
            to: "nobody".into(),
            event: "PING".into(),
            data: vec![],
            timeout_ms: 10_000,
        })
        .await
        .expect_err("no machine 'nobody'");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = c
        .send(send("nobody", "PING", "", ""))
        .await
        .expect_err("no machine 'nobody'");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = c
        .send(send("lamp", "xstate.error.delivery", "", ""))
        .await
        .expect_err("a reserved event");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_held_by_another_process_or_not_registered_by_the_caller_is_refused() {
    let mut bus = Bus::start("spoof");
    bus.run_chart("lamp.json", "lamp");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    wait_machine(&mut c, "lamp").await;

    // Registering the JSON machine's id: the hub refuses it.
    let Err(status) = open(&mut c, &["lamp"]).await else {
        panic!("'lamp' is held by `interstate run`: its registration must fail")
    };
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    // Sending as it, or as any id no stream of this client registered: refused.
    for from in ["lamp", "ghost"] {
        let status = c
            .send(send("lamp", "PING", "", from))
            .await
            .expect_err("sending as an id not registered by this client");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = c
            .publish(pb::PublishRequest {
                topic: "news".into(),
                event: "HEADLINE".into(),
                data: vec![],
                from: from.into(),
            })
            .await
            .expect_err("publishing as an id not registered by this client");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // The refused registration left nothing behind: the id is still the machine's, and a
    // fresh id registers.
    let list = c
        .list_machines(pb::ListMachinesRequest {})
        .await
        .expect("ListMachines")
        .into_inner();
    let lamp = list.machines.iter().find(|m| m.id == "lamp").expect("lamp");
    assert_eq!(lamp.executable, "interstate");
    open(&mut c, &["fresh"]).await.expect("a free id registers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_never_acknowledged_is_reported_to_its_sender_when_the_stream_ends() {
    let mut bus = Bus::start("unacked");
    let lamp = bus.run_chart("lamp.json", "lamp");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    wait_machine(&mut c, "lamp").await;

    let (up, mut events) = open(&mut c, &["rx"]).await.expect("register rx");
    c.send(send("lamp", "PING", "{}", "rx"))
        .await
        .expect("Send");
    let e = next_event(&mut events).await;
    assert_eq!(e.event, "PONG");
    // No Ack: the stream ends with the PONG unacknowledged, and the machine that sent it
    // hears that it was not delivered.
    drop(up);
    drop(events);
    wait_for("the machine's delivery failure", || {
        bus.out(lamp).iter().any(|l| l == "[lamp] not delivered")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_answers_a_request_with_a_reply() {
    let mut bus = Bus::start("reply");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    let (up, mut events) = open(&mut c, &["answerer"]).await.expect("register");
    let mut asker = c.clone();
    let asked = tokio::spawn(async move {
        asker
            .request(pb::RequestRequest {
                to: "answerer".into(),
                event: "ASK".into(),
                data: b"6*7".to_vec(),
                timeout_ms: 20_000,
            })
            .await
    });
    let e = next_event(&mut events).await;
    assert_eq!((e.event.as_str(), e.data.as_slice()), ("ASK", &b"6*7"[..]));
    assert_ne!(e.request, 0, "a request carries its id");
    up.send(pb::ReceiveRequest {
        kind: Some(Up::Reply(pb::Reply {
            delivery: e.delivery,
            event: "ANSWER".into(),
            data: b"42".to_vec(),
        })),
    })
    .await
    .expect("queue the Reply");
    let reply = asked
        .await
        .expect("the task")
        .expect("the reply")
        .into_inner();
    assert_eq!(
        (
            reply.event.as_str(),
            reply.from.as_str(),
            reply.data.as_slice()
        ),
        ("ANSWER", "answerer", &b"42"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_machines_joining_and_leaving_and_status_names_the_hub() {
    let mut bus = Bus::start("watch");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    let status = c
        .status(pb::StatusRequest {})
        .await
        .expect("Status")
        .into_inner();
    assert_eq!(status.bus, bus.name);
    assert!(status.connected);
    assert_eq!(status.hub_pid, bus.procs[0].child.id());
    assert!(status.gateway_id.starts_with("interstate-grpc."));

    let mut changes = c
        .watch_machines(pb::WatchMachinesRequest {})
        .await
        .expect("WatchMachines")
        .into_inner();
    let lamp = bus.run_chart("lamp.json", "lamp");
    let change = |kind: pb::machine_change::Kind| kind as i32;
    let mut seen = Vec::new();
    while !seen.contains(&(change(pb::machine_change::Kind::Joined), "lamp".to_string())) {
        let m = tokio::time::timeout(STEP_LIMIT, changes.message())
            .await
            .expect("a change in time")
            .expect("the watch goes on")
            .expect("a change");
        seen.push((m.kind, m.machine.expect("a machine").id));
    }
    let _ = bus.procs[lamp].child.kill();
    loop {
        let m = tokio::time::timeout(STEP_LIMIT, changes.message())
            .await
            .expect("a change in time")
            .expect("the watch goes on")
            .expect("a change");
        if m.kind == change(pb::machine_change::Kind::Left)
            && m.machine.expect("a machine").id == "lamp"
        {
            break;
        }
    }
}

#[test]
fn the_socket_is_private_and_tcp_needs_tls() {
    use std::os::unix::fs::PermissionsExt;
    let mut bus = Bus::start("listen");
    let socket = bus.gateway();
    let mode = std::fs::metadata(&socket)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&bus.dir)
        .expect("the dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let out = std::process::Command::new(support::gateway_bin())
        .args(["--tcp", "127.0.0.1:0", "--socket"])
        .arg(bus.dir.join("other.grpc.sock"))
        .env("INTERSTATE_DIR", &bus.dir)
        .env("INTERSTATE_BUS", &bus.name)
        .output()
        .expect("run the gateway");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert and --tls-key"), "{err}");
}

/// A self-signed certificate for `localhost` (openssl, as Debian has it): (cert, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        // An end entity (rustls refuses a CA certificate as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (Debian's openssl package) to make a test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_is_served_with_tls_and_a_connection_sends_as_its_own_stream_ids() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let mut bus = Bus::start("tls");
    let (cert, key) = self_signed(&bus.dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    bus.spawn(
        "gateway",
        &support::gateway_bin(),
        &["--tcp", &addr, "--tls-cert", cert_s, "--tls-key", key_s],
    );
    let pem = std::fs::read(&cert).expect("the certificate");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("the TLS settings");
    let end = std::time::Instant::now() + STEP_LIMIT;
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() > end => {
                panic!("no TLS connection to the gateway: {e:?}\n{}", bus.dump())
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let mut c = BusClient::new(channel);
    let status = c
        .status(pb::StatusRequest {})
        .await
        .expect("Status over TLS");
    assert_eq!(status.into_inner().bus, bus.name);

    // Over TCP a stream's ids are its connection's: this one registers and sends as one.
    let (_up, mut events) = open(&mut c, &["tcp-rx"]).await.expect("register over TLS");
    c.send(send("tcp-rx", "HELLO", "{}", "tcp-rx"))
        .await
        .expect("send as the connection's own id");
    let e = next_event(&mut events).await;
    assert_eq!((e.from.as_str(), e.event.as_str()), ("tcp-rx", "HELLO"));

    // Plain HTTP/2 to the TLS port gets no service.
    let plain = Endpoint::from_shared(format!("http://{addr}")).expect("an endpoint");
    if let Ok(channel) = plain.connect().await {
        BusClient::new(channel)
            .status(pb::StatusRequest {})
            .await
            .expect_err("no plaintext on the TLS port");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rejoins_a_restarted_hub_with_its_streams_ids() {
    let mut bus = Bus::start("restart");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    let (up, mut events) = open(&mut c, &["stay"]).await.expect("register stay");

    // The hub dies (SIGKILL) and another starts on the same bus.
    let _ = bus.procs[0].child.kill();
    let _ = bus.procs[0].child.wait();
    bus.spawn("hub again", &support::interstate_bin(), &["hub"]);
    let hub_socket = bus.dir.join(format!("{}.sock", bus.name));
    wait_for("the new hub's socket", || {
        std::os::unix::net::UnixStream::connect(&hub_socket).is_ok()
    });
    bus.run_chart("lamp.json", "lamp");
    wait_machine(&mut c, "lamp").await;

    // The stream's id is on the new hub: the machine's answer to it arrives, through the hub.
    let end = std::time::Instant::now() + STEP_LIMIT;
    loop {
        match c
            .send(send("lamp", "PING", r#"{"again":true}"#, "stay"))
            .await
        {
            Ok(_) => break,
            // The gateway may not have re-registered yet: the id is refused for a moment.
            Err(_) if std::time::Instant::now() < end => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("Send after the restart: {e:?}\n{}", bus.dump()),
        }
    }
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.to.as_str(), e.from.as_str(), e.event.as_str()),
        ("stay", "lamp", "PONG"),
        "{}",
        bus.dump()
    );
    drop(up);
}

#[test]
fn without_a_hub_the_gateway_says_to_start_one() {
    let bus = Bus::start("nohub");
    let out = std::process::Command::new(support::gateway_bin())
        .args(["--bus", "no-hub-here"])
        .env("INTERSTATE_DIR", &bus.dir)
        .output()
        .expect("run the gateway");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no hub serves bus 'no-hub-here'") && err.contains("interstate hub"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscribed_to_a_topic_receives_its_publications() {
    let mut bus = Bus::start("topics");
    let socket = bus.gateway();
    let mut c = client(&socket).await;
    let (_up, mut events) = open_with_topics(&mut c, &["reader"], &["news/#"])
        .await
        .expect("register with a subscription");
    // The subscription reaches the hub and comes back to the publishing node's table: until
    // then a publication has no subscriber (and goes nowhere).
    let end = std::time::Instant::now() + STEP_LIMIT;
    loop {
        let published = c
            .publish(pb::PublishRequest {
                topic: "news/today".into(),
                event: "HEADLINE".into(),
                data: br#""rain""#.to_vec(),
                from: String::new(),
            })
            .await
            .expect("Publish")
            .into_inner();
        if published.subscribers == 1 {
            break;
        }
        assert_eq!(published.subscribers, 0);
        assert!(
            std::time::Instant::now() < end,
            "the subscription never took"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e = next_event(&mut events).await;
    assert_eq!(
        (
            e.to.as_str(),
            e.topic.as_str(),
            e.event.as_str(),
            e.data.as_slice()
        ),
        ("reader", "news/today", "HEADLINE", &br#""rain""#[..])
    );
    let status = c
        .publish(pb::PublishRequest {
            topic: "news/#".into(),
            event: "HEADLINE".into(),
            data: vec![],
            from: String::new(),
        })
        .await
        .expect_err("a filter is no topic to publish to");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
