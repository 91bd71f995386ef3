//! The raw baselines over byte streams: a Unix socket pair or two named pipes between this
//! process and an echo process (`interstate bench-peer raw`), maybe through a relay process
//! (`interstate bench-peer relay`); both peers' sides are here too. No event loop, no framing
//! logic, no statecharts: the floor the bus paths over the same transport are held against.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use super::peers::wait_for;
use super::{ChildGuard, Kind, Peers, Session};

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The two directions of a raw endpoint.
type Duplex = (Box<dyn Read>, Box<dyn Write>);

/// Where a raw endpoint's two directions come from.
///
/// - `unix:PATH`: connects to a listening socket;
/// - `unix-listen:PATH`: binds `PATH` and accepts one connection;
/// - `fifo-in:A:B`: opens pipe `A` to read, then pipe `B` to write (the side answering);
/// - `fifo-out:A:B`: opens pipe `A` to write, then `B` to read (the side starting).
///
/// Opening a pipe blocks until its other end is opened, so both sides open their pair in the
/// same order.
fn open_duplex(spec: &str) -> Result<Duplex, String> {
    let (kind, rest) = spec.split_once(':').ok_or("bad endpoint")?;
    match kind {
        "unix" => {
            let s = UnixStream::connect(rest).map_err(io_err("connecting"))?;
            let w = s.try_clone().map_err(io_err("socket"))?;
            Ok((Box::new(s), Box::new(w)))
        }
        "unix-listen" => {
            let l = UnixListener::bind(rest).map_err(io_err("binding"))?;
            let (s, _) = l.accept().map_err(io_err("accepting"))?;
            let w = s.try_clone().map_err(io_err("socket"))?;
            Ok((Box::new(s), Box::new(w)))
        }
        "fifo-in" | "fifo-out" => {
            let (a, b) = rest.split_once(':').ok_or("bad fifo endpoint")?;
            let read = |p: &str| OpenOptions::new().read(true).open(p);
            let write = |p: &str| OpenOptions::new().write(true).open(p);
            if kind == "fifo-in" {
                let r = read(a).map_err(io_err("opening a pipe"))?;
                let w = write(b).map_err(io_err("opening a pipe"))?;
                Ok((Box::new(r), Box::new(w)))
            } else {
                let w = write(a).map_err(io_err("opening a pipe"))?;
                let r = read(b).map_err(io_err("opening a pipe"))?;
                Ok((Box::new(r), Box::new(w)))
            }
        }
        _ => Err(format!("unknown endpoint kind '{kind}'")),
    }
}

fn mkfifo(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| format!("mkfifo {}: {e}", path.display()))
}

/// A raw byte path: a socket pair or two pipes to an echo process, maybe through a relay.
pub struct RawSession {
    r: Box<dyn Read>,
    w: Box<dyn Write>,
    msg: Vec<u8>,
    back: Vec<u8>,
    batch: Vec<u8>,
    files: Vec<PathBuf>,
    _peers: Vec<ChildGuard>,
}

