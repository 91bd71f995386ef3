//! Invoked children that run in a process of their own: the node starts a program when a
//! hosted machine's `invoke` of a `src` bound to [`Actor::Process`] starts (the one place a
//! src becomes a kind is `Node::start_child`), and stops it when the invoking state is left.
//!
//! - The child runs with `INTERSTATE_MACHINE_ID` set to `<parent>/<invoke id>` (its machine
//!   id: the parent's `sendTo` by invoke id and the child's `sendParent` then go over the bus
//!   unchanged), `INTERSTATE_BUS` and `INTERSTATE_DIR` set to this node's bus,
//!   `INTERSTATE_INPUT` to the invocation's `input` (JSON text, when it has one), and
//!   `INTERSTATE_RESULT_FD` to a pipe where it may write its output (JSON, at most
//!   [`MAX_RESULT`] bytes, which the pipe holds without blocking) before it exits.
//!   `interstate run` does all of this: it takes its id from the environment and writes its
//!   final state's `output`.
//! - Until the child's id is registered on the bus, messages to it from this node's machines
//!   are held here, in order, at most [`NodeConfig::max_held_per_child`] per child (beyond that
//!   the sender gets `xstate.error.delivery` with reason `queue-full`), then sent as the
//!   machine sent them. A child that exits first drops them (logged).
//! - Its exit is its parent's event: status 0 is `xstate.done.actor.<id>` with what it wrote
//!   to the result pipe as the payload; any other status, a signal, or a program that cannot
//!   be started is `xstate.error.actor.<id>` with
//!   `{"message","pid","status","signal"}`. Messages to a child that finished are dropped, as
//!   XState drops events to a stopped actor.
//! - Leaving the state stops the child (so does its parent stopping on an error): SIGTERM,
//!   then SIGKILL after [`NodeConfig::child_grace`]. Its exit is then not reported. Every
//!   child is reaped (no zombie); a node dropped with children still running stops them the same way, waiting
//!   up to the grace. A child whose parent process dies gets SIGTERM from the kernel
//!   (`PR_SET_PDEATHSIG`).
//! - A child process counts against [`NodeConfig::max_children`] with the node's other
//!   children (charts, services): a start beyond it is the parent's
//!   `xstate.error.actor.<id>` (never a silent skip).
//!
//! - Under `interstate up` (`INTERSTATE_SUPERVISOR` set) the node asks the supervisor to
//!   start and stop the process instead of doing it itself (`supervised.rs`); the rest
//!   (held messages, the parent's events, the bound) is the same.
//!
//! The node learns of an exit through a pidfd in its event loop (where pidfds are missing,
//! by polling every 100 ms). A node without child processes pays a count of each machine's
//! child changes per pump round and one integer test per message to another process; an
//! event to or from a running child costs what any bus message costs.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::process::Child;
use std::time::Duration as StdDuration;

use mio::unix::SourceFd;
use mio::Token;

use interstate_core::chart::Invocation;
use interstate_core::machine::{
    write_child_id, ChildChangeKind, CHILD_DONE_PREFIX, CHILD_ERROR_PREFIX, MAX_CHILD_ID,
};
use interstate_core::wire::{Deliver, FailReason};
use interstate_core::{Correlation, Duration, Instant};

use crate::error::PlatformError;

pub(super) use super::child_spawn::{describe, error_payload};
use super::child_spawn::{read_result, signal, spawn, Spawned};
use super::hosting::Routed;
use super::invoked::Actor;
use super::local::{Deferred, Failure, Origin};
use super::{Node, NodeConfig};

/// The child's machine id (`<parent>/<invoke id>`).
pub const ENV_MACHINE_ID: &str = "INTERSTATE_MACHINE_ID";
/// The descriptor of the pipe where the child writes its output before it exits.
pub const ENV_RESULT_FD: &str = "INTERSTATE_RESULT_FD";
/// The invocation's `input`, as JSON text (unset when it has none).
pub const ENV_INPUT: &str = "INTERSTATE_INPUT";
/// The most bytes of output a child hands back (more is cut off, and logged).
pub const MAX_RESULT: usize = 16 * 1024;

/// The first mio token of a child's pidfd (below [`super::USER_TOKEN_BASE`]).
pub(super) const CHILD_TOKEN_BASE: usize = 1 << 29;
const CHILD_TOKENS: usize = 1 << 28;
/// How often a child's exit is looked for where pidfds are missing.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// How an invoked `src` runs as a process: a program and its arguments (see the module
/// docs for the environment it gets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessActor {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
}

