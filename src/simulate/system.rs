//! The actors of one simulation: the root machine and the children it invokes (charts given
//! with `--actor SRC=CHILD.json`), on one virtual clock, delivered to as XState's actor
//! system delivers:
//! - every actor has a mailbox; an event to an actor that is idle is processed at once (a
//!   nested call), one to an actor that is busy waits its turn, so a child's `sendParent`
//!   reaches the parent after the parent's current macrostep;
//! - after a macrostep, its messages and its children's starts and stops run in the order
//!   the machine made them (XState's deferred actions): a child is created when its state is
//!   entered, starts (its first macrostep, then its mailbox) when its turn comes, and never
//!   starts when its state was exited in the same step;
//! - a child that reaches its final state reports `xstate.done.actor.<id>` to its parent
//!   (with its `output`), and one that fails `xstate.error.actor.<id>`; a stopped child is
//!   gone: its timers and the events sent to it later are dropped;
//! - timers of every actor share the clock and fire in due order, ties in arming order.
//!
//! A child's user actions are traced as `<invoke id>/<action>`, as the oracle prints them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use interstate_core::machine::{ChildChangeKind, MAX_CHILD_ID};
use interstate_core::{Chart, Event, Instant, StateId, StateKind, Target};
use serde_json::{json, Value};

use crate::bind::{Behaviors, Bound};
use crate::compile::CompiledChart;

use super::{payload_value, Options, SimMachineOf, Simulated};

/// A message out of an outbox, copied so that the machine can be driven again.
enum Out {
    Own(String, Vec<u8>),
    Machine(String, String, Vec<u8>),
    Other(Value),
}

/// What a child's id names while a step's changes are resolved.
enum Slot {
    /// The child a start created (`None`: one stopped again in the same step, never started).
    Child(Option<usize>),
    /// Its child was stopped.
    Stopped,
}

struct Change {
    kind: ChildChangeKind,
    src: String,
    id: String,
    /// Its first event's payload, from the invocation's `input`.
    init: Vec<u8>,
    after: usize,
    /// A start: the messages from here to `after` came from the invoking state's entry.
    entry_from: usize,
}

struct Actor<'c, const W: usize> {
    /// Dropped when the actor is gone: a zero-delay timer that re-enters an invoking state
    /// makes a new child per firing, and only the live ones keep their (large) machines.
    machine: Option<Box<dyn Simulated<'c, W> + 'c>>,
    /// Its machine id.
    id: String,
    /// Dropped with the machine when the actor is gone.
    behavior: Option<Bound>,
    /// The invoke id (the root: empty): its actions are traced as `name/action`.
    name: String,
    /// The `src` it runs (the root: empty), for its `output`.
    src: String,
    /// The payload of its first event (its invocation's `input`; the root: empty).
    init: Vec<u8>,
    parent: Option<usize>,
    mailbox: VecDeque<(String, Vec<u8>)>,
    busy: bool,
    started: bool,
    /// Stopped by its parent, or finished: gets nothing more.
    gone: bool,
    /// Timers seen so far: each gets a place in the arming order of the whole system.
    seen_seq: Option<u32>,
    /// Its pending timers' places in the arming order of the whole system, by timer seq.
    armed: HashMap<u32, u64>,
    /// Its children started with its first step, before its deferred actions ran, by the
    /// index of their start change (still to come) in that step's changes.
    early_children: Vec<(usize, usize)>,
    /// Its machine's [`Machine::timer_changes`] when last seen.
    timer_changes: u32,
}

impl<'c, const W: usize> Actor<'c, W> {
    /// Its machine and bindings, while it is not gone.
    fn parts(&mut self) -> Option<(&mut (dyn Simulated<'c, W> + 'c), &mut Bound)> {
        Some((self.machine.as_deref_mut()?, self.behavior.as_mut()?))
    }
}

/// The most machines of stopped children kept to be used again: a machine of the simulator's
/// capacities is large (its byte storage), and building one per child made a timer loop that
/// starts a child per firing spend its time clearing and copying memory.
const MAX_SPARE: usize = 16;

