//! The platform's one error type.

use std::fmt;
use std::path::PathBuf;

/// Everything the platform layer can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlatformError {
    /// A system call failed on a path or a thing named by `what`.
    Io {
        /// What was being done, e.g. "binding the hub socket".
        what: String,
        /// The path involved, if any.
        path: Option<PathBuf>,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bus directory is not safe to use (wrong owner or permissions).
    UnsafeBusDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A hub is already serving this bus (asked to be the hub).
    HubRunning {
        /// Its socket.
        path: PathBuf,
    },
    /// No hub serves this bus (asked to be a client only).
    NoHub {
        /// The socket that was tried.
        path: PathBuf,
    },
    /// The hub refused this process.
    Rejected {
        /// The hub's reason.
        message: String,
    },
    /// A machine id is already in use in this node or on the bus.
    MachineIdTaken {
        /// The id.
        id: String,
    },
    /// A machine id is empty, longer than 64 bytes, or has control characters.
    BadMachineId {
        /// The id.
        id: String,
    },
    /// The node has as many machine ids (machines and ports) as it can register.
    TooManyIds {
        /// The id that did not fit.
        id: String,
        /// How many ids a node registers at most.
        limit: usize,
    },
    /// A chart has more states (or history slots) than the largest machine a node sizes for
    /// it ([`crate::node::LargeHostedMachine`]).
    ChartTooLarge {
        /// States in the chart.
        states: usize,
        /// States the largest hosted machine holds.
        limit: usize,
    },
    /// A topic subscription was refused.
    Subscription {
        /// The subscribing machine or port.
        machine: String,
        /// The filter.
        filter: String,
        /// Why.
        problem: String,
    },
    /// A chart or machine error from the core.
    Core(interstate_core::Error),
    /// A machine's journal (see [`crate::journal`]) cannot be used.
    Journal {
        /// The machine.
        machine: String,
        /// Its journal file.
        path: PathBuf,
        /// What is wrong, and what to do about it.
        problem: String,
    },
    /// An environment variable has a value this layer does not accept.
    BadSetting {
        /// The variable, e.g. `INTERSTATE_TRANSPORT`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it accepts.
        allowed: &'static str,
    },
    /// An invoked service's queue of events for its parent (or a blocking service's inbox)
    /// is full.
    ServiceQueueFull {
        /// The service's machine id (`parent/invoke-id`).
        service: String,
        /// How many events the queue holds.
        capacity: usize,
    },
    /// A port of this node holds as many unread messages from this process as it may
    /// ([`NodeConfig::port_queue`](crate::node::NodeConfig::port_queue)): only its reader
    /// makes room, so the send is refused instead of waiting.
    PortQueueFull {
        /// The port.
        port: String,
        /// How many messages it holds.
        capacity: usize,
    },
    /// An invoked service was stopped (its state was exited) or has ended (done or failed):
    /// it sends nothing more.
    ServiceEnded {
        /// The service's machine id (`parent/invoke-id`).
        service: String,
    },
}

impl PlatformError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: Option<&std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        PlatformError::Io {
            what: what.into(),
            path: path.map(PathBuf::from),
            source,
        }
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Io {
                what,
                path: Some(p),
                source,
            } => write!(f, "{what} ({}): {source}", p.display()),
            PlatformError::Io {
                what,
                path: None,
                source,
            } => write!(f, "{what}: {source}"),
            PlatformError::UnsafeBusDir { path, problem } => {
                write!(f, "bus directory {} is not safe: {problem}", path.display())
            }
            PlatformError::HubRunning { path } => {
                write!(f, "a hub is already serving this bus at {}", path.display())
            }
            PlatformError::NoHub { path } => {
                write!(f, "no hub serves this bus ({}): start one with `interstate hub` or use the auto role", path.display())
            }
            PlatformError::Rejected { message } => {
                write!(f, "the hub refused this process: {message}")
            }
            PlatformError::MachineIdTaken { id } => {
                write!(f, "machine id '{id}' is already in use on this bus")
            }
            PlatformError::BadMachineId { id } => {
                write!(
                    f,
                    "machine id '{id}' is not valid: 1 to 64 bytes without control characters"
                )
            }
            PlatformError::TooManyIds { id, limit } => write!(
                f,
                "cannot register '{id}': this process already has {limit} machine ids, the most \
                 one node registers; spread the machines over more processes"
            ),
            PlatformError::ChartTooLarge { states, limit } => write!(
                f,
                "the chart has {states} states (or more history slots than machines hold); a node \
                 sizes machines for at most {limit} states and 1024 history slots: split the \
                 chart, or in Rust build a larger Machine and add it with Node::add_sized_machine"
            ),
            PlatformError::Subscription {
                machine,
                filter,
                problem,
            } => write!(f, "cannot subscribe '{machine}' to '{filter}': {problem}"),
            PlatformError::Core(e) => write!(f, "{e}"),
            PlatformError::Journal {
                machine,
                path,
                problem,
            } => write!(
                f,
                "machine '{machine}': its journal {} cannot be used: {problem}",
                path.display()
            ),
            PlatformError::BadSetting {
                variable,
                value,
                allowed,
            } => write!(
                f,
                "{variable} is set to '{value}', which is not a valid value: {allowed}"
            ),
            PlatformError::ServiceQueueFull { service, capacity } => write!(
                f,
                "service '{service}': its queue of {capacity} events is full; the node drains \
                 it at each loop turn: send less at once, or wait and send again"
            ),
            PlatformError::PortQueueFull { port, capacity } => write!(
                f,
                "port '{port}' holds {capacity} unread messages from this process already \
                 (NodeConfig::port_queue): its reader must take some (recv_port) before it \
                 is sent more"
            ),
            PlatformError::ServiceEnded { service } => write!(
                f,
                "service '{service}' has stopped (its invoking state was exited, or it ended): \
                 it sends nothing more"
            ),
        }
    }
}

impl std::error::Error for PlatformError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlatformError::Io { source, .. } => Some(source),
            PlatformError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<interstate_core::Error> for PlatformError {
    fn from(e: interstate_core::Error) -> Self {
        PlatformError::Core(e)
    }
}
