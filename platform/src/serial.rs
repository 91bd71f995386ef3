//! Serial links: a device on a tty joins the bus through a bridge.
//!
//! A microcontroller speaks the bus protocol over a UART with the core's
//! [`DeviceLink`](interstate_core::serial::DeviceLink): the same frames as a socket client
//! (Hello, Register, Deliver, Ping, ...), COBS-framed with a CRC per frame instead of
//! length-prefixed (see [`interstate_core::serial`]). On the host, [`SerialBridge`] opens the
//! tty in raw mode ([`open_tty`]) and joins the bus as an ordinary client [`Node`]:
//!
//! - to the device, the bridge plays the hub of a one-link bus: it answers the device's
//!   Hello with a Welcome (or a Reject, by the hub's rules with a device's smaller minimum
//!   frame: [`interstate_core::serial::DEVICE_HELLO`]), its Register with a RegisterResult,
//!   its Ping with a Pong;
//! - every machine id the device registers becomes a port of the bridge's node
//!   ([`Node::open_port`]), so it is routed to the bridge like any machine of any process;
//! - a Deliver from the device goes out with [`Node::send_from_port_as`]; a message for one
//!   of those ports goes down the line as a Deliver; both keep their correlation, so
//!   requests and replies cross the line both ways;
//! - a message that cannot reach the device (it is not connected and the hold queue is full,
//!   or it is larger than the device accepts) comes back to its sender as an
//!   `xstate.error.delivery` event, the same way a node reports any undeliverable message.
//!
//! Frames damaged on the line are dropped and counted on the side that received them
//! ([`BridgeStats::line`] here); nothing is retransmitted over the serial hop.
//!
//! [`open_pty`] makes a pseudo-terminal pair, for tests and simulators that play the device.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use interstate_core::serial::{encode_frame, FrameDecoder, SerialStats, DEVICE_HELLO};
use interstate_core::wire::{
    Deliver, DeliveryFailed, FailReason, Frame, RegisterStatus, Welcome, PROTOCOL_VERSION,
};
use interstate_core::{Duration, Instant};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, OptionalActions};

use crate::error::PlatformError;
use crate::node::{Node, PortMessage, DELIVERY_ERROR_EVENT, USER_TOKEN_BASE};

/// The receive buffer of the bridge: the largest encoded frame it accepts from a device.
pub const BRIDGE_RX: usize = 16 * 1024;

/// The largest frame body the bridge accepts from a device (what it offers in its Welcome).
pub const BRIDGE_MAX_FRAME: u32 = FrameDecoder::<BRIDGE_RX>::MAX_BODY as u32;

/// The mio token of the tty in the node's loop.
const TTY: Token = Token(USER_TOKEN_BASE + 0x5e);

fn io_err(what: &str, path: &Path, e: impl Into<io::Error>) -> PlatformError {
    PlatformError::Io {
        what: what.into(),
        path: Some(path.to_path_buf()),
        source: e.into(),
    }
}

/// Puts a terminal in raw mode: no echo, no line editing, no translation of bytes, no
/// signals, 8-bit characters; reads return what has arrived. `baud` sets the line speed (a
/// pseudo-terminal ignores it).
pub fn make_raw(fd: impl AsFd, baud: Option<u32>) -> io::Result<()> {
    let mut t = termios::tcgetattr(&fd)?;
    t.make_raw();
    t.special_codes[termios::SpecialCodeIndex::VMIN] = 1;
    t.special_codes[termios::SpecialCodeIndex::VTIME] = 0;
    if let Some(b) = baud {
        t.set_speed(b)?;
    }
    termios::tcsetattr(&fd, OptionalActions::Now, &t)?;
    Ok(())
}

/// Opens a tty for a serial link: read and write, non-blocking, not as the controlling
/// terminal, in raw mode (see [`make_raw`]).
pub fn open_tty(path: &Path, baud: Option<u32>) -> Result<File, PlatformError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening the serial line", path, e))?;
    make_raw(&fd, baud).map_err(|e| io_err("setting the serial line to raw mode", path, e))?;
    Ok(File::from(fd))
}

