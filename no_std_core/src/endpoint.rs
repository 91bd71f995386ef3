//! The client side of a bus link, as a pure state machine: handshake, keepalive, and
//! reconnection with bounded exponential backoff.
//!
//! The platform opens and closes the connection and moves bytes; it tells the endpoint what
//! happened ([`Endpoint::connected`], [`Endpoint::handle_frame`], [`Endpoint::disconnected`])
//! and asks it what to do next ([`Endpoint::poll_timeout`], [`Endpoint::handle_timeout`]).

use heapless::String;

use crate::time::{Duration, Instant};
use crate::wire::{Frame, Hello, RejectCode, MAGIC, PROTOCOL_VERSION};

/// Endpoint settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Send a ping after this long without receiving anything.
    pub keepalive: Duration,
    /// Declare the hub dead when a ping is unanswered for this long.
    pub dead_after: Duration,
    /// The first reconnect delay.
    pub backoff_min: Duration,
    /// The largest reconnect delay.
    pub backoff_max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
    /// The largest frame body this endpoint accepts.
    pub max_frame: u32,
    /// This process's id.
    pub pid: u32,
    /// This process's executable name.
    pub executable: String<64>,
}

impl EndpointConfig {
    /// Defaults: ping after 5 s of silence, dead after 10 s more, reconnect after 50 ms
    /// doubling up to 2 s, forever.
    pub fn new(pid: u32, executable: &str) -> Self {
        let mut exe = String::new();
        for c in executable.chars() {
            if exe.push(c).is_err() {
                break;
            }
        }
        EndpointConfig {
            keepalive: Duration::from_millis(5_000),
            dead_after: Duration::from_millis(10_000),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(2_000),
            max_attempts: None,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            pid,
            executable: exe,
        }
    }
}

/// Where the link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkState {
    /// Not connected; the next attempt is due at the instant.
    Disconnected {
        /// When to try again.
        retry_at: Instant,
    },
    /// Connected, Hello sent, waiting for the Welcome.
    Handshaking,
    /// Welcomed.
    Ready {
        /// The largest frame either side may send.
        max_frame: u32,
        /// The link's number on the hub.
        link: u32,
    },
    /// The hub refused us for a reason retrying will not fix, or attempts ran out.
    Failed,
}

/// What the platform should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Todo {
    /// Nothing.
    Nothing,
    /// Try to connect now.
    Connect,
    /// The link is ready: register the machines and flush what was buffered.
    Ready,
    /// Send this frame (a ping or a pong).
    Send(Frame<'static>),
    /// Close the connection: the hub stopped answering or refused us; the endpoint has
    /// scheduled the next attempt (or failed for good).
    Close,
}

/// The client state machine.
#[derive(Clone, Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    state: LinkState,
    backoff: Duration,
    attempts: u32,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    nonce: u64,
    rejection: Option<RejectCode>,
}

impl Endpoint {
    /// A disconnected endpoint whose first attempt is due at `now`.
    pub fn new(config: EndpointConfig, now: Instant) -> Self {
        let backoff = config.backoff_min;
        Endpoint {
            config,
            state: LinkState::Disconnected { retry_at: now },
            backoff,
            attempts: 0,
            last_rx: now,
            ping_sent: None,
            nonce: 0,
            rejection: None,
        }
    }

