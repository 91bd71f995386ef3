//! What the supervisor reports: how a process ended, where each child is, why the supervisor
//! finished, and the events it queues.

use std::fmt;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
    /// As a shell reports it: the status, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "status {c}"),
            Exit::Signal(s) => write!(f, "signal {}", signal_name(s)),
        }
    }
}

/// `SIGTERM`, `SIGKILL`, ... or the number.
pub fn signal_name(s: i32) -> String {
    let name = match s {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return s.to_string(),
    };
    name.to_string()
}

/// Where a child is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildState {
    /// Not started: waiting for its dependencies.
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Ready.
    Ready,
    /// Exited; restarts when its backoff ends.
    Backoff,
    /// Asked to stop (SIGTERM sent; SIGKILL after the grace period).
    Stopping,
    /// Exited by itself and not restarted.
    Exited(Exit),
    /// Stopped by the supervisor (or never started because the app stopped first).
    Stopped,
    /// Could not start, or will not be restarted: why.
    Failed(String),
}

impl ChildState {
    /// Whether it will not run again.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ChildState::Exited(_) | ChildState::Stopped | ChildState::Failed(_)
        )
    }
    /// A short word for status lines.
    pub fn word(&self) -> &'static str {
        match self {
            ChildState::Waiting => "waiting",
            ChildState::Starting => "starting",
            ChildState::Ready => "ready",
            ChildState::Backoff => "backoff",
            ChildState::Stopping => "stopping",
            ChildState::Exited(e) if e.success() => "done",
            ChildState::Exited(_) => "exited",
            ChildState::Stopped => "stopped",
            ChildState::Failed(_) => "failed",
        }
    }
}

/// A child as the supervisor sees it now.
#[derive(Clone, Debug)]
pub struct ChildStatus {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: ChildState,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// When it entered its state.
    pub since: Instant,
    /// How its last run ended.
    pub last_exit: Option<Exit>,
    /// The last `STATUS=` it sent to its notification socket.
    pub status_text: Option<String>,
    /// When its restart is due (in [`ChildState::Backoff`]).
    pub restart_at: Option<Instant>,
}

/// Why the supervisor finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every child finished by itself; these did not succeed.
    Completed {
        /// `(child, how it ended)` for each child that failed.
        failures: Vec<(String, String)>,
    },
    /// A `main` child finished; the others were stopped.
    MainExited {
        /// The child.
        child: String,
        /// How it ended.
        exit: Exit,
    },
    /// Stopped on request.
    Stopped {
        /// Who asked: `SIGINT`, `SIGTERM`, or the caller's reason.
        reason: String,
    },
    /// Restarts exceeded the intensity limit.
    GaveUp {
        /// The child whose exit went over the limit.
        child: String,
        /// The restarts counted.
        restarts: u32,
        /// The window.
        within: Duration,
    },
    /// A child could not be started.
    Failed {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// Whether this is a success (for an exit status).
    pub fn success(&self) -> bool {
        match self {
            Outcome::Completed { failures } => failures.is_empty(),
            Outcome::MainExited { exit, .. } => exit.success(),
            Outcome::Stopped { .. } => true,
            Outcome::GaveUp { .. } | Outcome::Failed { .. } => false,
        }
    }
    /// The exit status for a command: 0 on success, the main child's status, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::MainExited { exit, .. } => exit.code().clamp(0, 255) as u8,
            o if o.success() => 0,
            _ => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { failures } if failures.is_empty() => {
                write!(f, "every process finished successfully")
            }
            Outcome::Completed { failures } => {
                let list: Vec<_> = failures.iter().map(|(c, e)| format!("{c} ({e})")).collect();
                write!(f, "every process finished; failed: {}", list.join(", "))
            }
            Outcome::MainExited { child, exit } => write!(f, "{child} finished with {exit}"),
            Outcome::Stopped { reason } => write!(f, "stopped ({reason})"),
            Outcome::GaveUp {
                child,
                restarts,
                within,
            } => write!(
                f,
                "gave up: {restarts} restarts within {within:?} (the last exit was {child}'s)"
            ),
            Outcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// Something the supervisor did or saw, in order (see [`Supervisor::next_event`](super::Supervisor::next_event)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A child was started.
    Spawned {
        /// The child.
        child: String,
        /// Its process id.
        pid: u32,
    },
    /// A child became ready.
    Ready {
        /// The child.
        child: String,
        /// How it showed it (`machines a, b registered`, `READY=1`, `started`).
        how: String,
    },
    /// Every child is ready (or finished successfully), the first time.
    AllReady,
    /// A child's `STATUS=` notification.
    Status {
        /// The child.
        child: String,
        /// The text.
        text: String,
    },
    /// A line a child wrote.
    Output {
        /// The child.
        child: String,
        /// From stderr (else stdout).
        stderr: bool,
        /// The line, without its newline.
        line: String,
    },
    /// A child exited (and was reaped).
    Exited {
        /// The child.
        child: String,
        /// Its process id.
        pid: u32,
        /// How.
        exit: Exit,
        /// The supervisor had asked it to stop.
        requested: bool,
    },
    /// A child will be restarted.
    Restarting {
        /// The child.
        child: String,
        /// After this backoff.
        delay: Duration,
        /// Its restart count, this one included.
        restart: u32,
    },
    /// A child did not become ready in time; it is being stopped.
    NotReady {
        /// The child.
        child: String,
        /// The timeout.
        after: Duration,
    },
    /// A signal was sent to a child's process group.
    Signalled {
        /// The child.
        child: String,
        /// `SIGTERM` or `SIGKILL`.
        signal: &'static str,
    },
    /// Restarts went over the intensity limit; the supervisor stops everything.
    GaveUp {
        /// The child whose exit went over.
        child: String,
        /// The restarts counted in the window.
        restarts: u32,
        /// The window.
        within: Duration,
    },
    /// The supervisor began to stop every child.
    Stopping {
        /// Why.
        reason: String,
    },
    /// A log line of the bus node, or a note (a failed start, a dependency gone).
    Log(String),
    /// Every child is down: the supervisor is done.
    Finished(Outcome),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_like_a_shell() {
        assert_eq!(Exit::Code(3).to_string(), "status 3");
        assert_eq!(Exit::Signal(9).to_string(), "signal SIGKILL");
        assert_eq!(Exit::Signal(15).code(), 143);
        assert!(Outcome::Stopped {
            reason: "SIGINT".into()
        }
        .success());
        assert_eq!(
            Outcome::MainExited {
                child: "x".into(),
                exit: Exit::Code(4)
            }
            .exit_code(),
            4
        );
    }
}
