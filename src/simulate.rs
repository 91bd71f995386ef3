//! `interstate simulate`: run a chart on a virtual clock and print its trace.
//!
//! The trace format is one JSON object per line, the same as XState's trace printed by the
//! project's reference oracle: first the start, then one line per input:
//!
//! ```text
//! {"step":1,"input":"GO","value":{"a":"b"},"actions":["exitA","tGo"],"done":false}
//! ```
//!
//! `actions` lists the user actions executed, in order (built-in actions left out). The messages
//! of `log` actions are listed, in order, under `logs` when there are any (XState's own trace
//! lists `log` as a built-in action, not under `actions`, so they get a field of their own). Messages
//! the machine sent to other machines are listed under `sent` when there are any. Messages
//! it sent to itself are delivered back right after the macrostep, as XState's mailbox does.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;
use std::rc::Rc;

use interstate_core::{Chart, Duration, Event, Instant, Machine, Target};
use serde_json::{json, Value};

use crate::bind::Behaviors;

/// The most timers fired or self-sent events delivered for one input line before the
/// simulation reports a loop (a zero-delay timer re-arming itself, a self-send ping-pong).
pub const MAX_DELIVERIES_PER_INPUT: usize = 100_000;

/// Settings of a simulation.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Guard values by name. Every guard the chart uses must have one.
    pub guards: HashMap<String, bool>,
    /// Named delays by name, in milliseconds.
    pub delays: HashMap<String, u64>,
    /// The machine id (default: the root state's id).
    pub machine_id: Option<String>,
    /// Adds the machine's context to every trace line (`"context"`: the JSON context, or
    /// `null` when the chart has none). Off by default: the trace format stays XState's.
    pub context: bool,
}

/// The machine used by the simulator: generous capacities, since it runs on a host.
pub type SimMachine<'c> = SimMachineOf<'c, 1024>;

/// [`SimMachine`] with state sets of `W` words: the simulator runs a chart of at most 256
/// states in one of 4 words, which makes each microstep much cheaper than 1024 words.
pub type SimMachineOf<'c, const W: usize> = Machine<'c, W, 256, 256, 256, 1024, 65536, 65536, 64>;

/// The most states a chart may have to run with the small state sets.
const SMALL_STATES: usize = 4 * 64;

/// What the simulator drives: the interpreter's [`SimMachine`] or a generated
/// [`NativeMachine`](interstate_core::machine::NativeMachine) of the same capacities. Both
/// read as the interpreter's machine (`read`); only their steps differ.
pub trait Simulated<'c, const W: usize> {
    /// The machine's state, outbox and timers.
    fn read(&self) -> &SimMachineOf<'c, W>;
    /// See [`Machine::start`].
    fn start(
        &mut self,
        now: Instant,
        b: &mut crate::bind::Bound,
    ) -> Result<(), interstate_core::Error>;
    /// See [`Machine::send`].
    fn send(
        &mut self,
        now: Instant,
        e: Event<'_>,
        b: &mut crate::bind::Bound,
    ) -> Result<(), interstate_core::Error>;
    /// See [`Machine::fire_timer`].
    fn fire_timer(
        &mut self,
        seq: u32,
        now: Instant,
        b: &mut crate::bind::Bound,
    ) -> Result<bool, interstate_core::Error>;
    /// See [`Machine::handle_request_timeout`].
    fn handle_request_timeout(
        &mut self,
        now: Instant,
        b: &mut crate::bind::Bound,
    ) -> Result<bool, interstate_core::Error>;
    /// See [`Machine::clear_outbox`].
    fn clear_outbox(&mut self);
}

macro_rules! simulated_impl {
    () => {
        fn start(
            &mut self,
            now: Instant,
            b: &mut crate::bind::Bound,
        ) -> Result<(), interstate_core::Error> {
            Self::start(self, now, b)
        }
        fn send(
            &mut self,
            now: Instant,
            e: Event<'_>,
            b: &mut crate::bind::Bound,
        ) -> Result<(), interstate_core::Error> {
            Self::send(self, now, e, b)
        }
        fn fire_timer(
            &mut self,
            seq: u32,
            now: Instant,
            b: &mut crate::bind::Bound,
        ) -> Result<bool, interstate_core::Error> {
            Self::fire_timer(self, seq, now, b)
        }
        fn handle_request_timeout(
            &mut self,
            now: Instant,
            b: &mut crate::bind::Bound,
        ) -> Result<bool, interstate_core::Error> {
            Self::handle_request_timeout(self, now, b)
        }
        fn clear_outbox(&mut self) {
            Self::clear_outbox(self)
        }
    };
}

