//! `interstate inspect` against a real bus: the JSON endpoints, the event stream, the send
//! endpoint and its refusals, the access rules, and a chart too large for a frame.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Bus, P, STEP_LIMIT};

/// Nested, parallel, history, final, a guard on a state, an `after` timer and actions: what
/// the outline must carry.
const CHART: &str = r##"{
  "id": "player",
  "initial": "off",
  "states": {
    "off": { "on": { "POWER": "on" } },
    "on": {
      "type": "parallel",
      "on": { "POWER": "off", "EJECT": "#player.done" },
      "states": {
        "deck": {
          "initial": "stopped",
          "states": {
            "stopped": { "on": { "PLAY": { "target": "playing", "actions": { "type": "xstate.raise", "event": "STARTED" } } } },
            "playing": { "after": { "60000": "stopped" }, "on": { "STOP": "stopped" } },
            "hist": { "type": "history", "history": "deep" }
          }
        },
        "volume": {
          "initial": "normal",
          "states": {
            "normal": { "on": { "LOUD": { "target": "loud", "guard": { "type": "xstate.stateIn", "state": "#player.on.deck.playing" } } } },
            "loud": {}
          }
        }
      }
    },
    "done": { "type": "final" }
  }
}"##;

/// A started `interstate inspect` and the address it serves.
struct Inspector {
    p: P,
    addr: String,
    token: Option<String>,
}

