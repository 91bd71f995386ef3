//! The inspector's endpoints (documented in docs/inspector.md):
//!
//! - `GET /`, `/app.js`, `/style.css`: the page, embedded in the binary;
//! - `GET /api/machines`: the registry, `{"bus","connected","machines":[..],"departed":[..]}`;
//! - `GET /api/machines/ID`: one machine with its latest report and chart outline;
//! - `GET /api/log[?since=SEQ]`: the recent event log;
//! - `GET /api/events[?since=SEQ]`: server-sent events (`machines`, `state`, `log`) as the
//!   bus changes, the latest state of each machine only (the states in between are counted
//!   in `skipped`, not sent);
//! - `POST /api/send` `{"machine","event","data"}`: sends an event (never an `xstate.*` one).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bus::SendRequest;
use super::model::{MachineView, Model};
use super::server::{Context, Request, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The most log entries one `log` message or `/api/log` answer carries (older ones are
/// counted as skipped): with a message every 50 ms, a page gets up to 2,000 events a second,
/// more than anyone reads, and a flooded bus does not make the inspector render every one.
const LOG_BATCH: usize = 100;

/// An event stream writes at most this often: updates in between are merged (the latest
/// state of each machine wins), so a stream costs the bus thread nothing per step.
const STREAM_PERIOD: Duration = Duration::from_millis(50);

/// A comment line keeps an idle stream open through proxies, this often.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long a send waits for the bus thread.
const SEND_WITHIN: Duration = Duration::from_secs(5);

/// Answers `req` (the event stream is written by [`stream`]).
pub fn route(ctx: &Context, req: &Request) -> Response {
    let get = req.method == "GET";
    match (req.path.as_str(), get) {
        ("/" | "/index.html", true) => {
            Response::Full(200, "text/html; charset=utf-8", INDEX_HTML.into())
        }
        ("/app.js", true) => Response::Full(200, "text/javascript; charset=utf-8", APP_JS.into()),
        ("/style.css", true) => Response::Full(200, "text/css; charset=utf-8", STYLE_CSS.into()),
        ("/api/machines", true) => Response::json(200, &registry(&ctx.shared.lock())),
        ("/api/log", true) => {
            let since = req.param("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            let model = ctx.shared.lock();
            let (entries, skipped) = model.log_since(since, LOG_BATCH);
            Response::json(
                200,
                &json!({"next": model.next_seq, "skipped": skipped, "entries": entries}),
            )
        }
        ("/api/events", true) => Response::Events,
        ("/api/send", false) if req.method == "POST" => send(ctx, req),
        (path, true) if path.starts_with("/api/machines/") => {
            let id = &path["/api/machines/".len()..];
            match ctx.shared.lock().machine_detail(id) {
                Some(v) => Response::json(200, &v),
                None => Response::error(404, &format!("no machine '{id}' on the bus")),
            }
        }
        ("/api/send", true) => Response::error(405, "send with POST"),
        _ => Response::error(404, "no such page"),
    }
}

fn registry(model: &Model) -> Value {
    json!({
        "bus": model.bus,
        "connected": model.connected,
        "machines": model.machine_list(),
        "departed": model.departed_list(),
    })
}

/// `POST /api/send`: `{"machine": ID, "event": NAME, "data": any JSON (optional)}`.
fn send(ctx: &Context, req: &Request) -> Response {
    let json_type = req
        .header("content-type")
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if !json_type {
        return Response::error(415, "send a JSON body with Content-Type: application/json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Response::error(400, "the body is not JSON");
    };
    let (Some(machine), Some(event)) = (body["machine"].as_str(), body["event"].as_str()) else {
        return Response::error(
            400,
            "the body needs \"machine\" and \"event\" strings (and optional \"data\")",
        );
    };
    if event.is_empty() {
        return Response::error(400, "the event name is empty");
    }
    if interstate_core::wire::is_reserved_event(event) {
        return Response::error(
            400,
            &format!(
                "'{event}' is in the reserved xstate. namespace: only the runtime sends those \
                 (delivery errors, machine up/down); choose another event name"
            ),
        );
    }
    let payload = match &body["data"] {
        Value::Null => Vec::new(),
        v => v.to_string().into_bytes(),
    };
    let (reply, answer) = mpsc::channel();
    let request = SendRequest {
        to: machine.to_string(),
        event: event.to_string(),
        payload,
        reply,
    };
    let queued = ctx
        .requests
        .lock()
        .map(|tx| tx.send(request).is_ok())
        .unwrap_or(false);
    if !queued {
        return Response::error(502, "the inspector's bus connection is gone");
    }
    match answer.recv_timeout(SEND_WITHIN) {
        Ok(Ok(seq)) => Response::json(
            200,
            &json!({"sent": true, "machine": machine, "event": event, "seq": seq}),
        ),
        Ok(Err(e)) => Response::error(400, &format!("not sent: {e}")),
        Err(_) => Response::error(502, "the bus did not take the event within 5 s"),
    }
}

/// One server-sent event.
fn sse(out: &mut Vec<u8>, name: &str, data: &Value) {
    let _ = write!(out, "event: {name}\ndata: ");
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// A `state` message: `{"machine","version","skipped","present","report"}`. The report is the
/// node's JSON text as it came, checked but not turned into a `Value` and back (every busy
/// machine's report is written twenty times a second).
fn sse_state(out: &mut Vec<u8>, id: &str, m: &MachineView, skipped: u64) {
    let text = m.report_text.as_deref().unwrap_or("null");
    let valid =
        !text.contains(['\n', '\r']) && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    let _ = write!(out, "event: state\ndata: {{\"machine\":");
    let _ = serde_json::to_writer(&mut *out, id);
    let _ = write!(
        out,
        ",\"version\":{},\"skipped\":{skipped},\"present\":{},\"report\":{}}}\n\n",
        m.version,
        m.present,
        if valid { text } else { "null" }
    );
}

/// `GET /api/events`: writes `machines` (the registry, at start and at each change),
/// `state` (`{"machine","version","skipped","report"}`, the latest report of each machine
/// that reported since the last write; `skipped` counts the reports not sent) and `log`
/// (`{"entries":[..],"skipped":N}`, the new log entries; `?since=SEQ` starts after entry
/// SEQ, by default with the last hundred) until the client goes or the inspector stops.
pub fn stream(ctx: &Context, req: &Request, mut stream: TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\nretry: 1000\n\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut sent_registry = u64::MAX;
    let mut sent_versions: std::collections::HashMap<String, u64> = Default::default();
    let mut log_seq: Option<u64> = req.param("since").and_then(|s| s.parse().ok());
    let mut generation = u64::MAX;
    let mut last_write = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        let mut out = Vec::new();
        {
            let model = ctx
                .shared
                .wait_change(generation, Duration::from_millis(500));
            generation = model.generation;
            if model.registry_version != sent_registry {
                sent_registry = model.registry_version;
                sse(&mut out, "machines", &registry(&model));
                sent_versions.retain(|id, _| model.machines.contains_key(id));
            }
            for (id, m) in &model.machines {
                let before = sent_versions.get(id).copied();
                if m.report_text.is_none() || before == Some(m.version) {
                    continue;
                }
                let skipped = before.map_or(0, |b| m.version.saturating_sub(b + 1));
                sent_versions.insert(id.clone(), m.version);
                sse_state(&mut out, id, m, skipped);
            }
            let since =
                *log_seq.get_or_insert_with(|| model.next_seq.saturating_sub(LOG_BATCH as u64));
            if model.next_seq > since {
                let (entries, skipped) = model.log_since(since, LOG_BATCH);
                log_seq = Some(model.next_seq);
                sse(
                    &mut out,
                    "log",
                    &json!({"entries": entries, "skipped": skipped, "next": model.next_seq}),
                );
            }
        }
        if out.is_empty() && last_write.elapsed() >= KEEPALIVE {
            out.extend_from_slice(b": keepalive\n\n");
        }
        if !out.is_empty() {
            // A slow reader blocks this write; meanwhile the model moves on, and the next
            // write carries only the latest of each machine.
            if stream
                .write_all(&out)
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
            last_write = Instant::now();
            std::thread::sleep(STREAM_PERIOD);
        }
    }
}
