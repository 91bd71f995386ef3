//! A node: one process's place on the bus. It hosts any number of machines on a mio event
//! loop, with timers from the machines' deadlines, and joins a bus over a Unix socket, either
//! as its hub (server role) or as a client.
//!
//! - Sends between machines of the same node are delivered directly, without encoding.
//! - Sends to other processes are encoded once into the link's bounded write queue and
//!   flushed once per loop iteration (batching: one `write` carries many messages).
//! - Backpressure: a full write queue leaves messages in the sending machine's outbox; as a
//!   hub, a full target link stops reading from its senders until it drains.
//! - Nothing is lost silently: an undeliverable message becomes an `xstate.error.delivery`
//!   event to its sending machine, with a JSON payload `{"to","event","reason"}`, and is
//!   counted in [`NodeStats`].
//! - Every event a machine gets from another carries its sender (a machine's `ctx.reply`);
//!   requests (`ctx.request`, [`Node::request_from_port`]) are settled once, by their reply
//!   or by an [`REQUEST_ERROR_EVENT`] (timeout, the target leaving the registry, a delivery
//!   failure); a late reply is dropped and counted (`requests`).
//!
//! [`Node::run_once`] runs one loop iteration, so a node can live inside an existing daemon's
//! loop; [`Node::poll_registry`] lets that daemon register its own mio sources (with tokens
//! at or above [`USER_TOKEN_BASE`]).
//!
//! The code is split by responsibility: the public API and the node's state here;
//! `event_loop` (one turn: readiness, deadlines, shared-memory waiting, flushing), `hub_side`
//! (serving the bus, admitting links, the hub's I/O), `client_side` (the link to the hub:
//! connecting, reconnecting, registering, acknowledgements), `hosting` (machines and ports,
//! routing, timers, follow-up work), `failover` (the bus lock; the auto role taking over
//! from a hub that went away), `monitor`, `payload` (the JSON the node makes), and
//! `requests` (ports' requests, and settling requests on the bus's news).

mod child_process;
mod child_spawn;
mod children;
mod client_side;
mod direct;
mod durable;
mod event_loop;
mod failover;
mod first_step;
mod hosting;
mod hub_serve;
mod hub_side;
pub mod invoked;
mod local;
mod machines;
mod metrics;
mod monitor;
mod outline;
mod payload;
mod port_sends;
mod ports;
mod requests;
mod settle;
mod spin;
mod status;
mod supervised;
mod timer_order;
mod topics;

pub use child_process::{ProcessActor, ENV_INPUT, ENV_MACHINE_ID, ENV_RESULT_FD, MAX_RESULT};
use client_side::ClientSide;
pub use hub_serve::shm_socket_path;
use hub_side::HubSide;
use local::Local;
pub use machines::{HostedMachine, LargeHostedMachine, RunningMachine};
pub use metrics::StatsAnswer;
pub use payload::delivery_error_payload;
pub use payload::ThisProcess;
pub use topics::{NODE_SUBSCRIPTIONS, NODE_TOPIC_COPY};

use std::collections::VecDeque;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use rustc_hash::FxHashMap as HashMap;

use interstate_core::bus::{OwnerSlot, PairSlot};
use interstate_core::machine::Status;
use interstate_core::wire::{Frame, DEFAULT_MAX_FRAME};
use interstate_core::{Duration, Instant};
use mio::{Events, Poll, Token};

use crate::busdir;
use crate::conn::Conn;
use crate::error::PlatformError;
use crate::registry::Registry;
use crate::transport::shm::WaitStrategy;
use crate::transport::LinkIo;

/// Tokens at or above this are the user's (see [`Node::poll_registry`]).
pub const USER_TOKEN_BASE: usize = 1 << 30;

const LISTENER: Token = Token(0);
const CLIENT: Token = Token(1);
const SHM_LISTENER: Token = Token(2);
const FIFO_LISTENER: Token = Token(3);
/// Blocking services' threads wake the loop with it (see `invoked`).
const WAKER: Token = Token(4);
const LINK_BASE: usize = 16;

/// The most links a hub accepts (its own process included).
pub const HUB_LINKS: usize = 256;
/// The most machine ids a hub routes.
pub const HUB_MACHINES: usize = 4096;
/// The most state watches (a link following a machine's state) a hub holds at once.
pub const HUB_WATCHES: usize = 1024;

