//! The raw modes' connection: a Unix socket to the hub that speaks the wire format by hand
//! (`interstate::core::wire::Frame`), reporting every frame the hub sends; and the one-shot
//! raw modes built on it (`raw-connect`, `raw-garbage`, `raw-oversize`, `raw-truncated`,
//! `raw-no-hello`, `raw-spoof`).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use interstate::bus::busdir;
use interstate::core::wire::{
    split_frame, Deliver, Frame, Hello, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION,
};
use serde_json::{json, Value};

use crate::args::Args;
use crate::emit;

fn describe(f: &Frame<'_>) -> Value {
    let mut v = json!({ "kind": f.kind() });
    match *f {
        Frame::Welcome(w) => {
            v["link"] = json!(w.link);
            v["max_frame"] = json!(w.max_frame);
            v["hub_pid"] = json!(w.hub_pid);
        }
        Frame::Reject(r) => {
            v["code"] = json!(format!("{:?}", r.code));
            v["message"] = json!(r.message);
        }
        Frame::RegisterResult { machine, status } => {
            v["machine"] = json!(machine);
            v["status"] = json!(format!("{status:?}"));
        }
        Frame::DeliveryFailed(d) => {
            v["from"] = json!(d.from);
            v["to"] = json!(d.to);
            v["event"] = json!(d.event);
            v["seq"] = json!(d.seq);
            v["reason"] = json!(format!("{:?}", d.reason));
        }
        Frame::Deliver(d) => {
            v["from"] = json!(d.from);
            v["to"] = json!(d.to);
            v["event"] = json!(d.event);
            v["seq"] = json!(d.seq);
        }
        Frame::Goodbye { reason } => v["reason"] = json!(reason),
        Frame::Ping { nonce } | Frame::Pong { nonce } => v["nonce"] = json!(nonce),
        _ => {}
    }
    v
}

/// A connection to the hub's socket that speaks frames by hand.
pub(crate) struct Raw {
    pub(crate) mode: String,
    pub(crate) stream: UnixStream,
    pub(crate) buf: Vec<u8>,
    pub(crate) frames: Vec<Value>,
    pub(crate) closed: bool,
    pub(crate) write_error: Option<String>,
    pub(crate) deadline: Instant,
}

impl Raw {
    pub(crate) fn connect(args: &Args, mode: &str) -> Result<Raw, String> {
        let path = busdir::socket_path(&busdir::default_dir(), &args.bus()?);
        let stream = UnixStream::connect(&path)
            .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
        Ok(Raw {
            mode: mode.to_string(),
            stream,
            buf: Vec::new(),
            frames: Vec::new(),
            closed: false,
            write_error: None,
            deadline: Instant::now() + args.timeout(10_000)?,
        })
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            if self.write_error.is_none() {
                self.write_error = Some(e.to_string());
            }
        }
    }

    pub(crate) fn send(&mut self, f: &Frame<'_>) {
        let mut buf = vec![0u8; f.encoded_len()];
        match f.encode(&mut buf) {
            Ok(n) => self.send_bytes(&buf[..n]),
            Err(e) => self.write_error = Some(format!("encoding: {e}")),
        }
    }

    /// Reads frames until `done` says so for one of them (returns true), the hub closes the
    /// connection, or the deadline passes (false).
    pub(crate) fn read_until(&mut self, mut done: impl FnMut(&Value) -> bool) -> bool {
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            // Frames already buffered.
            while let Ok(Some((body, used))) = split_frame(&self.buf, u32::MAX) {
                let frame = match Frame::decode(body) {
                    Ok(f) => describe(&f),
                    Err(e) => json!({"kind": "undecodable", "error": e.to_string()}),
                };
                self.buf.drain(..used);
                emit(json!({"mode": self.mode, "got": frame}));
                let hit = done(&frame);
                self.frames.push(frame);
                if hit {
                    return true;
                }
            }
            if self.closed {
                return false;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return false;
            }
            let wait = (self.deadline - now).max(Duration::from_millis(1));
            let _ = self.stream.set_read_timeout(Some(wait));
            match self.stream.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    pub(crate) fn kinds(&self) -> Vec<Value> {
        self.frames.iter().map(|f| f["kind"].clone()).collect()
    }

    pub(crate) fn finish(mut self, extra: Value) -> ExitCode {
        // Whatever else the hub says before it closes (or the deadline).
        if !self.closed {
            self.read_until(|_| false);
        }
        let mut v = json!({
            "mode": self.mode,
            "closed": self.closed,
            "frames": self.kinds(),
            "leftover_bytes": self.buf.len(),
            "write_error": self.write_error,
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        emit(v);
        ExitCode::SUCCESS
    }
}

pub(crate) fn hello_frame() -> Frame<'static> {
    Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: DEFAULT_MAX_FRAME,
        pid: std::process::id(),
        executable: "bus_probe",
    })
}

