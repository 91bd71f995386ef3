//! `interstate run` and invoked children in processes of their own: the `--actor` forms that
//! make an `invoke` `src` a process (the parent's side), and what a chart run as such a child
//! hands back when it finishes (the child's side).

use std::io::Write;
use std::path::Path;

use interstate::bus::{Node, ProcessActor};
use interstate::CompiledChart;
use interstate_core::{StateId, StateKind};
use interstate_platform::node::ENV_RESULT_FD;

/// What `--actor` takes for `run`.
pub const ACTOR_FORMS: &str = "SRC=CHILD.json (a child chart in this process), \
    SRC=process:CHILD.json [ARG...] (the chart run as `interstate run CHILD.json --client \
    ARG...` in a process of its own) or SRC=exec:PROGRAM [ARG...] (any program; see \
    docs/json-format.md, Invoked actors)";

/// What an invoked src runs under `interstate run`.
#[derive(Clone, Debug)]
pub enum RunActor {
    /// A child machine in this process.
    Chart(Box<CompiledChart>),
    /// A process of its own.
    Process(ProcessActor),
}

/// `run --actor` options, by src. A chart file is checked now, so that a wrong path fails
/// the parent at start, not its child at the first invoke.
pub fn run_actors(specs: &[String]) -> Result<Vec<(String, RunActor)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let bad = || format!("--actor takes {ACTOR_FORMS}, not '{spec}'");
        let (src, how) = spec.split_once('=').ok_or_else(bad)?;
        if src.is_empty() {
            return Err(format!("--actor '{spec}': the src name is empty"));
        }
        let actor = if let Some(rest) = how.strip_prefix("process:") {
            let mut words = rest.split_whitespace();
            let file = words.next().ok_or_else(bad)?;
            super::load_chart(Path::new(file))?;
            let file = std::path::absolute(file).map_err(|e| format!("{file}: {e}"))?;
            let exe = std::env::current_exe()
                .map_err(|e| format!("--actor '{spec}': finding this program: {e}"))?;
            RunActor::Process(
                ProcessActor::new(exe)
                    .arg("run")
                    .arg(file)
                    .arg("--client")
                    .args(words),
            )
        } else if let Some(rest) = how.strip_prefix("exec:") {
            let mut words = rest.split_whitespace();
            let program = words.next().ok_or_else(bad)?;
            RunActor::Process(ProcessActor::new(program).args(words))
        } else if how.is_empty() {
            return Err(bad());
        } else {
            RunActor::Chart(Box::new(super::load_chart(Path::new(how))?))
        };
        if out.iter().any(|(s, _)| s == src) {
            return Err(format!("--actor: src '{src}' is given twice"));
        }
        out.push((src.to_string(), actor));
    }
    Ok(out)
}

/// The outputs of a chart's top-level final states, by state (what it hands back as an
/// invoked child when it reaches one).
pub struct Outputs(Vec<(StateId, String)>);

impl Outputs {
    pub fn of(compiled: &CompiledChart) -> Outputs {
        let chart = compiled.chart();
        let finals = (1..chart.state_count() as u16)
            .map(StateId)
            .filter(|&s| chart.parent(s) == Some(StateId(0)) && chart.kind(s) == StateKind::Final)
            .filter_map(|s| Some((s, compiled.output(s)?.to_string())))
            .collect();
        Outputs(finals)
    }

    /// The output of the final state machine `id` reached, if it has one.
    fn reached(&self, node: &Node, id: &str) -> Option<&str> {
        let m = node.machine(id)?;
        self.0
            .iter()
            .find(|(s, _)| m.is_active(*s))
            .map(|(_, o)| o.as_str())
    }
}

/// The machine `id` reached its final state: when a parent started this process as an
/// invoked child (`INTERSTATE_RESULT_FD` is set), its output goes to the parent's result
/// pipe, after the messages the machine sent are acknowledged (so that its parent gets them
/// before the child's done event).
pub fn hand_back(node: &mut Node, id: &str, outputs: &Outputs) -> Result<(), String> {
    let Some(fd) = std::env::var_os(ENV_RESULT_FD) else {
        return Ok(());
    };
    let fd = fd
        .to_str()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or_else(|| format!("{ENV_RESULT_FD} is not a descriptor number: {fd:?}"))?;
    node.run_until(std::time::Duration::from_secs(2), |n| {
        n.unacknowledged() == 0
    })
    .map_err(|e| e.to_string())?;
    let Some(output) = outputs.reached(node, id) else {
        return Ok(());
    };
    // The pipe the parent passed, opened by its /proc name: no descriptor number is taken
    // on trust as an open file.
    let path = format!("/proc/self/fd/{fd}");
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("{ENV_RESULT_FD} ({path}): {e}"))?;
    pipe.write_all(output.as_bytes())
        .map_err(|e| format!("writing the output to {ENV_RESULT_FD}: {e}"))
}