/// The event a sending machine receives when its message cannot be delivered.
pub const DELIVERY_ERROR_EVENT: &str = "xstate.error.delivery";

/// The event a requester (a machine or a port) receives when a request fails: no reply
/// within its timeout, its target left the bus, or it was not delivered. Payload:
/// `{"request":7,"to":"worker","reason":"timeout","message":"..."}` (see
/// [`interstate_core::request::write_error_payload`]).
pub const REQUEST_ERROR_EVENT: &str = interstate_core::request::REQUEST_ERROR_EVENT;

/// Requests one port may have waiting for their replies.
pub const PORT_REQUESTS: usize = 64;

/// Sent to a watcher when a watched machine leaves the bus (its process exited or was killed,
/// or it unregistered). Payload: `{"machine":"<id>"}`.
pub const MACHINE_DOWN_EVENT: &str = "xstate.machine.down";

/// Sent to a watcher when a watched machine (re)joins the bus. Payload: `{"machine":"<id>"}`.
pub const MACHINE_UP_EVENT: &str = "xstate.machine.up";

/// Which transport a client's link to the hub runs over. Switching is this one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A Unix domain stream socket.
    UnixSocket,
    /// A pair of named pipes (set up over the bus's request FIFO).
    Fifo,
    /// Two rings in shared memory (set up over the bus's shared-memory socket).
    SharedMemory {
        /// Bytes per ring (per direction), a power of two.
        ring: usize,
        /// How the node waits for data.
        wait: WaitStrategy,
    },
}

impl Transport {
    /// Shared memory with 1 MiB rings, spinning 50 µs before sleeping.
    pub const SHARED_MEMORY: Transport = Transport::SharedMemory {
        ring: crate::transport::shm::DEFAULT_RING,
        wait: WaitStrategy::SpinThenPark(StdDuration::from_micros(50)),
    };

    /// From `INTERSTATE_TRANSPORT` (`unix`, `shm`); Unix sockets otherwise.
    pub fn from_env() -> Transport {
        match std::env::var("INTERSTATE_TRANSPORT").as_deref() {
            Ok("shm") => Transport::SHARED_MEMORY,
            Ok("fifo") => Transport::Fifo,
            _ => Transport::UnixSocket,
        }
    }

    /// What `INTERSTATE_TRANSPORT` accepts.
    pub const ALLOWED: &'static str = "use unix (the default), fifo or shm";

    /// From `INTERSTATE_TRANSPORT`: `unix` (or unset, or empty), `fifo` or `shm`; any other
    /// value is an error naming the variable, the value and the allowed values.
    pub fn try_from_env() -> Result<Transport, PlatformError> {
        let value = match std::env::var_os("INTERSTATE_TRANSPORT") {
            None => return Ok(Transport::UnixSocket),
            Some(v) => v.to_string_lossy().into_owned(),
        };
        match value.as_str() {
            "" | "unix" => Ok(Transport::UnixSocket),
            "fifo" => Ok(Transport::Fifo),
            "shm" => Ok(Transport::SHARED_MEMORY),
            _ => Err(PlatformError::BadSetting {
                variable: "INTERSTATE_TRANSPORT",
                value,
                allowed: Self::ALLOWED,
            }),
        }
    }

    fn wait(&self) -> WaitStrategy {
        match self {
            Transport::SharedMemory { wait, .. } => *wait,
            Transport::UnixSocket | Transport::Fifo => WaitStrategy::Park,
        }
    }
}

/// How a node joins the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serve the bus (host the hub); fail if a live hub already serves it.
    Hub,
    /// Join an existing hub; fail if none serves the bus yet (reconnects later if it goes).
    Client,
    /// Join the hub if one is live, else become it.
    Auto,
}

/// [`NodeConfig::report_interval`]'s default, in milliseconds: a person reading `status
/// --watch` sees every state of a machine stepping up to 20 times a second, and the
/// inspector, which draws at most every 50 ms, loses nothing it would have drawn.
pub const DEFAULT_REPORT_INTERVAL_MS: u64 = 50;

/// [`NodeConfig::port_queue`]'s default: messages one port holds unread from its own
/// process.
pub const DEFAULT_PORT_QUEUE: usize = 1024;

