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
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(max_restarts: u32, within: Duration) -> SupervisorConfig {
        SupervisorConfig {
            backoff_min: ms(100),
            backoff_max: ms(1000),
            max_restarts,
            within,
            ..SupervisorConfig::default()
        }
    }

    fn invalid(children: &[ChildSpec]) -> String {
        match validate(children) {
            Err(SupervisorError::Invalid(why)) => why,
            other => panic!("expected an invalid spec, got {other:?}"),
        }
    }

    fn restart_delay(a: AfterExit) -> Duration {
        match a {
            AfterExit::Restart { delay } => delay,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn names_are_checked() {
        let (long, too_long) = ("x".repeat(64), "x".repeat(65));
        for good in ["a", "web-1", "db_main", "v1.2", &long] {
            assert!(check_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &too_long] {
            assert!(!check_name(bad), "{bad}");
        }
        let why = invalid(&[ChildSpec::new("a b", "true")]);
        assert!(why.contains("'a b' is not valid"), "{why}");
    }

    #[test]
    fn specs_that_do_not_hold_together_are_refused() {
        let two = [ChildSpec::new("a", "true"), ChildSpec::new("a", "true")];
        assert_eq!(invalid(&two), "two processes are named 'a'");
        let unknown = [ChildSpec::new("a", "true").after("b")];
        assert_eq!(
            invalid(&unknown),
            "process 'a' depends on 'b', which is not a process of the app"
        );
        let no_ids = [ChildSpec::new("a", "true").readiness(Readiness::Machines)];
        assert!(invalid(&no_ids).contains("provides none"));
        let fine = [
            ChildSpec::new("db", "true").provides("db"),
            ChildSpec::new("web", "true").after("db"),
        ];
        assert!(validate(&fine).is_ok());
    }

    #[test]
    fn cycles_are_named() {
        let specs = vec![
            ChildSpec::new("a", "true").after("c"),
            ChildSpec::new("b", "true").after("a"),
            ChildSpec::new("c", "true").after("b"),
            ChildSpec::new("d", "true"),
        ];
        let cycle = find_cycle(&specs).expect("a cycle");
        assert_eq!(cycle, ["a", "c", "b", "a"]);
        assert!(find_cycle(&specs[3..]).is_none());
        assert_eq!(
            invalid(&specs),
            "the dependencies go round in a circle: a -> c -> b -> a"
        );
    }

    #[test]
    fn a_cycle_is_found_behind_an_acyclic_start() {
        let specs = [
            ChildSpec::new("front", "true").after("x"),
            ChildSpec::new("x", "true").after("y"),
            ChildSpec::new("y", "true").after("x"),
        ];
        assert_eq!(find_cycle(&specs).expect("a cycle"), ["x", "y", "x"]);
        let own = [ChildSpec::new("self", "true").after("self")];
        assert_eq!(
            invalid(&own),
            "the dependencies go round in a circle: self -> self"
        );
    }

    #[test]
    fn diamonds_are_not_cycles() {
        let specs = [
            ChildSpec::new("top", "true").after("left").after("right"),
            ChildSpec::new("left", "true").after("base"),
            ChildSpec::new("right", "true").after("base"),
            ChildSpec::new("base", "true"),
        ];
        assert!(find_cycle(&specs).is_none());
        assert!(validate(&specs).is_ok());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = config(5, Duration::from_secs(10));
        let d: Vec<u128> = (1..=6).map(|n| backoff(&c, n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&c, 200).as_millis(), 1000);
        assert_eq!(backoff(&c, u32::MAX).as_millis(), 1000);
        assert_eq!(backoff(&c, 0).as_millis(), 100);
    }

    #[test]
    fn each_policy_against_each_exit() {
        let (clean, failed, killed) = (Exit::Code(0), Exit::Code(1), Exit::Signal(9));
        // (policy, exit, timed out) -> restarted
        let table = [
            (Restart::Never, clean, false, false),
            (Restart::Never, failed, false, false),
            (Restart::Never, killed, false, false),
            (Restart::Never, clean, true, false),
            (Restart::OnFailure, clean, false, false),
            (Restart::OnFailure, failed, false, true),
            (Restart::OnFailure, killed, false, true),
            (Restart::OnFailure, clean, true, true),
            (Restart::Always, clean, false, true),
            (Restart::Always, failed, false, true),
            (Restart::Always, killed, false, true),
            (Restart::Always, clean, true, true),
        ];
        for (policy, exit, timed_out, want) in table {
            assert_eq!(
                restarts(policy, exit, timed_out),
                want,
                "{policy:?} after {exit}, timed out: {timed_out}"
            );
        }
    }

    #[test]
    fn a_window_forgets_what_is_older_than_it() {
        let t0 = Instant::now();
        let within = Duration::from_secs(10);
        let mut w = Window::default();
        assert_eq!(w.record(t0, within), 1);
        assert_eq!(w.record(t0 + ms(5_000), within), 2);
        // Exactly `within` later is still inside.
        assert_eq!(w.record(t0 + ms(10_000), within), 3);
        // Past it, the first is forgotten.
        assert_eq!(w.record(t0 + ms(10_001), within), 3);
        assert_eq!(w.record(t0 + ms(30_000), within), 1);
    }

    #[test]
    fn a_child_that_is_not_restarted_stays_down() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(5, Duration::from_secs(10)), 2);
        let once = ChildSpec::new("once", "true").restart(Restart::Never);
        assert_eq!(
            p.after_exit(0, &once, Exit::Code(2), None, true, t0),
            AfterExit::Down {
                state: ChildState::Exited(Exit::Code(2)),
                ends_app: false
            }
        );
        let job = ChildSpec::new("job", "true");
        assert_eq!(
            p.after_exit(1, &job, Exit::Code(0), None, true, t0),
            AfterExit::Down {
                state: ChildState::Exited(Exit::Code(0)),
                ends_app: false
            }
        );
        let mut main = ChildSpec::new("main", "true").restart(Restart::Never);
        main.main = true;
        assert_eq!(
            p.after_exit(0, &main, Exit::Signal(15), None, true, t0),
            AfterExit::Down {
                state: ChildState::Exited(Exit::Signal(15)),
                ends_app: true
            }
        );
    }

    #[test]
    fn not_ready_in_time_is_a_failure() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(5, Duration::from_secs(10)), 1);
        let mut slow = ChildSpec::new("slow", "true").restart(Restart::Never);
        slow.ready_timeout = Some(ms(1500));
        let a = p.after_exit(
            0,
            &slow,
            Exit::Code(0),
            Some(StopReason::ReadyTimeout),
            true,
            t0,
        );
        assert_eq!(
            a,
            AfterExit::Down {
                state: ChildState::Failed("not ready within 1.5s".into()),
                ends_app: false
            }
        );
        let slow = slow.restart(Restart::OnFailure);
        let a = p.after_exit(
            0,
            &slow,
            Exit::Code(0),
            Some(StopReason::ReadyTimeout),
            true,
            t0,
        );
        assert_eq!(restart_delay(a), ms(100));
    }

    #[test]
    fn exits_while_the_app_stops_are_final() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(5, Duration::from_secs(10)), 1);
        let mut always = ChildSpec::new("always", "true").restart(Restart::Always);
        always.main = true;
        // Asked to stop: stopped, whatever its status; the main child does not end the app twice.
        let a = p.after_exit(
            0,
            &always,
            Exit::Signal(15),
            Some(StopReason::App),
            false,
            t0,
        );
        assert_eq!(
            a,
            AfterExit::Down {
                state: ChildState::Stopped,
                ends_app: false
            }
        );
        // Exited by itself before its turn: exited, not restarted.
        let a = p.after_exit(0, &always, Exit::Code(1), None, false, t0);
        assert_eq!(
            a,
            AfterExit::Down {
                state: ChildState::Exited(Exit::Code(1)),
                ends_app: false
            }
        );
    }

    #[test]
    fn backoff_grows_per_child_and_resets_after_the_window() {
        let t0 = Instant::now();
        let within = Duration::from_secs(10);
        let mut p = Policy::new(config(100, within), 2);
        let a = ChildSpec::new("a", "false");
        let b = ChildSpec::new("b", "false");
        let mut delays = Vec::new();
        for k in 0..6 {
            let now = t0 + ms(k * 10);
            delays.push(restart_delay(p.after_exit(
                0,
                &a,
                Exit::Code(1),
                None,
                true,
                now,
            )));
        }
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000].map(ms));
        // Another child's restarts do not lengthen b's backoff.
        let b1 = p.after_exit(1, &b, Exit::Code(1), None, true, t0 + ms(100));
        assert_eq!(restart_delay(b1), ms(100));
        // Once a's restarts are older than the window, it starts over.
        let later = t0 + within + ms(1_000);
        let a7 = p.after_exit(0, &a, Exit::Code(1), None, true, later);
        assert_eq!(restart_delay(a7), ms(100));
    }

    #[test]
    fn the_intensity_limit_counts_every_child_within_the_window() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(3, Duration::from_secs(10)), 2);
        let a = ChildSpec::new("a", "false").restart(Restart::Always);
        let b = ChildSpec::new("b", "false").restart(Restart::Always);
        for (k, (i, spec)) in [(0, &a), (1, &b), (0, &a)].into_iter().enumerate() {
            let now = t0 + ms(k as u64 * 100);
            let r = p.after_exit(i, spec, Exit::Code(0), None, true, now);
            assert!(matches!(r, AfterExit::Restart { .. }), "restart {k}: {r:?}");
        }
        // The fourth within 10 s, whichever child it is, is one too many.
        let r = p.after_exit(1, &b, Exit::Code(1), None, true, t0 + ms(300));
        assert_eq!(
            r,
            AfterExit::GiveUp {
                restarts: 3,
                state: ChildState::Failed(
                    "exited again after 3 restarts within 10s (at most 3)".into()
                )
            }
        );
    }

    #[test]
    fn the_intensity_limit_is_not_reached_by_restarts_spread_over_time() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(2, Duration::from_secs(10)), 1);
        let a = ChildSpec::new("a", "false");
        // Never more than two within any 10 s.
        for at in [0, 5_000, 11_000, 16_000, 22_000, 27_000, 33_000] {
            let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0 + ms(at));
            assert!(matches!(r, AfterExit::Restart { .. }), "at {at} ms: {r:?}");
        }
        // A third within 10 s of the last two.
        let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0 + ms(34_000));
        assert!(matches!(r, AfterExit::GiveUp { restarts: 2, .. }), "{r:?}");
    }

    #[test]
    fn a_zero_limit_gives_up_at_the_first_restart() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(0, Duration::from_secs(10)), 1);
        let a = ChildSpec::new("a", "false");
        let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0);
        assert!(matches!(r, AfterExit::GiveUp { restarts: 0, .. }), "{r:?}");
        // A clean exit under on-failure is no restart, so no give-up either.
        let r = p.after_exit(0, &a, Exit::Code(0), None, true, t0);
        assert!(matches!(r, AfterExit::Down { .. }), "{r:?}");
    }

    #[test]
    fn timeouts_and_grace_default_to_the_config() {
        let t0 = Instant::now();
        let p = Policy::new(SupervisorConfig::default(), 0);
        let mut c = ChildSpec::new("c", "true");
        assert_eq!(p.ready_timeout(&c), Duration::from_secs(30));
        assert_eq!(p.grace(&c), Duration::from_secs(5));
        c.ready_timeout = Some(ms(250));
        c.grace = Some(ms(50));
        assert_eq!(p.ready_deadline(&c, t0), t0 + ms(250));
        assert_eq!(p.grace(&c), ms(50));
    }

    #[test]
    fn each_readiness_has_its_sign() {
        use Readiness::*;
        use Sign::*;
        for (readiness, ready_on) in [
            (Started, Spawned),
            (Notify, Notified),
            (Machines, Registered),
        ] {
            for sign in [Spawned, Notified, Registered] {
                assert_eq!(
                    shows_ready(readiness, sign),
                    sign == ready_on,
                    "{readiness:?} shown {sign:?}"
                );
            }
        }
        let provides = ["orders".to_string(), "payments".to_string()];
        assert!(machines_registered(&provides, |_| true));
        assert!(!machines_registered(&provides, |m| m == "orders"));
    }

    #[test]
    fn dependents_wait_for_their_dependencies_to_be_up() {
        let states = [
            ("db", ChildState::Ready),
            ("migrate", ChildState::Exited(Exit::Code(0))),
            ("cache", ChildState::Starting),
            ("broken", ChildState::Exited(Exit::Code(3))),
            ("failed", ChildState::Failed("cannot run".into())),
            ("stopped", ChildState::Stopped),
            ("flapping", ChildState::Backoff),
        ];
        let state_of = |n: &str| states.iter().find(|(m, _)| *m == n).map(|(_, s)| s);
        let after = |names: &[&str]| -> Deps {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            deps(&names, state_of)
        };
        assert_eq!(after(&[]), Deps::Ready);
        assert_eq!(after(&["db", "migrate"]), Deps::Ready);
        assert_eq!(after(&["db", "cache"]), Deps::Waiting);
        assert_eq!(after(&["flapping"]), Deps::Waiting);
        assert_eq!(
            after(&["cache", "broken"]),
            Deps::Gone("its dependency broken exited with status 3".into())
        );
        assert_eq!(
            after(&["failed"]),
            Deps::Gone("its dependency failed is down for good".into())
        );
        assert_eq!(
            after(&["stopped"]),
            Deps::Gone("its dependency stopped is down for good".into())
        );
    }

    #[test]
    fn a_chain_starts_one_link_at_a_time() {
        // web after api after db: each is let go only once the one before is ready.
        let specs = [
            ChildSpec::new("web", "true").after("api"),
            ChildSpec::new("api", "true").after("db"),
            ChildSpec::new("db", "true"),
        ];
        let mut states = vec![ChildState::Waiting; 3];
        let startable = |states: &[ChildState]| -> Vec<&str> {
            specs
                .iter()
                .zip(states)
                .filter(|(_, s)| **s == ChildState::Waiting)
                .filter(|(spec, _)| {
                    deps(&spec.after, |n| {
                        specs.iter().position(|c| c.name == n).map(|i| &states[i])
                    }) == Deps::Ready
                })
                .map(|(spec, _)| spec.name.as_str())
                .collect()
        };
        assert_eq!(startable(&states), ["db"]);
        states[2] = ChildState::Starting;
        assert!(startable(&states).is_empty());
        states[2] = ChildState::Ready;
        assert_eq!(startable(&states), ["api"]);
        states[1] = ChildState::Ready;
        assert_eq!(startable(&states), ["web"]);
        assert!(!all_up(&states));
        states[0] = ChildState::Ready;
        assert!(all_up(&states));
    }

    #[test]
    fn the_app_is_complete_when_every_child_is_down_for_good() {
        let ok = Exit::Code(0);
        assert_eq!(
            completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Ready)]),
            None
        );
        assert_eq!(
            completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Backoff)]),
            None
        );
        assert_eq!(
            completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Stopped)]),
            Some(vec![])
        );
        let failures = completed([
            ("a", &ChildState::Exited(Exit::Signal(9))),
            ("b", &ChildState::Failed("not ready within 1s".into())),
            ("c", &ChildState::Exited(ok)),
        ]);
        assert_eq!(
            failures,
            Some(vec![
                ("a".into(), "signal SIGKILL".into()),
                ("b".into(), "not ready within 1s".into())
            ])
        );
    }

    #[test]
    fn only_children_without_a_process_are_stopped_at_once() {
        assert!(stopped_at_once(&ChildState::Waiting));
        assert!(stopped_at_once(&ChildState::Backoff));
        for s in [
            ChildState::Starting,
            ChildState::Ready,
            ChildState::Stopping,
            ChildState::Stopped,
        ] {
            assert!(!stopped_at_once(&s), "{s:?}");
        }
    }

    #[test]
    fn sigkill_follows_after_the_grace_period() {
        let t0 = Instant::now();
        let mut s = Stop::new(StopReason::App, t0, ms(500));
        assert_eq!(s.deadline(), Some(t0 + ms(500)));
        assert!(!s.kill_due(t0));
        assert!(!s.kill_due(t0 + ms(499)));
        assert!(s.kill_due(t0 + ms(500)));
        s.killed = true;
        assert!(!s.kill_due(t0 + ms(600)));
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn the_app_stops_in_reverse_start_order_one_at_a_time() {
        use Proc::*;
        // Started in the order 2, 0, 1 (by readiness, not by position).
        let order = [2, 0, 1];
        assert_eq!(next_stop(&order, &[Up, Up, Up]), StopStep::Stop(1));
        assert_eq!(next_stop(&order, &[Up, Stopping, Up]), StopStep::Wait);
        assert_eq!(next_stop(&order, &[Up, Down, Up]), StopStep::Stop(0));
        assert_eq!(next_stop(&order, &[Down, Down, Up]), StopStep::Stop(2));
        assert_eq!(next_stop(&order, &[Down, Down, Down]), StopStep::Done);
        // A child stopping for another reason (its ready timeout) is waited for too.
        assert_eq!(next_stop(&[0, 1], &[Stopping, Up]), StopStep::Wait);
        // Never started: nothing to stop.
        assert_eq!(next_stop(&[], &[Down, Down]), StopStep::Done);
    }
}
