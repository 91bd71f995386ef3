//! Binding a chart's action, guard and delay names to Rust code.
//!
//! A [`Behaviors`] collects closures by name; [`Behaviors::bind`] resolves them against a chart
//! once and reports every name the chart uses that was not bound, all at once. The result,
//! [`Bound`], implements the core's [`Behavior`] with plain vector indexing: no lookup by name
//! and no allocation while the machine runs.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use interstate_core::{
    ActionContext, ActionId, Behavior, Chart, DelayId, Duration, GuardContext, GuardId,
    ProcessInfo, TransportKind,
};
use interstate_platform::node::invoked::{
    Actors, BlockingHandle, ChildChart, Service, ServiceCx, ServiceFactory, ServiceStart,
};

use crate::compile::CompiledChart;

/// Answers `process_info(target)` for actions: which process hosts a machine.
pub trait Directory {
    /// What is known about the process hosting `machine_id`, if anything.
    fn process_info(&self, machine_id: &str) -> Option<ProcessInfo>;
}

/// A directory for machines that all live in this process.
#[derive(Clone, Debug, Default)]
pub struct LocalDirectory {
    machines: Vec<String>,
    started: interstate_core::Instant,
}

impl LocalDirectory {
    /// A directory that knows the given machine ids, registered at `started`.
    pub fn new(
        machines: impl IntoIterator<Item = impl Into<String>>,
        started: interstate_core::Instant,
    ) -> Self {
        LocalDirectory {
            machines: machines.into_iter().map(Into::into).collect(),
            started,
        }
    }
}

/// This process, described for [`ProcessInfo`].
pub fn local_process_info(
    machine_id: &str,
    registered_at: interstate_core::Instant,
    transport: TransportKind,
) -> ProcessInfo {
    let me = interstate_platform::ThisProcess::current();
    let mut id = heapless::String::new();
    for c in machine_id.chars() {
        if id.push(c).is_err() {
            break;
        }
    }
    let mut executable = heapless::String::new();
    for c in me.executable.chars() {
        if executable.push(c).is_err() {
            break;
        }
    }
    ProcessInfo {
        machine_id: id,
        pid: me.pid,
        uid: me.uid,
        executable,
        transport,
        registered_at,
        local: true,
    }
}

impl Directory for LocalDirectory {
    fn process_info(&self, machine_id: &str) -> Option<ProcessInfo> {
        self.machines
            .iter()
            .any(|m| m == machine_id)
            .then(|| local_process_info(machine_id, self.started, TransportKind::InProcess))
    }
}

/// The context a bound action closure receives: the core's [`ActionContext`] (send, send_self,
/// send_after, cancel, machine_id, event, payload) plus [`process_info`](Ctx::process_info).
pub struct Ctx<'a, 'b> {
    inner: &'a mut ActionContext<'b>,
    directory: &'a dyn Directory,
}

impl Ctx<'_, '_> {
    /// What the host knows about the process hosting machine `target`.
    pub fn process_info(&self, target: &str) -> Option<ProcessInfo> {
        self.directory.process_info(target)
    }
}

impl<'b> Deref for Ctx<'_, 'b> {
    type Target = ActionContext<'b>;
    fn deref(&self) -> &ActionContext<'b> {
        self.inner
    }
}

impl<'b> DerefMut for Ctx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut ActionContext<'b> {
        self.inner
    }
}

type ActionFn = Box<dyn FnMut(&mut Ctx<'_, '_>)>;
type GuardFn = Box<dyn FnMut(&GuardContext<'_>) -> bool>;
type LogFn = Box<dyn FnMut(&str, &str)>;

/// Closures by name, to bind against a chart.
#[derive(Default)]
pub struct Behaviors {
    actions: HashMap<String, ActionFn>,
    guards: HashMap<String, GuardFn>,
    delays: HashMap<String, Duration>,
    log: Option<LogFn>,
    /// The `src` names of the actors the host runs for `invoke` (see [`Behaviors::actor`]).
    actors: std::collections::HashSet<String>,
    /// The actors a node runs for `invoke`, by src (see [`Behaviors::child_chart`],
    /// [`Behaviors::service`], [`Behaviors::process`]).
    invoked: Vec<(String, Invoked)>,
}

/// What a src bound in [`Behaviors`] runs.
enum Invoked {
    Chart(&'static CompiledChart, Box<dyn FnMut() -> Behaviors>),
    Service(ServiceFactory),
    Process(interstate_platform::ProcessActor),
}

/// Names a chart uses that have no binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unbound {
    /// Action names.
    pub actions: Vec<String>,
    /// Guard names.
    pub guards: Vec<String>,
    /// Delay names.
    pub delays: Vec<String>,
    /// Actor `src` names the chart invokes that no host actor runs: never lenient (a chart
    /// whose child cannot start does not run).
    pub actors: Vec<String>,
}

impl Unbound {
    /// Whether every name was bound.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
            && self.guards.is_empty()
            && self.delays.is_empty()
            && self.actors.is_empty()
    }
}