/// A pseudo-terminal pair: what a device program writes to `master` comes out of the tty at
/// `path`, and the other way round.
pub struct PtyPair {
    /// The controlling side (the "device" end in tests).
    pub master: OwnedFd,
    /// The terminal side, opened once and set to raw mode; kept open so that the settings
    /// stay and the master never reads end-of-file while the bridge reopens the line.
    pub slave: OwnedFd,
    /// The terminal's path (`/dev/pts/N`), for the bridge's `--tty`.
    pub path: PathBuf,
}

/// Creates a pseudo-terminal pair with the terminal side in raw mode.
pub fn open_pty() -> io::Result<PtyPair> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    make_raw(&slave, None)?;
    Ok(PtyPair {
        master,
        slave,
        path,
    })
}

/// Bridge settings.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// The largest frame body offered to the device (it may announce less).
    pub max_frame: u32,
    /// Messages held for the device's ports while the device is not connected.
    pub hold: usize,
    /// The device is considered gone after this long without a frame (it pings within it).
    pub idle_timeout: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            max_frame: BRIDGE_MAX_FRAME,
            hold: 256,
            idle_timeout: Duration::from_millis(30_000),
        }
    }
}

/// Counters of a bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// What arrived on the line: frames kept, and dropped by reason.
    pub line: SerialStats,
    /// Messages from the device sent on the bus.
    pub from_device: u64,
    /// Messages from the bus written to the device.
    pub to_device: u64,
    /// Messages reported back to their sender as undeliverable to the device.
    pub failed_back: u64,
    /// Handshakes with the device (its first Hello and every Hello after a reset).
    pub sessions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// No Hello yet (or the device left): every frame but a Hello gets a Goodbye.
    AwaitHello,
    /// Welcomed: the largest body the device accepts.
    Ready { max_frame: u32 },
}

/// A device on a serial line, joined to the bus through a [`Node`] (see the module docs).
pub struct SerialBridge {
    node: Node,
    tty: File,
    path: PathBuf,
    config: BridgeConfig,
    rx: Box<FrameDecoder<BRIDGE_RX>>,
    tx: Vec<u8>,
    scratch: Vec<u8>,
    session: Session,
    /// Ports this bridge opened on the node (they stay open for the device's next session).
    ports: HashSet<String>,
    /// Ids the device registered in this session.
    registered: HashSet<String>,
    held: VecDeque<PortMessage>,
    seq: u64,
    last_rx: Instant,
    stats: BridgeStats,
    readable: bool,
    log: Box<dyn FnMut(&str)>,
}

impl SerialBridge {
    /// A bridge between the tty at `path` (opened with [`open_tty`]) and the bus `node`
    /// joined.
    pub fn new(
        node: Node,
        path: &Path,
        baud: Option<u32>,
        config: BridgeConfig,
    ) -> Result<Self, PlatformError> {
        let tty = open_tty(path, baud)?;
        let raw = tty.as_raw_fd();
        node.poll_registry()
            .register(&mut SourceFd(&raw), TTY, Interest::READABLE)
            .map_err(|e| io_err("watching the serial line", path, e))?;
        let now = node.now();
        Ok(SerialBridge {
            node,
            tty,
            path: path.to_path_buf(),
            config,
            rx: Box::new(FrameDecoder::new()),
            tx: Vec::new(),
            scratch: vec![0; BRIDGE_RX + 64],
            session: Session::AwaitHello,
            ports: HashSet::new(),
            registered: HashSet::new(),
            held: VecDeque::new(),
            seq: 0,
            last_rx: now,
            stats: BridgeStats::default(),
            // Bytes may be waiting from before the line was watched.
            readable: true,
            log: Box::new(crate::logging::bridge_line(crate::logging::SERIAL)),
        })
    }

    /// Where log lines go instead of the `log` facade (target `interstate::serial`): sessions, refusals, dropped frames.
    pub fn set_logger(&mut self, f: impl FnMut(&str) + 'static) {
        self.log = Box::new(f);
    }