/// Node settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The bus name.
    pub bus: String,
    /// The bus directory.
    pub dir: PathBuf,
    /// How to join.
    pub role: Role,
    /// The largest frame body ([`DEFAULT_MAX_FRAME`], 64 KiB, by default). A link uses the
    /// smaller of its two ends' values, and a larger message fails back to its sender as
    /// `too-large`: a 64 KiB payload needs room for its names and fields beside it (64 KiB +
    /// 1 KiB holds them) on both ends, on every transport (shared memory included: a frame
    /// larger than the ring's free space goes through it in pieces). Each link's read
    /// buffer is one largest frame, allocated when the link is made.
    pub max_frame: u32,
    /// Bytes of outgoing queue per link.
    pub link_queue: usize,
    /// Bytes of messages kept until their receivers acknowledge them (and buffered while a
    /// client is disconnected from the hub).
    pub reconnect_buffer: usize,
    /// (Receiver, sender) pairs the duplicate filter tracks at once. A new pair beyond it
    /// is refused (its message stays with its sender) until departed senders' state frees
    /// room.
    pub duplicate_filter_pairs: usize,
    /// Users allowed on the bus when this node is the hub (its own uid is always allowed).
    pub allowed_uids: Vec<u32>,
    /// Groups allowed on the bus when this node is the hub.
    pub allowed_gids: Vec<u32>,
    /// The most machine ids one client may register, when this node is the hub.
    pub machines_per_link: usize,
    /// Keepalive interval of a client (a ping after this much silence).
    pub keepalive: Duration,
    /// A hub closes a link silent for this long.
    pub idle_timeout: Duration,
    /// Reconnect backoff bounds of a client.
    pub backoff: (Duration, Duration),
    /// The transport this node's link to the hub uses (a hub serves every transport).
    pub transport: Transport,
    /// Direct peer rings this node takes at once when its transport is shared memory: a
    /// process it exchanges messages with, also in shared memory, then gets a ring pair of
    /// its own with it, set up through the hub, and their messages cross no third process
    /// (see `docs/architecture.md`). 0 keeps every message on the hub's path. Default 4
    /// (`INTERSTATE_DIRECT_PAIRS`).
    pub direct_pairs: usize,
    /// When this node serves the bus: the bytes of frames it reads from one link in a pass
    /// over its links before the next link's turn (deficit round robin,
    /// [`interstate_core::hub::fair`]). Smaller passes cut the latency under a flood (16 KiB
    /// halved the load test's latencies) at the cost of throughput (0.88x median there); the
    /// default, 256 KiB, binds only on links far ahead of the others
    /// (`INTERSTATE_HUB_READ_QUANTUM`). See `docs/performance.md`.
    pub hub_read_quantum: u32,
    /// When this node is a client: after running this long without sleeping (a flood, a
    /// busy spin), it yields its CPU, so that a receiver among many busy processes does not
    /// wait a whole 4 ms tick of each. Off (`None`) by default: under Linux's EEVDF a
    /// yielding process gets a small share of a CPU against processes that do not yield
    /// (see [`crate::sched`] for the trade-off and figures). The hub never yields.
    /// `INTERSTATE_YIELD_AFTER_US` sets it in microseconds (unset or 0: off); 100 us brought
    /// the load test's worst p99 from 44-79 ms to 13-26 ms in most runs, at the same
    /// throughput.
    pub yield_after: Option<StdDuration>,
    /// A listening socket to serve on instead of binding the bus path (socket activation:
    /// see [`crate::activation::listen_fd_from_env`]). Only the hub role uses it.
    pub listen_fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// The least time between two state reports of one watched machine (its first report to
    /// a new watcher, and one after a quiet spell, go at once). The steps in between are
    /// folded into the next report, which shows the latest state and counts them as
    /// `"skipped"`: watchers see every state of a machine that steps less often than this,
    /// and a flooded machine costs its node at most one report per interval. Zero reports
    /// every step.
    pub report_interval: Duration,
    /// Where the node journals its machines (one file per machine), making every machine
    /// it hosts durable: journalled after each step, restored from its journal when it is
    /// added again, its events acknowledged only once their step is on disk by
    /// [`durability`](Self::durability). `None` (the default): nothing is kept. See
    /// `docs/persistence.md`.
    pub state_dir: Option<PathBuf>,
    /// When a journal record is on disk for good (with `state_dir`).
    pub durability: crate::journal::Durability,
    /// When this node serves the bus: how long it keeps a durable machine's id (one a node
    /// with a `state_dir` registered) after that node's link closed, for the machine's next
    /// process; messages to it meanwhile wait in their senders' outstanding buffers instead
    /// of failing as `target-gone`. Default 30 s. See `docs/guarantees.md`.
    pub durable_hold: Duration,
    /// The most invoked children the node runs at once, of every kind (child machines,
    /// services, child processes); a start beyond it is the invoking machine's
    /// `xstate.error.actor.<id>`.
    pub max_children: usize,
    /// How long a stopped child process has between SIGTERM and SIGKILL.
    pub child_grace: StdDuration,
    /// The most messages held for one child process until its id is registered on the bus
    /// (beyond it the sender gets `xstate.error.delivery`, reason `queue-full`).
    pub max_held_per_child: usize,
    /// The most messages one port of this node holds unread from machines and ports of its
    /// own process (messages from other processes are bounded by their senders' outstanding
    /// buffers: unread, they are not acknowledged). At the bound a machine's message to the
    /// port waits in the machine's outbox (backpressure, as for a full bus), and a port's
    /// `send_from_port` to it is refused ([`PlatformError::PortQueueFull`]): only the
    /// port's reader makes room. Notices of the runtime (delivery failures, watched
    /// machines up and down) are not counted. Default [`DEFAULT_PORT_QUEUE`].
    pub port_queue: usize,
    /// The most children one machine has live at once (at most
    /// [`interstate_core::machine::MAX_LIVE_CHILDREN`]); an `invoke` beyond it fails the
    /// invoking step (the core's `ChildrenFull`).
    pub children_per_machine: usize,
}