impl fmt::Display for Unbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (what, list) in [
            ("actions", &self.actions),
            ("guards", &self.guards),
            ("delays", &self.delays),
            ("invoked actor srcs", &self.actors),
        ] {
            if !list.is_empty() {
                parts.push(format!(
                    "{what} {}",
                    list.iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        write!(
            f,
            "the chart uses names that are not bound: {}",
            parts.join("; ")
        )
    }
}

impl std::error::Error for Unbound {}

impl Behaviors {
    /// No bindings yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Binds an action name.
    pub fn action(mut self, name: &str, f: impl FnMut(&mut Ctx<'_, '_>) + 'static) -> Self {
        self.actions.insert(name.to_string(), Box::new(f));
        self
    }
    /// Binds a guard name.
    pub fn guard(mut self, name: &str, f: impl FnMut(&GuardContext<'_>) -> bool + 'static) -> Self {
        self.guards.insert(name.to_string(), Box::new(f));
        self
    }
    /// Binds a named delay.
    pub fn delay(mut self, name: &str, d: Duration) -> Self {
        self.delays.insert(name.to_string(), d);
        self
    }
    /// Receives `log` actions' messages (machine id, message). By default they go to stderr.
    pub fn on_log(mut self, f: impl FnMut(&str, &str) + 'static) -> Self {
        self.log = Some(Box::new(f));
        self
    }

    /// Binds every name the chart uses; fails listing all the names that have no binding.
    pub fn bind(self, chart: &Chart<'_>) -> Result<Bound, Unbound> {
        let (bound, unbound) = self.bind_lenient(chart);
        if unbound.is_empty() {
            Ok(bound)
        } else {
            Err(unbound)
        }
    }

    /// Declares that the host runs an actor for the `src` name `src` (a child chart it hosts,
    /// as `interstate simulate --actor SRC=CHILD.json` does): a chart's `invoke` of any other
    /// `src` is unbound, and binding it fails even leniently.
    pub fn actor(mut self, src: &str) -> Self {
        self.actors.insert(src.to_string());
        self
    }

    /// Binds the `src` `src` to a child chart: a node runs each `invoke` of it as a child
    /// machine (`parent/invoke-id`, on the bus) whose actions, guards and delays are the
    /// [`Behaviors`] `behaviors()` returns (bound leniently, one call per start; one more for
    /// a child of its parent's first step, dry-run once to keep XState's order). Its first
    /// event, `xstate.init`, carries the invocation's `input` as `{"input": ...}`. Its final
    /// state's `output` is its parent's `xstate.done.actor.<id>` payload. The chart lives as
    /// long as the process (a node's charts do).
    pub fn child_chart(
        mut self,
        src: &str,
        chart: CompiledChart,
        behaviors: impl FnMut() -> Behaviors + 'static,
    ) -> Self {
        let chart: &'static CompiledChart = Box::leak(Box::new(chart));
        self.invoked
            .push((src.to_string(), Invoked::Chart(chart, Box::new(behaviors))));
        self
    }

    /// Binds the `src` `src` to a service run in the node's loop (it must not block):
    /// `make` makes one per `invoke` start (see
    /// [`interstate_platform::node::invoked::Service`]; `Err` fails the start as the
    /// parent's `xstate.error.actor.<id>`).
    pub fn service<S: Service + 'static>(
        mut self,
        src: &str,
        mut make: impl FnMut(&ServiceStart<'_>, &mut ServiceCx<'_>) -> Result<S, String> + 'static,
    ) -> Self {
        let factory: ServiceFactory =
            Box::new(move |start, cx| make(start, cx).map(|s| Box::new(s) as Box<dyn Service>));
        self.invoked
            .push((src.to_string(), Invoked::Service(factory)));
        self
    }

    /// Binds the `src` `src` to a service that blocks, run on a thread of its own per start
    /// with channels of `capacity` events each way (see
    /// [`interstate_platform::node::invoked::blocking_service`]): `run` receives its parent's
    /// events and sends events back through its [`BlockingHandle`]; what it returns ends it
    /// (`Ok(output)`: `xstate.done.actor.<id>`, `Err(message)`: `xstate.error.actor.<id>`).
    pub fn blocking_service(
        mut self,
        src: &str,
        capacity: usize,
        run: impl Fn(BlockingHandle) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        let factory = interstate_platform::node::invoked::blocking_service(capacity, run);
        self.invoked
            .push((src.to_string(), Invoked::Service(factory)));
        self
    }

    /// Runs the invoked `src` as a process of its own: when a state invoking `src` is
    /// entered, the node starts `actor` as the machine `<parent id>/<invoke id>` (it joins
    /// the same bus), and stops it (SIGTERM, then SIGKILL after a grace) when the state is
    /// left. Its exit is the parent's `xstate.done.actor.<id>` (status 0, with the output it
    /// wrote) or `xstate.error.actor.<id>` (a failure, a crash, a signal). The node learns of
    /// it when the machine is added ([`crate::bus::add_json_machine`]); see
    /// `docs/json-format.md` (Invoked actors) for what the program gets.
    ///
    /// ```no_run
    /// use interstate::bus::ProcessActor;
    /// use interstate::Behaviors;
    /// let worker = ProcessActor::new("interstate").args(["run", "job_worker.json", "--client"]);
    /// let behaviors = Behaviors::new().process("worker", worker);
    /// # let _ = behaviors;
    /// ```
    pub fn process(mut self, src: &str, actor: interstate_platform::ProcessActor) -> Self {
        self.invoked
            .push((src.to_string(), Invoked::Process(actor)));
        self
    }

    /// Binds what it can: unbound actions do nothing, unbound guards are false, unbound delays
    /// fail the step that needs them. Returns the names left unbound too; the caller refuses the
    /// chart when [`Unbound::actors`] is not empty.
    pub fn bind_lenient(mut self, chart: &Chart<'_>) -> (Bound, Unbound) {
        let mut unbound = Unbound::default();
        let actions = (0..chart.action_count() as u16)
            .map(|i| {
                let name = chart.action_name(ActionId(i));
                let f = self.actions.remove(name);
                if f.is_none() {
                    unbound.actions.push(name.to_string());
                }
                f
            })
            .collect();
        let guards = (0..chart.guard_count() as u16)
            .map(|i| {
                let name = chart.guard_name(GuardId(i));
                let f = self.guards.remove(name);
                if f.is_none() {
                    unbound.guards.push(name.to_string());
                }
                f
            })
            .collect();
        let delays = (0..chart.delay_count() as u16)
            .map(|i| {
                let name = chart.delay_name(DelayId(i));
                let d = self.delays.get(name).copied();
                if d.is_none() {
                    unbound.delays.push(name.to_string());
                }
                d
            })
            .collect();
        // The srcs the chart invokes, and those its child charts invoke in turn (they share
        // one table).
        let known =
            |src: &str| self.actors.contains(src) || self.invoked.iter().any(|(s, _)| s == src);
        let children = self.invoked.iter().filter_map(|(_, i)| match i {
            Invoked::Chart(c, _) => Some(c.chart()),
            Invoked::Service(_) | Invoked::Process(_) => None,
        });
        for c in std::iter::once(*chart).chain(children) {
            for inv in c.invocations() {
                if !known(inv.src) && !unbound.actors.iter().any(|a| a == inv.src) {
                    unbound.actors.push(inv.src.to_string());
                }
            }
        }
        let mut actors = Actors::new();
        for (src, invoked) in std::mem::take(&mut self.invoked) {
            match invoked {
                Invoked::Chart(compiled, mut make) => {
                    let chart = compiled.chart();
                    let child = ChildChart::new(chart, move |_id| {
                        let (bound, _) = make().bind_lenient(&chart);
                        Box::new(bound) as Box<dyn Behavior>
                    })
                    .with_output(move |last| compiled.output(last));
                    actors = actors.chart(&src, child);
                }
                Invoked::Service(factory) => actors.bind(
                    &src,
                    interstate_platform::node::invoked::Actor::Service(factory),
                ),
                Invoked::Process(actor) => actors = actors.process(&src, actor),
            }
        }
        let bound = Bound {
            actions,
            guards,
            delays,
            log: self.log,
            directory: Box::new(LocalDirectory::default()),
            actors: (!actors.is_empty()).then_some(actors),
        };
        (bound, unbound)
    }
}

/// Closures resolved against one chart, by id. Implements the core's [`Behavior`].
pub struct Bound {
    actions: Vec<Option<ActionFn>>,
    guards: Vec<Option<GuardFn>>,
    delays: Vec<Option<Duration>>,
    log: Option<LogFn>,
    directory: Box<dyn Directory>,
    /// The actors bound for `invoke`, for the node (see [`Bound::take_actors`]).
    actors: Option<Actors>,
}

impl Bound {
    /// The child charts and services bound for the chart's `invoke`s, for
    /// [`interstate_platform::Node::add_machine_with_actors`] (`None`: none was bound).
    pub fn take_actors(&mut self) -> Option<Actors> {
        self.actors.take()
    }

    /// Sets what `process_info` answers from.
    pub fn set_directory(&mut self, directory: Box<dyn Directory>) {
        self.directory = directory;
    }
}

impl Behavior for Bound {
    fn action(&mut self, action: ActionId, cx: &mut ActionContext<'_>) {
        if let Some(Some(f)) = self.actions.get_mut(action.index()) {
            let mut ctx = Ctx {
                inner: cx,
                directory: &*self.directory,
            };
            f(&mut ctx);
        }
    }
    fn guard(&mut self, guard: GuardId, cx: &GuardContext<'_>) -> bool {
        match self.guards.get_mut(guard.index()) {
            Some(Some(f)) => f(cx),
            _ => false,
        }
    }
    fn delay(&mut self, delay: DelayId) -> Option<Duration> {
        self.delays.get(delay.index()).copied().flatten()
    }
    fn log(&mut self, machine_id: &str, message: &str) {
        match &mut self.log {
            Some(f) => f(machine_id, message),
            None => eprintln!("[{machine_id}] {message}"),
        }
    }
}
