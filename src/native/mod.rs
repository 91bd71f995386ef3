//! Charts compiled to native Rust: `interstate compile --native`.
//!
//! [`rust_module`] writes one Rust module for one chart: the chart's tables as statics (as
//! [`crate::codegen`] writes them: names, built-in actions, the state value), and a type
//! `Native` implementing the core's [`NativeChart`](interstate_core::machine::NativeChart)
//! with the chart's macrostep specialised to it:
//! - selection as one function per state: a `match` on the event id for exact descriptors
//!   (guards as match guards), then partial descriptors and the wildcard in document order;
//!   a compound state asks its active child first, a parallel state every active region;
//! - each transition's microstep as a function of its own: the exit sequence unrolled (one
//!   test per state of its domain), transition actions, the entry sequence unrolled (the
//!   entry set is fixed at generation time, since it depends on no history);
//! - several transitions in one microstep (parallel regions): sibling moves straight, the
//!   others through exit and entry sets built from each one's static plan, after the
//!   interpreter's own conflict resolution.
//!
//! The machine is a [`NativeMachine`](interstate_core::machine::NativeMachine): the same
//! outbox, timers, requests, context and snapshot as the interpreter's
//! [`Machine`](interstate_core::machine::Machine), in a state set sized for the chart (`WORDS`
//! 64-bit words). Actions and guards go through the same
//! [`Behavior`](interstate_core::Behavior).
//!
//! Charts with history states compile too: what a microstep exits and enters then depends on
//! what history recorded, so their microsteps take the exit and entry sets, the recording and
//! the entry order from the interpreter's own functions at run time
//! (`NativeHost::plan_microstep`), and run the actions through the generated `match` arms;
//! their selection is generated, and the interpreter's only while a history quirk leaves the
//! configuration irregular. Charts the generator cannot compile are refused with
//! [`NativeError::Unsupported`], naming the feature and the state (more history memory than
//! its analysis holds). See `docs/native.md` for the design and when to choose which.
//!
//! The generated code uses only `interstate_core`, has no inner attributes (pull it in with
//! `include!`), no `unsafe` and no allocation, and is `no_std`. [`build`] does it from a
//! build script.

mod emit;
mod emit_history;
mod emit_parallel_root;
mod emit_select;

use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

use interstate_core::chart::TransitionId;
use interstate_core::set::StateSet;
use interstate_core::{Chart, StateId};

/// Why a chart cannot be compiled to native code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeError {
    /// The chart uses a feature the generator does not compile yet.
    Unsupported {
        /// The feature.
        feature: &'static str,
        /// The state that uses it (its `#id`).
        state: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// The chart has more states than the generator's analysis handles.
    TooManyStates {
        /// The chart's states.
        states: usize,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeError::Unsupported {
                feature,
                state,
                hint,
            } => write!(
                f,
                "cannot compile to native code: {feature} (state '#{state}') is not supported by the generator yet; {hint}"
            ),
            NativeError::TooManyStates { states, limit } => write!(
                f,
                "cannot compile to native code: the chart has {states} states, the generator handles at most {limit}"
            ),
        }
    }
}

impl std::error::Error for NativeError {}

/// The static exit part of a transition: the active states of `lo..=hi` exit, and
/// `with_domain` (the domain itself, for a transition re-entering its source that is the
/// domain).
#[derive(Clone, Debug)]
struct ExitRange {
    lo: u16,
    hi: u16,
    with_domain: Option<u16>,
}

/// What a transition exits and enters, fixed at generation time; `exit` is `None` for a
/// targetless transition (nothing exits or enters).
#[derive(Clone, Debug)]
struct Plan {
    exit: Option<ExitRange>,
    enter: Vec<u16>,
}

/// The most states the generator handles (the state sets of its analysis).
pub const MAX_NATIVE_STATES: usize = 64 * 1024;

/// The history memory (16-bit words) of the machine the generator's analysis runs.
const PROBE_HISTORY: usize = 4096;

/// Checks that the generator can compile `chart`: the first unsupported feature, by state.
pub fn check(chart: &Chart<'_>) -> Result<(), NativeError> {
    if chart.state_count() > MAX_NATIVE_STATES {
        return Err(NativeError::TooManyStates {
            states: chart.state_count(),
            limit: MAX_NATIVE_STATES,
        });
    }
    if let Some(inv) = chart.invocations().next() {
        let state = (0..chart.state_count() as u16)
            .map(StateId)
            .find(|&s| chart.entry_actions(s).contains(&inv.start))
            .map_or_else(
                || chart.state_id(StateId(0)).to_string(),
                |s| chart.state_id(s).to_string(),
            );
        return Err(NativeError::Unsupported {
            feature: "an invoked actor (invoke)",
            state,
            hint: "run this chart with the interpreter (a Machine)",
        });
    }
    if chart.history_slots() > PROBE_HISTORY {
        let state = (0..chart.state_count() as u16)
            .map(StateId)
            .find(|&s| chart.kind(s).is_history())
            .map(|s| chart.state_id(s).to_string())
            .unwrap_or_default();
        return Err(NativeError::Unsupported {
            feature: "more history memory than 4,096 words",
            state,
            hint: "run this chart with the interpreter (a Machine)",
        });
    }
    Ok(())
}

