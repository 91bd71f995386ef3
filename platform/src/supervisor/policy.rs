//! The supervisor's decisions, apart from the processes they are about.
//!
//! Whether the children's specs hold together (names, dependencies, cycles); whether an exit is
//! followed by a restart, after which backoff, and when restarting stops helping (the intensity
//! limit over a sliding window); when a child counts as ready, and when its dependents may
//! start; when a stopping child is killed; in which order the app is stopped.
//!
//! Nothing here reads a clock, touches a process or does I/O: the time is an argument, and the
//! rest of the supervisor carries out what these functions decide (spawning, waiting on
//! pidfds, signals, pipes, notification sockets). So every rule is tested without a process.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ChildSpec, ChildState, Exit, Readiness, Restart, SupervisorConfig, SupervisorError};

/// Whether `name` may name a child: 1 to 64 letters, digits, `-`, `_` or `.`.
fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks that `children` hold together: valid and unique names, dependencies on children of
/// the app and without a cycle, machine readiness with machine ids. The error names the
/// offending child (or the cycle) and what to change.
pub(super) fn validate(children: &[ChildSpec]) -> Result<(), SupervisorError> {
    let invalid = SupervisorError::Invalid;
    for (i, c) in children.iter().enumerate() {
        if !check_name(&c.name) {
            return Err(invalid(format!(
                "process name '{}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.'",
                c.name
            )));
        }
        if children[..i].iter().any(|o| o.name == c.name) {
            return Err(invalid(format!("two processes are named '{}'", c.name)));
        }
        for d in &c.after {
            if !children.iter().any(|o| &o.name == d) {
                return Err(invalid(format!(
                    "process '{}' depends on '{d}', which is not a process of the app",
                    c.name
                )));
            }
        }
        if c.readiness == Readiness::Machines && c.provides.is_empty() {
            return Err(invalid(format!(
                "process '{}' is ready when its machines are registered, but provides none",
                c.name
            )));
        }
    }
    if let Some(cycle) = find_cycle(children) {
        return Err(invalid(format!(
            "the dependencies go round in a circle: {}",
            cycle.join(" -> ")
        )));
    }
    Ok(())
}

/// A dependency cycle, as the names along it with the first repeated at the end
/// (`a -> c -> b -> a`), or `None`. Unknown dependencies are skipped.
fn find_cycle(children: &[ChildSpec]) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the path, 2 = done.
    fn visit(
        i: usize,
        children: &[ChildSpec],
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        mark[i] = 1;
        path.push(i);
        for d in &children[i].after {
            let Some(j) = children.iter().position(|c| &c.name == d) else {
                continue;
            };
            if mark[j] == 1 {
                let from = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..]
                    .iter()
                    .map(|&p| children[p].name.clone())
                    .collect();
                cycle.push(children[j].name.clone());
                return Some(cycle);
            }
            if mark[j] == 0 {
                if let Some(c) = visit(j, children, mark, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    let mut mark = vec![0u8; children.len()];
    for i in 0..children.len() {
        if mark[i] == 0 {
            if let Some(c) = visit(i, children, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Whether a child with the policy `restart` is restarted after `exit`. `timed_out`: the
/// supervisor stopped it because it did not become ready in time, which is a failure whatever
/// its status.
pub(super) fn restarts(restart: Restart, exit: Exit, timed_out: bool) -> bool {
    let failed = timed_out || !exit.success();
    match restart {
        Restart::Always => true,
        Restart::OnFailure => failed,
        Restart::Never => false,
    }
}

/// The restart delay for a child's `n`-th restart within the window (n >= 1).
pub fn backoff(config: &SupervisorConfig, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(20);
    config
        .backoff_min
        .saturating_mul(factor)
        .min(config.backoff_max)
}

/// Moments within a sliding window (restarts, for the intensity limit and for backoff).
#[derive(Clone, Debug, Default)]
pub(super) struct Window {
    times: VecDeque<Instant>,
}

impl Window {
    /// Adds `now`, forgets the moments more than `within` before it, and returns how many are
    /// left (`now` included).
    pub(super) fn record(&mut self, now: Instant, within: Duration) -> u32 {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) > within)
        {
            self.times.pop_front();
        }
        self.times.len() as u32
    }
}

/// Why the supervisor stops a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopReason {
    /// The app is stopping.
    App,
    /// It did not become ready in time.
    ReadyTimeout,
}

/// A stop under way: SIGTERM was sent, SIGKILL is due at `kill_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stop {
    /// Why.
    pub(super) reason: StopReason,
    /// When SIGKILL is due.
    pub(super) kill_at: Instant,
    /// Whether SIGKILL was sent.
    pub(super) killed: bool,
}

impl Stop {
    /// A stop asked for at `now`, with `grace` before SIGKILL.
    pub(super) fn new(reason: StopReason, now: Instant, grace: Duration) -> Stop {
        Stop {
            reason,
            kill_at: now + grace,
            killed: false,
        }
    }
    /// Whether SIGKILL is due at `now` (and not sent yet).
    pub(super) fn kill_due(&self, now: Instant) -> bool {
        !self.killed && now >= self.kill_at
    }
    /// When SIGKILL is due, while it is still to be sent.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.killed).then_some(self.kill_at)
    }
}

/// What becomes of a child whose process exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// It stays down, in `state`; `ends_app` when it is the app's main child.
    Down {
        /// Its final state.
        state: ChildState,
        /// The app stops with this child's exit.
        ends_app: bool,
    },
    /// It is restarted after `delay`.
    Restart {
        /// Its backoff.
        delay: Duration,
    },
    /// This restart would be one too many within the window: the app stops.
    GiveUp {
        /// The restarts counted in the window before this one.
        restarts: u32,
        /// The child's final state.
        state: ChildState,
    },
}

