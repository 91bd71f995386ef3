//! The gateway's bus side: one thread owning an ordinary, synchronous bus client (a
//! [`Node`] in the client role), fed by the async side through a bounded command channel and
//! woken by a [`mio::Waker`] in the node's own event loop. Answers go back on oneshot
//! channels; stream events on bounded channels, each stream's flow held by its client's
//! acknowledgements (the window) and by its channel's room.
//!
//! Every call leaves from a machine id the gateway registered: its own port
//! (`interstate-grpc.<pid>`) or an id a Receive stream registered. The bus's rules apply as to
//! any client: the hub refuses an id another process holds, and a message is acknowledged to
//! its sender only when the gRPC client acknowledged it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use interstate_core::{Correlation, Duration};
use interstate_platform::node::{Node, NodeConfig, Role, USER_TOKEN_BASE};
use interstate_platform::{MachineInfo, PortMessage, DELIVERY_ERROR_EVENT, REQUEST_ERROR_EVENT};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::pb;
use crate::status::{from_platform, from_request_error};

/// Who made a call: a stream's ids may be sent from only by calls of the same peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A process on this machine, over the Unix socket (the kernel's `SO_PEERCRED`).
    Process {
        /// Its user id.
        uid: u32,
        /// Its process id.
        pid: i32,
    },
    /// A TCP connection (TLS), by its remote address.
    Remote(std::net::SocketAddr),
    /// Not known (no credentials came with the call): may not send as a stream's id.
    Unknown,
}

/// Events of a Receive stream, to its gRPC response.
pub type EventSender = mpsc::Sender<Result<pb::ReceiveResponse, Status>>;
/// Changes for a WatchMachines stream.
pub type ChangeSender = mpsc::Sender<Result<pb::MachineChange, Status>>;
type Answer<T> = oneshot::Sender<Result<T, Status>>;

/// A call for the bus thread.
pub enum Command {
    /// `Send`.
    Send {
        /// Who called.
        peer: Peer,
        /// The request.
        req: pb::SendRequest,
        /// Where the answer goes.
        answer: Answer<pb::SendReply>,
    },
    /// `Request`.
    Request {
        /// The request.
        req: pb::RequestRequest,
        /// Where the reply goes.
        answer: Answer<pb::RequestReply>,
    },
    /// `Publish`.
    Publish {
        /// Who called.
        peer: Peer,
        /// The request.
        req: pb::PublishRequest,
        /// Where the answer goes.
        answer: Answer<pb::PublishReply>,
    },
    /// A Receive stream's `Register`.
    Open {
        /// The stream's number.
        stream: u64,
        /// Who opened it.
        peer: Peer,
        /// The registration.
        register: pb::Register,
        /// Where its events go.
        events: EventSender,
    },
    /// A Receive stream's `Ack`.
    Ack {
        /// The stream.
        stream: u64,
        /// Up to and including this delivery number.
        delivery: u64,
    },
    /// A Receive stream's `Reply`.
    Reply {
        /// The stream.
        stream: u64,
        /// The reply.
        reply: pb::Reply,
    },
    /// A Receive stream ended: its ids leave the bus.
    Close {
        /// The stream.
        stream: u64,
    },
    /// `ListMachines`.
    List {
        /// Where the list goes.
        answer: Answer<pb::ListMachinesReply>,
    },
    /// `WatchMachines`.
    Watch {
        /// Where the changes go.
        changes: ChangeSender,
    },
    /// `Status`.
    Status {
        /// Where the status goes.
        answer: Answer<pb::StatusReply>,
    },
}

/// The async side's handle on the bus thread.
#[derive(Clone)]
pub struct BusHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl BusHandle {
    /// Hands `command` to the bus thread (waiting for room in the channel) and wakes it.
    pub async fn call(&self, command: Command) -> Result<(), Status> {
        self.commands
            .send(command)
            .await
            .map_err(|_| crate::status::bus_gone())?;
        self.waker.wake().map_err(|_| crate::status::bus_gone())
    }

    /// Resolves once the bus thread has stopped (its link to the bus failed for good).
    pub async fn stopped(&self) {
        self.commands.closed().await
    }