impl<'c, const W: usize> Simulated<'c, W> for SimMachineOf<'c, W> {
    fn read(&self) -> &SimMachineOf<'c, W> {
        self
    }
    simulated_impl!();
}

/// The generated machine of chart `N` with the simulator's capacities.
pub type NativeSimMachine<N, const W: usize> =
    interstate_core::machine::NativeMachine<N, W, 256, 256, 256, 1024, 65536, 65536, 64>;

impl<N: interstate_core::machine::NativeChart, const W: usize> Simulated<'static, W>
    for NativeSimMachine<N, W>
{
    fn read(&self) -> &SimMachineOf<'static, W> {
        self.machine()
    }
    simulated_impl!();
}

struct Sim<'c, const W: usize, M: Simulated<'c, W>> {
    machine: Box<M>,
    _chart: std::marker::PhantomData<&'c ()>,
    behavior: crate::bind::Bound,
    log: Rc<RefCell<Vec<String>>>,
    logs: Rc<RefCell<Vec<String>>>,
    now: Instant,
    sent: Vec<Value>,
    show_context: bool,
}

fn payload_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    match std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| serde_json::from_str(s).ok())
    {
        Some(v) => v,
        None => Value::Array(bytes.iter().map(|&b| json!(b)).collect()),
    }
}

impl<'c, const W: usize, M: Simulated<'c, W>> Sim<'c, W, M> {
    /// Delivers self-sends and collects the rest, until the outbox stays empty.
    fn drain(&mut self, budget: &mut usize) -> Result<(), String> {
        let mut pending: VecDeque<(String, Vec<u8>)> = VecDeque::new();
        loop {
            for m in self.machine.read().outbox() {
                match m.target {
                    Target::ThisMachine => {
                        pending.push_back((m.event.to_string(), m.payload.to_vec()))
                    }
                    Target::Machine(t) if t == self.machine.read().id() => {
                        pending.push_back((m.event.to_string(), m.payload.to_vec()))
                    }
                    Target::Machine(t) => {
                        let mut msg = json!({"to": t, "event": m.event});
                        if !m.payload.is_empty() {
                            msg["data"] = payload_value(m.payload);
                        }
                        self.sent.push(msg);
                    }
                    Target::Topic(t) => {
                        let mut msg = json!({"topic": t, "event": m.event});
                        if !m.payload.is_empty() {
                            msg["data"] = payload_value(m.payload);
                        }
                        self.sent.push(msg);
                    }
                    Target::Broadcast => {
                        let mut msg = json!({"broadcast": true, "event": m.event});
                        if !m.payload.is_empty() {
                            msg["data"] = payload_value(m.payload);
                        }
                        self.sent.push(msg);
                    }
                }
            }
            self.machine.clear_outbox();
            let Some((event, payload)) = pending.pop_front() else {
                return Ok(());
            };
            *budget = budget
                .checked_sub(1)
                .ok_or("too many events sent to itself for one input: a send loop")?;
            self.machine
                .send(
                    self.now,
                    Event::new(&event).with_payload(&payload),
                    &mut self.behavior,
                )
                .map_err(|e| e.to_string())?;
        }
    }

    /// Fires the timers due after the clock moved, as XState's `SimulatedClock` does: it
    /// takes the pending timers sorted by due time (ties in the order they were armed) and
    /// walks the list, firing each one that is due; when a timer fired before was armed or
    /// cancelled something, it starts over with a fresh list before the next entry. So a
    /// timer armed while firing, due at once (a zero delay), fires in the same advance only
    /// if the list had another entry after the timer that armed it.
    fn flush_timers(&mut self, budget: &mut usize) -> Result<(), String> {
        let mut list: Vec<(Instant, u32)> = Vec::new();
        'flush: loop {
            list.clear();
            list.extend(self.machine.read().pending_timers());
            list.sort_unstable();
            let mut changed = false;
            for &(due, seq) in &list {
                if changed {
                    continue 'flush;
                }
                if due > self.now {
                    continue;
                }
                *budget = budget
                    .checked_sub(1)
                    .ok_or("too many timers fired for one '@advance': a zero-delay timer loop")?;
                let before = self.machine.read().timer_changes();
                self.machine
                    .fire_timer(seq, self.now, &mut self.behavior)
                    .map_err(|e| e.to_string())?;
                self.drain(budget)?;
                changed = self.machine.read().timer_changes() != before;
            }
            break;
        }
        // A request's timeout (a request has no bus to answer it here) ends it in
        // `xstate.error.request`, after the timers due at the same time.
        while self
            .machine
            .handle_request_timeout(self.now, &mut self.behavior)
            .map_err(|e| e.to_string())?
        {
            *budget = budget
                .checked_sub(1)
                .ok_or("too many timers fired for one '@advance': a zero-delay timer loop")?;
            self.drain(budget)?;
        }
        Ok(())
    }

    fn input(&mut self, line: &str) -> Result<(), String> {
        let mut budget = MAX_DELIVERIES_PER_INPUT;
        if let Some(ms) = line.strip_prefix("@advance") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                format!(
                    "'@advance' takes a whole number of milliseconds, not '{}'",
                    ms.trim()
                )
            })?;
            self.now = self.now + Duration::from_millis(ms);
            return self.flush_timers(&mut budget);
        }
        if line.starts_with('@') {
            return Err(format!("unknown directive '{line}' (only '@advance MS')"));
        }
        let (name, payload) = if line.starts_with('{') {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("not a JSON event object: {e}"))?;
            let Some(name) = v.get("type").and_then(Value::as_str) else {
                return Err("a JSON event needs a string 'type'".into());
            };
            let payload = match v.get("data") {
                Some(d) => d.to_string().into_bytes(),
                None => Vec::new(),
            };
            (name.to_string(), payload)
        } else {
            (line.to_string(), Vec::new())
        };
        self.machine
            .send(
                self.now,
                Event::new(&name).with_payload(&payload),
                &mut self.behavior,
            )
            .map_err(|e| e.to_string())?;
        self.drain(&mut budget)
    }

    fn line(&mut self, step: usize, input: Option<&str>) -> Value {
        let mut value = String::new();
        let _ = self.machine.read().write_value(&mut value);
        let mut out = json!({
            "step": step,
            "input": input,
            "value": serde_json::from_str::<Value>(&value).unwrap_or(Value::Null),
            "actions": std::mem::take(&mut *self.log.borrow_mut()),
            "done": self.machine.read().is_done(),
        });
        let logs = std::mem::take(&mut *self.logs.borrow_mut());
        if !logs.is_empty() {
            out["logs"] = json!(logs);
        }
        if !self.sent.is_empty() {
            out["sent"] = Value::Array(std::mem::take(&mut self.sent));
        }
        if self.show_context {
            out["context"] = self
                .machine
                .read()
                .context_json()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null);
        }
        out
    }
}