pub(crate) fn is_kind(v: &Value, kinds: &[&str]) -> bool {
    v["kind"].as_str().is_some_and(|k| kinds.contains(&k))
}

pub(crate) fn raw(args: &Args, mode: &str) -> Result<ExitCode, String> {
    let mut r = Raw::connect(args, mode)?;
    match mode {
        "raw-connect" => {
            r.send(&hello_frame());
            let answered = r.read_until(|f| is_kind(f, &["welcome", "reject"]));
            if answered && r.frames.last().is_some_and(|f| is_kind(f, &["welcome"])) {
                r.send(&Frame::Goodbye {
                    reason: "bus_probe raw-connect done",
                });
            }
            Ok(r.finish(json!({})))
        }
        "raw-garbage" => {
            // A valid length prefix, then bytes that are no postcard frame.
            let mut bytes = 8u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0xff; 8]);
            r.send_bytes(&bytes);
            Ok(r.finish(json!({})))
        }
        "raw-oversize" => {
            let mut bytes = (DEFAULT_MAX_FRAME + 1).to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0u8; 64]);
            r.send_bytes(&bytes);
            Ok(r.finish(json!({})))
        }
        "raw-truncated" => {
            if args.flags.contains("--after-hello") {
                // A complete handshake first, so that only the truncation can close the link.
                r.send(&hello_frame());
                r.read_until(|f| is_kind(f, &["welcome", "reject"]));
            }
            let h = hello_frame();
            let mut buf = vec![0u8; h.encoded_len()];
            let n = h.encode(&mut buf).map_err(|e| e.to_string())?;
            r.send_bytes(&buf[..n / 2]);
            let _ = r.stream.shutdown(std::net::Shutdown::Write);
            Ok(r.finish(json!({"sent_bytes": n / 2, "frame_bytes": n})))
        }
        "raw-no-hello" => Ok(r.finish(json!({}))),
        "raw-spoof" => {
            let id = args.pos(1, "ID")?.to_string();
            let victim = args.pos(2, "VICTIM_ID")?.to_string();
            let target = args.pos(3, "TARGET")?.to_string();
            r.send(&hello_frame());
            if !r.read_until(|f| is_kind(f, &["welcome", "reject"]))
                || !r.frames.last().is_some_and(|f| is_kind(f, &["welcome"]))
            {
                return Ok(r.finish(json!({"error": "no welcome"})));
            }
            r.send(&Frame::Register { machine: &id });
            let mut status = Value::Null;
            if r.read_until(|f| is_kind(f, &["register-result"])) {
                status = r.frames.last().map_or(Value::Null, |f| f["status"].clone());
            }
            r.send(&Frame::Deliver(Deliver {
                from: &victim,
                to: &target,
                event: "SPOOFED",
                payload: b"{\"n\":0}",
                seq: 1,
                correlation: Default::default(),
            }));
            let mut failed = Value::Null;
            if r.read_until(|f| is_kind(f, &["delivery-failed"])) {
                failed = r.frames.last().map_or(Value::Null, |f| f["reason"].clone());
            }
            r.send(&Frame::Goodbye {
                reason: "bus_probe raw-spoof done",
            });
            Ok(r.finish(json!({"register": status, "delivery_failed": failed})))
        }
        other => Err(format!("unknown mode '{other}'")),
    }
}
