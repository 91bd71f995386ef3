//! A supervisor: starts an app's processes in dependency order, waits for each to be really
//! ready, restarts the ones that stop, and stops them all, in reverse order, on request.
//!
//! The model is Erlang/OTP's `one_for_one` supervisor with systemd's readiness:
//!
//! - **Watching without polling.** Each child gets a pidfd (`pidfd_open`), registered in the
//!   supervisor's [`Node`]'s mio loop next to the bus sockets, the children's output pipes,
//!   their notification sockets and a self-pipe for SIGINT/SIGTERM. A child's exit wakes the
//!   loop; `waitid(P_PIDFD)` reaps it at once, so no zombie is left.
//! - **Restart policies** per child ([`Restart`]): `never`, `on-failure` (a non-zero status, a
//!   signal, or not becoming ready in time), `always`. A restart waits an exponential backoff:
//!   `backoff_min`, doubled for each restart of the same child within the last `within`,
//!   capped at `backoff_max`.
//! - **Intensity.** More than `max_restarts` restarts (of all children together) within
//!   `within` means restarting does not help: the supervisor gives up, reports it
//!   ([`SupervisorEvent::GaveUp`]), stops everything and finishes with [`Outcome::GaveUp`],
//!   so that whoever runs the supervisor (a shell, systemd) sees the failure.
//! - **Ordered start-up.** A child starts when every child it depends on (`after`) is ready
//!   (or has finished successfully, like a one-shot task). Ready means, by its
//!   [`Readiness`]: its machine ids are in the bus registry, registered by the child's
//!   process (or a descendant of it); or it sent `READY=1` to the `NOTIFY_SOCKET` the
//!   supervisor made for it (see [`notify`](crate::notify)); or, when asked for, merely that
//!   it was started. Every child gets a `NOTIFY_SOCKET`, so any can report a `STATUS=` line. A child not ready within its `ready_timeout` is stopped and counts as
//!   failed.
//! - **Shutdown.** [`Supervisor::stop`], or SIGINT/SIGTERM/SIGHUP once
//!   [`Supervisor::handle_signals`] is called: children are stopped one at a time in the reverse of their start order, each
//!   with SIGTERM to its process group and, after its grace period, SIGKILL. A second signal
//!   kills what is left at once. Notification sockets and the pid file are removed.
//!
//! Every child runs in its own process group (so a terminal's Ctrl-C reaches only the
//! supervisor, which then stops the children in order), with `INTERSTATE_BUS` and
//! `INTERSTATE_DIR` naming the supervisor's bus, and with SIGTERM as its parent-death signal,
//! so that children do not outlive a supervisor that is killed. When a child exits, whatever
//! is left in its process group is killed: supervised processes must not daemonize.
//!
//! The supervisor writes its pid to `<bus dir>/<bus>.supervisor/pid` (see [`pid_file`]), so
//! that `interstate down` can find it, and refuses to start when a live supervisor already
//! runs the bus.
//!
//! - **Children asked for.** A node running under the supervisor asks it (on the port
//!   [`SUPERVISOR_PORT`], named to every child in [`ENV_SUPERVISOR`]) for the processes its
//!   machines invoke; they are added as children while it runs, restart `never`, and their
//!   exits go back to the node (see `asked.rs`).
//!
//! The files follow the jobs: `policy.rs` decides (restarts, backoff, the intensity limit,
//! dependencies and readiness, the stop order), purely, with the time as an argument;
//! `run.rs` is the loop that asks it and carries its answers out; `process.rs` does what
//! touches processes (spawning, pidfds, pipes, notification sockets, signals); `pidfile.rs`
//! keeps the pid file and stops a running supervisor (`interstate down`); `status.rs` holds
//! what the supervisor reports. This file holds the specs and settings.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::Token;

use crate::error::PlatformError;
use crate::node::{Node, USER_TOKEN_BASE};
use crate::notify::NotifyListener;

mod asked;
mod pidfile;
mod policy;
mod process;
mod run;
mod status;

pub use asked::{
    ENV_PROCESS, ENV_SUPERVISOR, EXIT_EVENT, MAX_ASKED, START_EVENT, STOP_EVENT, SUPERVISOR_PORT,
};
pub use pidfile::{pid_file, run_dir, running_supervisor, stop_running};
pub use policy::backoff;
use policy::{Policy, Stop};
pub use status::{signal_name, ChildState, ChildStatus, Exit, Outcome, SupervisorEvent};

/// The supervisor's mio tokens start here (its node's user range, well above a daemon's own).
pub const TOKEN_BASE: usize = USER_TOKEN_BASE + (1 << 24);
const SIGINT_TOKEN: Token = Token(TOKEN_BASE);
const SIGTERM_TOKEN: Token = Token(TOKEN_BASE + 1);
const SIGHUP_TOKEN: Token = Token(TOKEN_BASE + 2);
const CHILD_TOKENS: usize = TOKEN_BASE + 16;
/// Tokens per child: pidfd, stdout, stderr, notification socket.
const PER_CHILD: usize = 4;
/// The longest output line kept whole; longer ones are cut into pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// When a child is restarted after it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Never (a one-shot task, or a process whose exit is final).
    Never,
    /// When it fails: a non-zero status, a signal, or no readiness in time.
    OnFailure,
    /// Whenever it exits.
    Always,
}

impl Restart {
    /// The manifest spelling: `never`, `on-failure`, `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }
}

