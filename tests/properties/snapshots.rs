//! Snapshots of generated charts: a machine snapshotted after random inputs and restored into
//! a fresh machine goes on exactly as the original does, and a restore of corrupt bytes never
//! panics and never yields an illegal configuration.
//!
//! The behavior here keeps no state of its own (guards read the machine's context, the
//! `laterSend` / `cancelLater` pair keeps its send id in the context), so that the machine's
//! snapshot is the whole state of a run; the facade's closures of `behaviors.rs` keep a send id
//! in a closure, which no snapshot can see.

use interstate::core::machine::Status;
use interstate::core::{
    ActionContext, ActionId, Behavior, DelayId, Error, GuardContext, GuardId, SendId, Target,
};
use interstate::{Chart, Duration, Event, Instant};
use serde::{Deserialize, Serialize};

use crate::drive::{active_list, check_config, Op};
use crate::{EVENTS, M, MACHINE_ID, MICROSTEP_LIMIT};

/// The typed context of the runs.
#[derive(Serialize, Deserialize, Default, Debug)]
struct RunContext {
    count: u32,
    later: Option<u32>,
}

/// Actions that log, send and count in the context; guards that read it.
pub(crate) struct ContextBehavior<'c> {
    chart: Chart<'c>,
    pub(crate) log: Vec<String>,
}

impl<'c> ContextBehavior<'c> {
    pub(crate) fn new(chart: Chart<'c>) -> Self {
        ContextBehavior {
            chart,
            log: Vec::new(),
        }
    }
}

impl Behavior for ContextBehavior<'_> {
    fn action(&mut self, a: ActionId, cx: &mut ActionContext<'_>) {
        let name = self.chart.action_name(a);
        self.log.push(format!("{name}@{}", cx.event().name()));
        let _ = cx.update_context(|c: &mut RunContext| c.count += 1);
        match name {
            "selfSend" => {
                let _ = cx.send_self("B", b"");
            }
            "peerSend" => {
                let _ = cx.send("peer", "C", b"x");
            }
            "laterSend" => {
                if let Ok(id) =
                    cx.send_after(Target::ThisMachine, "A", Duration::from_millis(5), b"later")
                {
                    let _ = cx.update_context(|c: &mut RunContext| c.later = Some(id.0));
                }
            }
            "cancelLater" => {
                if let Ok(RunContext {
                    later: Some(id), ..
                }) = cx.context::<RunContext>()
                {
                    cx.cancel(SendId(id));
                }
            }
            _ => {}
        }
    }
    fn guard(&mut self, g: GuardId, cx: &GuardContext<'_>) -> bool {
        let count = cx.context::<RunContext>().map_or(0, |c| c.count);
        (count as usize + g.index()) % 3 == 0
    }
    fn delay(&mut self, _: DelayId) -> Option<Duration> {
        Some(Duration::from_millis(30))
    }
    fn log(&mut self, _: &str, message: &str) {
        self.log.push(format!("log:{message}"));
    }
}

/// One step's result and everything observable after it.
fn observe(m: &M<'_>, b: &mut ContextBehavior<'_>, what: &str, r: Result<(), Error>) -> String {
    let mut line = format!(
        "{what}: {r:?} {:?} {:?} log={:?} ctx={:?} timers={:?}",
        m.status(),
        active_list(m),
        std::mem::take(&mut b.log),
        m.context_bytes(),
        m.pending_timers().collect::<Vec<_>>(),
    );
    for o in m.outbox() {
        line.push_str(&format!(" out({:?},{},{:?})", o.target, o.event, o.payload));
    }
    line
}

/// Runs `ops` on a started machine from `now`; returns the trace and the clock.
pub(crate) fn run(
    m: &mut M<'_>,
    b: &mut ContextBehavior<'_>,
    ops: &[Op],
    mut now: Instant,
) -> (Vec<String>, Instant) {
    let mut trace = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        if m.status() != Status::Active {
            break;
        }
        let mut pending = Vec::new();
        for o in m.outbox() {
            if matches!(o.target, Target::ThisMachine)
                || matches!(o.target, Target::Machine(t) if t == MACHINE_ID)
            {
                pending.push(o.event.to_string());
            }
        }
        m.clear_outbox();
        for e in pending.iter().take(8) {
            let r = m.send(now, Event::new(e), b);
            trace.push(observe(m, b, &format!("{k} self {e}"), r));
        }
        match *op {
            Op::Send(i) => {
                let r = m.send(now, Event::new(EVENTS[i]), b);
                trace.push(observe(m, b, &format!("{k} {}", EVENTS[i]), r));
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                let mut fired = 0;
                while m.poll_timeout().is_some_and(|t| t <= now) && fired < 32 {
                    fired += 1;
                    let r = m.handle_timeout(now, b).map(|_| ());
                    trace.push(observe(m, b, &format!("{k} @{}", now.as_millis()), r));
                    if r.is_err() {
                        m.clear_outbox();
                        if m.status() != Status::Active {
                            break;
                        }
                    }
                }
            }
        }
    }
    (trace, now)
}