    /// The node the bridge joined the bus with.
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// Counters.
    pub fn stats(&self) -> BridgeStats {
        let mut s = self.stats;
        s.line = self.rx.stats();
        s
    }

    /// Whether the device has said Hello and is being served.
    pub fn device_connected(&self) -> bool {
        matches!(self.session, Session::Ready { .. })
    }

    /// The machine ids the device registered in its current session.
    pub fn device_machines(&self) -> impl Iterator<Item = &str> {
        self.registered.iter().map(String::as_str)
    }

    /// Runs one iteration: waits for the line, the bus or a timer (at most `timeout`), then
    /// moves everything that is ready in both directions.
    pub fn run_once(&mut self, timeout: Option<StdDuration>) -> Result<(), PlatformError> {
        let mut timeout = timeout;
        if !self.tx.is_empty() || self.readable {
            // Unwritten bytes are retried soon; unread ones at once.
            let cap = if self.readable {
                StdDuration::ZERO
            } else {
                StdDuration::from_millis(5)
            };
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        let mut readable = false;
        self.node.run_once_with(timeout, &mut |ev| {
            if ev.token() == TTY {
                readable = true;
            }
        })?;
        self.readable |= readable;
        self.pump()
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: StdDuration) -> Result<(), PlatformError> {
        let end = std::time::Instant::now() + d;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            self.run_once(Some((end - now).min(StdDuration::from_millis(50))))?;
        }
    }

    /// Moves what is ready without waiting: the line's input, the ports' messages, the
    /// line's output, the idle check.
    pub fn pump(&mut self) -> Result<(), PlatformError> {
        if self.readable {
            self.read_line()?;
        }
        // Read unacknowledged: a message is acknowledged to its sender once it is written to
        // the line, or after it was refused (a refusal must reach the sender before the
        // acknowledgement that would settle it as delivered).
        let ports = std::mem::take(&mut self.ports);
        for port in &ports {
            while let Some(m) = self.node.recv_port_unacknowledged(port) {
                self.down_the_line(m);
            }
        }
        self.ports = ports;
        let now = self.node.now();
        if let Session::Ready { .. } = self.session {
            if now >= self.last_rx + self.config.idle_timeout {
                self.log("the device has been silent too long; waiting for its hello");
                self.end_session();
            }
        }
        self.flush()
    }

    fn log(&mut self, what: &str) {
        let line = format!("serial-bridge: {}: {what}", self.path.display());
        (self.log)(&line);
    }

    fn end_session(&mut self) {
        self.session = Session::AwaitHello;
        self.registered.clear();
    }