/// How the supervisor knows a child is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Every id of [`ChildSpec::provides`] is in the bus registry, registered by the child's
    /// process or one of its descendants.
    Machines,
    /// The child sent `READY=1` to its `NOTIFY_SOCKET`.
    Notify,
    /// As soon as it is started (for processes with nothing to wait for).
    Started,
}

impl Readiness {
    /// The manifest spelling: `machines`, `notify`, `started`.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Machines => "machines",
            Readiness::Notify => "notify",
            Readiness::Started => "started",
        }
    }
}

/// One process to supervise.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Its name (unique in the app): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables added to the supervisor's.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory (default: the supervisor's).
    pub cwd: Option<PathBuf>,
    /// When it is restarted.
    pub restart: Restart,
    /// The children that must be ready before it starts.
    pub after: Vec<String>,
    /// The machine ids it registers on the bus.
    pub provides: Vec<String>,
    /// How its readiness is known.
    pub readiness: Readiness,
    /// When it finishes (exits and is not restarted), the app stops, with its status.
    pub main: bool,
    /// How long it may take to become ready (default: the supervisor's).
    pub ready_timeout: Option<Duration>,
    /// How long it has between SIGTERM and SIGKILL (default: the supervisor's).
    pub grace: Option<Duration>,
}

impl ChildSpec {
    /// A child running `program`, restarted on failure, ready when started.
    pub fn new(name: &str, program: impl Into<PathBuf>) -> ChildSpec {
        ChildSpec {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            restart: Restart::OnFailure,
            after: Vec::new(),
            provides: Vec::new(),
            readiness: Readiness::Started,
            main: false,
            ready_timeout: None,
            grace: None,
        }
    }
    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Sets the restart policy.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }
    /// Adds a dependency.
    pub fn after(mut self, name: &str) -> Self {
        self.after.push(name.to_string());
        self
    }
    /// Declares a machine id it provides, and makes its registration the readiness.
    pub fn provides(mut self, machine: &str) -> Self {
        self.provides.push(machine.to_string());
        self.readiness = Readiness::Machines;
        self
    }
    /// Sets how readiness is known.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }
}

/// Supervisor settings.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// Time between SIGTERM and SIGKILL when stopping a child.
    pub grace: Duration,
    /// How long a child may take to become ready.
    pub ready_timeout: Duration,
    /// The first restart's delay.
    pub backoff_min: Duration,
    /// The longest restart delay.
    pub backoff_max: Duration,
    /// The most restarts (all children together) within [`within`](Self::within).
    pub max_restarts: u32,
    /// The intensity window.
    pub within: Duration,
}

impl Default for SupervisorConfig {
    /// systemd's defaults for intensity (5 restarts in 10 s) and grace (5 s here; systemd's 90
    /// s is for whole systems).
    fn default() -> Self {
        SupervisorConfig {
            grace: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_restarts: 5,
            within: Duration::from_secs(10),
        }
    }
}

struct Running {
    pid: u32,
    pidfd: OwnedFd,
    started: Instant,
    /// SIGTERM sent: why, when SIGKILL is due, whether it was sent.
    stop: Option<Stop>,
}

struct Pipe {
    rx: mio::unix::pipe::Receiver,
    buf: Vec<u8>,
}

struct Slot {
    spec: ChildSpec,
    state: ChildState,
    since: Instant,
    running: Option<Running>,
    pipes: [Option<Pipe>; 2],
    notify: Option<NotifyListener>,
    restart_at: Option<Instant>,
    restarts: u32,
    last_exit: Option<Exit>,
    status_text: Option<String>,
    started_once: bool,
    /// Set for a child a node asked for (see `asked.rs`).
    asked: Option<asked::Asked>,
}

impl Slot {
    /// A slot for `spec`, not started yet.
    fn new(spec: ChildSpec, now: Instant, asked: Option<asked::Asked>) -> Slot {
        Slot {
            spec,
            state: ChildState::Waiting,
            since: now,
            running: None,
            pipes: [None, None],
            notify: None,
            restart_at: None,
            restarts: 0,
            last_exit: None,
            status_text: None,
            started_once: false,
            asked,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Running,
    Stopping,
    Done,
}

/// The supervisor: children, their bus, and the loop that watches both.
pub struct Supervisor {
    node: Node,
    /// The settings and the restarts they count.
    policy: Policy,
    slots: Vec<Slot>,
    /// Slot indices in the order they first started (stopped in reverse).
    start_order: Vec<usize>,
    phase: Phase,
    outcome: Option<Outcome>,
    events: VecDeque<SupervisorEvent>,
    node_logs: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    signals: Vec<(signal_hook::SigId, std::os::unix::net::UnixStream, Token)>,
    all_ready_said: bool,
    run_dir: PathBuf,
    pid_file: PathBuf,
    tokens: Vec<Token>,
    /// The port where nodes ask for children ([`SUPERVISOR_PORT`]), when it could be opened.
    port: Option<String>,
    /// Who asked for which child, by slot (the core's rules of the exchange).
    asked: Box<asked::AskedTable>,
}

/// Why a supervisor could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The children's specs do not hold together (a bad or repeated name, an unknown or
    /// circular dependency), or another supervisor runs the bus.
    Invalid(String),
    /// A system call failed.
    Platform(PlatformError),
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::Invalid(s) => write!(f, "{s}"),
            SupervisorError::Platform(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SupervisorError {}

impl From<PlatformError> for SupervisorError {
    fn from(e: PlatformError) -> Self {
        SupervisorError::Platform(e)
    }
}