impl ProcessActor {
    /// Runs `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl Into<OsString>) -> Self {
        ProcessActor {
            program: program.into(),
            args: Vec::new(),
        }
    }
    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// The program.
    pub fn program(&self) -> &OsStr {
        &self.program
    }
    /// The arguments.
    pub fn arguments(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }
}

pub(super) enum Phase {
    /// Not started yet: it waits for an earlier process of its id (a re-entered state's
    /// previous child) to be gone from the process table and the registry.
    Queued,
    /// Started; its id is not on the bus yet (or its held messages are still going out).
    Starting,
    /// Its id is on the bus: messages go straight to it.
    Running,
    /// It exited by itself and its parent has the news; its invoking state is still active.
    /// Messages to it are dropped.
    Finished,
    /// Its state was left: SIGTERM was sent, SIGKILL goes at `kill_at`.
    Stopping { kill_at: Instant, killed: bool },
}

pub(super) struct Held {
    from: String,
    event: String,
    payload: Vec<u8>,
    seq: u64,
    correlation: Correlation,
}

/// A child the supervisor runs for this node (see [`crate::supervisor::START_EVENT`]).
pub(super) struct Supervised {
    /// This node's reference for it, which the supervisor's answers carry.
    pub(super) reference: u64,
    /// The sequence number of the start request (a delivery failure names it).
    pub(super) start_seq: u64,
}

pub(super) struct ChildProcess {
    pub(super) parent: String,
    /// The invocation's start record: which of the parent's invocations it is.
    pub(super) start: u16,
    pub(super) invoke_id: String,
    /// Its machine id, `<parent>/<invoke id>`.
    pub(super) id: String,
    pub(super) src: String,
    pub(super) input: Option<String>,
    pub(super) phase: Phase,
    process: Option<Spawned>,
    pub(super) held: VecDeque<Held>,
    /// Made before its start's place in its parent's outbox (see
    /// `announce_child_processes`).
    pub(super) early: bool,
    /// The program it runs.
    pub(super) actor: ProcessActor,
    /// Set once it was asked of the supervisor (then `process` stays `None`).
    pub(super) supervised: Option<Supervised>,
}

impl ChildProcess {
    fn new(parent: &str, inv: Invocation<'_>, actor: ProcessActor, early: bool) -> Self {
        ChildProcess {
            parent: parent.to_string(),
            start: inv.start,
            invoke_id: inv.id.to_string(),
            id: format!("{parent}/{}", inv.id),
            src: inv.src.to_string(),
            input: inv.input.map(str::to_string),
            phase: Phase::Queued,
            process: None,
            held: VecDeque::new(),
            early,
            actor,
            supervised: None,
        }
    }
}

/// An event for a parent machine: (parent, child machine id, event, payload).
type ParentEvent = (String, String, String, Vec<u8>);

/// The node's child processes (a field of [`Node`]).
pub(super) struct ChildProcesses {
    /// [`NodeConfig::child_grace`].
    pub(super) grace: StdDuration,
    /// [`NodeConfig::max_held_per_child`].
    pub(super) max_held: usize,
    pub(super) children: Vec<ChildProcess>,
    pub(super) due: VecDeque<ParentEvent>,
    pub(super) next_token: usize,
    /// Children whose messages this node intercepts (queued, starting or finished): the
    /// routing's one check for everything else.
    pub(super) intercepting: usize,
    /// Where pidfds are missing: when to look for exits next.
    pub(super) poll_at: Option<Instant>,
    /// The supervisor's port, when the node runs under `interstate up`
    /// ([`crate::supervisor::ENV_SUPERVISOR`]): child processes are asked of it.
    pub(super) supervisor: Option<String>,
    /// This node's port for the supervisor's answers, once opened.
    pub(super) port: Option<String>,
    /// The next supervised child's reference.
    pub(super) next_reference: u64,
    /// Requests to the supervisor not sent yet: (event, payload, the child's reference).
    pub(super) outgoing: VecDeque<(&'static str, Vec<u8>, u64)>,
}

impl ChildProcesses {
    pub(super) fn new(config: &NodeConfig) -> Self {
        ChildProcesses {
            grace: config.child_grace,
            max_held: config.max_held_per_child,
            children: Vec::new(),
            due: VecDeque::new(),
            next_token: 0,
            intercepting: 0,
            poll_at: None,
            supervisor: std::env::var(crate::supervisor::ENV_SUPERVISOR)
                .ok()
                .filter(|p| !p.is_empty()),
            port: None,
            next_reference: 1,
            outgoing: VecDeque::new(),
        }
    }

