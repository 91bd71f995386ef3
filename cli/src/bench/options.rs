//! The settings of `interstate bench`: which transports, payloads and wait strategies it
//! measures, and where its processes run, each with the name the command line and the report
//! use for it.

use std::time::Duration as StdDuration;

use interstate::bus::WaitStrategy;

/// The transports `interstate bench` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Unix domain stream sockets.
    Unix,
    /// Named pipes.
    Fifo,
    /// Shared memory.
    Shm,
}

impl Kind {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unix => "unix",
            Kind::Fifo => "fifo",
            Kind::Shm => "shm",
        }
    }
    /// Parses `unix`, `fifo`, `shm` or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        match s {
            "unix" => Ok(vec![Kind::Unix]),
            "fifo" => Ok(vec![Kind::Fifo]),
            "shm" => Ok(vec![Kind::Shm]),
            "all" => Ok(vec![Kind::Unix, Kind::Fifo, Kind::Shm]),
            _ => Err(format!(
                "unknown transport '{s}' (expected unix, fifo, shm, all, or mqtt for InterNode)"
            )),
        }
    }
}

/// How a shared-memory node waits, as `--wait` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `busy`: [`WaitStrategy::BusySpin`].
    Busy,
    /// `spin`: [`WaitStrategy::SpinThenPark`] for 50 µs (the transport's default).
    Spin,
    /// `park`: [`WaitStrategy::Park`].
    Park,
}

impl Wait {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Busy => "busy",
            Wait::Spin => "spin",
            Wait::Park => "park",
        }
    }
    /// Parses `busy`, `spin` or `park`.
    pub fn parse(s: &str) -> Result<Wait, String> {
        match s {
            "busy" => Ok(Wait::Busy),
            "spin" => Ok(Wait::Spin),
            "park" => Ok(Wait::Park),
            _ => Err(format!(
                "unknown wait strategy '{s}' (expected busy, spin or park)"
            )),
        }
    }
    /// The node setting.
    pub fn strategy(self) -> WaitStrategy {
        match self {
            Wait::Busy => WaitStrategy::BusySpin,
            Wait::Spin => WaitStrategy::SpinThenPark(SPIN),
            Wait::Park => WaitStrategy::Park,
        }
    }
}

/// How long `spin` spins before parking: the transport's default.
const SPIN: StdDuration = StdDuration::from_micros(50);

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Round trips measured per path (after a warm-up of a tenth as many).
    pub round_trips: usize,
    /// Messages in each one-way throughput run with 64-byte payloads; larger payloads send
    /// proportionally fewer (`messages * 64 / payload`, at least a tenth of `messages`).
    pub messages: usize,
    /// Payload sizes, each measured on every path.
    pub payloads: Vec<usize>,
    /// Wait strategies of the shared-memory node paths.
    pub waits: Vec<Wait>,
    /// Also measure the paths through a separate hub process (and their raw relays).
    pub via_hub: bool,
    /// Where the processes run.
    pub pin: Pin,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            round_trips: 20_000,
            messages: 1_000_000,
            payloads: vec![64, 4096],
            waits: vec![Wait::Busy, Wait::Spin],
            via_hub: true,
            pin: Pin::Split,
        }
    }
}

impl BenchOptions {
    pub(super) fn messages_for(&self, payload: usize) -> usize {
        let scaled = self.messages.saturating_mul(64) / payload.max(64);
        scaled.max(self.messages / 10).max(1)
    }
}

/// The largest payload the benchmark sends: the echo machine answers with the same payload,
/// and a hosted machine's outbox holds 16 KiB of names and payloads
/// ([`interstate_platform::node::HostedMachine`]).
pub const MAX_PAYLOAD: usize = 16 * 1024 - 64;

/// Where processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Wherever the scheduler puts them.
    None,
    /// This process on one CPU, every peer (echo, relay, hub) on another: no two spinning
    /// processes share a core, and every message crosses between cores.
    Split,
    /// Every process on one CPU: blocking transports hand over by a context switch, without
    /// waking another core (useless for spinning).
    Same,
}

impl Pin {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pin::None => "none",
            Pin::Split => "split",
            Pin::Same => "same",
        }
    }
    /// Parses `none`, `split` or `same`.
    pub fn parse(s: &str) -> Result<Pin, String> {
        match s {
            "none" => Ok(Pin::None),
            "split" => Ok(Pin::Split),
            "same" => Ok(Pin::Same),
            _ => Err(format!(
                "unknown placement '{s}' (expected none, split or same)"
            )),
        }
    }
}