/// What every actor's bindings are made from.
pub(super) struct Shared<'c> {
    pub(super) options: &'c Options,
    pub(super) log: Rc<RefCell<Vec<String>>>,
    pub(super) logs: Rc<RefCell<Vec<String>>>,
}

pub(super) struct System<'c, const W: usize> {
    actors: Vec<Actor<'c, W>>,
    /// The actors that are not gone, in creation order.
    live: Vec<usize>,
    /// Live actors by machine id.
    by_id: HashMap<String, usize>,
    /// Machines of stopped children, to be used again (see [`MAX_SPARE`]).
    spare: Vec<Box<SimMachineOf<'c, W>>>,
    /// Bindings of stopped children by (src, invoke id), to be used again: they hold no
    /// state of a run, and binding a chart's names costs more than a child's step.
    spare_bound: Vec<(String, String, Bound)>,
    /// The charts of the `--actor` srcs, validated once.
    charts: HashMap<String, Chart<'c>>,
    /// Live children whose id now names a newer child (a state entered again without its
    /// exit, through history): nothing can address them any more, see [`Self::retire_idle`].
    unnamed: Vec<usize>,
    shared: Shared<'c>,
    pub(super) now: Instant,
    pub(super) sent: Vec<Value>,
    /// The next place in the system's arming order of timers.
    next_armed: u64,
    /// Timers armed and cancelled in the whole system so far: XState's `SimulatedClock`
    /// starts its walk over when one is (a stopped actor's pending timers are cancelled).
    timer_events: u64,
}

fn copy_outbox<const W: usize>(m: &SimMachineOf<'_, W>) -> (Vec<Out>, Vec<Change>) {
    let own = m.id();
    let mut msgs = Vec::new();
    for o in m.outbox() {
        let data = |msg: &mut Value| {
            if !o.payload.is_empty() {
                msg["data"] = payload_value(o.payload);
            }
        };
        msgs.push(match o.target {
            Target::ThisMachine => Out::Own(o.event.to_string(), o.payload.to_vec()),
            Target::Machine(t) if t == own => Out::Own(o.event.to_string(), o.payload.to_vec()),
            Target::Machine(t) => {
                Out::Machine(t.to_string(), o.event.to_string(), o.payload.to_vec())
            }
            Target::Topic(t) => {
                let mut msg = json!({"topic": t, "event": o.event});
                data(&mut msg);
                Out::Other(msg)
            }
            Target::Broadcast => {
                let mut msg = json!({"broadcast": true, "event": o.event});
                data(&mut msg);
                Out::Other(msg)
            }
        });
    }
    let changes = m
        .child_changes()
        .map(|c| Change {
            kind: c.kind,
            src: c.invocation.src.to_string(),
            id: c.invocation.id.to_string(),
            init: interstate_platform::node::invoked::child_init_data(c.invocation.input),
            after: c.after_messages,
            entry_from: c.entry_messages_from,
        })
        .collect();
    (msgs, changes)
}

/// A boxed machine, made out of line: the machine is large, and its temporaries stay in this
/// frame instead of the frames of the nested deliveries that start children.
#[inline(never)]
pub(super) fn new_machine<'c, const W: usize>(
    chart: Chart<'c>,
    id: &str,
) -> Result<Box<SimMachineOf<'c, W>>, interstate_core::Error> {
    Ok(Box::new(SimMachineOf::<W>::new(chart, id)?))
}

/// Behaviors for a chart of the simulation: user actions traced (as `prefix/name` in a
/// child), guards and delays from the options, every `--actor` src bound.
pub(super) fn behaviors_for(chart: &Chart<'_>, prefix: &str, shared: &Shared<'_>) -> Behaviors {
    let logs_in = shared.logs.clone();
    let mut b =
        Behaviors::new().on_log(move |_, message| logs_in.borrow_mut().push(message.to_string()));
    for i in 0..chart.action_count() as u16 {
        let name = chart.action_name(interstate_core::ActionId(i)).to_string();
        let traced = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let log = shared.log.clone();
        b = b.action(&name, move |_| log.borrow_mut().push(traced.clone()));
    }
    for i in 0..chart.guard_count() as u16 {
        let name = chart.guard_name(interstate_core::GuardId(i));
        if let Some(&v) = shared.options.guards.get(name) {
            b = b.guard(name, move |_| v);
        }
    }
    for (name, &ms) in &shared.options.delays {
        b = b.delay(name, interstate_core::Duration::from_millis(ms));
    }
    for src in shared.options.actors.keys() {
        b = b.actor(src);
    }
    b
}