/// Runs the chart over the input lines, writing the trace to `out`. Returns `Ok(true)` when
/// every line ran, `Ok(false)` when an error line was printed (the caller exits non-zero).
pub fn run(
    chart: &Chart<'_>,
    options: &Options,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let Some((id, parts)) = prepare(chart, options, out)? else {
        return Ok(false);
    };
    if chart.state_count() <= SMALL_STATES {
        run_sized::<4>(chart, &id, parts, inputs, out)
    } else {
        run_sized::<1024>(chart, &id, parts, inputs, out)
    }
}

/// [`run`] with the machine generated for chart `N` (`interstate compile --native`) in
/// place of the interpreter: the same trace, from the generated macrostep. `W` is the
/// generated module's `WORDS`.
pub fn run_native<N: interstate_core::machine::NativeChart, const W: usize>(
    options: &Options,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let chart = N::chart();
    let Some((id, parts)) = prepare(&chart, options, out)? else {
        return Ok(false);
    };
    let machine = match NativeSimMachine::<N, W>::new(&id) {
        Ok(m) => Box::new(m),
        Err(e) => {
            writeln!(out, "{}", json!({"step": 0, "error": e.to_string()}))?;
            return Ok(false);
        }
    };
    run_machine(machine, parts, inputs, out)
}

/// Binds the chart's names for a run, or prints why it cannot run (`None`).
fn prepare(
    chart: &Chart<'_>,
    options: &Options,
    out: &mut dyn Write,
) -> std::io::Result<Option<(String, Parts)>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let logs = Rc::new(RefCell::new(Vec::new()));
    let logs_in = logs.clone();
    let mut behaviors =
        Behaviors::new().on_log(move |_, message| logs_in.borrow_mut().push(message.to_string()));
    for i in 0..chart.action_count() as u16 {
        let name = chart.action_name(interstate_core::ActionId(i)).to_string();
        let log = log.clone();
        behaviors = behaviors.action(&name.clone(), move |_| log.borrow_mut().push(name.clone()));
    }
    let mut missing = Vec::new();
    for i in 0..chart.guard_count() as u16 {
        let name = chart.guard_name(interstate_core::GuardId(i));
        match options.guards.get(name) {
            Some(&v) => behaviors = behaviors.guard(name, move |_| v),
            None => missing.push(name.to_string()),
        }
    }
    for (name, &ms) in &options.delays {
        behaviors = behaviors.delay(name, Duration::from_millis(ms));
    }
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|g| format!("'{g}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "the chart uses guard(s) {list} with no value: pass --guard NAME=true|false for each"
        );
        writeln!(out, "{}", json!({"step": 0, "error": msg}))?;
        return Ok(None);
    }
    let (behavior, unbound) = behaviors.bind_lenient(chart);
    if !unbound.delays.is_empty() {
        let list = unbound
            .delays
            .iter()
            .map(|g| format!("'{g}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "the chart uses named delay(s) {list} with no value: pass --delay NAME=MS for each"
        );
        writeln!(out, "{}", json!({"step": 0, "error": msg}))?;
        return Ok(None);
    }
    let id = options
        .machine_id
        .clone()
        .unwrap_or_else(|| chart.state_id(interstate_core::StateId(0)).to_string());
    let parts = Parts {
        show_context: options.context,
        behavior,
        log,
        logs,
    };
    Ok(Some((id, parts)))
}