/// [`NodeConfig::hub_read_quantum`]'s default.
pub const DEFAULT_HUB_READ_QUANTUM: u32 = interstate_core::hub::fair::QUANTUM;

impl NodeConfig {
    /// Settings for bus `bus` in the default directory (see [`busdir::default_dir`]).
    pub fn new(bus: &str) -> Self {
        NodeConfig {
            bus: bus.to_string(),
            dir: busdir::default_dir(),
            role: Role::Auto,
            max_frame: DEFAULT_MAX_FRAME,
            link_queue: 1 << 20,
            reconnect_buffer: 1 << 20,
            duplicate_filter_pairs: 4096,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            machines_per_link: 256,
            keepalive: Duration::from_millis(5_000),
            idle_timeout: Duration::from_millis(30_000),
            backoff: (Duration::from_millis(50), Duration::from_millis(2_000)),
            listen_fd: None,
            report_interval: Duration::from_millis(DEFAULT_REPORT_INTERVAL_MS),
            transport: Transport::from_env(),
            direct_pairs: std::env::var("INTERSTATE_DIRECT_PAIRS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(direct::DEFAULT_DIRECT_PAIRS),
            hub_read_quantum: std::env::var("INTERSTATE_HUB_READ_QUANTUM")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&q: &u32| q > 0 && q <= i32::MAX as u32)
                .unwrap_or(DEFAULT_HUB_READ_QUANTUM),
            yield_after: std::env::var("INTERSTATE_YIELD_AFTER_US")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&us| us > 0)
                .map(StdDuration::from_micros),
            state_dir: None,
            durability: crate::journal::Durability::Fsync,
            durable_hold: Duration::from_millis(30_000),
            max_children: 256,
            child_grace: StdDuration::from_secs(5),
            max_held_per_child: 64,
            port_queue: DEFAULT_PORT_QUEUE,
            children_per_machine: interstate_core::machine::MAX_LIVE_CHILDREN,
        }
    }
    /// Settings from `INTERSTATE_BUS` and `INTERSTATE_DIR` (and the defaults). A bad value
    /// falls back to the default; [`NodeConfig::try_from_env`] reports it instead.
    pub fn from_env() -> Self {
        Self::new(&busdir::default_bus())
    }

    /// [`NodeConfig::durable_hold`] from `INTERSTATE_DURABLE_HOLD_MS` (milliseconds; unset or
    /// empty: 30 s); a value that is not a whole number is an error naming the variable.
    pub fn try_durable_hold_from_env() -> Result<Duration, PlatformError> {
        let Some(v) = std::env::var_os("INTERSTATE_DURABLE_HOLD_MS").filter(|v| !v.is_empty())
        else {
            return Ok(Duration::from_millis(30_000));
        };
        let ms = v
            .to_str()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| PlatformError::BadSetting {
                variable: "INTERSTATE_DURABLE_HOLD_MS",
                value: v.to_string_lossy().into_owned(),
                allowed: "use a whole number of milliseconds (30000 by default)",
            })?;
        Ok(Duration::from_millis(ms))
    }

    /// Settings from `INTERSTATE_BUS`, `INTERSTATE_DIR`, `INTERSTATE_TRANSPORT` and
    /// `INTERSTATE_DURABLE_HOLD_MS` ([`NodeConfig::durable_hold`]); a bad
    /// value of any of them (a bus name that is not valid, a directory that is not an
    /// absolute path of a directory, an unknown transport) is an error naming the variable,
    /// the value and what it accepts.
    pub fn try_from_env() -> Result<Self, PlatformError> {
        let bus = busdir::default_bus();
        if std::env::var_os("INTERSTATE_BUS").is_some_and(|b| !b.is_empty())
            && busdir::check_bus_name(&bus).is_err()
        {
            return Err(PlatformError::BadSetting {
                variable: "INTERSTATE_BUS",
                value: std::env::var_os("INTERSTATE_BUS")
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                allowed: "use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'",
            });
        }
        let mut config = Self::new(&bus);
        config.dir = busdir::try_default_dir()?;
        config.transport = Transport::try_from_env()?;
        config.durable_hold = Self::try_durable_hold_from_env()?;
        Ok(config)
    }
    /// The socket path.
    pub fn socket_path(&self) -> PathBuf {
        busdir::socket_path(&self.dir, &self.bus)
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Messages delivered to machines of this node (from anywhere).
    pub received: u64,
    /// Messages this node's machines sent that left the node.
    pub sent_remote: u64,
    /// Messages between machines of this node.
    pub sent_local: u64,
    /// Messages reported back to their sender as undeliverable.
    pub delivery_failures: u64,
    /// Connections to the hub made (the first included).
    pub connects: u64,
    /// Copies of message payloads this node made: into the outstanding buffer (where a
    /// message to another process is encoded once), onto a link's write queue, and into the
    /// buffer a message between two machines of this node passes through.
    pub payload_copies: u64,
    /// Messages from other processes refused because the duplicate filter was full (they
    /// stay with their senders).
    pub duplicate_filter_full: u64,
    /// State reports this node sent for its machines (only while someone watches them).
    pub state_reports: u64,
    /// Replies dropped because their request was settled already (timed out, failed) or
    /// was never pending: those for this node's ports, and those for its machines.
    pub late_replies: u64,
    /// Of those, the ones that carried the chart's outline (the first after each request).
    pub chart_outlines: u64,
    /// Times this node yielded its CPU after running without a sleep for
    /// [`NodeConfig::yield_after`] (when set).
    pub cpu_yields: u64,
}

