//! Running a chart: the inputs of a run (`Op`), the run itself (`drive`), and the invariants
//! checked after every step (`check_config`).

use std::cell::RefCell;
use std::rc::Rc;

use interstate::core::chart::StateKind;
use interstate::core::machine::Status;
use interstate::core::Error;
use interstate::core::{
    ActionContext, ActionId, Behavior, DelayId, GuardContext, GuardId, StateId, Target,
};
use interstate::{Chart, Duration, Event, Instant};

use crate::behaviors::{behaviors, GuardScript};
use crate::generator::Src;
use crate::{EVENTS, M, MACHINE_ID, MICROSTEP_LIMIT};

// ----- invariants ----------------------------------------------------------------------------

/// The configuration is legal: the root is active; an active compound state has exactly one
/// active non-history child; an active parallel state has all its non-history children
/// active; every active state's parent is active; no history state is active.
pub(crate) fn check_config(m: &M<'_>) -> Result<(), String> {
    let chart = *m.chart();
    if !m.is_active(StateId(0)) {
        return Err("the root is not active".into());
    }
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        if !m.is_active(s) {
            continue;
        }
        let name = chart.state_id(s);
        let kind = chart.kind(s);
        if kind.is_history() {
            return Err(format!("history state '{name}' is active"));
        }
        if let Some(p) = chart.parent(s) {
            if !m.is_active(p) {
                return Err(format!("'{name}' is active but its parent is not"));
            }
        }
        let children: Vec<StateId> = chart
            .children(s)
            .filter(|&c| !chart.kind(c).is_history())
            .collect();
        let active = children.iter().filter(|&&c| m.is_active(c)).count();
        match kind {
            StateKind::Compound if active != 1 => {
                return Err(format!(
                    "compound state '{name}' has {active} active children"
                ))
            }
            StateKind::Parallel if active != children.len() => {
                return Err(format!(
                    "parallel state '{name}' has {active} of {} regions active",
                    children.len()
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn active_list(m: &M<'_>) -> Vec<u16> {
    m.active_states().map(|s| s.0).collect()
}

// ----- driving -------------------------------------------------------------------------------

/// One input of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Send(usize),
    Advance(u64),
}

pub(crate) fn ops_from(words: &[u32]) -> Vec<Op> {
    let mut src = Src::new(words);
    (0..words.len())
        .map(|_| match src.below(10) {
            0..=6 => Op::Send(src.below(EVENTS.len())),
            _ => Op::Advance(src.pick(&[0, 1, 5, 10, 30, 100, 1000])),
        })
        .collect()
}

/// What a run did, step by step, for comparing two runs.
pub(crate) type Trace = Vec<String>;

/// Runs `ops` on `chart`, checking the invariants after every step. Returns the trace, or the
/// first broken invariant.
pub(crate) fn drive(chart: Chart<'_>, ops: &[Op], guard_values: &[bool]) -> Result<Trace, String> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let script = GuardScript::new(guard_values);
    let (mut behavior, _unbound) = behaviors(&script, &log).bind_lenient(&chart);
    let mut m = match M::new(chart, MACHINE_ID) {
        Ok(m) => Box::new(m),
        // Too many states or too much history for these capacities: nothing to run.
        Err(e) => return Ok(vec![format!("new: {e}")]),
    };
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut trace = Trace::new();
    let mut now = Instant::ZERO;
    let r = m.start(now, &mut behavior);
    let mut done_config: Option<Vec<u16>> = None;

    // After each step: the invariants, and a trace line.
    let after_step = |m: &mut M<'_>,
                      what: &str,
                      r: Result<(), Error>,
                      trace: &mut Trace,
                      done_config: &mut Option<Vec<u16>>|
     -> Result<bool, String> {
        let mut line = format!(
            "{what}: {r:?} {:?} {:?} log={:?}",
            m.status(),
            active_list(m),
            std::mem::take(&mut *log.borrow_mut())
        );
        for o in m.outbox() {
            line.push_str(&format!(" out({:?},{},{:?})", o.target, o.event, o.payload));
        }
        trace.push(line);
        match r {
            Ok(()) => {
                if m.status() == Status::Failed {
                    return Err(format!("{what}: Ok but the machine is Failed"));
                }
                check_config(m).map_err(|e| format!("{what}: {e}"))?;
                if let Some(cfg) = done_config {
                    if m.status() != Status::Done || active_list(m) != *cfg {
                        return Err(format!("{what}: a done machine changed"));
                    }
                } else if m.status() == Status::Done {
                    *done_config = Some(active_list(m));
                }
                Ok(true)
            }
            Err(e) => {
                if m.status() != Status::Failed {
                    return Err(format!(
                        "{what}: error {e:?} but the machine is {:?}",
                        m.status()
                    ));
                }
                let again = m.send(Instant::ZERO, Event::new("A"), &mut NoopBehavior);
                if again != Err(Error::NotRunning) {
                    return Err(format!(
                        "{what}: a failed machine answered {again:?} to an event"
                    ));
                }
                Ok(false)
            }
        }
    };

    if !after_step(&mut m, "start", r, &mut trace, &mut done_config)? {
        return Ok(trace);
    }
    for (k, op) in ops.iter().enumerate() {
        // Deliver what the machine sent itself, then forget the rest of the outbox.
        let mut pending: Vec<String> = Vec::new();
        for o in m.outbox() {
            match o.target {
                Target::ThisMachine => pending.push(o.event.to_string()),
                Target::Machine(t) if t == MACHINE_ID => pending.push(o.event.to_string()),
                Target::Machine(_) | Target::Topic(_) | Target::Broadcast => {}
            }
        }
        m.clear_outbox();
        for (j, e) in pending.iter().take(8).enumerate() {
            let r = m.send(now, Event::new(e), &mut behavior);
            if !after_step(
                &mut m,
                &format!("{k}.self{j} {e}"),
                r,
                &mut trace,
                &mut done_config,
            )? {
                return Ok(trace);
            }
        }
        match *op {
            Op::Send(i) => {
                let e = EVENTS[i];
                let event = match m.event_id(e) {
                    Some(id) if k % 2 == 0 => Event::from_id(&chart, id),
                    _ => Event::new(e),
                };
                let r = m.send(now, event, &mut behavior);
                if !after_step(&mut m, &format!("{k} {e}"), r, &mut trace, &mut done_config)? {
                    return Ok(trace);
                }
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                let mut fired = 0;
                let mut kept_send = false;
                while m.poll_timeout().is_some_and(|t| t <= now) && fired < 32 {
                    fired += 1;
                    let r = m.handle_timeout(now, &mut behavior).map(|_| ());
                    if matches!(
                        r,
                        Err(Error::OutboxFull { .. } | Error::PayloadSpaceFull { .. })
                    ) && m.status() == Status::Active
                    {
                        // A delayed send waits for room: it must still be due, and fire once
                        // the outbox is drained.
                        if std::mem::replace(&mut kept_send, true) {
                            return Err(format!(
                                "{k} @{}: {r:?} again with the outbox drained",
                                now.as_millis()
                            ));
                        }
                        let due = m.poll_timeout();
                        if due.is_none_or(|t| t > now) {
                            return Err(format!(
                                "{k} @{}: {r:?} dropped the send (next timer {due:?})",
                                now.as_millis()
                            ));
                        }
                        trace.push(format!("{k} @{}: {r:?} kept", now.as_millis()));
                        m.clear_outbox();
                        continue;
                    }
                    kept_send = false;
                    if !after_step(
                        &mut m,
                        &format!("{k} @{}", now.as_millis()),
                        r,
                        &mut trace,
                        &mut done_config,
                    )? {
                        return Ok(trace);
                    }
                    if m.outbox_len() > 32 {
                        m.clear_outbox();
                    }
                }
            }
        }
    }
    Ok(trace)
}

/// Does nothing; guards are false and every named delay is 10 ms.
pub(crate) struct NoopBehavior;

impl Behavior for NoopBehavior {
    fn action(&mut self, _: ActionId, _: &mut ActionContext<'_>) {}
    fn guard(&mut self, g: GuardId, _: &GuardContext<'_>) -> bool {
        g.0 % 2 == 1
    }
    fn delay(&mut self, _: DelayId) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}