/// The restart policy at work: the settings, and the restarts they count.
pub(super) struct Policy {
    config: SupervisorConfig,
    /// Restarts of all children, for the intensity limit.
    intensity: Window,
    /// Each child's restarts, for its backoff.
    recent: Vec<Window>,
}

impl Policy {
    /// The policy for `children` children under `config`.
    pub(super) fn new(config: SupervisorConfig, children: usize) -> Policy {
        Policy {
            config,
            intensity: Window::default(),
            recent: vec![Window::default(); children],
        }
    }

    /// Counts one more child (one asked for while running).
    pub(super) fn add_child(&mut self) {
        self.recent.push(Window::default());
    }

    /// The settings.
    pub(super) fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// How long `spec` may take to become ready.
    pub(super) fn ready_timeout(&self, spec: &ChildSpec) -> Duration {
        spec.ready_timeout.unwrap_or(self.config.ready_timeout)
    }

    /// When a child of `spec` started at `started` is overdue if not ready.
    pub(super) fn ready_deadline(&self, spec: &ChildSpec, started: Instant) -> Instant {
        started + self.ready_timeout(spec)
    }

    /// How long `spec` has between SIGTERM and SIGKILL.
    pub(super) fn grace(&self, spec: &ChildSpec) -> Duration {
        spec.grace.unwrap_or(self.config.grace)
    }

    /// What follows the exit of child `i` (of `spec`) at `now`. `stop`: why the supervisor had
    /// asked it to stop, if it had; `app_running`: false once the app is stopping, when every
    /// exit is final. A restart is counted against the intensity limit (all children) and
    /// against the child's own backoff.
    pub(super) fn after_exit(
        &mut self,
        i: usize,
        spec: &ChildSpec,
        exit: Exit,
        stop: Option<StopReason>,
        app_running: bool,
        now: Instant,
    ) -> AfterExit {
        if !app_running {
            let state = if stop == Some(StopReason::App) {
                ChildState::Stopped
            } else {
                ChildState::Exited(exit)
            };
            return AfterExit::Down {
                state,
                ends_app: false,
            };
        }
        let timed_out = stop == Some(StopReason::ReadyTimeout);
        if !restarts(spec.restart, exit, timed_out) {
            let state = if timed_out {
                ChildState::Failed(format!("not ready within {:?}", self.ready_timeout(spec)))
            } else {
                ChildState::Exited(exit)
            };
            return AfterExit::Down {
                state,
                ends_app: spec.main,
            };
        }
        let within = self.config.within;
        let count = self.intensity.record(now, within);
        if count > self.config.max_restarts {
            return AfterExit::GiveUp {
                restarts: count - 1,
                state: ChildState::Failed(format!(
                    "exited again after {} restarts within {within:?} (at most {})",
                    count - 1,
                    self.config.max_restarts
                )),
            };
        }
        let n = self.recent[i].record(now, within);
        AfterExit::Restart {
            delay: backoff(&self.config, n),
        }
    }
}