/// A message for a port (see [`Node::open_port`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMessage {
    /// The port (machine id) it was sent to.
    pub port: String,
    /// The sender's machine id.
    pub from: String,
    /// The event name.
    pub event: String,
    /// The topic, for a publication (see [`Node::subscribe`]); `None` for a message sent to
    /// the port directly (or a broadcast).
    pub topic: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// The sender's sequence number for it (0 for a message from this process).
    pub seq: u64,
    /// The request it opens (answer it with [`Node::reply_from_port`]) or answers (the id
    /// [`Node::request_from_port`] returned), if any.
    pub correlation: interstate_core::Correlation,
}

impl Default for PortMessage {
    /// An empty message: a place for [`Node::recv_port_into`] to put the next one.
    fn default() -> Self {
        PortMessage {
            port: String::new(),
            from: String::new(),
            event: String::new(),
            topic: None,
            payload: Vec::new(),
            seq: 0,
            correlation: interstate_core::Correlation::None,
        }
    }
}

/// A framed link over any transport.
type LinkConnIo = Conn<Box<dyn LinkIo>>;

/// The most machine ids (machines and ports) one node registers.
pub const NODE_IDS: usize = 1024;

/// The sender's outstanding buffer, over a boxed slice.
type CoreOutstanding = interstate_core::bus::Outstanding<Box<[u8]>>;
/// The receiver's duplicate filter, over boxed slots.
type CoreReceived = interstate_core::bus::Received<Box<[PairSlot]>, Box<[OwnerSlot]>>;
/// The client side of the bus protocol (the core's state machine) over boxed storage.
type BusClient =
    interstate_core::bus::Client<Box<[u8]>, Box<[PairSlot]>, Box<[OwnerSlot]>, NODE_IDS>;

