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
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::rc::Rc;

use interstate_core::{Chart, Duration, Event, Instant, Machine};
use serde_json::{json, Value};

mod system;

use system::{behaviors_for, Shared, System};

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
    /// Charts the chart (and its children) may invoke, by `src`: each `invoke` of one runs
    /// it as a child machine on the same clock (`--actor SRC=CHILD.json`).
    pub actors: HashMap<String, crate::compile::CompiledChart>,
}

/// The machine used by the simulator: generous capacities, since it runs on a host.
pub type SimMachine<'c> = SimMachineOf<'c, 1024>;

/// [`SimMachine`] with state sets of `W` words: the simulator runs a chart of at most 256
/// states in one of 4 words, which makes each microstep much cheaper than 1024 words.
pub type SimMachineOf<'c, const W: usize> = Machine<'c, W, 256, 256, 256, 1024, 65536, 65536, 64>;

/// What the simulator drives: the interpreter's [`SimMachine`] or a generated
/// [`NativeMachine`](interstate_core::machine::NativeMachine) of the same capacities. Both
/// read as the interpreter's machine (`read`); only their steps differ.
pub trait Simulated<'c, const W: usize> {
    /// The machine's state, outbox and timers.
    fn read(&self) -> &SimMachineOf<'c, W>;
    /// See [`Machine::start_with_data`] (`data`: an invoked child's `input`, see
    /// [`interstate_platform::node::invoked::child_init_data`]).
    fn start(
        &mut self,
        now: Instant,
        data: &[u8],
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
    /// The interpreter's machine, to be used again for another chart (see
    /// [`Machine::reset_for`]); `None` for a generated one.
    fn into_interpreted(self: Box<Self>) -> Option<Box<SimMachineOf<'c, W>>>;
}

macro_rules! simulated_impl {
    () => {
        fn start(
            &mut self,
            now: Instant,
            data: &[u8],
            b: &mut crate::bind::Bound,
        ) -> Result<(), interstate_core::Error> {
            Self::start_with_data(self, now, data, b)
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
    fn into_interpreted(self: Box<Self>) -> Option<Box<SimMachineOf<'c, W>>> {
        Some(self)
    }
    simulated_impl!();
}

/// The generated machine of chart `N` with the simulator's capacities.
pub type NativeSimMachine<N, const W: usize> =
    interstate_core::machine::NativeMachine<N, W, 256, 256, 256, 1024, 65536, 65536, 64>;

impl<'c, N: interstate_core::machine::NativeChart, const W: usize> Simulated<'c, W>
    for NativeSimMachine<N, W>
{
    fn read(&self) -> &SimMachineOf<'c, W> {
        self.machine()
    }
    fn into_interpreted(self: Box<Self>) -> Option<Box<SimMachineOf<'c, W>>> {
        None
    }
    simulated_impl!();
}

/// The most states a chart may have to run with the small state sets (4 words): each
/// microstep is much cheaper than with 1024 words.
const SMALL_STATES: usize = 4 * 64;

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

struct Sim<'c, const W: usize> {
    system: System<'c, W>,
    show_context: bool,
}

impl<const W: usize> Sim<'_, W> {
    fn input(&mut self, line: &str) -> Result<(), String> {
        let mut budget = MAX_DELIVERIES_PER_INPUT;
        if let Some(ms) = line.strip_prefix("@advance") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                format!(
                    "'@advance' takes a whole number of milliseconds, not '{}'",
                    ms.trim()
                )
            })?;
            self.system.now = self.system.now + Duration::from_millis(ms);
            return self.system.flush_timers(&mut budget);
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
        self.system.send_root(name, payload, &mut budget)
    }

    fn line(&mut self, step: usize, input: Option<&str>, shared: &Shared<'_>) -> Value {
        let machine = self.system.root();
        let mut value = String::new();
        let _ = machine.write_value(&mut value);
        let mut out = json!({
            "step": step,
            "input": input,
            "value": serde_json::from_str::<Value>(&value).unwrap_or(Value::Null),
            "actions": std::mem::take(&mut *shared.log.borrow_mut()),
            "done": machine.is_done(),
        });
        let logs = std::mem::take(&mut *shared.logs.borrow_mut());
        if !logs.is_empty() {
            out["logs"] = json!(logs);
        }
        if !self.system.sent.is_empty() {
            out["sent"] = Value::Array(std::mem::take(&mut self.system.sent));
        }
        let machine = self.system.root();
        if self.show_context {
            out["context"] = machine
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
    let Some((id, behavior, shared)) = prepare(chart, options, out)? else {
        return Ok(false);
    };
    let charts = std::iter::once(*chart).chain(options.actors.values().map(|c| c.chart()));
    let largest = charts.map(|c| c.state_count()).max().unwrap_or(0);
    if largest <= SMALL_STATES {
        run_sized::<4>(chart, &id, behavior, shared, inputs, out)
    } else {
        run_sized::<1024>(chart, &id, behavior, shared, inputs, out)
    }
}

/// [`run`] with the machine generated for chart `N` (`interstate compile --native`) in
/// place of the interpreter: the same trace, from the generated macrostep. `W` is the
/// generated module's `WORDS`. (Generated charts have no invocations, so the machine has
/// no children.)
pub fn run_native<N: interstate_core::machine::NativeChart + 'static, const W: usize>(
    options: &Options,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let chart = N::chart();
    let Some((id, behavior, shared)) = prepare(&chart, options, out)? else {
        return Ok(false);
    };
    let machine: Box<dyn Simulated<'_, W>> = match NativeSimMachine::<N, W>::new(&id) {
        Ok(m) => Box::new(m),
        Err(e) => {
            writeln!(out, "{}", json!({"step": 0, "error": e.to_string()}))?;
            return Ok(false);
        }
    };
    run_machine(machine, behavior, shared, inputs, out)
}