/// What a snapshot round trip found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RoundTrip {
    /// The restored machine ran as the original did.
    Same,
    /// Nothing to snapshot: the machine could not be made, or failed before the split.
    NotRun,
    /// The snapshot was refused, with this error.
    Refused(Error),
}

/// Runs `ops[..split]`, snapshots, restores into a fresh machine, runs `ops[split..]` on both
/// and compares. `Err` describes a difference or a broken invariant.
pub(crate) fn round_trip(chart: Chart<'_>, ops: &[Op], split: usize) -> Result<RoundTrip, String> {
    let Ok(mut a) = M::new(chart, MACHINE_ID).map(Box::new) else {
        return Ok(RoundTrip::NotRun);
    };
    a.set_microstep_limit(MICROSTEP_LIMIT);
    let mut ba = ContextBehavior::new(chart);
    if a.start(Instant::ZERO, &mut ba).is_err() {
        return Ok(RoundTrip::NotRun);
    }
    let (first, now) = run(&mut a, &mut ba, &ops[..split], Instant::ZERO);
    drop(first);
    if a.status() == Status::Failed {
        return Ok(RoundTrip::NotRun);
    }
    let mut buf = vec![0u8; 1 << 16];
    let n = match a.snapshot(now, &mut buf) {
        Ok(n) => n,
        Err(e) => return Ok(RoundTrip::Refused(e)),
    };
    let mut b = Box::new(M::new(chart, MACHINE_ID).map_err(|e| e.to_string())?);
    b.set_microstep_limit(MICROSTEP_LIMIT);
    b.restore(now, &buf[..n])
        .map_err(|e| format!("its own snapshot was refused: {e}"))?;
    check_config(&b).map_err(|e| format!("restored: {e}"))?;
    if a.status() != b.status() || active_list(&a) != active_list(&b) {
        return Err("the restored machine is in another state".into());
    }
    if a.context_bytes() != b.context_bytes() {
        return Err("the restored context differs".into());
    }
    // A second snapshot of the restored machine is the same bytes.
    let mut again = vec![0u8; 1 << 16];
    let m = b.snapshot(now, &mut again).map_err(|e| e.to_string())?;
    if again[..m] != buf[..n] {
        return Err("a snapshot of the restored machine differs from the snapshot".into());
    }
    let mut bb = ContextBehavior::new(chart);
    // What the original logged before the split is not part of the comparison.
    ba.log.clear();
    let (ta, _) = run(&mut a, &mut ba, &ops[split..], now);
    let (tb, _) = run(&mut b, &mut bb, &ops[split..], now);
    if ta != tb {
        let at = ta
            .iter()
            .zip(&tb)
            .position(|(x, y)| x != y)
            .unwrap_or(ta.len().min(tb.len()));
        return Err(format!(
            "the traces differ at line {at}:\n  original {:?}\n  restored {:?}",
            ta.get(at),
            tb.get(at)
        ));
    }
    Ok(RoundTrip::Same)
}

/// Restores `bytes` into a fresh machine: never panics; either refused (and the machine is
/// fresh, and can start) or the machine is in a legal configuration and steps.
pub(crate) fn restore_garbage(chart: Chart<'_>, bytes: &[u8]) -> Result<bool, String> {
    let Ok(mut m) = M::new(chart, MACHINE_ID).map(Box::new) else {
        return Ok(false);
    };
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = ContextBehavior::new(chart);
    match m.restore(Instant::ZERO, bytes) {
        Err(_) => {
            if m.status() != Status::Idle || m.active_states().next().is_some() {
                return Err("a refused restore left the machine changed".into());
            }
            let _ = m.start(Instant::ZERO, &mut b);
            Ok(false)
        }
        Ok(()) => {
            if m.status() != Status::Idle {
                check_config(&m).map_err(|e| format!("restored garbage: {e}"))?;
            }
            let _ = m.start(Instant::ZERO, &mut b);
            let _ = run(
                &mut m,
                &mut b,
                &[Op::Send(0), Op::Advance(100), Op::Send(3)],
                Instant::ZERO,
            );
            Ok(true)
        }
    }
}

/// A snapshot of a machine of `chart` after `ops`, if one can be taken.
pub(crate) fn snapshot_after(chart: Chart<'_>, ops: &[Op]) -> Option<Vec<u8>> {
    let mut m = M::new(chart, MACHINE_ID).map(Box::new).ok()?;
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = ContextBehavior::new(chart);
    m.start(Instant::ZERO, &mut b).ok()?;
    let (_, now) = run(&mut m, &mut b, ops, Instant::ZERO);
    let mut buf = vec![0u8; 1 << 16];
    let n = m.snapshot(now, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
