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

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::error::PlatformError;
use crate::node::{Node, USER_TOKEN_BASE};
use crate::notify::NotifyListener;

mod pidfile;
mod policy;
mod status;

use pidfile::{in_tree, running_supervisor_is_me, start_time};
pub use pidfile::{pid_file, run_dir, running_supervisor, stop_running};
pub use policy::backoff;
use policy::{AfterExit, Deps, Policy, Proc, Sign, Stop, StopReason, StopStep};
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

impl Supervisor {
    /// A supervisor for `children` on `node`'s bus. Checks the specs (unique, valid names;
    /// dependencies that exist, without cycles; machine readiness with machine ids), refuses
    /// to run when a live supervisor runs the bus, and writes the pid file. Nothing starts
    /// before the first [`run_once`](Self::run_once).
    pub fn new(
        mut node: Node,
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
    ) -> Result<Supervisor, SupervisorError> {
        policy::validate(&children)?;
        let (dir, bus) = (node.config().dir.clone(), node.config().bus.clone());
        let run_dir = run_dir(&dir, &bus);
        let pid_file = pid_file(&dir, &bus);
        if let Some(pid) = running_supervisor(&dir, &bus) {
            return Err(SupervisorError::Invalid(format!(
                "a supervisor (pid {pid}) already runs bus '{bus}'; stop it with `interstate down --bus {bus}`"
            )));
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&run_dir)
            .map_err(|e| {
                PlatformError::io("creating the supervisor's directory", Some(&run_dir), e)
            })?;
        let me = std::process::id();
        let started = start_time(me).unwrap_or(0);
        std::fs::write(&pid_file, format!("{me} {started}\n"))
            .map_err(|e| PlatformError::io("writing the pid file", Some(&pid_file), e))?;

        let node_logs = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let sink = node_logs.clone();
        node.set_logger(move |line| sink.borrow_mut().push(line.to_string()));
        let now = Instant::now();
        let policy = Policy::new(config, children.len());
        let slots = children
            .into_iter()
            .map(|spec| Slot {
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
            })
            .collect();
        Ok(Supervisor {
            node,
            policy,
            slots,
            start_order: Vec::new(),
            phase: Phase::Idle,
            outcome: None,
            events: VecDeque::new(),
            node_logs,
            signals: Vec::new(),
            all_ready_said: false,
            run_dir,
            pid_file,
            tokens: Vec::new(),
        })
    }

    /// Stops the app on SIGINT, SIGTERM or SIGHUP (its terminal closed); a second one kills
    /// what is left. Each signal writes to a self-pipe watched in the loop. Replaces the
    /// default action of those signals.
    pub fn handle_signals(&mut self) -> Result<(), PlatformError> {
        for (sig, token) in [
            (signal_hook::consts::SIGINT, SIGINT_TOKEN),
            (signal_hook::consts::SIGTERM, SIGTERM_TOKEN),
            (signal_hook::consts::SIGHUP, SIGHUP_TOKEN),
        ] {
            let io = |e| PlatformError::io("installing a signal handler", None, e);
            let (read, write) = std::os::unix::net::UnixStream::pair().map_err(io)?;
            read.set_nonblocking(true).map_err(io)?;
            write.set_nonblocking(true).map_err(io)?;
            self.node
                .poll_registry()
                .register(&mut SourceFd(&read.as_raw_fd()), token, Interest::READABLE)
                .map_err(io)?;
            let id = signal_hook::low_level::pipe::register(sig, write).map_err(io)?;
            self.signals.push((id, read, token));
        }
        Ok(())
    }

    /// The bus node (to add machines or ports of the supervisor's own).
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The settings.
    pub fn config(&self) -> &SupervisorConfig {
        self.policy.config()
    }

    /// Every child's status, in the order given.
    pub fn children(&self) -> Vec<ChildStatus> {
        self.slots
            .iter()
            .map(|s| ChildStatus {
                name: s.spec.name.clone(),
                state: s.state.clone(),
                pid: s.running.as_ref().map(|r| r.pid),
                restarts: s.restarts,
                since: s.since,
                last_exit: s.last_exit,
                status_text: s.status_text.clone(),
                restart_at: s.restart_at,
            })
            .collect()
    }