    fn recount(&mut self) {
        self.intercepting = self
            .children
            .iter()
            .filter(|c| matches!(c.phase, Phase::Queued | Phase::Starting | Phase::Finished))
            .count();
    }

    /// The child processes that count against [`NodeConfig::max_children`]: alive, or
    /// about to start.
    pub(super) fn running(&self) -> usize {
        let alive = |c: &ChildProcess| {
            c.process.is_some() || c.supervised.is_some() && !matches!(c.phase, Phase::Finished)
        };
        self.children.iter().filter(|c| alive(c)).count()
            + self
                .children
                .iter()
                .filter(|c| matches!(c.phase, Phase::Queued))
                .count()
    }

    /// A message from one of this node's machines to `d.to`: `None` when it is not a child
    /// that is starting or finished (route it as usual); `Some(true)` when it is held (or,
    /// for a finished child, dropped); `Some(false)` when the child's held messages are at
    /// their bound.
    fn hold(&mut self, d: &Deliver<'_>) -> Option<bool> {
        if self.intercepting == 0 {
            return None;
        }
        let max_held = self.max_held;
        // The oldest that is not stopping: a re-entered state's previous child gets what
        // was sent before its stop, the next one what was sent after.
        let c = self
            .children
            .iter_mut()
            .find(|c| c.id == d.to && !matches!(c.phase, Phase::Stopping { .. }))?;
        match c.phase {
            Phase::Queued | Phase::Starting => {
                if c.held.len() >= max_held {
                    return Some(false);
                }
                c.held.push_back(Held {
                    from: d.from.to_string(),
                    event: d.event.to_string(),
                    payload: d.payload.to_vec(),
                    seq: d.seq,
                    correlation: d.correlation,
                });
                Some(true)
            }
            Phase::Finished => Some(true),
            Phase::Running | Phase::Stopping { .. } => None,
        }
    }

    /// A message the pump is about to route to another process: held, or dropped, when its
    /// target is a child process that is starting or finished; a delivery failure
    /// (`queue-full`) for its sender when that child's held messages are at their bound.
    /// `None`: none of this module's business, route it.
    pub(super) fn intercept(&mut self, d: &Deliver<'_>, deferred: &mut Deferred) -> Option<Routed> {
        if !self.hold(d)? {
            deferred.direct.push(
                Failure::found(d.from, d.to, d.event, d.seq, FailReason::QueueFull)
                    .correlated(d.correlation),
            );
        }
        Some(Routed::Sent)
    }