/// The duplicate filter's tables for `config`, allocated once.
fn duplicate_slots(config: &NodeConfig) -> (Box<[PairSlot]>, Box<[OwnerSlot]>) {
    let pairs = config.duplicate_filter_pairs.max(8);
    (
        vec![PairSlot::default(); pairs].into_boxed_slice(),
        vec![OwnerSlot::default(); pairs].into_boxed_slice(),
    )
}

enum Side {
    Hub(Box<HubSide>),
    Client(Box<ClientSide>),
}

/// One process's place on the bus.
pub struct Node {
    config: NodeConfig,
    poll: Poll,
    events: Events,
    origin: std::time::Instant,
    local: Local,
    side: Side,
    scratch: Vec<u8>,
    /// Holds one outgoing message's strings while it is routed.
    msg_buf: Vec<u8>,
    /// Monitored frames: (the hub's time in ms since the Unix epoch, the frame body).
    monitor_frames: monitor::MonitorQueue,
    monitor_dropped: u64,
    /// Machines whose state this node watches ([`Node::watch_state`]).
    state_watches: Vec<String>,
    /// State reports of watched machines, (machine, report), for the application.
    state_reports: VecDeque<(String, String)>,
    /// Machines and ports whose state report is due at the end of the pump.
    reports_due: Vec<String>,
    /// The earliest time one of `reports_due` may be sent (see `status::report_time`).
    reports_next: Option<Instant>,
    /// Answers to this process's stats request ([`Node::request_stats`]).
    stats_answers: VecDeque<StatsAnswer>,
    log: Box<dyn FnMut(&str)>,
    /// When the loop last asked the kernel for events.
    last_poll: std::time::Instant,
    /// Whether and how long to spin on shared memory (its CPU, its adaptive budget).
    spinning: spin::Spinning,
    /// A client's turn of the CPU kept short (`NodeConfig::yield_after`).
    cpu_share: crate::sched::CpuShare,
    /// The time at the start of the current (or last) loop turn.
    turn_now: Instant,
    /// Invoked children running as processes of their own (see `child_process`).
    child_procs: child_process::ChildProcesses,
}