    /// The next event, oldest first.
    pub fn next_event(&mut self) -> Option<SupervisorEvent> {
        self.events.pop_front()
    }

    /// Why it finished, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.phase == Phase::Done {
            self.outcome.as_ref()
        } else {
            None
        }
    }

    /// Whether every child is down and the supervisor is done.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Asks for an orderly stop: children in reverse start order, SIGTERM then SIGKILL.
    pub fn stop(&mut self, reason: &str) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Running;
        }
        self.begin_stop(Outcome::Stopped {
            reason: reason.to_string(),
        });
        self.tick();
    }

    /// Kills every child now (SIGKILL to each process group); they are reaped as they go.
    pub fn kill_all(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].running.is_some() {
                self.kill_group(i, Signal::KILL);
                if let Some(r) = self.slots[i].running.as_mut() {
                    r.stop = Some(Stop {
                        reason: StopReason::App,
                        kill_at: now,
                        killed: true,
                    });
                }
            }
        }
    }

    /// Runs one loop iteration: starts what can start, waits for I/O, exits, signals and
    /// timers (at most `timeout`), and handles them. Events are queued for
    /// [`next_event`](Self::next_event).
    pub fn run_once(&mut self, timeout: Option<Duration>) -> Result<(), PlatformError> {
        if self.phase == Phase::Idle {
            self.phase = Phase::Running;
            self.tick();
        }
        if self.phase == Phase::Done {
            return Ok(());
        }
        let now = Instant::now();
        let mut wait = timeout;
        if let Some(d) = self.next_deadline() {
            let until = d.saturating_duration_since(now);
            wait = Some(wait.map_or(until, |w| w.min(until)));
        }
        if !self.events.is_empty() {
            // Events are waiting to be read: do not sleep on them.
            wait = Some(Duration::ZERO);
        }
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        let r = self
            .node
            .run_once_with(wait, &mut |ev| tokens.push(ev.token()));
        for line in self.node_logs.borrow_mut().drain(..) {
            self.events.push_back(SupervisorEvent::Log(line));
        }
        for &t in &tokens {
            self.handle_token(t);
        }
        self.tokens = tokens;
        self.tick();
        r
    }

    /// Runs until finished, handing each event to `on_event`. Returns the outcome.
    pub fn run(
        &mut self,
        mut on_event: impl FnMut(&Supervisor, SupervisorEvent),
    ) -> Result<Outcome, PlatformError> {
        loop {
            self.run_once(None)?;
            while let Some(ev) = self.next_event() {
                on_event(self, ev);
            }
            if let Some(o) = self.outcome() {
                return Ok(o.clone());
            }
        }
    }

    fn emit(&mut self, ev: SupervisorEvent) {
        self.events.push_back(ev);
    }

    fn handle_token(&mut self, t: Token) {
        if t == SIGINT_TOKEN || t == SIGTERM_TOKEN || t == SIGHUP_TOKEN {
            let mut got = false;
            for (_, read, token) in &self.signals {
                if *token == t {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = std::io::Read::read(&mut &*read, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        got = true;
                    }
                }
            }
            if got {
                let name = match t {
                    SIGINT_TOKEN => "SIGINT",
                    SIGTERM_TOKEN => "SIGTERM",
                    _ => "SIGHUP",
                };
                match self.phase {
                    Phase::Stopping => {
                        self.emit(SupervisorEvent::Log(format!(
                            "{name} again: killing what is left"
                        )));
                        self.kill_all();
                    }
                    _ => {
                        if self.phase == Phase::Idle {
                            self.phase = Phase::Running;
                        }
                        self.begin_stop(Outcome::Stopped {
                            reason: name.to_string(),
                        });
                    }
                }
            }
            return;
        }
        let Some(k) = t.0.checked_sub(CHILD_TOKENS) else {
            return;
        };
        let (i, what) = (k / PER_CHILD, k % PER_CHILD);
        if i >= self.slots.len() {
            return;
        }
        match what {
            0 => self.on_exit(i),
            1 | 2 => self.drain_pipe(i, what - 1),
            _ => self.on_notify(i),
        }
    }

    fn drain_pipe(&mut self, i: usize, which: usize) {
        let name = self.slots[i].spec.name.clone();
        let mut lines = Vec::new();
        let mut eof = false;
        if let Some(p) = self.slots[i].pipes[which].as_mut() {
            let mut chunk = [0u8; 8192];
            loop {
                match std::io::Read::read(&mut p.rx, &mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        p.buf.extend_from_slice(&chunk[..n]);
                        while let Some(nl) = p.buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = p.buf.drain(..=nl).collect();
                            lines.push(line[..line.len() - 1].to_vec());
                        }
                        while p.buf.len() >= MAX_LINE {
                            lines.push(p.buf.drain(..MAX_LINE).collect());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            if eof && !p.buf.is_empty() {
                lines.push(std::mem::take(&mut p.buf));
            }
        }
        for mut line in lines {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.emit(SupervisorEvent::Output {
                child: name.clone(),
                stderr: which == 1,
                line: String::from_utf8_lossy(&line).into_owned(),
            });
        }
        if eof {
            if let Some(mut p) = self.slots[i].pipes[which].take() {
                let _ = self.node.poll_registry().deregister(&mut p.rx);
            }
        }
    }

    fn on_notify(&mut self, i: usize) {
        let mut notes = Vec::new();
        if let Some(l) = self.slots[i].notify.as_ref() {
            while let Some(n) = l.recv() {
                notes.push(n);
            }
        }
        for n in notes {
            if let Some(text) = n.get("STATUS") {
                let text = text.to_string();
                self.slots[i].status_text = Some(text.clone());
                let child = self.slots[i].spec.name.clone();
                self.emit(SupervisorEvent::Status { child, text });
            }
            if n.is_ready()
                && self.slots[i].state == ChildState::Starting
                && policy::shows_ready(self.slots[i].spec.readiness, Sign::Notified)
            {
                self.set_ready(i, "READY=1".into());
            }
        }
    }

    fn on_exit(&mut self, i: usize) {
        let Some(run) = self.slots[i].running.as_ref() else {
            return;
        };
        let status = match rustix::process::waitid(
            WaitId::PidFd(run.pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(s)) => s,
            // Not exited yet (a spurious wake-up), or already reaped.
            Ok(None) => return,
            Err(e) => {
                self.emit(SupervisorEvent::Log(format!(
                    "waiting for {} (pid {}): {e}",
                    self.slots[i].spec.name, run.pid
                )));
                return;
            }
        };
        let exit = if let Some(sig) = status.terminating_signal() {
            Exit::Signal(sig)
        } else {
            Exit::Code(status.exit_status().unwrap_or(0))
        };
        let run = self.slots[i].running.take().expect("running");
        // Whatever is left in its process group goes with it (the group id cannot be reused
        // while any member lives).
        if let Some(pg) = Pid::from_raw(run.pid as i32) {
            let _ = rustix::process::kill_process_group(pg, Signal::KILL);
        }
        let _ = self
            .node
            .poll_registry()
            .deregister(&mut SourceFd(&run.pidfd.as_raw_fd()));
        // Its last words come before the news of its exit.
        self.drain_pipe(i, 0);
        self.drain_pipe(i, 1);
        self.exited(i, run.pid, exit, run.stop.map(|s| s.reason));
    }

    /// Carries out what the policy decides after child `i` (process `pid`) exited.
    fn exited(&mut self, i: usize, pid: u32, exit: Exit, stop: Option<StopReason>) {
        let now = Instant::now();
        let name = self.slots[i].spec.name.clone();
        self.emit(SupervisorEvent::Exited {
            child: name.clone(),
            pid,
            exit,
            requested: stop == Some(StopReason::App),
        });
        let running = self.phase == Phase::Running;
        let slot = &mut self.slots[i];
        slot.last_exit = Some(exit);
        slot.since = now;
        match self
            .policy
            .after_exit(i, &slot.spec, exit, stop, running, now)
        {
            AfterExit::Down { state, ends_app } => {
                slot.state = state;
                if ends_app {
                    self.begin_stop(Outcome::MainExited { child: name, exit });
                }
            }
            AfterExit::GiveUp { restarts, state } => {
                slot.state = state;
                let within = self.policy.config().within;
                self.emit(SupervisorEvent::GaveUp {
                    child: name.clone(),
                    restarts,
                    within,
                });
                self.begin_stop(Outcome::GaveUp {
                    child: name,
                    restarts,
                    within,
                });
            }
            AfterExit::Restart { delay } => {
                slot.restarts += 1;
                slot.state = ChildState::Backoff;
                slot.restart_at = Some(now + delay);
                let restart = slot.restarts;
                self.emit(SupervisorEvent::Restarting {
                    child: name,
                    delay,
                    restart,
                });
            }
        }
    }

    fn set_ready(&mut self, i: usize, how: String) {
        let slot = &mut self.slots[i];
        slot.state = ChildState::Ready;
        slot.since = Instant::now();
        let child = slot.spec.name.clone();
        self.emit(SupervisorEvent::Ready { child, how });
    }

    fn kill_group(&mut self, i: usize, sig: Signal) {
        let Some(run) = self.slots[i].running.as_ref() else {
            return;
        };
        let Some(pg) = Pid::from_raw(run.pid as i32) else {
            return;
        };
        if rustix::process::kill_process_group(pg, sig).is_err() {
            // The group is gone but the leader is not reaped yet: signal it by its pidfd.
            let _ = rustix::process::pidfd_send_signal(&run.pidfd, sig);
        }
        let child = self.slots[i].spec.name.clone();
        let signal = if sig == Signal::KILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        };
        self.emit(SupervisorEvent::Signalled { child, signal });
    }

    /// SIGTERM to a child's group, SIGKILL due after its grace period.
    fn terminate(&mut self, i: usize, reason: StopReason) {
        let grace = self.policy.grace(&self.slots[i].spec);
        if let Some(r) = self.slots[i].running.as_mut() {
            if r.stop.is_some() {
                return;
            }
            r.stop = Some(Stop::new(reason, Instant::now(), grace));
        } else {
            return;
        }
        self.kill_group(i, Signal::TERM);
        if reason == StopReason::App {
            self.slots[i].state = ChildState::Stopping;
            self.slots[i].since = Instant::now();
        }
    }

    fn begin_stop(&mut self, outcome: Outcome) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping;
        let reason = match &outcome {
            Outcome::Stopped { reason } => reason.clone(),
            o => o.to_string(),
        };
        self.outcome = Some(outcome);
        self.emit(SupervisorEvent::Stopping { reason });
        let now = Instant::now();
        for s in &mut self.slots {
            if policy::stopped_at_once(&s.state) {
                s.state = ChildState::Stopped;
                s.since = now;
                s.restart_at = None;
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let now = Instant::now();
        let (bus, dir) = (
            self.node.config().bus.clone(),
            self.node.config().dir.clone(),
        );
        let spec = self.slots[i].spec.clone();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_remove(crate::notify::NOTIFY_SOCKET)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env("INTERSTATE_BUS", &bus)
            .env("INTERSTATE_DIR", &dir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        // Every child may report `STATUS=`; `READY=1` counts for notify readiness only.
        {
            if self.slots[i].notify.is_none() {
                let path = self.run_dir.join(format!("{}.notify", spec.name));
                match NotifyListener::bind(&path) {
                    Ok(mut l) => {
                        let token = Token(CHILD_TOKENS + i * PER_CHILD + 3);
                        if let Err(e) = self.node.poll_registry().register(
                            l.source(),
                            token,
                            Interest::READABLE,
                        ) {
                            return self
                                .start_failed(i, format!("watching {}: {e}", path.display()));
                        }
                        self.slots[i].notify = Some(l);
                    }
                    Err(e) => {
                        return self.start_failed(
                            i,
                            format!("binding its notification socket {}: {e}", path.display()),
                        )
                    }
                }
            }
            let l = self.slots[i].notify.as_ref().expect("bound");
            // Stale notifications of an earlier run do not count.
            while l.recv().is_some() {}
            cmd.env(crate::notify::NOTIFY_SOCKET, l.path());
        }
        let parent = rustix::process::getpid();
        // SAFETY: the hook runs in the child between fork and exec, and only makes two
        // system calls (prctl, getppid); it neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(move || {
                // The child is told (SIGTERM) if the supervisor dies before it; and if that
                // happened already, it does not start.
                let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::from_raw_os_error(3)); // ESRCH
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return self
                    .start_failed(i, format!("cannot run '{}': {e}", spec.program.display()))
            }
        };
        let pid = child.id();
        let pidfd = match Pid::from_raw(pid as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()))
        {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return self.start_failed(i, format!("pidfd_open (Linux 5.3 or later): {e}"));
            }
        };
        let registry = self.node.poll_registry();
        let base = CHILD_TOKENS + i * PER_CHILD;
        let mut pipes: [Option<Pipe>; 2] = [None, None];
        let outs: [Option<mio::unix::pipe::Receiver>; 2] = [
            child.stdout.take().map(Into::into),
            child.stderr.take().map(Into::into),
        ];
        for (k, rx) in outs.into_iter().enumerate() {
            let Some(mut rx) = rx else { continue };
            if rx.set_nonblocking(true).is_ok()
                && registry
                    .register(&mut rx, Token(base + 1 + k), Interest::READABLE)
                    .is_ok()
            {
                pipes[k] = Some(Pipe {
                    rx,
                    buf: Vec::new(),
                });
            }
        }
        if let Err(e) = registry.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            Token(base),
            Interest::READABLE,
        ) {
            let _ = child.kill();
            let _ = child.wait();
            return self.start_failed(i, format!("watching its pidfd: {e}"));
        }
        // The pidfd reaps it; the std handle is not needed (dropping it neither kills nor waits).
        drop(child);
        for k in 0..2 {
            if let Some(mut old) = self.slots[i].pipes[k].take() {
                let _ = self.node.poll_registry().deregister(&mut old.rx);
            }
        }
        let slot = &mut self.slots[i];
        slot.pipes = pipes;
        slot.running = Some(Running {
            pid,
            pidfd,
            started: now,
            stop: None,
        });
        slot.state = ChildState::Starting;
        slot.since = now;
        slot.restart_at = None;
        if !slot.started_once {
            slot.started_once = true;
            self.start_order.push(i);
        }
        self.emit(SupervisorEvent::Spawned {
            child: spec.name.clone(),
            pid,
        });
        if policy::shows_ready(spec.readiness, Sign::Spawned) {
            self.set_ready(i, "started".into());
        }
    }

    fn start_failed(&mut self, i: usize, why: String) {
        let name = self.slots[i].spec.name.clone();
        self.emit(SupervisorEvent::Log(format!("cannot start {name}: {why}")));
        self.slots[i].state = ChildState::Failed(why.clone());
        self.slots[i].since = Instant::now();
        self.begin_stop(Outcome::Failed {
            reason: format!("cannot start {name}: {why}"),
        });
    }

    /// Whether every machine child `i` provides is registered by its process or a descendant.
    fn machines_ready(&self, i: usize) -> bool {
        let Some(run) = self.slots[i].running.as_ref() else {
            return false;
        };
        let registry = self.node.registry();
        policy::machines_registered(&self.slots[i].spec.provides, |m| {
            registry
                .get(m)
                .is_some_and(|e| e.pid == run.pid || in_tree(e.pid, run.pid))
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| {
                let r = s.running.as_ref();
                let kill = r.and_then(|r| r.stop.and_then(|s| s.deadline()));
                let ready = (s.state == ChildState::Starting)
                    .then(|| {
                        r.filter(|r| r.stop.is_none())
                            .map(|r| self.policy.ready_deadline(&s.spec, r.started))
                    })
                    .flatten();
                [kill, ready, s.restart_at].into_iter().flatten().min()
            })
            .min()
    }

    /// Does what is due: readiness, timers, starts, stops, the end.
    fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            // Readiness.
            let starting = self.slots[i].state == ChildState::Starting
                && self.slots[i]
                    .running
                    .as_ref()
                    .is_some_and(|r| r.stop.is_none());
            if starting {
                if policy::shows_ready(self.slots[i].spec.readiness, Sign::Registered)
                    && self.machines_ready(i)
                {
                    let how = format!("{} registered", self.slots[i].spec.provides.join(", "));
                    self.set_ready(i, how);
                } else if let Some(r) = self.slots[i].running.as_ref() {
                    let spec = &self.slots[i].spec;
                    if now >= self.policy.ready_deadline(spec, r.started) {
                        let after = self.policy.ready_timeout(spec);
                        let child = spec.name.clone();
                        self.emit(SupervisorEvent::NotReady { child, after });
                        self.terminate(i, StopReason::ReadyTimeout);
                    }
                }
            }
            // SIGKILL after the grace period.
            let overdue = self.slots[i]
                .running
                .as_ref()
                .and_then(|r| r.stop)
                .is_some_and(|s| s.kill_due(now));
            if overdue {
                self.kill_group(i, Signal::KILL);
                if let Some(stop) = self.slots[i].running.as_mut().and_then(|r| r.stop.as_mut()) {
                    stop.killed = true;
                }
            }
        }
        if self.phase == Phase::Running {
            // Restarts due, and children whose dependencies are ready.
            for i in 0..self.slots.len() {
                if self.phase != Phase::Running {
                    break;
                }
                match self.slots[i].state {
                    ChildState::Backoff if self.slots[i].restart_at.is_some_and(|t| now >= t) => {
                        self.spawn(i)
                    }
                    ChildState::Waiting => match self.deps_state(i) {
                        Deps::Ready => self.spawn(i),
                        Deps::Waiting => {}
                        Deps::Gone(why) => {
                            let name = self.slots[i].spec.name.clone();
                            self.emit(SupervisorEvent::Log(format!(
                                "{name} will not start: {why}"
                            )));
                            self.slots[i].state = ChildState::Failed(why);
                            self.slots[i].since = now;
                        }
                    },
                    _ => {}
                }
            }
            if !self.all_ready_said
                && self.phase == Phase::Running
                && policy::all_up(self.slots.iter().map(|s| &s.state))
            {
                self.all_ready_said = true;
                self.emit(SupervisorEvent::AllReady);
            }
            if self.phase == Phase::Running {
                let children = self.slots.iter().map(|s| (s.spec.name.as_str(), &s.state));
                if let Some(failures) = policy::completed(children) {
                    self.phase = Phase::Stopping;
                    self.outcome = Some(Outcome::Completed { failures });
                }
            }
        }
        if self.phase == Phase::Stopping {
            let procs: Vec<Proc> = self
                .slots
                .iter()
                .map(|s| match &s.running {
                    None => Proc::Down,
                    Some(r) if r.stop.is_some() => Proc::Stopping,
                    Some(_) => Proc::Up,
                })
                .collect();
            match policy::next_stop(&self.start_order, &procs) {
                StopStep::Wait => {}
                StopStep::Stop(i) => self.terminate(i, StopReason::App),
                StopStep::Done => self.finish(),
            }
        }
    }

    /// Whether waiting child `i` may start, by its dependencies' states.
    fn deps_state(&self, i: usize) -> Deps {
        policy::deps(&self.slots[i].spec.after, |name| {
            self.slots
                .iter()
                .find(|s| s.spec.name == name)
                .map(|s| &s.state)
        })
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        for s in &mut self.slots {
            // Removes the socket files.
            if let Some(mut l) = s.notify.take() {
                let _ = self.node.poll_registry().deregister(l.source());
            }
        }
        self.remove_files();
        let outcome = self.outcome.clone().unwrap_or(Outcome::Completed {
            failures: Vec::new(),
        });
        self.emit(SupervisorEvent::Finished(outcome));
    }

    fn remove_files(&mut self) {
        if running_supervisor_is_me(&self.pid_file) {
            let _ = std::fs::remove_file(&self.pid_file);
        }
        for s in &mut self.slots {
            s.notify = None;
        }
        let _ = std::fs::remove_dir(&self.run_dir);
    }
}

impl Drop for Supervisor {
    /// A supervisor dropped with children still running (an error, a panic) kills and reaps
    /// them, so that none outlives it and no zombie is left.
    fn drop(&mut self) {
        for s in &mut self.slots {
            if let Some(run) = s.running.take() {
                if let Some(pg) = Pid::from_raw(run.pid as i32) {
                    let _ = rustix::process::kill_process_group(pg, Signal::KILL);
                }
                let _ = rustix::process::pidfd_send_signal(&run.pidfd, Signal::KILL);
                let _ = rustix::process::waitid(
                    WaitId::PidFd(run.pidfd.as_fd()),
                    WaitIdOptions::EXITED,
                );
            }
        }
        for (id, _, _) in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.remove_files();
    }
}