/// What a run binds before its machine is made.
struct Parts {
    show_context: bool,
    behavior: crate::bind::Bound,
    log: Rc<RefCell<Vec<String>>>,
    logs: Rc<RefCell<Vec<String>>>,
}

fn run_sized<const W: usize>(
    chart: &Chart<'_>,
    id: &str,
    parts: Parts,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let machine = match SimMachineOf::<W>::new(*chart, id) {
        Ok(m) => Box::new(m),
        Err(e) => {
            writeln!(out, "{}", json!({"step": 0, "error": e.to_string()}))?;
            return Ok(false);
        }
    };
    run_machine(machine, parts, inputs, out)
}

fn run_machine<'c, const W: usize, M: Simulated<'c, W>>(
    machine: Box<M>,
    parts: Parts,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let Parts {
        show_context,
        behavior,
        log,
        logs,
    } = parts;
    let mut sim = Sim {
        machine,
        _chart: std::marker::PhantomData,
        behavior,
        log,
        logs,
        now: Instant::ZERO,
        sent: Vec::new(),
        show_context,
    };
    let started = sim
        .machine
        .start(Instant::ZERO, &mut sim.behavior)
        .map_err(|e| e.to_string())
        .and_then(|()| sim.drain(&mut MAX_DELIVERIES_PER_INPUT.clone()));
    if let Err(e) = started {
        writeln!(out, "{}", json!({"step": 0, "error": e}))?;
        return Ok(false);
    }
    let first = sim.line(0, None);
    writeln!(out, "{first}")?;
    let mut step = 1;
    for raw in inputs {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = sim.input(line) {
            let mut msg = String::new();
            let _ = write!(msg, "{e}");
            writeln!(out, "{}", json!({"step": step, "error": msg}))?;
            return Ok(false);
        }
        let l = sim.line(step, Some(line));
        writeln!(out, "{l}")?;
        step += 1;
    }
    Ok(true)
}

/// `interstate simulate --batch`: runs many cases read as JSON lines from `input`, each
/// `{"chart": {...}, "guards": {"g": true}, "delays": {"d": 500}, "inputs": ["GO", ...]}`, and
/// writes one line per case: `{"trace": [line, ...]}` with the lines `run` prints, or
/// `{"error": "..."}` when the case or its chart is refused.
pub fn run_batch(input: impl std::io::BufRead, out: &mut dyn Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let result = batch_case(&line);
        let v = match result {
            Ok(trace) => json!({ "trace": trace }),
            Err(e) => json!({ "error": e }),
        };
        writeln!(out, "{v}")?;
        out.flush()?;
    }
    Ok(())
}

fn batch_case(line: &str) -> Result<Vec<Value>, String> {
    let case: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON case: {e}"))?;
    let compiled = crate::compile_value(&case["chart"]).map_err(|e| e.to_string())?;
    let mut options = Options::default();
    if let Some(map) = case.get("guards").and_then(Value::as_object) {
        for (k, v) in map {
            let v = v.as_bool().ok_or(format!("guard '{k}' is not a boolean"))?;
            options.guards.insert(k.clone(), v);
        }
    }
    if let Some(map) = case.get("delays").and_then(Value::as_object) {
        for (k, v) in map {
            let v = v
                .as_u64()
                .ok_or(format!("delay '{k}' is not a whole number"))?;
            options.delays.insert(k.clone(), v);
        }
    }
    let inputs: Vec<String> = case
        .get("inputs")
        .and_then(Value::as_array)
        .map(|xs| {
            xs.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut buf = Vec::new();
    run(&compiled.chart(), &options, inputs, &mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
}
