//! What a node runs for a chart's `invoke`: the actors a machine's `src` names are bound to
//! ([`Actors`]), each a child chart run as a child machine of the same node ([`ChildChart`])
//! or a service bound from Rust ([`Service`], and [`blocking_service`] for one that blocks,
//! on a thread of its own).
//!
//! A service is sync and callback-style, as XState's `fromCallback` actors are: it is made
//! when its invoking state is entered (after the state's entry actions), gets the events its
//! parent sends it (`sendTo` by invoke id), sends events back through its [`ServiceCx`],
//! and ends with [`ServiceCx::done`] (the parent's `xstate.done.actor.<id>`, with the
//! output) or [`ServiceCx::fail`] (`xstate.error.actor.<id>`); when its state is exited it
//! is stopped ([`Service::stop`]) and whatever it sends later is dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use interstate_core::wire::is_reserved_event;
use interstate_core::{Behavior, Chart, StateId};
use mio::Waker;

use crate::error::PlatformError;

/// A chart an `invoke` runs as a child machine in the invoking machine's node, under the
/// machine id `parent/invoke-id`.
pub struct ChildChart {
    pub(super) chart: Chart<'static>,
    pub(super) output: Option<OutputFn>,
    pub(super) behavior: BehaviorFn,
}

type OutputFn = Box<dyn Fn(StateId) -> Option<&'static str>>;
type BehaviorFn = Box<dyn FnMut(&str) -> Box<dyn Behavior>>;

impl ChildChart {
    /// The chart `chart`, each child made with the behavior `behavior(child machine id)`
    /// returns (a child's actions, guards and delays: one call per start, and one more for
    /// a child started with its parent's first step, whose own first step the node runs
    /// once on a scratch machine first: see `first_step`). Its first event, `xstate.init`,
    /// carries its invocation's `input` ([`child_init_data`]).
    pub fn new(
        chart: Chart<'static>,
        behavior: impl FnMut(&str) -> Box<dyn Behavior> + 'static,
    ) -> Self {
        ChildChart {
            chart,
            output: None,
            behavior: Box::new(behavior),
        }
    }

    /// What the child hands back when it reaches the top-level final state given (JSON
    /// text, the payload of its parent's `xstate.done.actor.<id>`): the chart's `output`,
    /// which the JSON compiler keeps beside the chart's tables.
    pub fn with_output(
        mut self,
        output: impl Fn(StateId) -> Option<&'static str> + 'static,
    ) -> Self {
        self.output = Some(Box::new(output));
        self
    }

    /// The chart.
    pub fn chart(&self) -> &Chart<'static> {
        &self.chart
    }
}

/// The payload of an invoked child chart's first event, `xstate.init`, for its invocation's
/// `input` (JSON text): `{"input": ...}`, as XState's init event carries it (`event.input`;
/// a JSON chart reads it with `{"$event": "input"}`). Empty without an input.
pub fn child_init_data(input: Option<&str>) -> Vec<u8> {
    match input {
        Some(input) => format!("{{\"input\":{input}}}").into_bytes(),
        None => Vec::new(),
    }
}

/// Where a service is made: its machine id, its parent's, and the invocation's `input`.
#[derive(Clone, Copy, Debug)]
pub struct ServiceStart<'a> {
    /// The service's id, `parent/invoke-id` (the sender of what it sends its parent).
    pub id: &'a str,
    /// The invoking machine's id.
    pub parent: &'a str,
    /// The invocation's `input`, as JSON text.
    pub input: Option<&'a str>,
}

