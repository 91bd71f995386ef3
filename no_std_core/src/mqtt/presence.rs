//! Which nodes are there: a node's status topic read precisely enough that a broker restart
//! is not taken for the node leaving.
//!
//! A bridge's status (`P/N/status`, retained) names two numbers:
//!
//! - its **run**: what messages sent to the node are stamped with (the `incarnation` of
//!   [`super::delivery::InboxMessage::Message`]). The node passes on only messages stamped
//!   with its current run (see [`sent_to_this_run`]); across one run it keeps what it needs
//!   to de-duplicate and answer them, so a message sent to its run is answered however many
//!   times its connection to the broker is made again. A run begins when the bridge starts,
//!   and again when it comes back from an absence after which others may have given up on
//!   it, or the broker lost its session (what was queued for it is gone):
//!   [`resumes_run`];
//! - its **connection**: a number that grows with every connection the node makes (the
//!   wall clock in milliseconds at the CONNECT, above the previous one).
//!
//! The statuses ([`NodeStatus`]): `up:RUN:CONNECTION` when the bridge connects;
//! `down:CONNECTION` its last will, which the broker publishes when that connection ends
//! without a DISCONNECT (a killed bridge, a lost host, but also every connection of a broker
//! that shuts down or restarts); bare `down` a clean stop.
//!
//! The rule ([`Presence`]), applied by every bridge to every other node:
//!
//! - a **will** older than the node's current connection is ignored (it comes after the
//!   node connected again); otherwise the node is **absent**: its machines stay, the messages
//!   waiting for its answer stay, new messages for it wait, until it comes back or `grace`
//!   passes;
//! - back within the grace **in the same run**: nothing failed, nothing to do (the broker
//!   kept its session; it answers what it was sent);
//! - **a new run** (restarted, or back after the grace, or its session lost): what waited
//!   for its answer fails (`node-unreachable`), as it drops what was sent to its earlier run;
//! - **the grace passed** with the node absent, or a clean stop: the node is **down**: what
//!   waits fails, its machines leave.
//!
//! A node judges its own absence by the same grace: it starts a new run when it was away
//! (from the last packet it had from the broker to the next CONNACK) for more than half of
//! it, so that a node that others gave up on never passes on what they were told had failed.
//! Every node of a prefix must therefore use the same grace.

use core::fmt::Write;

use crate::{Duration, Instant};

/// A node's status, as its status topic carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// `up:RUN:CONNECTION`: connected. An older bridge's `up:N` reads as run and connection
    /// `N`, a bare `up` as 0 and 0.
    Up {
        /// Its run (what messages for it are stamped with).
        run: u64,
        /// Its connection.
        connection: u64,
    },
    /// `down:CONNECTION`: the last will of that connection.
    Lost {
        /// The connection that ended.
        connection: u64,
    },
    /// `down`: it stopped cleanly (or an older bridge's will).
    Stopped,
}

/// The status payload of a connected bridge.
pub fn status_up(run: u64, connection: u64) -> heapless::String<48> {
    let mut s = heapless::String::new();
    // 4 + 20 + 1 + 20 bytes fit.
    let _ = write!(s, "up:{run}:{connection}");
    s
}

/// The last will of a bridge's connection.
pub fn status_lost(connection: u64) -> heapless::String<32> {
    let mut s = heapless::String::new();
    // 5 + 20 bytes fit.
    let _ = write!(s, "down:{connection}");
    s
}

/// The status payload of a clean stop.
pub const STATUS_STOPPED: &[u8] = super::bridge::STATUS_DOWN;

/// Reads a status payload (`None`: not one).
pub fn parse_status(payload: &[u8]) -> Option<NodeStatus> {
    let text = core::str::from_utf8(payload).ok()?;
    let number = |s: &str| s.parse::<u64>().ok();
    match text {
        "down" => Some(NodeStatus::Stopped),
        "up" => Some(NodeStatus::Up {
            run: 0,
            connection: 0,
        }),
        _ => {
            if let Some(rest) = text.strip_prefix("down:") {
                return Some(NodeStatus::Lost {
                    connection: number(rest)?,
                });
            }
            let rest = text.strip_prefix("up:")?;
            match rest.split_once(':') {
                Some((run, connection)) => Some(NodeStatus::Up {
                    run: number(run)?,
                    connection: number(connection)?,
                }),
                None => {
                    let n = number(rest)?;
                    Some(NodeStatus::Up {
                        run: n,
                        connection: n,
                    })
                }
            }
        }
    }
}

/// Whether a message stamped with run `sent_to` may be passed on by a node in run
/// `current` (0 on either side: not known, accepted).
pub fn sent_to_this_run(sent_to: u64, current: u64) -> bool {
    sent_to == 0 || current == 0 || sent_to == current
}

/// Whether a node that connected again goes on with its run: not when the broker had no
/// session for it (`session_present` false: what was queued for it is gone), nor when it
/// was `away` (from the last packet it had from the broker to this CONNACK) for more than
/// half of `grace` (the others may have given it up, and failed what they sent it). The
/// first connection of a bridge always begins a run.
pub fn resumes_run(first: bool, session_present: bool, away: Duration, grace: Duration) -> bool {
    !first && session_present && away.as_millis().saturating_mul(2) <= grace.as_millis()
}