    /// The state.
    pub fn state(&self) -> LinkState {
        self.state
    }
    /// Whether messages can be sent now.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, LinkState::Ready { .. })
    }
    /// Why the hub refused us last, if it did.
    pub fn rejection(&self) -> Option<RejectCode> {
        self.rejection
    }
    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The Hello to send first on a new connection.
    pub fn hello(&self) -> Frame<'_> {
        Frame::Hello(Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            max_frame: self.config.max_frame,
            pid: self.config.pid,
            executable: self.config.executable.as_str(),
        })
    }

    /// The connection is up; the platform sends [`hello`](Self::hello) next.
    pub fn connected(&mut self, now: Instant) {
        self.state = LinkState::Handshaking;
        self.last_rx = now;
        self.ping_sent = None;
    }

    /// The connection is gone. Schedules the next attempt with exponential backoff.
    pub fn disconnected(&mut self, now: Instant) {
        if self.state == LinkState::Failed {
            return;
        }
        self.attempts += 1;
        if self.config.max_attempts.is_some_and(|m| self.attempts >= m) {
            self.state = LinkState::Failed;
            return;
        }
        self.state = LinkState::Disconnected {
            retry_at: now + self.backoff,
        };
        self.backoff = Duration::from_millis(
            (self.backoff.as_millis() * 2).min(self.config.backoff_max.as_millis()),
        );
    }

    /// The hub is taken to be alive though it sent nothing: the platform's writes to it are
    /// blocked because the hub stopped reading this link while a receiver is slow
    /// (backpressure), which the hub ends within its idle timeout. Postpones the keepalive.
    pub fn hub_busy(&mut self, now: Instant) {
        if matches!(self.state, LinkState::Ready { .. }) {
            self.last_rx = now;
            self.ping_sent = None;
        }
    }

    /// A frame from the hub. Frames other than the ones the endpoint handles return
    /// `Todo::Nothing`; the platform handles them (deliveries, registry, failures).
    pub fn handle_frame(&mut self, now: Instant, frame: &Frame<'_>) -> Todo {
        self.last_rx = now;
        self.ping_sent = None;
        match *frame {
            Frame::Welcome(w) if self.state == LinkState::Handshaking => {
                self.state = LinkState::Ready {
                    max_frame: w.max_frame.min(self.config.max_frame),
                    link: w.link,
                };
                self.backoff = self.config.backoff_min;
                self.attempts = 0;
                self.rejection = None;
                Todo::Ready
            }
            Frame::Reject(r) => {
                self.rejection = Some(r.code);
                core_log!(warn, "endpoint: the hub refused us: {}", r.message);
                match r.code {
                    // Retrying cannot fix these.
                    RejectCode::Version
                    | RejectCode::NotAllowed
                    | RejectCode::NotInterstate
                    | RejectCode::FrameSize => self.state = LinkState::Failed,
                    _ => self.disconnected(now),
                }
                Todo::Close
            }
            Frame::Ping { nonce } => Todo::Send(Frame::Pong { nonce }),
            _ => Todo::Nothing,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            LinkState::Disconnected { retry_at } => Some(retry_at),
            LinkState::Handshaking => Some(self.last_rx + self.config.dead_after),
            LinkState::Ready { .. } => Some(match self.ping_sent {
                Some(at) => at + self.config.dead_after,
                None => self.last_rx + self.config.keepalive,
            }),
            LinkState::Failed => None,
        }
    }

    /// Time-driven work: reconnect attempts, keepalive pings, declaring the hub dead.
    pub fn handle_timeout(&mut self, now: Instant) -> Todo {
        match self.state {
            LinkState::Disconnected { retry_at } if now >= retry_at => Todo::Connect,
            LinkState::Handshaking if now >= self.last_rx + self.config.dead_after => {
                self.disconnected(now);
                Todo::Close
            }
            LinkState::Ready { .. } => match self.ping_sent {
                Some(at) if now >= at + self.config.dead_after => {
                    core_log!(
                        warn,
                        "endpoint: the hub did not answer a ping; reconnecting"
                    );
                    self.disconnected(now);
                    Todo::Close
                }
                None if now >= self.last_rx + self.config.keepalive => {
                    self.ping_sent = Some(now);
                    self.nonce = self.nonce.wrapping_add(1);
                    Todo::Send(Frame::Ping { nonce: self.nonce })
                }
                _ => Todo::Nothing,
            },
            _ => Todo::Nothing,
        }
    }
}