/// A callback-style actor bound from Rust, run in the node's loop: it must not block (one
/// that does runs on a thread of its own: [`blocking_service`]).
pub trait Service {
    /// An event its parent sent it (`sendTo` by invoke id). `Err` refuses it: its sender
    /// gets `xstate.error.delivery` (reason `queue-full`).
    fn event(
        &mut self,
        event: &str,
        payload: &[u8],
        cx: &mut ServiceCx<'_>,
    ) -> Result<(), PlatformError>;
    /// The node's waker woke the loop (see [`ServiceCx::waker`]): a service fed from
    /// another thread sends what it has now.
    fn poll(&mut self, _cx: &mut ServiceCx<'_>) {}
    /// Its invoking state was exited: it is gone after this.
    fn stop(&mut self) {}
}

/// Makes a service when its state is entered; `Err` fails the start (the parent gets
/// `xstate.error.actor.<id>` with the message).
pub type ServiceFactory =
    Box<dyn FnMut(&ServiceStart<'_>, &mut ServiceCx<'_>) -> Result<Box<dyn Service>, String>>;

/// What an `invoke`'s `src` runs. (More kinds may come: a machine in a process of its own.)
#[non_exhaustive]
pub enum Actor {
    /// A child machine in the same node.
    Chart(Box<ChildChart>),
    /// A service bound from Rust.
    Service(ServiceFactory),
    /// A process of its own, on the same bus (see `node::child_process` for what it gets).
    Process(super::child_process::ProcessActor),
}

/// The actors a machine's `invoke`s may start, by `src` (its children's `invoke`s use the
/// same table). Pass it to [`Node::add_machine_with_actors`](super::Node::add_machine_with_actors).
#[derive(Default)]
pub struct Actors {
    by_src: HashMap<String, RefCell<Actor>>,
}

impl Actors {
    /// No actors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `src` to an actor (replacing one bound before).
    pub fn bind(&mut self, src: &str, actor: Actor) {
        self.by_src.insert(src.to_string(), RefCell::new(actor));
    }

    /// Binds `src` to a child chart.
    pub fn chart(mut self, src: &str, chart: ChildChart) -> Self {
        self.bind(src, Actor::Chart(Box::new(chart)));
        self
    }

    /// Binds `src` to a program run as a process of its own per start.
    pub fn process(mut self, src: &str, actor: super::child_process::ProcessActor) -> Self {
        self.bind(src, Actor::Process(actor));
        self
    }

    /// Binds `src` to a service made by `make`.
    pub fn service(
        mut self,
        src: &str,
        make: impl FnMut(&ServiceStart<'_>, &mut ServiceCx<'_>) -> Result<Box<dyn Service>, String>
            + 'static,
    ) -> Self {
        self.bind(src, Actor::Service(Box::new(make)));
        self
    }

    /// Whether `src` is bound.
    pub fn contains(&self, src: &str) -> bool {
        self.by_src.contains_key(src)
    }

    /// The bound srcs.
    pub fn srcs(&self) -> impl Iterator<Item = &str> {
        self.by_src.keys().map(String::as_str)
    }

    /// Whether no src is bound.
    pub fn is_empty(&self) -> bool {
        self.by_src.is_empty()
    }

    /// The charts bound, with their srcs (to check the srcs their own `invoke`s name).
    pub fn charts(&self) -> impl Iterator<Item = (&str, Chart<'static>)> {
        self.by_src
            .iter()
            .filter_map(|(src, a)| match &*a.borrow() {
                Actor::Chart(c) => Some((src.as_str(), c.chart)),
                Actor::Service(_) | Actor::Process(_) => None,
            })
    }

    pub(super) fn get(&self, src: &str) -> Option<&RefCell<Actor>> {
        self.by_src.get(src)
    }
}

/// The most events a service's queue for its parent holds between two deliveries.
pub const SERVICE_QUEUE: usize = 64;
/// The most bytes (event names and payloads) that queue holds.
pub const SERVICE_QUEUE_BYTES: usize = 64 * 1024;

/// How a service ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Done,
    Failed,
}

/// What a service sent, kept (in reused buffers) until the node delivers it.
#[derive(Default)]
pub(super) struct ServiceOut {
    pub(super) bytes: Vec<u8>,
    /// Per event: where its name ends, where its payload ends, in `bytes`.
    pub(super) items: Vec<(usize, usize)>,
    /// Done or failed, with its output or message from `end_at` on in `bytes`.
    pub(super) end: Option<(End, usize)>,
}