    /// [`BusHandle::call`] from a context that cannot wait (a stream's drop): dropped when the
    /// channel is full (the bus thread then still closes the stream when its events channel
    /// is found closed).
    pub fn try_call(&self, command: Command) {
        if self.commands.try_send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Commands waiting for the bus thread, at most.
const COMMANDS: usize = 256;
/// Events a stream's channel holds before the bus thread stops reading for it.
pub const STREAM_CHANNEL: usize = 16;
/// A Receive stream's window when its `Register` names none.
const DEFAULT_WINDOW: u32 = 64;
/// Ids one Receive stream registers, at most.
const STREAM_IDS: usize = 64;
/// Requests that came to a stream and wait for its `Reply`, at most (the oldest is
/// forgotten beyond it: its requester then times out).
const STREAM_REQUESTS: usize = 256;
/// A request's timeout when the call names none.
const DEFAULT_TIMEOUT_MS: u32 = 5_000;
const WAKE: mio::Token = mio::Token(USER_TOKEN_BASE);

/// Starts the bus thread on `config` (a client of a running hub). Returns once it is
/// connected, with its handle, or with why it could not connect.
pub fn start(config: NodeConfig) -> Result<(BusHandle, std::thread::JoinHandle<()>), String> {
    let (commands, rx) = mpsc::channel(COMMANDS);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("interstate-bus".into())
        .spawn(move || {
            let mut config = config;
            config.role = Role::Client;
            let bus = match Gateway::new(config) {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let waker = match mio::Waker::new(bus.node.poll_registry(), WAKE) {
                Ok(w) => Arc::new(w),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("creating the bus thread's waker: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(waker));
            bus.run(rx);
        })
        .map_err(|e| format!("starting the bus thread: {e}"))?;
    let waker = ready_rx
        .recv()
        .map_err(|_| "the bus thread stopped while connecting".to_string())??;
    Ok((BusHandle { commands, waker }, thread))
}

/// A request of the gateway's port waiting for its reply.
struct Pending {
    to: String,
    event: String,
    answer: Answer<pb::RequestReply>,
}

/// A Receive stream as the bus thread holds it.
struct Stream {
    peer: Peer,
    ids: Vec<String>,
    window: usize,
    next_delivery: u64,
    /// Events sent to the client and not acknowledged yet, oldest first.
    unacked: VecDeque<(u64, PortMessage)>,
    /// Requests sent to the client, waiting for its `Reply`, by delivery number.
    requests: VecDeque<(u64, PortMessage)>,
    events: EventSender,
    /// Which of `ids` to read first next time (so that no id starves the others).
    turn: usize,
}

struct Gateway {
    node: Node,
    port: String,
    pending: HashMap<u32, Pending>,
    streams: HashMap<u64, Stream>,
    /// Registered id -> its stream.
    owners: HashMap<String, u64>,
    watchers: Vec<ChangeSender>,
    /// The registry as the watchers last heard it.
    known: HashMap<String, MachineInfo>,
}

fn machine(m: &MachineInfo) -> pb::Machine {
    pb::Machine {
        id: m.machine.clone(),
        pid: m.pid,
        uid: m.uid,
        executable: m.executable.clone(),
        transport: format!("{:?}", m.transport),
        since_ms: m.since_ms,
    }
}

impl Gateway {
    fn new(config: NodeConfig) -> Result<Gateway, String> {
        let bus = config.bus.clone();
        let mut node = Node::new(config).map_err(|e| match e {
            interstate_platform::PlatformError::NoHub { path } => format!(
                "no hub serves bus '{bus}' ({}): the gateway joins a running hub; start one \
                 with `interstate hub`",
                path.display()
            ),
            e => e.to_string(),
        })?;
        let port = format!("interstate-grpc.{}", std::process::id());
        node.open_port(&port).map_err(|e| e.to_string())?;
        let synced = node
            .run_until(StdDuration::from_secs(5), |n| n.registry_synced())
            .map_err(|e| e.to_string())?;
        if !synced {
            return Err("the hub did not send its registry within 5 s".into());
        }
        Ok(Gateway {
            node,
            port,
            pending: HashMap::new(),
            streams: HashMap::new(),
            owners: HashMap::new(),
            watchers: Vec::new(),
            known: HashMap::new(),
        })
    }

    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            // Short turns while a stream waits for room in its channel (the async side
            // cannot wake this thread when it drains one); the waker covers the rest.
            let blocked = self
                .streams
                .values()
                .any(|s| s.events.capacity() == 0 && s.unacked.len() < s.window);
            let wait = if blocked { 5 } else { 200 };
            if let Err(e) = self
                .node
                .run_once_with(Some(StdDuration::from_millis(wait)), &mut |_| {})
            {
                eprintln!("interstate-grpc: the bus link failed: {e}");
                return;
            }
            loop {
                match commands.try_recv() {
                    Ok(c) => self.handle(c),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.node.shutdown();
                        return;
                    }
                }
            }
            self.read_own_port();
            self.feed_streams();
            self.tell_watchers();
            // What the commands sent and acknowledged goes out now, not after the next wait.
            self.node.flush();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Send { peer, req, answer } => {
                let _ = answer.send(self.send(&peer, req));
            }
            Command::Request { req, answer } => self.request(req, answer),
            Command::Publish { peer, req, answer } => {
                let _ = answer.send(self.publish(&peer, req));
            }
            Command::Open {
                stream,
                peer,
                register,
                events,
            } => self.open(stream, peer, register, events),
            Command::Ack { stream, delivery } => self.ack(stream, delivery),
            Command::Reply { stream, reply } => self.reply(stream, reply),
            Command::Close { stream } => self.close(stream),
            Command::List { answer } => {
                let mut machines: Vec<_> = self
                    .node
                    .registry()
                    .entries()
                    .iter()
                    .filter(|m| m.machine != self.port)
                    .map(machine)
                    .collect();
                machines.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = answer.send(Ok(pb::ListMachinesReply { machines }));
            }
            Command::Watch { changes } => self.watch(changes),
            Command::Status { answer } => {
                let _ = answer.send(Ok(self.status()));
            }
        }
    }

    /// The port to send from: the gateway's own, or a stream's id the same peer registered.
    fn sender(&self, peer: &Peer, from: &str) -> Result<String, Status> {
        if from.is_empty() {
            return Ok(self.port.clone());
        }
        let owned = self
            .owners
            .get(from)
            .and_then(|s| self.streams.get(s))
            .is_some_and(|s| &s.peer == peer && *peer != Peer::Unknown);
        if owned {
            Ok(from.to_string())
        } else {
            Err(Status::permission_denied(format!(
                "'{from}' is not an id registered by an open Receive stream of this client: \
                 register it first (Receive), or leave `from` empty"
            )))
        }
    }

    fn send(&mut self, peer: &Peer, req: pb::SendRequest) -> Result<pb::SendReply, Status> {
        let from = self.sender(peer, &req.from)?;
        if !self.node.registry().contains(&req.to) {
            return Err(Status::not_found(format!(
                "no machine '{}' is registered on bus '{}' (ListMachines shows what is)",
                req.to,
                self.node.config().bus
            )));
        }
        let seq = self
            .node
            .send_from_port(&from, &req.to, &req.event, &req.data)
            .map_err(|e| from_platform(&e))?;
        Ok(pb::SendReply { seq })
    }

    fn publish(
        &mut self,
        peer: &Peer,
        req: pb::PublishRequest,
    ) -> Result<pb::PublishReply, Status> {
        let from = self.sender(peer, &req.from)?;
        let n = self
            .node
            .publish_from_port(&from, &req.topic, &req.event, &req.data)
            .map_err(|e| from_platform(&e))?;
        Ok(pb::PublishReply {
            subscribers: u32::try_from(n).unwrap_or(u32::MAX),
        })
    }

    fn request(&mut self, req: pb::RequestRequest, answer: Answer<pb::RequestReply>) {
        let ms = if req.timeout_ms == 0 {
            DEFAULT_TIMEOUT_MS
        } else {
            req.timeout_ms
        };
        // An unknown target is the bus's to report: the request fails as `unknown-target`.
        match self.node.request_from_port(
            &self.port,
            &req.to,
            &req.event,
            &req.data,
            Duration::from_millis(u64::from(ms)),
        ) {
            Ok(id) => {
                self.pending.insert(
                    id.0,
                    Pending {
                        to: req.to,
                        event: req.event,
                        answer,
                    },
                );
            }
            Err(e) => {
                let _ = answer.send(Err(from_platform(&e)));
            }
        }
    }

    /// Replies and failures for the gateway's own port.
    fn read_own_port(&mut self) {
        while let Some(m) = self.node.recv_port_unacknowledged(&self.port) {
            self.node.acknowledge_port(&m);
            if let Correlation::Reply(id) = m.correlation {
                if let Some(p) = self.pending.remove(&id) {
                    let result = if m.event == REQUEST_ERROR_EVENT {
                        Err(from_request_error(&p.to, &p.event, &m.payload))
                    } else {
                        Ok(pb::RequestReply {
                            event: m.event,
                            from: m.from,
                            data: m.payload,
                        })
                    };
                    let _ = p.answer.send(result);
                    continue;
                }
            }
            if m.event == DELIVERY_ERROR_EVENT {
                eprintln!(
                    "interstate-grpc: a Send was not delivered: {}",
                    String::from_utf8_lossy(&m.payload)
                );
            }
        }
    }

    fn open(&mut self, stream: u64, peer: Peer, register: pb::Register, events: EventSender) {
        let fail = |events: &EventSender, status: Status| {
            let _ = events.try_send(Err(status));
        };
        if register.ids.is_empty() || register.ids.len() > STREAM_IDS {
            return fail(
                &events,
                Status::invalid_argument(format!(
                    "Register names {} ids: name 1 to {STREAM_IDS}",
                    register.ids.len()
                )),
            );
        }
        let mut opened: Vec<String> = Vec::new();
        for id in &register.ids {
            if let Err(e) = self.node.open_port(id) {
                for o in &opened {
                    self.node.close_port(o);
                }
                return fail(&events, from_platform(&e));
            }
            opened.push(id.clone());
        }
        for topic in &register.topics {
            if let Err(e) = self.node.subscribe(&opened[0], topic) {
                for o in &opened {
                    self.node.close_port(o);
                }
                return fail(&events, from_platform(&e));
            }
        }
        let registered = pb::ReceiveResponse {
            kind: Some(pb::receive_response::Kind::Registered(pb::Registered {
                ids: opened.clone(),
            })),
        };
        if events.try_send(Ok(registered)).is_err() {
            for o in &opened {
                self.node.close_port(o);
            }
            return;
        }
        for o in &opened {
            self.owners.insert(o.clone(), stream);
        }
        let window = if register.window == 0 {
            DEFAULT_WINDOW
        } else {
            register.window
        };
        self.streams.insert(
            stream,
            Stream {
                peer,
                ids: opened,
                window: window as usize,
                next_delivery: 1,
                unacked: VecDeque::new(),
                requests: VecDeque::new(),
                events,
                turn: 0,
            },
        );
    }

    fn ack(&mut self, stream: u64, delivery: u64) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        while s.unacked.front().is_some_and(|(d, _)| *d <= delivery) {
            if let Some((_, m)) = s.unacked.pop_front() {
                self.node.acknowledge_port(&m);
            }
        }
    }

    fn reply(&mut self, stream: u64, reply: pb::Reply) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(i) = s.requests.iter().position(|(d, _)| *d == reply.delivery) else {
            let _ = s.events.try_send(Err(Status::failed_precondition(format!(
                "Reply names delivery {}, which is no request waiting for its reply on this \
                 stream (answered already, or not a request)",
                reply.delivery
            ))));
            return;
        };
        let Some((_, m)) = s.requests.remove(i) else {
            return;
        };
        if let Err(e) = self
            .node
            .reply_from_port(&m.port, &m, &reply.event, &reply.data)
        {
            if let Some(s) = self.streams.get(&stream) {
                let _ = s.events.try_send(Err(from_platform(&e)));
            }
        }
    }