    fn read_line(&mut self) -> Result<(), PlatformError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.tty.read(&mut buf) {
                // End of file (a non-blocking line with nothing to read says WouldBlock) or
                // EIO: the line hung up, as when the program at the other end of a
                // pseudo-terminal exits (Linux reports end of file while another descriptor
                // of the terminal side is open, EIO otherwise). Its readiness is reported
                // once: end the session now, not after the idle timeout, and wait for the
                // device to say hello again.
                Ok(0) => {
                    self.hung_up();
                    return Ok(());
                }
                Ok(n) => self.line_input(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    self.hung_up();
                    return Ok(());
                }
                Err(e) => return Err(io_err("reading the serial line", &self.path, e)),
            }
        }
    }

    fn hung_up(&mut self) {
        self.readable = false;
        if self.device_connected() {
            self.log("the line hung up");
            self.end_session();
        }
    }

    fn line_input(&mut self, bytes: &[u8]) -> Result<(), PlatformError> {
        let mut input = bytes;
        loop {
            let before = self.rx.stats();
            let got = self.rx.next_frame(&mut input);
            let after = self.rx.stats();
            let dropped = after.dropped() - before.dropped();
            if dropped > 0 {
                let s = after;
                self.log(&format!(
                    "dropped {dropped} damaged frame(s); in all: crc {}, cobs {}, short {}, oversized {}, malformed {}",
                    s.crc_errors, s.cobs_errors, s.too_short, s.oversized, s.malformed
                ));
            }
            if got.is_none() {
                return Ok(());
            }
            self.last_rx = self.node.now();
            // The body is copied out so that handling it can use the bridge.
            let body = self.rx.body().to_vec();
            match Frame::decode(&body) {
                Ok(frame) => self.device_frame(&frame)?,
                Err(_) => {
                    self.rx.count_malformed();
                    let s = self.rx.stats();
                    self.log(&format!(
                        "dropped a frame that is not a valid frame; in all: malformed {}",
                        s.malformed
                    ));
                }
            }
        }
    }

    fn send_frame(&mut self, frame: &Frame<'_>) {
        match encode_frame(frame, &mut self.scratch) {
            Ok(n) => self.tx.extend_from_slice(&self.scratch[..n]),
            Err(e) => {
                let what = format!("could not encode a {} for the line: {e}", frame.kind());
                self.log(&what);
            }
        }
    }

    fn device_frame(&mut self, frame: &Frame<'_>) -> Result<(), PlatformError> {
        match *frame {
            Frame::Hello(h) => {
                // The hub's rules, with a device's smaller minimum frame.
                let max_frame = match DEVICE_HELLO.check(&h, self.config.max_frame) {
                    Ok(max_frame) => max_frame,
                    Err(refusal) => {
                        self.send_frame(&refusal.reject());
                        self.log(&format!("refused the device: {}", refusal.message));
                        self.end_session();
                        return Ok(());
                    }
                };
                if self.device_connected() {
                    self.log("the device said hello again: new session");
                }
                self.end_session();
                self.session = Session::Ready { max_frame };
                self.stats.sessions += 1;
                self.send_frame(&Frame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    max_frame,
                    link: 1,
                    hub_pid: std::process::id(),
                }));
                self.log(&format!(
                    "device '{}' connected (largest frame {max_frame} bytes)",
                    h.executable
                ));
                // Messages held while it was away go out once it registers.
            }
            _ if self.session == Session::AwaitHello => {
                // A device that missed our restart: make it say hello again.
                self.send_frame(&Frame::Goodbye {
                    reason: "say hello first",
                });
            }
            Frame::Register { machine } => {
                let status = self.register(machine);
                self.send_frame(&Frame::RegisterResult { machine, status });
                if status == RegisterStatus::Ok {
                    self.release_held();
                }
            }
            Frame::Unregister { machine } => {
                // The port stays open on the bus; its messages fail back while unregistered.
                self.registered.remove(machine);
            }
            Frame::Deliver(d) => self.device_deliver(d)?,
            Frame::Ping { nonce } => self.send_frame(&Frame::Pong { nonce }),
            Frame::Goodbye { reason } => {
                self.log(&format!("the device said goodbye: {reason}"));
                self.end_session();
            }
            // Acknowledgements are end to end on the bus: the bridge acknowledges what it
            // wrote to the line. Pongs and subscriptions need nothing.
            Frame::Pong { .. } | Frame::Ack { .. } | Frame::Subscribe { .. } => {}
            _ => {
                let what = format!("ignored a {} frame from the device", frame.kind());
                self.log(&what);
            }
        }
        Ok(())
    }

    fn register(&mut self, machine: &str) -> RegisterStatus {
        if self.registered.contains(machine) {
            return RegisterStatus::Ok;
        }
        if !self.ports.contains(machine) {
            match self.node.open_port(machine) {
                Ok(()) => {
                    self.ports.insert(machine.to_string());
                }
                Err(PlatformError::MachineIdTaken { .. }) => {
                    self.log(&format!("the device's machine id '{machine}' is taken"));
                    return RegisterStatus::Taken;
                }
                Err(PlatformError::BadMachineId { .. }) => return RegisterStatus::BadId,
                Err(e) => {
                    self.log(&format!("could not register '{machine}': {e}"));
                    return RegisterStatus::HubFull;
                }
            }
        }
        self.registered.insert(machine.to_string());
        self.log(&format!("registered '{machine}' on the bus"));
        RegisterStatus::Ok
    }

    fn device_deliver(&mut self, d: Deliver<'_>) -> Result<(), PlatformError> {
        let refuse = |reason| {
            Frame::DeliveryFailed(DeliveryFailed {
                from: d.from,
                to: d.to,
                event: d.event,
                seq: d.seq,
                reason,
                detail: "",
            })
        };
        if !self.registered.contains(d.from) {
            self.send_frame(&refuse(FailReason::NotOwner));
            return Ok(());
        }
        match self
            .node
            .send_from_port_as(d.from, d.to, d.event, d.payload, d.correlation)
        {
            Ok(_) => {
                self.stats.from_device += 1;
                Ok(())
            }
            Err(e) => {
                self.log(&format!("could not send {} to {}: {e}", d.event, d.to));
                self.send_frame(&refuse(FailReason::QueueFull));
                Ok(())
            }
        }
    }

    fn release_held(&mut self) {
        let held: Vec<PortMessage> = self.held.drain(..).collect();
        for m in held {
            self.down_the_line(m);
        }
    }

    fn down_the_line(&mut self, m: PortMessage) {
        let Session::Ready { max_frame } = self.session else {
            return self.hold(m);
        };
        if !self.registered.contains(&m.port) {
            return self.hold(m);
        }
        self.seq += 1;
        let frame = Frame::Deliver(Deliver {
            from: &m.from,
            to: &m.port,
            event: &m.event,
            payload: &m.payload,
            seq: self.seq,
            correlation: m.correlation,
        });
        if frame.encoded_len() - interstate_core::wire::LEN_PREFIX > max_frame as usize {
            return self.fail_back(&m, FailReason::TooLarge);
        }
        self.send_frame(&frame);
        self.stats.to_device += 1;
        self.node.acknowledge_port(&m);
    }

    /// Keeps a message until the device registers its port, unacknowledged: its sender
    /// counts it as delivered only once it went down the line.
    fn hold(&mut self, m: PortMessage) {
        if self.held.len() < self.config.hold {
            self.held.push_back(m);
        } else {
            self.fail_back(&m, FailReason::Disconnected);
        }
    }

    /// Reports a message the device cannot get to its sender, through the hub, as its
    /// receiver refusing it (the sender's node raises `xstate.error.delivery`).
    fn fail_back(&mut self, m: &PortMessage, reason: FailReason) {
        if m.event == DELIVERY_ERROR_EVENT {
            // Never report a report: that could loop between two unreachable ends.
            self.acknowledge_unless_held_before(m);
            return;
        }
        self.stats.failed_back += 1;
        let detail = match reason {
            FailReason::TooLarge => "larger than the device accepts",
            _ => "the device is not connected and the bridge's hold queue is full",
        };
        if let Err(e) = self.node.refuse_port_message(m, reason, detail) {
            self.log(&format!(
                "could not report a failed delivery to {}: {e}",
                m.from
            ));
        }
        self.acknowledge_unless_held_before(m);
    }

    /// Acknowledges a message that is settled here, unless an earlier one from the same
    /// sender to the same port is still held: acknowledgements are cumulative, and that one
    /// is not delivered yet (the refused message needs none: its sender settled it with the
    /// refusal; a later acknowledgement covers it).
    fn acknowledge_unless_held_before(&mut self, m: &PortMessage) {
        let earlier_held = self
            .held
            .iter()
            .any(|h| h.port == m.port && h.from == m.from && h.seq < m.seq);
        if !earlier_held {
            self.node.acknowledge_port(m);
        }
    }

    fn flush(&mut self) -> Result<(), PlatformError> {
        while !self.tx.is_empty() {
            match self.tty.write(&self.tx) {
                Ok(0) => break,
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    // Nobody at the other end of a pseudo-terminal: the bytes are lost, as
                    // on a disconnected UART.
                    self.tx.clear();
                    break;
                }
                Err(e) => return Err(io_err("writing the serial line", &self.path, e)),
            }
        }
        Ok(())
    }
}