/// What a starting child can show of its readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sign {
    /// Its process was started.
    Spawned,
    /// It sent `READY=1` to its notification socket.
    Notified,
    /// Every machine it provides is registered by its process or a descendant.
    Registered,
}

/// Whether `sign` makes a child ready by its `readiness`: each readiness has exactly one sign
/// (a `READY=1` from a child with another readiness does not count).
pub(super) fn shows_ready(readiness: Readiness, sign: Sign) -> bool {
    matches!(
        (readiness, sign),
        (Readiness::Started, Sign::Spawned)
            | (Readiness::Notify, Sign::Notified)
            | (Readiness::Machines, Sign::Registered)
    )
}

/// Whether every machine of `provides` is registered by the child: `ours(id)` says whether
/// `id` is registered by its process or a descendant of it.
pub(super) fn machines_registered(provides: &[String], ours: impl Fn(&str) -> bool) -> bool {
    provides.iter().all(|m| ours(m))
}

/// Whether a child counts as up, for its dependents and for "every child is ready": it is
/// ready, or it finished successfully (a one-shot task).
pub(super) fn is_up(state: &ChildState) -> bool {
    matches!(state, ChildState::Ready) || matches!(state, ChildState::Exited(e) if e.success())
}

/// Whether every child is up (see [`is_up`]).
pub(super) fn all_up<'a>(states: impl IntoIterator<Item = &'a ChildState>) -> bool {
    states.into_iter().all(is_up)
}

/// Whether a waiting child may start, by the state of its dependencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Deps {
    /// Every dependency is up: start it.
    Ready,
    /// Some are not up yet: wait.
    Waiting,
    /// One is down for good (why): it will not start.
    Gone(String),
}

/// The state of the dependencies `after`: `state_of(name)` is the state of a child (names not
/// found are skipped). The first dependency down for good decides, even when an earlier one is
/// still coming up.
pub(super) fn deps<'a>(
    after: &[String],
    state_of: impl Fn(&str) -> Option<&'a ChildState>,
) -> Deps {
    let mut ready = true;
    for d in after {
        let Some(state) = state_of(d) else {
            continue;
        };
        match state {
            s if is_up(s) => {}
            ChildState::Exited(e) => {
                return Deps::Gone(format!("its dependency {d} exited with {e}"))
            }
            ChildState::Failed(_) | ChildState::Stopped => {
                return Deps::Gone(format!("its dependency {d} is down for good"))
            }
            _ => ready = false,
        }
    }
    if ready {
        Deps::Ready
    } else {
        Deps::Waiting
    }
}

/// When every child is down for good: the ones that did not succeed, as `(name, why)`;
/// `None` while any child may still run.
pub(super) fn completed<'a>(
    children: impl IntoIterator<Item = (&'a str, &'a ChildState)>,
) -> Option<Vec<(String, String)>> {
    let mut failures = Vec::new();
    for (name, state) in children {
        match state {
            s if !s.is_final() => return None,
            ChildState::Exited(e) if !e.success() => {
                failures.push((name.to_string(), e.to_string()))
            }
            ChildState::Failed(why) => failures.push((name.to_string(), why.clone())),
            _ => {}
        }
    }
    Some(failures)
}

/// Whether a child in `state` is stopped at once when the app stops: it has no process (it is
/// waiting for its dependencies or for its backoff to end).
pub(super) fn stopped_at_once(state: &ChildState) -> bool {
    matches!(state, ChildState::Waiting | ChildState::Backoff)
}

/// Where a child's process is, for the stop order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proc {
    /// No process.
    Down,
    /// Running, not asked to stop.
    Up,
    /// Asked to stop, not exited yet.
    Stopping,
}

/// The next step of an orderly stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopStep {
    /// A child is stopping: wait for it.
    Wait,
    /// Stop this child.
    Stop(usize),
    /// No process is left.
    Done,
}

/// The next step of an orderly stop, one child at a time in the reverse of `start_order`
/// (children by the order they first started): while one is stopping, wait; else stop the
/// last started that still runs; else the stop is done. `procs[i]` is child `i`'s process.
pub(super) fn next_stop(start_order: &[usize], procs: &[Proc]) -> StopStep {
    if procs.contains(&Proc::Stopping) {
        return StopStep::Wait;
    }
    match start_order.iter().rev().find(|&&i| procs[i] != Proc::Down) {
        Some(&i) => StopStep::Stop(i),
        None => StopStep::Done,
    }
}

#[cfg(test)]
mod tests;