impl ServiceOut {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}

/// What a service sends with: events to its parent, its end.
pub struct ServiceCx<'a> {
    pub(super) id: &'a str,
    pub(super) out: &'a mut ServiceOut,
    pub(super) waker: Option<&'a Arc<Waker>>,
}

impl ServiceCx<'_> {
    /// The service's id (`parent/invoke-id`).
    pub fn id(&self) -> &str {
        self.id
    }

    /// Sends `event` to the parent, delivered once the current call returns. Events of
    /// the reserved `xstate.` namespace are refused, as is anything after the end.
    pub fn send_parent(&mut self, event: &str, payload: &[u8]) -> Result<(), PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        if self.out.end.is_some() {
            return Err(PlatformError::ServiceEnded {
                service: self.id.to_string(),
            });
        }
        if self.out.items.len() >= SERVICE_QUEUE
            || self.out.bytes.len() + event.len() + payload.len() > SERVICE_QUEUE_BYTES
        {
            return Err(PlatformError::ServiceQueueFull {
                service: self.id.to_string(),
                capacity: SERVICE_QUEUE,
            });
        }
        self.out.bytes.extend_from_slice(event.as_bytes());
        let event_end = self.out.bytes.len();
        self.out.bytes.extend_from_slice(payload);
        self.out.items.push((event_end, self.out.bytes.len()));
        Ok(())
    }

    /// Ends the service: its parent gets `xstate.done.actor.<id>` with `output` (JSON
    /// text, or empty) as the payload, after what it sent before.
    pub fn done(&mut self, output: &[u8]) {
        self.end(End::Done, output);
    }

    /// Ends the service with an error: its parent gets `xstate.error.actor.<id>`, with
    /// `{"message": message}`.
    pub fn fail(&mut self, message: &str) {
        let payload = format!("{{\"message\":{}}}", super::payload::json_string(message));
        self.end(End::Failed, payload.as_bytes());
    }

    fn end(&mut self, how: End, payload: &[u8]) {
        if self.out.end.is_some() {
            return;
        }
        self.out.end = Some((how, self.out.bytes.len()));
        self.out.bytes.extend_from_slice(payload);
    }

    /// Wakes the node's loop from another thread, so that it calls [`Service::poll`] (see
    /// [`blocking_service`]).
    pub fn waker(&self) -> Option<Arc<Waker>> {
        self.waker.cloned()
    }
}

/// What a blocking service's thread sends the node.
enum FromThread {
    Send(String, Vec<u8>),
    Done(Vec<u8>),
    Failed(String),
}

/// A blocking service's end of its channels, on its own thread.
pub struct BlockingHandle {
    id: String,
    input: Option<String>,
    inbox: Receiver<(String, Vec<u8>)>,
    outbox: SyncSender<FromThread>,
    waker: Arc<Waker>,
}

impl BlockingHandle {
    /// The service's id (`parent/invoke-id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The invocation's `input`, as JSON text.
    pub fn input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    /// The next event its parent sent it, waiting for one; `None` once the service is
    /// stopped (its state was exited): return then.
    pub fn recv(&self) -> Option<(String, Vec<u8>)> {
        self.inbox.recv().ok()
    }

    /// The next event if one is waiting: `Ok(None)` when none is, `Err` once the
    /// service is stopped.
    pub fn try_recv(&self) -> Result<Option<(String, Vec<u8>)>, PlatformError> {
        match self.inbox.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(PlatformError::ServiceEnded {
                service: self.id.clone(),
            }),
        }
    }

    /// Sends `event` to the parent (waiting while the channel to the node is full); `Err`
    /// once the service is stopped.
    pub fn send_parent(&self, event: &str, payload: &[u8]) -> Result<(), PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        self.outbox
            .send(FromThread::Send(event.to_string(), payload.to_vec()))
            .map_err(|_| PlatformError::ServiceEnded {
                service: self.id.clone(),
            })?;
        let _ = self.waker.wake();
        Ok(())
    }
}