impl RawSession {
    /// Starts the raw path of `kind` (Unix or FIFO) in `dir`, through a relay process when
    /// `relay`; the peers are `interstate bench-peer raw|relay ...`.
    pub fn start(
        peers: &Peers,
        dir: &Path,
        kind: Kind,
        relay: bool,
        payload: usize,
    ) -> Result<RawSession, String> {
        let p = |n: &str| dir.join(n);
        let s = |p: &Path| p.to_str().unwrap_or_default().to_string();
        let pl = payload.to_string();
        let mut children = Vec::new();
        let mut files = Vec::new();
        let (r, w) = match (kind, relay) {
            (Kind::Unix, false) => {
                let path = p("raw.sock");
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path).map_err(io_err("raw baseline socket"))?;
                files.push(path.clone());
                children.push(peers.spawn(
                    &["bench-peer", "raw", &format!("unix:{}", s(&path)), &pl],
                    &[],
                )?);
                let (st, _) = l.accept().map_err(io_err("accepting"))?;
                let w = st.try_clone().map_err(io_err("socket"))?;
                (Box::new(st) as Box<dyn Read>, Box::new(w) as Box<dyn Write>)
            }
            (Kind::Unix, true) => {
                let (a, b) = (p("relay-a.sock"), p("relay-b.sock"));
                let _ = std::fs::remove_file(&a);
                let _ = std::fs::remove_file(&b);
                let l = UnixListener::bind(&a).map_err(io_err("relay baseline socket"))?;
                files.extend([a.clone(), b.clone()]);
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "relay",
                        &format!("unix:{}", s(&a)),
                        &format!("unix-listen:{}", s(&b)),
                        &pl,
                    ],
                    &[],
                )?);
                wait_for("the relay", || b.exists())?;
                children.push(
                    peers.spawn(&["bench-peer", "raw", &format!("unix:{}", s(&b)), &pl], &[])?,
                );
                let (st, _) = l.accept().map_err(io_err("accepting"))?;
                let w = st.try_clone().map_err(io_err("socket"))?;
                (Box::new(st) as Box<dyn Read>, Box::new(w) as Box<dyn Write>)
            }
            (Kind::Fifo, false) => {
                let (a, b) = (p("raw-a2b.fifo"), p("raw-b2a.fifo"));
                mkfifo(&a)?;
                mkfifo(&b)?;
                files.extend([a.clone(), b.clone()]);
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "raw",
                        &format!("fifo-in:{}:{}", s(&a), s(&b)),
                        &pl,
                    ],
                    &[],
                )?);
                open_duplex(&format!("fifo-out:{}:{}", s(&a), s(&b)))?
            }
            (Kind::Fifo, true) => {
                let names = ["s2r", "r2s", "r2e", "e2r"].map(|n| p(&format!("relay-{n}.fifo")));
                for f in &names {
                    mkfifo(f)?;
                }
                files.extend(names.iter().cloned());
                let [s2r, r2s, r2e, e2r] = names.map(|f| s(&f));
                children.push(peers.spawn(
                    &[
                        "bench-peer",
                        "relay",
                        &format!("fifo-in:{s2r}:{r2s}"),
                        &format!("fifo-out:{r2e}:{e2r}"),
                        &pl,
                    ],
                    &[],
                )?);
                children.push(peers.spawn(
                    &["bench-peer", "raw", &format!("fifo-in:{r2e}:{e2r}"), &pl],
                    &[],
                )?);
                open_duplex(&format!("fifo-out:{s2r}:{r2s}"))?
            }
            (Kind::Shm, _) => return Err("shared memory has its own raw session".into()),
        };
        Ok(RawSession {
            r,
            w,
            msg: vec![7u8; payload],
            back: vec![0u8; payload],
            batch: Vec::with_capacity(256 * (4 + payload)),
            files,
            _peers: children,
        })
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Session for RawSession {
    fn round_trip(&mut self) -> Result<(), String> {
        self.w.write_all(&self.msg).map_err(io_err("raw write"))?;
        self.r
            .read_exact(&mut self.back)
            .map_err(io_err("raw read"))
    }

    /// Length-prefixed messages, 256 per write; the peer answers one byte at the end.
    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let payload = self.msg.len();
        let t = StdInstant::now();
        self.w.write_all(&[0xFF]).map_err(io_err("raw write"))?;
        self.w
            .write_all(&(n as u64).to_le_bytes())
            .map_err(io_err("raw write"))?;
        let mut sent = 0;
        while sent < n {
            self.batch.clear();
            for _ in 0..256.min(n - sent) {
                self.batch
                    .extend_from_slice(&(payload as u32).to_le_bytes());
                self.batch.extend_from_slice(&self.msg);
                sent += 1;
            }
            self.w.write_all(&self.batch).map_err(io_err("raw write"))?;
        }
        let mut done = [0u8; 1];
        self.r.read_exact(&mut done).map_err(io_err("raw read"))?;
        Ok(t.elapsed())
    }
}

/// The echo end of a raw path: answers pings, swallows streams, until end-of-file.
pub(super) fn raw_peer(spec: &str, payload: usize) -> Result<(), String> {
    let (mut r, mut w) = open_duplex(spec)?;
    let mut buf = vec![0u8; payload];
    let mut big = vec![0u8; 1 << 16];
    loop {
        let mut first = [0u8; 1];
        match r.read(&mut first) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if first[0] != 0xFF {
            // A ping (all 7s): the rest of it, and back.
            buf[0] = first[0];
            r.read_exact(&mut buf[1..]).map_err(|e| e.to_string())?;
            w.write_all(&buf).map_err(|e| e.to_string())?;
            continue;
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| e.to_string())?;
        let total = u64::from_le_bytes(n) as usize * (4 + payload);
        let mut got = 0;
        while got < total {
            let k = r
                .read(&mut big[..(total - got).min(1 << 16)])
                .map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("sender closed early".into());
            }
            got += k;
        }
        w.write_all(&[1]).map_err(|e| e.to_string())?;
    }
}

/// A relay: forwards pings and streams from the sender's endpoint to the echo's, and the
/// answers back, with blocking reads and writes, as a hub would at best.
pub(super) fn relay_peer(to_sender: &str, to_echo: &str, payload: usize) -> Result<(), String> {
    let (mut sr, mut sw) = open_duplex(to_sender)?;
    let (mut er, mut ew) = open_duplex(to_echo)?;
    let mut buf = vec![0u8; payload.max(9)];
    let mut big = vec![0u8; 1 << 16];
    loop {
        let mut first = [0u8; 1];
        match sr.read(&mut first) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if first[0] == 0xFF {
            let mut n = [0u8; 8];
            sr.read_exact(&mut n).map_err(|e| e.to_string())?;
            ew.write_all(&[0xFF]).map_err(|e| e.to_string())?;
            ew.write_all(&n).map_err(|e| e.to_string())?;
            let mut left = u64::from_le_bytes(n) as usize * (4 + payload);
            while left > 0 {
                let k = sr
                    .read(&mut big[..left.min(1 << 16)])
                    .map_err(|e| e.to_string())?;
                if k == 0 {
                    return Err("sender closed early".into());
                }
                ew.write_all(&big[..k]).map_err(|e| e.to_string())?;
                left -= k;
            }
            let mut done = [0u8; 1];
            er.read_exact(&mut done).map_err(|e| e.to_string())?;
            sw.write_all(&done).map_err(|e| e.to_string())?;
            continue;
        }
        buf[0] = first[0];
        sr.read_exact(&mut buf[1..payload])
            .map_err(|e| e.to_string())?;
        ew.write_all(&buf[..payload]).map_err(|e| e.to_string())?;
        er.read_exact(&mut buf[..payload])
            .map_err(|e| e.to_string())?;
        sw.write_all(&buf[..payload]).map_err(|e| e.to_string())?;
    }
}