impl<'c, const W: usize> System<'c, W> {
    pub(super) fn new(
        root: Box<dyn Simulated<'c, W> + 'c>,
        behavior: Bound,
        shared: Shared<'c>,
    ) -> Self {
        let mut by_id = HashMap::new();
        by_id.insert(root.read().id().to_string(), 0);
        System {
            live: vec![0],
            actors: vec![Actor {
                id: root.read().id().to_string(),
                machine: Some(root),
                behavior: Some(behavior),
                name: String::new(),
                src: String::new(),
                init: Vec::new(),
                parent: None,
                mailbox: VecDeque::new(),
                busy: false,
                started: false,
                gone: false,
                seen_seq: None,
                armed: HashMap::new(),
                early_children: Vec::new(),
                timer_changes: 0,
            }],
            by_id,
            unnamed: Vec::new(),
            spare: Vec::new(),
            spare_bound: Vec::new(),
            charts: HashMap::new(),
            shared,
            now: Instant::ZERO,
            sent: Vec::new(),
            next_armed: 0,
            timer_events: 0,
        }
    }

    pub(super) fn root(&self) -> &SimMachineOf<'c, W> {
        // The root is never stopped (only children are).
        self.actors[0]
            .machine
            .as_deref()
            .expect("the root keeps its machine")
            .read()
    }

    /// Starts the root machine.
    pub(super) fn start(&mut self, budget: &mut usize) -> Result<(), String> {
        self.start_actor(0, budget)
    }

    /// An input event for the root machine.
    pub(super) fn send_root(
        &mut self,
        name: String,
        payload: Vec<u8>,
        budget: &mut usize,
    ) -> Result<(), String> {
        self.deliver(0, name, payload, budget)?;
        self.retire_idle();
        Ok(())
    }

    fn deliver(
        &mut self,
        a: usize,
        name: String,
        payload: Vec<u8>,
        budget: &mut usize,
    ) -> Result<(), String> {
        let actor = &mut self.actors[a];
        if actor.gone {
            return Ok(());
        }
        actor.mailbox.push_back((name, payload));
        if !actor.busy && actor.started {
            self.run_mailbox(a, budget)?;
        }
        Ok(())
    }

    fn run_mailbox(&mut self, a: usize, budget: &mut usize) -> Result<(), String> {
        self.actors[a].busy = true;
        while let Some((name, payload)) = self.actors[a].mailbox.pop_front() {
            if self.actors[a].gone {
                break;
            }
            *budget = budget
                .checked_sub(1)
                .ok_or("too many events delivered for one input: a send loop")?;
            let Some((machine, behavior)) = self.actors[a].parts() else {
                break;
            };
            let r = machine.send(self.now, Event::new(&name).with_payload(&payload), behavior);
            self.after_call(a, r, budget)?;
        }
        self.actors[a].mailbox.clear();
        self.actors[a].busy = false;
        Ok(())
    }

    /// XState's `start`: the first macrostep, its deferred actions, then the mailbox.
    fn start_actor(&mut self, a: usize, budget: &mut usize) -> Result<(), String> {
        let actor = &mut self.actors[a];
        if actor.started {
            return Ok(());
        }
        actor.started = true;
        actor.busy = true;
        let init = std::mem::take(&mut actor.init);
        let Some((machine, behavior)) = actor.parts() else {
            return Ok(());
        };
        let mark = self.shared.log.borrow().len();
        let log_mark = self.shared.logs.borrow().len();
        let r = machine.start(self.now, &init, behavior);
        // XState starts the children of the first snapshot before the machine's own first
        // actions run (its machine logic's `start`): their actions come first. Unless the
        // first step finished the machine: XState then starts none.
        if r.is_ok() && !machine.read().is_done() && machine.read().child_changes().next().is_some()
        {
            let own: Vec<String> = self.shared.log.borrow_mut().drain(mark..).collect();
            let own_logs: Vec<String> = self.shared.logs.borrow_mut().drain(log_mark..).collect();
            self.start_first_children(a, own, budget)?;
            self.shared.logs.borrow_mut().extend(own_logs);
        }
        if r.is_err() {
            // XState runs a machine's first actions after that step, as deferred actions,
            // and none of them when the step failed: the failure is all that is seen.
            self.shared.log.borrow_mut().truncate(mark);
            self.shared.logs.borrow_mut().truncate(log_mark);
        }
        self.after_call(a, r, budget)?;
        self.run_mailbox(a, budget)
    }

    /// The children actor `a`'s first step started (and did not stop), started before the
    /// actions `own` of that step are traced.
    ///
    /// XState starts the children of its first snapshot's `children` map, in the map's
    /// order: a start inserts its id at the end, a stop deletes it, and a start of an id
    /// still in the map (a state entered again without its exit, through history) replaces
    /// the child but keeps the id's place. The child it replaced is not in the map: it starts
    /// in its deferred turn, after the machine's first actions.
    fn start_first_children(
        &mut self,
        a: usize,
        own: Vec<String>,
        budget: &mut usize,
    ) -> Result<(), String> {
        let Some(machine) = self.actors[a].machine.as_deref().map(|m| m.read()) else {
            return Ok(());
        };
        let (_, changes) = copy_outbox(machine);
        // The first snapshot's children map: (invoke id, the start change it holds).
        let mut map: Vec<(&str, usize)> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let place = map.iter().position(|&(id, _)| id == c.id);
            match (c.kind, place) {
                (ChildChangeKind::Start, Some(p)) => map[p].1 = i,
                (ChildChangeKind::Start, None) => map.push((&c.id, i)),
                (ChildChangeKind::Stop, Some(p)) => {
                    map.remove(p);
                }
                (ChildChangeKind::Stop, None) => {}
            }
        }
        let mut first = Vec::new();
        for &(_, i) in &map {
            if self.stays_active(a, &changes[i]) {
                let child = self.create_child(a, &changes[i])?;
                self.name(child);
                self.actors[a].early_children.push((i, child));
                first.push(child);
            }
        }
        for child in first {
            self.start_actor(child, budget)?;
        }
        self.shared.log.borrow_mut().extend(own);
        Ok(())
    }

    /// Whether the child a start change names is still active after its first step: XState
    /// starts only those with its parent (the others start in their deferred turn). Found by
    /// running that first step on a scratch machine whose actions trace nothing.
    fn stays_active(&self, parent: usize, c: &Change) -> bool {
        let Some(compiled) = self.shared.options.actors.get(&c.src) else {
            return false;
        };
        let chart = compiled.chart();
        let scratch = Shared {
            options: self.shared.options,
            log: Rc::new(RefCell::new(Vec::new())),
            logs: Rc::new(RefCell::new(Vec::new())),
        };
        let (mut behavior, _) = behaviors_for(&chart, &c.id, &scratch).bind_lenient(&chart);
        let Ok(mut m) = new_machine::<W>(chart, &self.child_id(parent, &c.id)) else {
            return false;
        };
        m.start_with_data(self.now, &c.init, &mut behavior).is_ok() && !m.is_done()
    }

    /// Fires timer `seq` of actor `a`.
    fn fire(&mut self, a: usize, seq: u32, budget: &mut usize) -> Result<(), String> {
        let actor = &mut self.actors[a];
        actor.busy = true;
        let Some((machine, behavior)) = actor.parts() else {
            return Ok(());
        };
        let r = machine.fire_timer(seq, self.now, behavior).map(|_| ());
        self.after_call(a, r, budget)?;
        self.run_mailbox(a, budget)
    }

    /// What follows a call into actor `a`'s machine: a failure (the root's ends the run; a
    /// child's goes to its parent), the deferred messages and child changes, completion.
    fn after_call(
        &mut self,
        a: usize,
        r: Result<(), interstate_core::Error>,
        budget: &mut usize,
    ) -> Result<(), String> {
        if let Err(e) = r {
            self.note_timers(a, None);
            let Some(p) = self.actors[a].parent else {
                return Err(e.to_string());
            };
            let event = format!("xstate.error.actor.{}", self.actors[a].name);
            let payload = json!({"message": e.to_string()}).to_string().into_bytes();
            self.stop_actor(a);
            return self.deliver(p, event, payload, budget);
        }
        self.run_deferred(a, budget)?;
        let done = self.actors[a]
            .machine
            .as_ref()
            .is_some_and(|m| m.read().is_done());
        if done {
            if let Some(p) = self.actors[a].parent {
                let event = format!("xstate.done.actor.{}", self.actors[a].name);
                let payload = self.output_of(a).into_bytes();
                self.stop_actor(a);
                return self.deliver(p, event, payload, budget);
            }
        }
        Ok(())
    }

    /// The `output` a finished child hands back, as JSON text (empty: none).
    fn output_of(&self, a: usize) -> String {
        let actor = &self.actors[a];
        let Some(compiled) = self.shared.options.actors.get(&actor.src) else {
            return String::new();
        };
        let Some(machine) = actor.machine.as_deref().map(|m| m.read()) else {
            return String::new();
        };
        let chart = machine.chart();
        let last = machine
            .active_states()
            .find(|&s| chart.parent(s) == Some(StateId(0)) && chart.kind(s) == StateKind::Final);
        last.and_then(|s| compiled.output(s))
            .unwrap_or_default()
            .to_string()
    }

    /// Runs actor `a`'s deferred actions: its messages, its children's starts and stops, and
    /// gives the timers it armed their places in the system's arming order, in order with its
    /// children's starts (XState arms delayed events in the deferred actions too).
    fn run_deferred(&mut self, a: usize, budget: &mut usize) -> Result<(), String> {
        let Some(machine) = self.actors[a].machine.as_mut() else {
            return Ok(());
        };
        let (msgs, changes) = copy_outbox(machine.read());
        machine.clear_outbox();
        if msgs.is_empty() && changes.is_empty() {
            self.note_timers(a, None);
            return Ok(());
        }
        // XState's order of resolution: children are created when their state is entered
        // (a start stopped again in this step never starts), a stop takes the child as it was
        // then, and a message the child its id names at that point: the old child before a
        // re-entered state's stop, the new one after its start, or the one about to start (a
        // send in the entry actions of the invoking state). A message to a child that has not
        // started waits in its mailbox: the child takes it after its first macrostep, before
        // the next start of the step runs.
        let mut created: Vec<Option<usize>> = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            let stopped_later = changes[i + 1..]
                .iter()
                .any(|l| l.kind == ChildChangeKind::Stop && l.id == c.id);
            created.push(match c.kind {
                ChildChangeKind::Start if !stopped_later => Some(self.child_for(a, i, c)?),
                _ => None,
            });
        }
        let mut view: HashMap<String, Slot> = HashMap::new();
        let mut targets: Vec<Option<usize>> = Vec::with_capacity(msgs.len());
        let mut k = 0;
        for i in 0..=msgs.len() {
            while k < changes.len() && changes[k].after <= i {
                let id = self.child_id(a, &changes[k].id);
                match changes[k].kind {
                    ChildChangeKind::Start => {
                        view.insert(id, Slot::Child(created[k]));
                    }
                    ChildChangeKind::Stop => {
                        let was = match view.get(&id) {
                            Some(&Slot::Child(x)) => x,
                            Some(Slot::Stopped) => None,
                            None => self.by_id.get(&id).copied(),
                        };
                        created[k] = was.filter(|&x| self.actors[x].parent == Some(a));
                        view.insert(id, Slot::Stopped);
                    }
                }
                k += 1;
            }
            let Some(Out::Machine(to, ..)) = msgs.get(i) else {
                targets.push(None);
                continue;
            };
            // A send in the entry actions of the state that invokes the child (XState's
            // deferred actor ids): the child that state starts, also when an old child of
            // that id is live (a state entered again without its exit, through history).
            let entering = (k..changes.len()).find(|&j| {
                let c = &changes[j];
                c.kind == ChildChangeKind::Start
                    && c.entry_from <= i
                    && i < c.after
                    && self.child_id(a, &c.id) == *to
            });
            if let Some(j) = entering {
                targets.push(created[j]);
                continue;
            }
            // A child created in this step names its id from then on, also one that never
            // starts (stopped again in this step): a message to that one is dropped.
            let now = match view.get(to) {
                Some(&Slot::Child(x)) => Some(x),
                Some(Slot::Stopped) => None,
                None => self.by_id.get(to).map(|&x| Some(x)),
            };
            if let Some(now) = now {
                targets.push(now);
                continue;
            }
            let upcoming = (k..changes.len()).find(|&j| {
                changes[j].kind == ChildChangeKind::Start && self.child_id(a, &changes[j].id) == *to
            });
            targets.push(upcoming.and_then(|j| created[j]));
        }
        for x in view.into_values() {
            if let Slot::Child(Some(x)) = x {
                self.name(x);
            }
        }
        let mut next_change = 0;
        for i in 0..=msgs.len() {
            while next_change < changes.len() && changes[next_change].after <= i {
                let c = &changes[next_change];
                self.note_timers(a, Some((i, next_change)));
                match (c.kind, created[next_change]) {
                    (ChildChangeKind::Start, Some(child)) => self.start_actor(child, budget)?,
                    (ChildChangeKind::Stop, Some(child)) => self.stop_actor(child),
                    (_, None) => {}
                }
                next_change += 1;
            }
            let (Some(m), Some(&target)) = (msgs.get(i), targets.get(i)) else {
                break;
            };
            self.note_timers(a, Some((i, next_change)));
            self.deliver_out(a, m, target, budget)?;
        }
        self.note_timers(a, None);
        Ok(())
    }

    /// Delivers message `m` of actor `a`'s outbox to `target` (resolved as XState resolves it).
    fn deliver_out(
        &mut self,
        a: usize,
        m: &Out,
        target: Option<usize>,
        budget: &mut usize,
    ) -> Result<(), String> {
        match m {
            Out::Own(event, payload) => {
                self.deliver(a, event.clone(), payload.clone(), budget)?;
            }
            Out::Machine(to, event, payload) => match target {
                Some(t) => self.deliver(t, event.clone(), payload.clone(), budget)?,
                // A child of this system that is gone: dropped, as XState drops events
                // to a stopped actor.
                None if self.is_child_id(to) => {}
                None => {
                    let mut msg = json!({"to": to, "event": event});
                    if !payload.is_empty() {
                        msg["data"] = payload_value(payload);
                    }
                    self.sent.push(msg);
                }
            },
            Out::Other(v) => self.sent.push(v.clone()),
        }
        Ok(())
    }

    fn child_id(&self, parent: usize, invoke_id: &str) -> String {
        let mut id = heapless::String::<MAX_CHILD_ID>::new();
        let _ =
            interstate_core::machine::write_child_id(&self.actors[parent].id, invoke_id, &mut id);
        id.to_string()
    }

    /// Makes child `x` the one its machine id names; a live child that id named before runs
    /// on unnamed.
    fn name(&mut self, x: usize) {
        let old = self.by_id.insert(self.actors[x].id.clone(), x);
        if let Some(old) = old.filter(|&o| o != x && !self.actors[o].gone) {
            self.unnamed.push(old);
        }
    }

    /// Drops the unnamed children that are idle: started, not running, with an empty
    /// mailbox, no pending timer or request and no children. Nothing can reach such a child
    /// again (events go to the child its id names now, and a stop runs no actions), so
    /// dropping it changes no trace; keeping it would keep a large machine per firing of a
    /// timer loop that enters an invoking state again (XState keeps them all).
    fn retire_idle(&mut self) {
        if self.unnamed.is_empty() {
            return;
        }
        let mut idle = Vec::new();
        self.unnamed.retain(|&x| {
            let actor = &self.actors[x];
            let Some(machine) = actor.machine.as_deref().map(|m| m.read()) else {
                return false;
            };
            let quiet = actor.started
                && !actor.busy
                && actor.mailbox.is_empty()
                && machine.pending_timers().next().is_none()
                && machine.pending_requests() == 0;
            if quiet {
                idle.push(x);
            }
            !quiet
        });
        for x in idle {
            if self.live.iter().any(|&c| self.actors[c].parent == Some(x)) {
                self.unnamed.push(x);
            } else {
                self.stop_actor(x);
            }
        }
    }

    /// Whether `id` names a child of one of this system's machines.
    fn is_child_id(&self, id: &str) -> bool {
        interstate_core::machine::parent_id(id)
            .is_some_and(|p| self.live.iter().any(|&x| self.actors[x].id == p))
    }

    /// The child start change `i` (`c`) of actor `parent` names: the one its first step
    /// started already, or a new one.
    fn child_for(&mut self, parent: usize, i: usize, c: &Change) -> Result<usize, String> {
        let early = &self.actors[parent].early_children;
        match early.iter().position(|&(j, _)| j == i) {
            Some(k) => Ok(self.actors[parent].early_children.remove(k).1),
            None => self.create_child(parent, c),
        }
    }

    fn create_child(&mut self, parent: usize, c: &Change) -> Result<usize, String> {
        let chart = match self.charts.get(&c.src) {
            Some(&chart) => chart,
            None => {
                let compiled: &'c CompiledChart = self
                    .shared
                    .options
                    .actors
                    .get(&c.src)
                    .ok_or_else(|| format!("no actor for the invoked src '{}'", c.src))?;
                let chart = compiled.chart();
                self.charts.insert(c.src.clone(), chart);
                chart
            }
        };
        let id = self.child_id(parent, &c.id);
        let machine = match self.spare.pop() {
            Some(mut m) => m.reset_for(chart, &id).map(|()| m),
            None => new_machine::<W>(chart, &id),
        }
        .map_err(|e| format!("invoking '{}' as '{}': {e}", c.src, c.id))?;
        let spare = self
            .spare_bound
            .iter()
            .rposition(|(src, name, _)| *src == c.src && *name == c.id);
        let behavior = match spare {
            Some(k) => self.spare_bound.swap_remove(k).2,
            None => {
                let (behavior, unbound) =
                    behaviors_for(&chart, &c.id, &self.shared).bind_lenient(&chart);
                if !unbound.actors.is_empty() || !unbound.delays.is_empty() {
                    return Err(format!("invoked src '{}': {unbound}", c.src));
                }
                behavior
            }
        };
        let index = self.actors.len();
        self.live.push(index);
        self.actors.push(Actor {
            machine: Some(machine),
            id: id.clone(),
            behavior: Some(behavior),
            name: c.id.clone(),
            src: c.src.clone(),
            init: c.init.clone(),
            parent: Some(parent),
            mailbox: VecDeque::new(),
            busy: false,
            started: false,
            gone: false,
            seen_seq: None,
            armed: HashMap::new(),
            early_children: Vec::new(),
            timer_changes: 0,
        });
        Ok(index)
    }

    /// Stops actor `a` and its children: they get nothing more, their timers die.
    fn stop_actor(&mut self, a: usize) {
        if self.actors[a].gone {
            return;
        }
        self.actors[a].gone = true;
        // (Emptied, not cleared: a timer loop leaves a record per child it made.)
        self.actors[a].mailbox = VecDeque::new();
        if self.actors[a]
            .machine
            .as_ref()
            .is_some_and(|m| m.read().pending_timers().next().is_some())
        {
            self.timer_events += 1;
        }
        let actor = &mut self.actors[a];
        let machine = actor.machine.take().and_then(|m| m.into_interpreted());
        if let Some(m) = machine.filter(|_| self.spare.len() < MAX_SPARE) {
            self.spare.push(m);
        }
        let actor = &mut self.actors[a];
        if let Some(b) = actor.behavior.take() {
            if self.spare_bound.len() < MAX_SPARE {
                let (src, name) = (actor.src.clone(), actor.name.clone());
                self.spare_bound.push((src, name, b));
            }
        }
        let actor = &mut self.actors[a];
        actor.armed = HashMap::new();
        actor.early_children = Vec::new();
        self.live.retain(|&x| x != a);
        let id = self.actors[a].id.clone();
        if self.by_id.get(&id) == Some(&a) {
            self.by_id.remove(&id);
        }
        let children: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&c| self.actors[c].parent == Some(a))
            .collect();
        for c in children {
            self.stop_actor(c);
        }
    }

    /// Gives actor `a`'s new timers (those armed before its deferred run reached `before`,
    /// (messages delivered, changes made), or all) their places in the arming order, and
    /// forgets those of its timers that fired or were cancelled (a timer loop arms many).
    fn note_timers(&mut self, a: usize, before: Option<(usize, usize)>) {
        let actor = &mut self.actors[a];
        let seen = actor.seen_seq;
        let Some(machine) = actor.machine.as_deref().map(|m| m.read()) else {
            return;
        };
        let changes = machine.timer_changes();
        if changes == actor.timer_changes {
            return;
        }
        if before.is_none() {
            actor.timer_changes = changes;
        }
        self.timer_events += 1;
        let pending: Vec<u32> = machine.pending_timers().map(|(_, s)| s).collect();
        actor.armed.retain(|s, _| pending.contains(s));
        let mut new: Vec<u32> = pending
            .into_iter()
            .filter(|&s| {
                seen.is_none_or(|x| s > x)
                    && before.is_none_or(|(msgs, changes)| {
                        machine
                            .timer_armed_after(s)
                            .is_some_and(|(m, c)| m <= msgs && c <= changes)
                    })
            })
            .collect();
        new.sort_unstable();
        for s in new {
            actor.armed.insert(s, self.next_armed);
            self.next_armed += 1;
            actor.seen_seq = Some(s);
        }
    }

    /// Every pending timer of a live actor: (due, arming order, actor, seq), sorted.
    fn timers(&self) -> Vec<(Instant, u64, usize, u32)> {
        let mut list = Vec::new();
        for &a in &self.live {
            let Some(machine) = self.actors[a].machine.as_deref().map(|m| m.read()) else {
                continue;
            };
            for (due, seq) in machine.pending_timers() {
                let order = self.actors[a].armed.get(&seq).copied().unwrap_or(u64::MAX);
                list.push((due, order, a, seq));
            }
        }
        list.sort_unstable();
        list
    }

    /// A number that changes when any timer is armed or cancelled, or an actor comes or goes.
    fn timer_changes(&self) -> u64 {
        self.timer_events
    }

    /// Fires the timers due after the clock moved, as XState's `SimulatedClock` does: it
    /// takes the pending timers sorted by due time (ties in the order they were armed) and
    /// walks the list, firing each one that is due; when a timer fired before was armed or
    /// cancelled something, it starts over with a fresh list before the next entry. So a
    /// timer armed while firing, due at once (a zero delay), fires in the same advance only
    /// if the list had another entry after the timer that armed it.
    pub(super) fn flush_timers(&mut self, budget: &mut usize) -> Result<(), String> {
        'flush: loop {
            let list = self.timers();
            let mut changed = false;
            for &(due, _, a, seq) in &list {
                if changed {
                    continue 'flush;
                }
                if due > self.now || self.actors[a].gone {
                    continue;
                }
                *budget = budget
                    .checked_sub(1)
                    .ok_or("too many timers fired for one '@advance': a zero-delay timer loop")?;
                let before = self.timer_changes();
                self.fire(a, seq, budget)?;
                changed = self.timer_changes() != before;
                self.retire_idle();
            }
            break;
        }
        // A request's timeout (a request has no bus to answer it here) ends it in
        // `xstate.error.request`, after the timers due at the same time.
        for a in self.live.clone() {
            loop {
                let actor = &mut self.actors[a];
                actor.busy = true;
                let Some((machine, behavior)) = actor.parts() else {
                    break;
                };
                let r = machine.handle_request_timeout(self.now, behavior);
                let fired = matches!(r, Ok(true));
                self.after_call(a, r.map(|_| ()), budget)?;
                self.run_mailbox(a, budget)?;
                if !fired {
                    break;
                }
                *budget = budget
                    .checked_sub(1)
                    .ok_or("too many timers fired for one '@advance': a zero-delay timer loop")?;
            }
        }
        Ok(())
    }
}