    /// The child announced early for machine `parent`'s invocation `start`, if any.
    fn early(&self, parent: &str, start: u16) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.early && c.parent == parent && c.start == start)
    }

    /// Its pidfd's token was readable.
    pub(super) fn note_exit(&mut self, token: Token) {
        if let Some(p) = self
            .children
            .iter_mut()
            .filter_map(|c| c.process.as_mut())
            .find(|p| p.token == token)
        {
            p.exited = true;
        }
    }

    /// Whether child `n`, queued, can start now: no earlier process of its id (a re-entered
    /// state's previous child) is left, and the registry has let go of the id.
    fn startable(&self, n: usize, registry: &crate::registry::Registry) -> bool {
        let c = &self.children[n];
        matches!(c.phase, Phase::Queued)
            && !self.children[..n]
                .iter()
                .any(|o| o.id == c.id && (o.process.is_some() || o.supervised.is_some()))
            && !registry.contains(&c.id)
    }

    /// When the node has child-process work to do next. (A child's registration, the
    /// acknowledgements its held messages wait for, and an exit reported by a pidfd all
    /// come as I/O, which runs a loop turn anyway.)
    pub(super) fn deadline(
        &self,
        now: Instant,
        registry: &crate::registry::Registry,
    ) -> Option<Instant> {
        if self.children.is_empty() && self.due.is_empty() {
            return None;
        }
        let soon = !self.due.is_empty()
            || !self.outgoing.is_empty()
            || (0..self.children.len()).any(|n| self.startable(n, registry))
            || self
                .children
                .iter()
                .any(|c| c.process.as_ref().is_some_and(|p| p.exited));
        let kill = self
            .children
            .iter()
            .filter_map(|c| match c.phase {
                Phase::Stopping {
                    kill_at,
                    killed: false,
                } => Some(kill_at),
                _ => None,
            })
            .min();
        [soon.then_some(now), kill, self.poll_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Stops child `n`: SIGTERM now, SIGKILL at the end of the grace (see `reap_children`);
    /// one never started, or finished, is forgotten at once.
    fn stop(&mut self, n: usize, now: Instant, log: &mut dyn FnMut(&str)) {
        let grace = Duration::from_millis(self.grace.as_millis() as u64);
        let c = &mut self.children[n];
        if !c.held.is_empty() {
            log(&format!(
                "child process '{}' stopped before it joined the bus: {} messages to it were \
                 dropped",
                c.id,
                c.held.len()
            ));
            c.held.clear();
        }
        match &c.process {
            None if c.supervised.is_some() && !matches!(c.phase, Phase::Finished) => {
                // The supervisor stops it (SIGTERM, then SIGKILL after its grace); its exit
                // comes back and forgets it.
                let reference = c.supervised.as_ref().map_or(0, |s| s.reference);
                let payload = format!("{{\"ref\":{reference}}}").into_bytes();
                self.outgoing
                    .push_back((crate::supervisor::STOP_EVENT, payload, reference));
                c.phase = Phase::Stopping {
                    kill_at: now,
                    killed: true,
                };
            }
            Some(p) if !matches!(c.phase, Phase::Finished) => {
                signal(&p.child, rustix::process::Signal::TERM);
                c.phase = Phase::Stopping {
                    kill_at: now + grace,
                    killed: false,
                };
            }
            // Never started, or reaped already.
            _ => {
                self.children.remove(n);
            }
        }
    }

    /// Stops every child (SIGTERM, then SIGKILL after the grace) and reaps it.
    fn stop_all(&mut self) {
        let mut left: Vec<Child> = Vec::new();
        for c in self.children.drain(..) {
            if let Some(mut p) = c.process {
                if matches!(p.child.try_wait(), Ok(None)) {
                    signal(&p.child, rustix::process::Signal::TERM);
                    left.push(p.child);
                } else {
                    let _ = p.child.wait();
                }
            }
        }
        let end = std::time::Instant::now() + self.grace;
        while !left.is_empty() && std::time::Instant::now() < end {
            left.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            std::thread::sleep(StdDuration::from_millis(10));
        }
        for mut c in left {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildProcesses {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Node {
    /// The child processes running now: (machine id, pid).
    pub fn child_processes(&self) -> impl Iterator<Item = (&str, u32)> {
        self.child_procs
            .children
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.process.as_ref()?.child.id())))
    }

    /// The invoked children the node runs now, of every kind (what
    /// [`NodeConfig::max_children`] bounds).
    pub(super) fn children_live(&self) -> usize {
        self.local.live_children + self.child_procs.running()
    }

    /// Whether machine `parent`'s invocation `start` has a child process announced early
    /// (counted already).
    pub(super) fn child_procs_announced(&self, parent: usize, start: u16) -> bool {
        let parent = &self.local.machines[parent].id;
        self.child_procs.early(parent, start).is_some()
    }

    fn process_actor_of(&self, i: usize, src: &str) -> Option<ProcessActor> {
        let actors = self.local.machines[i].actors.as_ref()?;
        let actor = actors.get(src)?.try_borrow().ok()?;
        match &*actor {
            Actor::Process(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Child processes machine `i` starts later in its outbox exist from now on, so that the
    /// messages to them before their start (XState's sends to an actor about to start: the
    /// invoking state's entry actions) are held for them. (Their start, in order with the
    /// messages, is `start_child_process`.)
    pub(super) fn announce_child_processes(&mut self, i: usize) {
        let mut announced = false;
        let mut k = 0;
        while let Some(change) = self.local.machines[i].machine.child_change(k) {
            k += 1;
            let inv = change.invocation;
            if change.kind != ChildChangeKind::Start || change.after_messages == 0 {
                continue;
            }
            let Some(actor) = self.process_actor_of(i, inv.src) else {
                continue;
            };
            let parent = &self.local.machines[i].id;
            // (One that cannot start, by its id's length or the node's bound, fails at its
            // start's turn instead.)
            if self.children_live() >= self.config.max_children
                || write_child_id(parent, inv.id, &mut heapless::String::<MAX_CHILD_ID>::new())
                    .is_err()
                || self.child_procs.early(parent, inv.start).is_some()
            {
                continue;
            }
            let child = ChildProcess::new(parent, inv, actor, true);
            self.child_procs.children.push(child);
            announced = true;
        }
        if announced {
            self.child_procs.recount();
        }
    }

    /// Starts the child process `inv` of machine `parent` (one announced early is started
    /// already: it is its start's turn now).
    pub(super) fn start_child_process(
        &mut self,
        parent: usize,
        inv: Invocation<'static>,
        actor: ProcessActor,
    ) {
        let parent = &self.local.machines[parent].id;
        match self.child_procs.early(parent, inv.start) {
            Some(n) => self.child_procs.children[n].early = false,
            None => {
                let child = ChildProcess::new(parent, inv, actor, false);
                self.child_procs.children.push(child);
            }
        }
        self.child_procs.recount();
    }

    /// Stops the child process `id` when there is one (its invoking state was left).
    /// Returns whether there was.
    pub(super) fn stop_child_process(&mut self, id: &str) -> bool {
        let now = self.turn_now;
        let procs = &mut self.child_procs;
        let n = procs
            .children
            .iter()
            .position(|c| c.id == id && !matches!(c.phase, Phase::Stopping { .. }));
        if let Some(n) = n {
            procs.stop(n, now, &mut *self.log);
            procs.recount();
        }
        n.is_some()
    }

    /// One loop turn's child-process work: reaping, reporting exits to parents, SIGKILLs
    /// due, starting queued children, releasing held messages to registered ones.
    pub(super) fn child_processes_turn(&mut self) -> Result<(), PlatformError> {
        if self.child_procs.children.is_empty()
            && self.child_procs.due.is_empty()
            && self.child_procs.outgoing.is_empty()
        {
            return Ok(());
        }
        let now = self.now();
        self.stop_orphans(now);
        self.reap_children(now);
        self.start_queued_children(now);
        self.talk_to_supervisor();
        let mut deferred = Deferred::default();
        self.release_held(now, &mut deferred);
        let delivered = self.deliver_child_events(now, &mut deferred);
        self.child_procs.recount();
        self.settle(deferred);
        if delivered {
            self.pump()?;
        }
        Ok(())
    }

    /// Stops the children of machines that stopped on an error (or are gone): no state of
    /// theirs will be left to stop them.
    fn stop_orphans(&mut self, now: Instant) {
        let mut n = 0;
        while n < self.child_procs.children.len() {
            let c = &self.child_procs.children[n];
            let parent_alive = self
                .local
                .by_id
                .get(&c.parent)
                .is_some_and(|&i| !self.local.machines[i].stopped);
            if parent_alive || matches!(c.phase, Phase::Stopping { .. }) {
                n += 1;
                continue;
            }
            let len = self.child_procs.children.len();
            self.child_procs.stop(n, now, &mut *self.log);
            if self.child_procs.children.len() == len {
                n += 1;
            }
        }
    }

    fn reap_children(&mut self, now: Instant) {
        let polling = self.child_procs.poll_at.is_some_and(|t| t <= now);
        if polling {
            self.child_procs.poll_at = None;
        }
        let mut n = 0;
        while n < self.child_procs.children.len() {
            let c = &mut self.child_procs.children[n];
            if let Phase::Stopping {
                kill_at,
                killed: killed @ false,
            } = &mut c.phase
            {
                if *kill_at <= now {
                    if let Some(p) = &c.process {
                        signal(&p.child, rustix::process::Signal::KILL);
                    }
                    *killed = true;
                }
            }
            let Some(p) = c.process.as_mut() else {
                n += 1;
                continue;
            };
            let look = p.exited || p.pidfd.is_none() && polling;
            let status = if look {
                p.child.try_wait().ok().flatten()
            } else {
                None
            };
            let Some(status) = status else {
                if p.pidfd.is_none() && !matches!(c.phase, Phase::Finished) {
                    let next = now + EXIT_POLL;
                    let at = self.child_procs.poll_at.get_or_insert(next);
                    *at = (*at).min(next);
                }
                n += 1;
                continue;
            };
            if let Some(fd) = &p.pidfd {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            let pid = p.child.id();
            let (result, cut) = read_result(&p.result);
            c.process = None;
            if matches!(c.phase, Phase::Stopping { .. }) {
                (self.log)(&format!(
                    "child process '{}' (pid {pid}) stopped: it {}",
                    c.id,
                    describe(status)
                ));
                self.child_procs.children.remove(n);
                continue;
            }
            if !c.held.is_empty() {
                (self.log)(&format!(
                    "child process '{}' exited before it joined the bus: {} messages to it \
                     were dropped",
                    c.id,
                    c.held.len()
                ));
                c.held.clear();
            }
            let (event, payload) = if status.success() {
                if cut {
                    (self.log)(&format!(
                        "child process '{}': its output was cut to {MAX_RESULT} bytes",
                        c.id
                    ));
                }
                (format!("{CHILD_DONE_PREFIX}{}", c.invoke_id), result)
            } else {
                let message = format!(
                    "child process '{}' (pid {pid}, src '{}') {}",
                    c.id,
                    c.src,
                    describe(status)
                );
                (self.log)(&message);
                let event = format!("{CHILD_ERROR_PREFIX}{}", c.invoke_id);
                (event, error_payload(&message, Some(pid), Some(status)))
            };
            self.child_procs
                .due
                .push_back((c.parent.clone(), c.id.clone(), event, payload));
            c.phase = Phase::Finished;
            n += 1;
        }
    }

    fn start_queued_children(&mut self, now: Instant) {
        for n in 0..self.child_procs.children.len() {
            // A re-entered state's previous child must be gone first: its id is the same.
            if !self.child_procs.startable(n, &self.local.registry) {
                continue;
            }
            if self.child_procs.supervisor.is_some() && self.ask_supervisor(n) {
                continue;
            }
            let c = &self.child_procs.children[n];
            let actor = &c.actor;
            let token = Token(CHILD_TOKEN_BASE + self.child_procs.next_token % CHILD_TOKENS);
            self.child_procs.next_token = self.child_procs.next_token.wrapping_add(1);
            match spawn(actor, c, &self.config, self.poll.registry(), token) {
                Ok(p) => {
                    (self.log)(&format!(
                        "child process '{}' started (pid {}, src '{}')",
                        c.id,
                        p.child.id(),
                        c.src
                    ));
                    if p.pidfd.is_none() {
                        let next = now + EXIT_POLL;
                        let at = self.child_procs.poll_at.get_or_insert(next);
                        *at = (*at).min(next);
                    }
                    let c = &mut self.child_procs.children[n];
                    c.process = Some(p);
                    c.phase = Phase::Starting;
                }
                Err(e) => {
                    let message = format!(
                        "child process '{}' could not be started ({:?}): {e}",
                        c.id, actor.program
                    );
                    (self.log)(&message);
                    let event = format!("{CHILD_ERROR_PREFIX}{}", c.invoke_id);
                    let ev = (
                        c.parent.clone(),
                        c.id.clone(),
                        event,
                        error_payload(&message, None, None),
                    );
                    self.child_procs.due.push_back(ev);
                    let c = &mut self.child_procs.children[n];
                    c.held.clear();
                    c.phase = Phase::Finished;
                }
            }
        }
        // Those that never started and finished: nothing is left of them but their id's
        // interception, kept until their state is left.
    }

    /// Sends the held messages of children whose id is now on the bus.
    fn release_held(&mut self, now: Instant, deferred: &mut Deferred) {
        for n in 0..self.child_procs.children.len() {
            let c = &self.child_procs.children[n];
            if !matches!(c.phase, Phase::Starting) || !self.local.registry.contains(&c.id) {
                continue;
            }
            loop {
                let c = &mut self.child_procs.children[n];
                let Some(m) = c.held.pop_front() else {
                    c.phase = Phase::Running;
                    break;
                };
                let to = c.id.clone();
                let d = Deliver {
                    from: &m.from,
                    to: &to,
                    event: &m.event,
                    payload: &m.payload,
                    seq: m.seq,
                    correlation: m.correlation,
                };
                // (`route` does not intercept: only the pump's routing of outboxes does.)
                let routed = self.route(Some(now), d, deferred);
                if routed == Routed::Full {
                    // Backpressure: the rest waits for the next turn, in order.
                    self.child_procs.children[n].held.push_front(m);
                    break;
                }
            }
        }
    }

    /// Hands exits (and starts that failed) to the parents. Returns whether any was
    /// delivered.
    fn deliver_child_events(&mut self, now: Instant, deferred: &mut Deferred) -> bool {
        let mut any = false;
        while let Some((parent, child, event, payload)) = self.child_procs.due.pop_front() {
            any |= self.local.deliver(
                now,
                &child,
                &parent,
                &event,
                &payload,
                Origin::Runtime,
                deferred,
            );
        }
        any
    }
}