impl Node {
    /// Joins (or serves) the bus as the configuration says.
    pub fn new(config: NodeConfig) -> Result<Node, PlatformError> {
        let cpu_share = crate::sched::CpuShare::new(config.yield_after);
        busdir::check_bus_name(&config.bus).map_err(|problem| PlatformError::UnsafeBusDir {
            path: config.dir.clone(),
            problem,
        })?;
        busdir::ensure_dir(&config.dir)?;
        let poll =
            Poll::new().map_err(|e| PlatformError::io("creating the event loop", None, e))?;
        let path = config.socket_path();
        let origin = std::time::Instant::now();
        let registry = Registry::default();
        let durable = match &config.state_dir {
            Some(dir) => Some(durable::Durable::open(dir, config.durability)?),
            None => None,
        };
        let side = match config.role {
            Role::Hub => Side::Hub(Box::new(Self::serve(&config, &poll, &path)?)),
            Role::Client => {
                if !Self::hub_is_live(&path) {
                    return Err(PlatformError::NoHub { path });
                }
                Side::Client(Box::new(Self::client_side(&config, &path)))
            }
            Role::Auto => {
                if Self::hub_is_live(&path) {
                    Side::Client(Box::new(Self::client_side(&config, &path)))
                } else {
                    match Self::serve(&config, &poll, &path) {
                        Ok(h) => Side::Hub(Box::new(h)),
                        // Another process won the race to serve: join it.
                        Err(PlatformError::HubRunning { .. }) => {
                            Side::Client(Box::new(Self::client_side(&config, &path)))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let child_procs = child_process::ChildProcesses::new(&config);
        let port_queue = config.port_queue.max(1);
        let mut node = Node {
            config,
            poll,
            events: Events::with_capacity(256),
            origin,
            local: Local {
                machines: Vec::new(),
                by_id: HashMap::default(),
                ports: HashMap::default(),
                port_seq: HashMap::default(),
                port_requests: HashMap::default(),
                registry,
                stats: NodeStats::default(),
                metrics: Default::default(),
                watches: HashMap::default(),
                durable,
                journal_error: None,
                services: HashMap::default(),
                live_children: 0,
                timer_order: Default::default(),
                waker: None,
                port_acks: None,
                hold_port_acks: false,
                port_queue,
                port_blocked: false,
                port_room: false,
                port_spares: Default::default(),
            },
            side,
            scratch: Vec::new(),
            msg_buf: Vec::with_capacity(1024),
            monitor_frames: monitor::MonitorQueue::default(),
            monitor_dropped: 0,
            state_watches: Vec::new(),
            state_reports: VecDeque::new(),
            reports_due: Vec::new(),
            reports_next: None,
            stats_answers: VecDeque::new(),
            log: Box::new(crate::logging::node_line),
            last_poll: std::time::Instant::now(),
            spinning: spin::Spinning::new(),
            cpu_share,
            turn_now: Instant::from_millis(0),
            child_procs,
        };
        node.scratch = vec![0; node.config.max_frame as usize + 64];
        if let Side::Client(_) = node.side {
            // Connect now, so that a client starts ready (or with a clear error).
            node.client_connect()?;
            let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
            while !node.is_connected() && std::time::Instant::now() < deadline {
                node.run_once(Some(StdDuration::from_millis(20)))?;
                if let Side::Client(c) = &node.side {
                    let endpoint = c.client.endpoint();
                    if endpoint.rejection().is_some()
                        && endpoint.state() == interstate_core::endpoint::LinkState::Failed
                    {
                        return Err(PlatformError::Rejected {
                            message: format!("{:?}", endpoint.rejection()),
                        });
                    }
                }
            }
        }
        Ok(node)
    }

    fn hub_is_live(path: &Path) -> bool {
        StdUnixStream::connect(path).is_ok()
    }

    /// The time on the node's clock (ms since the node started).
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    /// Whether this node serves the bus.
    pub fn is_hub(&self) -> bool {
        matches!(self.side, Side::Hub(_))
    }

    /// Whether the node can reach the bus now (always, for the hub).
    pub fn is_connected(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.client.is_ready() && c.conn.is_some(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            cpu_yields: self.cpu_share.yields(),
            ..self.local.stats
        }
    }

    /// Messages sent to other processes that their receivers have not acknowledged yet (a
    /// tool can wait for this to reach zero before it exits).
    pub fn unacknowledged(&self) -> usize {
        self.side.outstanding().len()
    }

    /// The registry copy (shared view; stays current).
    pub fn registry(&self) -> Registry {
        self.local.registry.clone()
    }

    /// Whether `id` is in this node's registry (a machine or port of any process on the
    /// bus), without copying the registry.
    pub fn is_registered(&self, id: &str) -> bool {
        self.local.registry.contains(id)
    }

    /// Where the node's log lines go instead of the `log` facade (by default they are logged
    /// under the targets `interstate::hub` and `interstate::node`: see
    /// [`crate::logging::node_line`]). The supervisor collects its node's lines this way.
    pub fn set_logger(&mut self, f: impl FnMut(&str) + 'static) {
        self.log = Box::new(f);
    }

    /// The mio registry, to add the user's own sources (tokens >= [`USER_TOKEN_BASE`]).
    pub fn poll_registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// A hosted machine by id.
    pub fn machine(&self, id: &str) -> Option<&dyn RunningMachine> {
        self.local
            .by_id
            .get(id)
            .map(|&i| &*self.local.machines[i].machine)
    }

    /// The last errors of a hosted machine's steps, oldest first (at most 4). When the
    /// machine has stopped ([`Status::Failed`]), the last one is what stopped it: the node
    /// then took it off the bus.
    pub fn machine_errors(&self, id: &str) -> impl Iterator<Item = &str> + '_ {
        self.local
            .by_id
            .get(id)
            .into_iter()
            .flat_map(|&i| self.local.machines[i].errors.iter().map(String::as_str))
    }

    /// The ids of the hosted machines.
    pub fn machine_ids(&self) -> impl Iterator<Item = &str> {
        self.local
            .machines
            .iter()
            .filter(|h| !h.vacant)
            .map(|h| h.id.as_str())
    }

    /// Runs one loop iteration: waits for I/O or the next timer (at most `timeout`), then
    /// handles everything ready. User sources' events are ignored; see
    /// [`run_once_with`](Self::run_once_with).
    pub fn run_once(&mut self, timeout: Option<StdDuration>) -> Result<(), PlatformError> {
        self.run_once_with(timeout, &mut |_| {})
    }

    /// Runs until `deadline`.
    pub fn run_for(&mut self, d: StdDuration) -> Result<(), PlatformError> {
        let end = std::time::Instant::now() + d;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            self.run_once(Some(end - now))?;
        }
    }

    /// Runs until `done(self)` is true or `limit` has passed. Returns whether `done` became true.
    pub fn run_until(
        &mut self,
        limit: StdDuration,
        mut done: impl FnMut(&mut Node) -> bool,
    ) -> Result<bool, PlatformError> {
        let end = std::time::Instant::now() + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(false);
            }
            self.run_once(Some((end - now).min(StdDuration::from_millis(50))))?;
        }
    }

    /// Writes what is queued now instead of at the end of the loop iteration (for latency;
    /// batching more per write is what [`run_once`](Self::run_once) does).
    pub fn flush(&mut self) {
        self.turn_now = self.now();
        self.transmit();
        self.emit_acks();
        self.flush_all();
    }

    /// Says goodbye to the hub (clients) or removes the socket (hub). Also done on drop.
    pub fn shutdown(&mut self) {
        // What durable machines did is on disk before the process goes, whatever the policy.
        if let Err(e) = self.journal_sync_all() {
            (self.log)(&format!("the journal failed: {e}"));
        }
        match &mut self.side {
            Side::Hub(h) => {
                // Once: after the first call another process may serve the bus (it took
                // the lock file's place), and what it created is not this hub's to remove.
                if h.lock.as_ref().is_some_and(|l| l.removed()) {
                    return;
                }
                if let Some(path) = &h.path {
                    let _ = std::fs::remove_file(path);
                }
                if let Some((_, path)) = &h.shm_listener {
                    let _ = std::fs::remove_file(path);
                }
                if let Some(fifo) = &h.fifo {
                    let _ = std::fs::remove_file(fifo.path());
                }
                if let Some(lock) = h.lock.as_mut() {
                    lock.remove();
                }
            }
            Side::Client(_) => {
                // What was delivered here is acknowledged before the goodbye: its senders
                // would otherwise hear it failed (acknowledgements wait, by policy, for a
                // batch, a write to carry them or their delay).
                self.turn_now = self.now();
                self.emit_acks_when(true);
                let Side::Client(c) = &mut self.side else {
                    return;
                };
                for r in c.direct.iter_mut().flatten() {
                    r.conn.flush();
                }
                if let Some(conn) = c.conn.as_mut() {
                    let _ = conn.queue(&Frame::Goodbye {
                        reason: "shutting down",
                    });
                    conn.flush();
                }
            }
        }
    }
}

impl Side {
    /// The outstanding buffer: the hub's own, or the client's.
    fn outstanding(&self) -> &CoreOutstanding {
        match self {
            Side::Hub(h) => &h.delivery.outstanding,
            Side::Client(c) => c.client.outstanding(),
        }
    }

    fn outstanding_mut(&mut self) -> &mut CoreOutstanding {
        match self {
            Side::Hub(h) => &mut h.delivery.outstanding,
            Side::Client(c) => c.client.outstanding_mut(),
        }
    }

    fn received_mut(&mut self) -> &mut CoreReceived {
        match self {
            Side::Hub(h) => &mut h.delivery.received,
            Side::Client(c) => c.client.received_mut(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The status of a hosted machine, for tools.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Idle => "idle",
        Status::Active => "active",
        Status::Done => "done",
        Status::Failed => "failed",
    }
}