/// The static plans of every transition and the initial configuration, from the
/// interpreter's own algorithm (a machine of `W` words over the chart, never started).
fn plans<const W: usize>(chart: &Chart<'_>) -> (Vec<Plan>, Vec<u16>) {
    type Probe<'c, const W: usize> =
        interstate_core::Machine<'c, W, 1, 1, 1, PROBE_HISTORY, 1, 1, 0>;
    let probe: Box<Probe<'_, W>> = match Probe::<W>::new(*chart, "native") {
        Ok(m) => Box::new(m),
        // The chart was validated and its size checked: a machine of it always exists.
        Err(_) => return (Vec::new(), Vec::new()),
    };
    let mut plans = Vec::new();
    for t in 0..chart.transition_count() as u16 {
        let tr = chart.transition(TransitionId(t));
        // With history states the sets depend on what was recorded: they are computed at run
        // time (`NativeHost::plan_microstep`), and no static plan is used.
        if chart.targets(&tr).is_empty() || chart.has_history() {
            plans.push(Plan {
                exit: None,
                enter: Vec::new(),
            });
            continue;
        }
        let mut enter = StateSet::<W>::new();
        let domain = probe.static_plan(TransitionId(t), &mut enter);
        let exit = match domain {
            None => ExitRange {
                lo: 0,
                hi: chart.state_count() as u16 - 1,
                with_domain: None,
            },
            Some(d) => ExitRange {
                lo: d.0 + 1,
                hi: chart.end(d).0,
                with_domain: (tr.reenter && tr.source == d).then_some(d.0),
            },
        };
        plans.push(Plan {
            exit: Some(exit),
            enter: enter.iter().map(|s| s.0).collect(),
        });
    }
    let mut initial = StateSet::<W>::new();
    probe.static_initial(&mut initial);
    (plans, initial.iter().map(|s| s.0).collect())
}

/// The Rust source of the native module of `chart` (see the [module doc](self)). `source`
/// names where the chart came from, for the header (a path relative to the repository).
pub fn rust_module(chart: &Chart<'_>, source: &str) -> Result<String, NativeError> {
    check(chart)?;
    let n = chart.state_count();
    let (plans, initial) = if n <= 256 {
        plans::<4>(chart)
    } else {
        plans::<1024>(chart)
    };
    let words = n.div_ceil(64).max(1);
    let tables = crate::codegen::rust_module(chart, source);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `interstate compile --native {source}`. Do not edit: regenerate it."
    );
    let _ = writeln!(
        out,
        "// The chart's macrostep as Rust code over its tables (interstate::native); uses\n// `interstate_core` only, no `unsafe`, no allocation, `no_std`.\n"
    );
    // The tables module's own header is replaced by this one.
    for line in tables.lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "
/// 64-bit words of the state sets this chart needs ({n} states).
pub const WORDS: usize = {words};

/// The chart compiled to Rust: run it in a [`Machine`] (or an
/// `interstate_core::machine::NativeMachine<Native, WORDS, ...>` of other capacities).
pub struct Native;

/// A machine running this chart's generated macrostep, with the default capacities of
/// `interstate_core::Machine` but state sets sized for the chart.
pub type Machine = interstate_core::machine::NativeMachine<Native, WORDS>;
"
    );
    let mut e = emit::Emitter {
        chart,
        plans: &plans,
        initial: &initial,
        out,
    };
    e.emit();
    Ok(e.out)
}

/// Compiles the chart file `path` (JSON or a chart image) to its native module.
pub fn compile_file(path: &Path) -> Result<String, crate::Error> {
    let bytes = std::fs::read(path).map_err(|e| crate::Error::Io(e.to_string()))?;
    let compiled = crate::load_chart_bytes(&bytes)?;
    let source = path.to_string_lossy().replace('\\', "/");
    rust_module(&compiled.chart(), &source).map_err(crate::Error::Native)
}

/// For a build script: compiles the chart file `chart` (relative to the package's
/// directory) to `$OUT_DIR/<file stem>_native.rs`, tells Cargo to run the script again when
/// the chart changes, and returns the path written. Include it with
/// `include!(concat!(env!("OUT_DIR"), "/lamp_native.rs"))` inside a module.
///
/// ```ignore
/// // build.rs
/// fn main() {
///     interstate::native::build("charts/lamp.json").expect("the chart compiles to Rust");
/// }
/// ```
pub fn build(chart: impl AsRef<Path>) -> Result<std::path::PathBuf, crate::Error> {
    let chart = chart.as_ref();
    println!("cargo:rerun-if-changed={}", chart.display());
    let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| {
        crate::Error::Io("OUT_DIR is not set: call interstate::native::build from build.rs".into())
    })?;
    let stem = chart
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        })
        .unwrap_or_else(|| "chart".into());
    let code = compile_file(chart)?;
    let path = Path::new(&out_dir).join(format!("{stem}_native.rs"));
    std::fs::write(&path, code).map_err(|e| crate::Error::Io(e.to_string()))?;
    Ok(path)
}