    fn close(&mut self, stream: u64) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        // Events the client never acknowledged are not acknowledged now: closing the port
        // tells their senders they were not delivered.
        for id in &s.ids {
            self.owners.remove(id);
            self.node.close_port(id);
        }
    }

    /// Hands each stream the events waiting for its ids, within its window and its
    /// channel's room.
    fn feed_streams(&mut self) {
        let mut closed = Vec::new();
        for (&key, s) in self.streams.iter_mut() {
            if s.events.is_closed() {
                closed.push(key);
                continue;
            }
            let n = s.ids.len();
            let mut idle = 0;
            while s.unacked.len() < s.window && s.events.capacity() > 0 && idle < n {
                let id = &s.ids[s.turn % n];
                s.turn = s.turn.wrapping_add(1);
                let Some(m) = self.node.recv_port_unacknowledged(id) else {
                    idle += 1;
                    continue;
                };
                idle = 0;
                let delivery = s.next_delivery;
                s.next_delivery += 1;
                let request = match m.correlation {
                    Correlation::Request(r) => u64::from(r),
                    _ => 0,
                };
                let event = pb::Event {
                    delivery,
                    to: m.port.clone(),
                    from: m.from.clone(),
                    event: m.event.clone(),
                    data: m.payload.clone(),
                    topic: m.topic.clone().unwrap_or_default(),
                    request,
                };
                let response = pb::ReceiveResponse {
                    kind: Some(pb::receive_response::Kind::Event(event)),
                };
                if s.events.try_send(Ok(response)).is_err() {
                    // Closed in the meantime (room was checked): the port closes below.
                    closed.push(key);
                    s.unacked.push_back((delivery, m));
                    break;
                }
                if request != 0 {
                    if s.requests.len() == STREAM_REQUESTS {
                        s.requests.pop_front();
                    }
                    s.requests.push_back((delivery, m.clone()));
                }
                s.unacked.push_back((delivery, m));
            }
        }
        for key in closed {
            self.close(key);
        }
    }

    fn watch(&mut self, changes: ChangeSender) {
        if self.watchers.is_empty() {
            self.known = self.snapshot();
        }
        for m in self.known.values() {
            let change = pb::MachineChange {
                kind: pb::machine_change::Kind::Present as i32,
                machine: Some(machine(m)),
            };
            if changes.try_send(Ok(change)).is_err() {
                return;
            }
        }
        self.watchers.push(changes);
    }

    fn snapshot(&self) -> HashMap<String, MachineInfo> {
        self.node
            .registry()
            .entries()
            .into_iter()
            .filter(|m| m.machine != self.port)
            .map(|m| (m.machine.clone(), m))
            .collect()
    }

    /// Tells the watchers what joined and left since they last heard. A watcher whose
    /// channel is full is dropped (its stream ends with RESOURCE_EXHAUSTED): it fell behind.
    fn tell_watchers(&mut self) {
        self.watchers.retain(|w| !w.is_closed());
        if self.watchers.is_empty() {
            return;
        }
        let now = self.snapshot();
        let mut changes = Vec::new();
        for (id, m) in &now {
            if self.known.get(id) != Some(m) {
                if let Some(old) = self.known.get(id) {
                    changes.push((pb::machine_change::Kind::Left, old.clone()));
                }
                changes.push((pb::machine_change::Kind::Joined, m.clone()));
            }
        }
        for (id, m) in &self.known {
            if !now.contains_key(id) {
                changes.push((pb::machine_change::Kind::Left, m.clone()));
            }
        }
        self.known = now;
        if changes.is_empty() {
            return;
        }
        self.watchers.retain(|w| {
            for (kind, m) in &changes {
                let change = pb::MachineChange {
                    kind: *kind as i32,
                    machine: Some(machine(m)),
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = w.try_send(Ok(change)) {
                    let _ = w.try_send(Err(Status::resource_exhausted(
                        "this watch fell behind the registry's changes: watch again",
                    )));
                    return false;
                }
            }
            !w.is_closed()
        });
    }

    fn status(&self) -> pb::StatusReply {
        let config = self.node.config();
        let path = config.socket_path();
        let hub_pid = std::os::unix::net::UnixStream::connect(&path)
            .ok()
            .and_then(|s| rustix::net::sockopt::socket_peercred(&s).ok())
            .map_or(0, |c| c.pid.as_raw_nonzero().get() as u32);
        pb::StatusReply {
            bus: config.bus.clone(),
            dir: config.dir.display().to_string(),
            connected: self.node.is_connected(),
            hub_pid,
            machines: u32::try_from(self.snapshot().len()).unwrap_or(u32::MAX),
            streams: u32::try_from(self.streams.len()).unwrap_or(u32::MAX),
            gateway_id: self.port.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}