/// What a status means for the node's machines and for the messages waiting for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing changes (a will older than the node's connection, a status seen already).
    Nothing,
    /// The node is up in the run it was known in (`back`: after an absence): nothing
    /// failed; messages for it go, stamped with its run.
    Up {
        /// It was absent (or down) before.
        back: bool,
    },
    /// The node is up in another run than the one known: what waits for its answer fails
    /// (it drops messages sent to its earlier run); then as [`Change::Up`].
    NewRun,
    /// Its connection ended: messages for it wait, its machines stay, for up to the grace.
    Absent,
    /// It left (a clean stop, a will of a node never seen up, or the grace passed): what
    /// waits for its answer fails, its machines leave.
    Down,
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Absent { since: Instant },
    Down,
}

#[derive(Clone, Copy, Debug)]
struct Entry<D> {
    node: D,
    run: u64,
    connection: u64,
    state: State,
}

/// The other nodes as this node sees them (see the module docs). `D` names a node.
pub struct Presence<D, const N: usize> {
    nodes: heapless::Vec<Entry<D>, N>,
    grace: Duration,
}

impl<D: Copy + Eq, const N: usize> Presence<D, N> {
    /// An empty table; a node absent for `grace` is down.
    pub const fn new(grace: Duration) -> Self {
        Presence {
            nodes: heapless::Vec::new(),
            grace,
        }
    }

    /// The grace.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    fn entry(&mut self, node: D) -> Option<&mut Entry<D>> {
        self.nodes.iter_mut().find(|e| e.node == node)
    }

    /// Node `node`'s status arrived at `now`: what it changes.
    pub fn status(&mut self, node: D, status: NodeStatus, now: Instant) -> Result<Change, Full> {
        let Some(e) = self.entry(node) else {
            let (run, connection, state, change) = match status {
                NodeStatus::Up { run, connection } => {
                    (run, connection, State::Up, Change::Up { back: false })
                }
                // Never seen up: nothing waits for it, and its machines do not count.
                NodeStatus::Lost { connection } => (0, connection, State::Down, Change::Down),
                NodeStatus::Stopped => (0, 0, State::Down, Change::Down),
            };
            self.nodes
                .push(Entry {
                    node,
                    run,
                    connection,
                    state,
                })
                .map_err(|_| Full)?;
            return Ok(change);
        };
        Ok(match status {
            NodeStatus::Stopped => {
                if e.state == State::Down {
                    Change::Nothing
                } else {
                    e.state = State::Down;
                    Change::Down
                }
            }
            // The will of a connection older than the one it made since.
            NodeStatus::Lost { connection } if connection < e.connection => Change::Nothing,
            NodeStatus::Lost { connection } => {
                e.connection = connection;
                match e.state {
                    State::Up => {
                        e.state = State::Absent { since: now };
                        Change::Absent
                    }
                    State::Absent { .. } | State::Down => Change::Nothing,
                }
            }
            // An up older than a connection already seen (not sent by a broker in order; kept
            // from being taken for news).
            NodeStatus::Up { connection, .. } if connection < e.connection => Change::Nothing,
            NodeStatus::Up { run, connection } => {
                let back = e.state != State::Up;
                e.connection = connection;
                e.state = State::Up;
                if run != e.run {
                    e.run = run;
                    Change::NewRun
                } else {
                    Change::Up { back }
                }
            }
        })
    }

    /// An absent node whose grace passed by `now`: it is down now (call again for more).
    pub fn expired(&mut self, now: Instant) -> Option<D> {
        let grace = self.grace;
        let e = self
            .nodes
            .iter_mut()
            .find(|e| matches!(e.state, State::Absent { since } if since + grace <= now))?;
        e.state = State::Down;
        Some(e.node)
    }

    /// When the first absent node's grace passes (`None`: none absent).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter_map(|e| match e.state {
                State::Absent { since } => Some(since + self.grace),
                _ => None,
            })
            .min()
    }

    /// The run messages for `node` are stamped with, while it is up or absent.
    pub fn run_of(&self, node: D) -> Option<u64> {
        self.nodes
            .iter()
            .find(|e| e.node == node && e.state != State::Down)
            .map(|e| e.run)
    }

    /// Whether `node` is up: messages for it go now.
    pub fn is_up(&self, node: D) -> bool {
        self.nodes
            .iter()
            .any(|e| e.node == node && e.state == State::Up)
    }

    /// Whether `node` is absent: up to the grace, its machines stay and messages wait.
    pub fn is_absent(&self, node: D) -> bool {
        self.nodes
            .iter()
            .any(|e| e.node == node && matches!(e.state, State::Absent { .. }))
    }

    /// Whether `node`'s machines count (it is up, or absent within the grace).
    pub fn counts(&self, node: D) -> bool {
        self.nodes
            .iter()
            .any(|e| e.node == node && e.state != State::Down)
    }
}
