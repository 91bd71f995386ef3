//! The supervisor's loop: its public API, and the carrying out of what the policy decides
//! (which child starts, restarts or stops, when the app is ready, done or stopping).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::policy::{self, AfterExit, Deps, Policy, Proc, Sign, StopReason, StopStep};
use super::{
    pidfile, ChildSpec, ChildState, ChildStatus, Exit, Outcome, Phase, Slot, Supervisor,
    SupervisorConfig, SupervisorError, SupervisorEvent,
};
use crate::error::PlatformError;
use crate::node::Node;

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
        let (run_dir, pid_file) = pidfile::claim(&dir, &bus)?;

        let node_logs = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let sink = node_logs.clone();
        node.set_logger(move |line| sink.borrow_mut().push(line.to_string()));
        let now = Instant::now();
        let policy = Policy::new(config, children.len());
        let slots = children
            .into_iter()
            .map(|spec| Slot::new(spec, now, None))
            .collect();
        // Without the port, nodes spawn their child processes themselves.
        let port = match node.open_port(super::SUPERVISOR_PORT) {
            Ok(()) => Some(super::SUPERVISOR_PORT.to_string()),
            Err(e) => {
                node_logs.borrow_mut().push(format!(
                    "port {}: {e}; nodes will start their child processes themselves",
                    super::SUPERVISOR_PORT
                ));
                None
            }
        };
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
            port,
            asked: Box::default(),
        })
    }

    /// The bus node (to add machines or ports of the supervisor's own).
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The settings.
    pub fn config(&self) -> &SupervisorConfig {
        self.policy.config()
    }

    /// Every child's status, in the order given: the manifest's, and the children nodes
    /// asked for that run or whose exit is not answered yet (one that ended and was
    /// reported to its node is gone).
    pub fn children(&self) -> Vec<ChildStatus> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| !self.asked.is_answered(i as u32))
            .map(|(_, s)| ChildStatus {
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
        self.serve_requests();
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

    /// Queues an event for [`next_event`](Self::next_event).
    pub(super) fn emit(&mut self, ev: SupervisorEvent) {
        self.events.push_back(ev);
    }

    /// A stop signal (`name`) arrived: the first begins an orderly stop, another kills what is
    /// left.
    pub(super) fn on_signal(&mut self, name: &str) {
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

    /// Carries out what the policy decides after child `i` (process `pid`) exited.
    pub(super) fn exited(&mut self, i: usize, pid: u32, exit: Exit, stop: Option<StopReason>) {
        let now = Instant::now();
        let name = self.slots[i].spec.name.clone();
        self.emit(SupervisorEvent::Exited {
            child: name.clone(),
            pid,
            exit,
            requested: stop == Some(StopReason::App),
        });
        self.asked_ended(i, Some(pid), Some(exit), "");
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

    /// Child `i` is ready (`how` says by what).
    pub(super) fn set_ready(&mut self, i: usize, how: String) {
        let slot = &mut self.slots[i];
        slot.state = ChildState::Ready;
        slot.since = Instant::now();
        let child = slot.spec.name.clone();
        self.emit(SupervisorEvent::Ready { child, how });
    }

    /// Begins an orderly stop, ending with `outcome` (the first reason wins); children
    /// without a process are stopped at once.
    pub(super) fn begin_stop(&mut self, outcome: Outcome) {
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

    /// The earliest timer due: a SIGKILL, a ready timeout, a restart.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
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
    pub(super) fn tick(&mut self) {
        if self.phase == Phase::Running {
            self.stop_orphans();
        }
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
                self.kill_after_grace(i);
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
                // Children asked for are their parents' business, not the app's.
                let children = self
                    .slots
                    .iter()
                    .filter(|s| s.asked.is_none())
                    .map(|s| (s.spec.name.as_str(), &s.state));
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
    pub(super) fn deps_state(&self, i: usize) -> Deps {
        policy::deps(&self.slots[i].spec.after, |name| {
            self.slots
                .iter()
                .find(|s| s.spec.name == name)
                .map(|s| &s.state)
        })
    }

    /// Every child is down: removes the sockets and the pid file, and reports the outcome.
    pub(super) fn finish(&mut self) {
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
}