fn start_inspector(bus: &mut Bus, extra: &[&str]) -> Inspector {
    let mut args = vec!["inspect", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let p = bus.interstate("inspect", &args);
    let url = bus.wait_line(p, false, "the page's address", STEP_LIMIT, |l| {
        l.starts_with("http://")
    });
    let rest = url.trim_start_matches("http://");
    let (addr, query) = rest.split_once('/').expect("http://ADDR/...");
    let token = query.strip_prefix("?token=").map(str::to_string);
    Inspector {
        p,
        addr: addr.to_string(),
        token,
    }
}

/// One HTTP request (Connection: close): (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the inspector");
    s.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req += &format!("Host: {addr}\r\n");
    }
    for (n, v) in headers {
        req += &format!("{n}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn send(addr: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(
        addr,
        "POST",
        "/api/send",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `GET path` until `pred` holds.
fn wait_json(addr: &str, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + STEP_LIMIT;
    loop {
        // A machine the inspector has not heard of yet is a 404 for a moment.
        let (status, body) = http(addr, "GET", path, &[], "");
        let v = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == 200 && pred(&v) {
            return v;
        }
        assert!(Instant::now() < end, "waiting for {what}; last {path}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listed(v: &Value, id: &str) -> bool {
    v["machines"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["machine"] == id))
}

#[test]
fn endpoints_show_the_registry_states_charts_and_log_and_send_events() {
    let mut bus = Bus::new("inspect-endpoints");
    bus.start_hub();
    let chart = bus.write("player.json", CHART);
    let player = bus.start_machine(&chart, "player");
    let insp = start_inspector(&mut bus, &[]);
    let a = insp.addr.as_str();
    assert!(insp.token.is_none(), "no token on loopback");

    // The registry, with the process and the state.
    let list = wait_json(a, "/api/machines", "the player with its state", |v| {
        v["machines"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["machine"] == "player"))
            .is_some_and(|m| m["state"] == "off")
    });
    assert_eq!(list["connected"], true);
    let m = list["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machine"] == "player")
        .unwrap();
    assert_eq!(m["pid"], u64::from(bus.pid(player)));
    assert_eq!(m["executable"], "interstate");
    assert_eq!(m["status"], "active");
    // The inspector's own port is not listed.
    assert!(!list["machines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["machine"]
            .as_str()
            .unwrap()
            .starts_with("interstate-inspect")));

    // The chart outline: kinds, nesting, and the labels `interstate diagram` uses.
    let detail = wait_json(a, "/api/machines/player", "the chart", |v| {
        v["chart"]["states"].is_array()
    });
    let states = detail["chart"]["states"].as_array().unwrap();
    let by_id = |id: &str| {
        states
            .iter()
            .position(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no state {id} in {states:?}"))
    };
    assert_eq!(states[0]["parent"], Value::Null);
    assert_eq!(states[by_id("player.on")]["kind"], "parallel");
    assert_eq!(states[by_id("player.on.deck")]["kind"], "compound");
    assert_eq!(states[by_id("player.on.deck.hist")]["kind"], "deep-history");
    assert_eq!(states[by_id("player.done")]["kind"], "final");
    assert_eq!(
        states[by_id("player.on.deck.playing")]["parent"],
        by_id("player.on.deck")
    );
    assert_eq!(
        states[by_id("player.on.deck")]["initial"],
        by_id("player.on.deck.stopped")
    );
    let labels: Vec<&str> = detail["chart"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    let diagram = std::process::Command::new(support::interstate_bin())
        .args(["diagram", &chart])
        .output()
        .expect("run interstate diagram");
    let mermaid = String::from_utf8_lossy(&diagram.stdout);
    for label in [
        "PLAY / raise STARTED",
        "after 60000ms",
        "LOUD [in #player.on.deck.playing]",
    ] {
        assert!(labels.contains(&label), "{label} in {labels:?}");
        assert!(mermaid.contains(label), "the diagram says {label} too");
    }
    assert_eq!(
        detail["chart"]["history"][0]["from"],
        by_id("player.on.deck.hist")
    );
    // Only the first report carries the chart; the report itself does not.
    assert!(detail["report"].get("chart").is_none());

    // The event stream: the registry, then states as they change.
    let mut sse = TcpStream::connect(a).unwrap();
    sse.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    write!(sse, "GET /api/events HTTP/1.1\r\nHost: {a}\r\n\r\n").unwrap();
    let mut sse = BufReader::new(sse);
    let mut next_event = move || -> (String, Value) {
        let mut name = String::new();
        loop {
            let mut line = String::new();
            let n = sse.read_line(&mut line).expect("read the stream");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                return (name.clone(), serde_json::from_str(d).expect("JSON data"));
            }
        }
    };
    let (name, first) = next_event();
    assert_eq!(name, "machines");
    assert!(listed(&first, "player"), "{first}");

    // Send from the endpoint: the state moves, the stream says so, the log has the event.
    let (status, answer) = send(a, &json!({"machine": "player", "event": "POWER"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sent"], true);
    let end = Instant::now() + STEP_LIMIT;
    loop {
        let (name, v) = next_event();
        if name == "state" && v["machine"] == "player" && v["report"]["state"].is_object() {
            assert_eq!(
                v["report"]["state"],
                json!({"on": {"deck": "stopped", "volume": "normal"}})
            );
            break;
        }
        assert!(Instant::now() < end, "no state event for POWER");
    }
    let (status, _) = send(
        a,
        &json!({"machine": "player", "event": "PLAY", "data": {"track": 3}}),
    );
    assert_eq!(status, 200);
    wait_json(a, "/api/machines/player", "playing", |v| {
        v["report"]["state"]["on"]["deck"] == "playing"
    });
    let log = wait_json(a, "/api/log", "PLAY in the log", |v| {
        v["entries"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["event"] == "PLAY"))
    });
    let play = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "PLAY")
        .unwrap();
    assert_eq!(play["to"], "player");
    assert_eq!(play["data"], json!({"track": 3}));
    assert_eq!(play["failed"], false);

    // Refusals: a reserved name, a missing target, a non-JSON post, a foreign Host.
    let (status, answer) = send(
        a,
        &json!({"machine": "player", "event": "xstate.machine.down"}),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("reserved xstate."),
        "{answer}"
    );
    let (status, answer) = send(a, &json!({"machine": "nobody", "event": "PING"}));
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("nobody"),
        "{answer}"
    );
    let (status, _) = http(
        a,
        "POST",
        "/api/send",
        &[("Content-Type", "text/plain")],
        "{}",
    );
    assert_eq!(status, 415);
    let (status, _) = http(
        a,
        "GET",
        "/api/machines",
        &[("Host", "evil.example:80")],
        "",
    );
    assert_eq!(status, 421);
    let (status, _) = http(a, "GET", "/api/machines/nobody", &[], "");
    assert_eq!(status, 404);

    // The page and its assets are served from the binary.
    let (status, page) = http(a, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("app.js") && !page.contains("https://"));
    assert_eq!(http(a, "GET", "/app.js", &[], "").0, 200);

    // A killed process leaves the registry; its last state stays readable, marked gone.
    bus.kill(player);
    wait_json(a, "/api/machines", "the player gone", |v| {
        !listed(v, "player")
    });
    let gone = get_json(a, "/api/machines/player");
    assert_eq!(gone["present"], false);
    assert_eq!(
        get_json(a, "/api/machines")["departed"][0]["machine"],
        "player"
    );
    bus.term(insp.p);
    assert!(
        bus.wait_exit(insp.p, STEP_LIMIT).success(),
        "{}",
        bus.dump()
    );
}

#[test]
fn beyond_loopback_needs_the_flag_and_the_token() {
    let mut bus = Bus::new("inspect-remote");
    bus.start_hub();
    let (status, _, err) = bus.run(&["inspect", "--listen", "0.0.0.0:0"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--allow-remote"), "{err}");

    let insp = start_inspector(&mut bus, &[]);
    drop(insp);
    let p = bus.interstate(
        "inspect remote",
        &["inspect", "--listen", "0.0.0.0:0", "--allow-remote"],
    );
    let url = bus.wait_line(p, false, "the page's address", STEP_LIMIT, |l| {
        l.starts_with("http://")
    });
    let token = url.split("?token=").nth(1).expect("a token in the address");
    assert_eq!(token.len(), 32);
    let port = url
        .trim_start_matches("http://0.0.0.0:")
        .split('/')
        .next()
        .unwrap();
    let a = format!("127.0.0.1:{port}");
    assert_eq!(http(&a, "GET", "/api/machines", &[], "").0, 403);
    assert_eq!(http(&a, "GET", "/?token=wrong", &[], "").0, 403);
    assert_eq!(
        http(&a, "GET", &format!("/api/machines?token={token}"), &[], "").0,
        200
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        http(
            &a,
            "GET",
            "/api/machines",
            &[("Authorization", &bearer)],
            ""
        )
        .0,
        200
    );
}

#[test]
fn a_chart_too_large_for_a_frame_is_said_so_and_its_state_still_shows() {
    let mut bus = Bus::new("inspect-large");
    bus.start_hub();
    // 1,500 states with long names: an outline of well over the 64 KiB frame.
    let mut states = serde_json::Map::new();
    for i in 0..1500 {
        let next = format!("state_with_a_rather_long_name_{:04}", (i + 1) % 1500);
        states.insert(
            format!("state_with_a_rather_long_name_{i:04}"),
            json!({ "on": { "NEXT": next } }),
        );
    }
    let chart = json!({"id": "big", "initial": "state_with_a_rather_long_name_0000",
                       "states": states});
    let file = bus.write("big.json", &chart.to_string());
    bus.start_machine(&file, "big");
    let insp = start_inspector(&mut bus, &[]);
    let a = insp.addr.as_str();
    let detail = wait_json(a, "/api/machines/big", "the report", |v| {
        !v["chart"].is_null()
    });
    assert_eq!(
        detail["chart"]["omitted"], "too large",
        "{}",
        detail["chart"]
    );
    assert_eq!(detail["chart"]["states"], 1501);
    assert!(detail["chart"]["bytes"].as_u64().unwrap() > 64 * 1024);
    assert_eq!(
        detail["report"]["state"],
        "state_with_a_rather_long_name_0000"
    );
    send(a, &json!({"machine": "big", "event": "NEXT"}));
    wait_json(a, "/api/machines/big", "the next state", |v| {
        v["report"]["state"] == "state_with_a_rather_long_name_0001"
    });
}