/// The node's end of a blocking service.
struct BlockingService {
    id: String,
    to_thread: Option<SyncSender<(String, Vec<u8>)>>,
    from_thread: Receiver<FromThread>,
    capacity: usize,
    ended: bool,
}

impl Service for BlockingService {
    fn event(
        &mut self,
        event: &str,
        payload: &[u8],
        _cx: &mut ServiceCx<'_>,
    ) -> Result<(), PlatformError> {
        let Some(tx) = &self.to_thread else {
            return Err(PlatformError::ServiceEnded {
                service: self.id.clone(),
            });
        };
        match tx.try_send((event.to_string(), payload.to_vec())) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PlatformError::ServiceQueueFull {
                service: self.id.clone(),
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(PlatformError::ServiceEnded {
                service: self.id.clone(),
            }),
        }
    }

    fn poll(&mut self, cx: &mut ServiceCx<'_>) {
        while !self.ended {
            match self.from_thread.try_recv() {
                Ok(FromThread::Send(event, payload)) => {
                    if let Err(e) = cx.send_parent(&event, &payload) {
                        // Its queue is drained at every delivery: full means a flood.
                        cx.fail(&e.to_string());
                        self.ended = true;
                    }
                }
                Ok(FromThread::Done(output)) => {
                    cx.done(&output);
                    self.ended = true;
                }
                Ok(FromThread::Failed(message)) => {
                    cx.fail(&message);
                    self.ended = true;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    cx.fail("the service's thread ended without a result");
                    self.ended = true;
                }
            }
        }
    }

    fn stop(&mut self) {
        // Its thread's `recv` returns `None`: it is told to return. It is not waited for.
        self.to_thread = None;
    }
}

/// A service that blocks (a serial port's reads, a database's calls), run on a thread of
/// its own: `run` gets a [`BlockingHandle`] to receive its parent's events and send events
/// back, over channels of `capacity` events each way; what it returns ends it (`Ok`: the
/// output, JSON text or empty, of `xstate.done.actor.<id>`; `Err`: the message of
/// `xstate.error.actor.<id>`, as is a panic). Its sends wake the node's loop.
pub fn blocking_service<F>(capacity: usize, run: F) -> ServiceFactory
where
    F: Fn(BlockingHandle) -> Result<Vec<u8>, String> + Send + Sync + 'static,
{
    let run = Arc::new(run);
    let capacity = capacity.max(1);
    Box::new(move |start, cx| {
        let waker = cx
            .waker()
            .ok_or("the node has no waker for a blocking service")?;
        let (to_thread, inbox) = std::sync::mpsc::sync_channel(capacity);
        let (outbox, from_thread) = std::sync::mpsc::sync_channel(capacity);
        let handle = BlockingHandle {
            id: start.id.to_string(),
            input: start.input.map(str::to_string),
            inbox,
            outbox: outbox.clone(),
            waker: waker.clone(),
        };
        let run = run.clone();
        std::thread::Builder::new()
            .name(format!("service {}", start.id))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(handle)));
                let last = match result {
                    Ok(Ok(output)) => FromThread::Done(output),
                    Ok(Err(message)) => FromThread::Failed(message),
                    Err(_) => FromThread::Failed("the service panicked".to_string()),
                };
                // Stopped already: nobody listens, and that is fine.
                let _ = outbox.send(last);
                let _ = waker.wake();
            })
            .map_err(|e| format!("cannot start the service's thread: {e}"))?;
        Ok(Box::new(BlockingService {
            id: start.id.to_string(),
            to_thread: Some(to_thread),
            from_thread,
            capacity,
            ended: false,
        }) as Box<dyn Service>)
    })
}