/// Binds the chart's names for a run, or prints why it cannot run (`None`).
fn prepare<'c>(
    chart: &Chart<'_>,
    options: &'c Options,
    out: &mut dyn Write,
) -> std::io::Result<Option<(String, crate::bind::Bound, Shared<'c>)>> {
    let shared = Shared {
        options,
        log: Rc::new(RefCell::new(Vec::new())),
        logs: Rc::new(RefCell::new(Vec::new())),
    };
    // Every guard of every chart needs a value (the oracle gives one set to them all).
    let mut missing: Vec<String> = Vec::new();
    let charts = std::iter::once(*chart).chain(options.actors.values().map(|c| c.chart()));
    for c in charts {
        for i in 0..c.guard_count() as u16 {
            let name = c.guard_name(interstate_core::GuardId(i));
            if !options.guards.contains_key(name) && !missing.iter().any(|m| m == name) {
                missing.push(name.to_string());
            }
        }
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
    let (behavior, unbound) = behaviors_for(chart, "", &shared).bind_lenient(chart);
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
    if !unbound.actors.is_empty() {
        let list = unbound
            .actors
            .iter()
            .map(|g| format!("'{g}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "the chart invokes src {list} with no actor: pass --actor SRC=CHILD.json for each"
        );
        writeln!(out, "{}", json!({"step": 0, "error": msg}))?;
        return Ok(None);
    }
    let id = options
        .machine_id
        .clone()
        .unwrap_or_else(|| chart.state_id(interstate_core::StateId(0)).to_string());
    Ok(Some((id, behavior, shared)))
}

fn run_sized<'c, const W: usize>(
    chart: &Chart<'c>,
    id: &str,
    behavior: crate::bind::Bound,
    shared: Shared<'c>,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let machine = match system::new_machine::<W>(*chart, id) {
        Ok(m) => m,
        Err(e) => {
            writeln!(out, "{}", json!({"step": 0, "error": e.to_string()}))?;
            return Ok(false);
        }
    };
    run_machine(machine, behavior, shared, inputs, out)
}

fn run_machine<'c, const W: usize>(
    machine: Box<dyn Simulated<'c, W> + 'c>,
    behavior: crate::bind::Bound,
    shared: Shared<'c>,
    inputs: impl IntoIterator<Item = String>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let show_context = shared.options.context;
    let log = shared.log.clone();
    let logs = shared.logs.clone();
    let view = Shared {
        options: shared.options,
        log,
        logs,
    };
    let mut sim = Sim {
        system: System::new(machine, behavior, shared),
        show_context,
    };
    if let Err(e) = sim.system.start(&mut MAX_DELIVERIES_PER_INPUT.clone()) {
        writeln!(out, "{}", json!({"step": 0, "error": e}))?;
        return Ok(false);
    }
    let first = sim.line(0, None, &view);
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
        let l = sim.line(step, Some(line), &view);
        writeln!(out, "{l}")?;
        step += 1;
    }
    Ok(true)
}

/// `interstate simulate --batch`: runs many cases read as JSON lines from `input`, each
/// `{"chart": {...}, "guards": {"g": true}, "delays": {"d": 500}, "inputs": ["GO", ...]}`
/// (and `"actors": {"src": {...}}`, the charts it invokes), and
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
    if let Some(map) = case.get("actors").and_then(Value::as_object) {
        for (src, chart) in map {
            let compiled =
                crate::compile_value(chart).map_err(|e| format!("actor '{src}': {e}"))?;
            options.actors.insert(src.clone(), compiled);
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
