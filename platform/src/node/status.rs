//! State reports: what a watcher of a machine (`interstate status`, `ps`) is told after each
//! of its steps, while the hub says someone watches. Nothing here runs for a machine nobody
//! watches, except remembering its last few event names in fixed storage. The first report
//! after the hub asks for reports carries the chart's outline too (see `outline`).

use std::fmt::Write as _;

use interstate_core::chart::{EventId, StrId, Trigger};
use interstate_core::wire::{is_reserved_event, Frame};
use interstate_core::{Instant, StateId};

use super::local::Local;
use super::local::{Deferred, Hosted};
use super::payload::json_string;
use super::{status_name, Node, Side};

/// How many event names a machine remembers, and how many bytes of each.
const KEPT_EVENTS: usize = 8;
const EVENT_BYTES: usize = 40;

/// A machine's last event names, in fixed storage (copied into it as each event is taken: no
/// allocation).
pub(super) struct LastEvents {
    names: [[u8; EVENT_BYTES]; KEPT_EVENTS],
    lens: [u8; KEPT_EVENTS],
    next: usize,
    count: usize,
}

impl Default for LastEvents {
    fn default() -> Self {
        LastEvents {
            names: [[0; EVENT_BYTES]; KEPT_EVENTS],
            lens: [0; KEPT_EVENTS],
            next: 0,
            count: 0,
        }
    }
}

impl LastEvents {
    /// Remembers `event` (its first 40 bytes, cut at a character boundary).
    pub(super) fn push(&mut self, event: &str) {
        let mut n = event.len().min(EVENT_BYTES);
        while !event.is_char_boundary(n) {
            n -= 1;
        }
        self.names[self.next][..n].copy_from_slice(&event.as_bytes()[..n]);
        self.lens[self.next] = n as u8;
        self.next = (self.next + 1) % KEPT_EVENTS;
        self.count = (self.count + 1).min(KEPT_EVENTS);
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let start = (self.next + KEPT_EVENTS - self.count) % KEPT_EVENTS;
        (0..self.count).map(move |k| {
            let i = (start + k) % KEPT_EVENTS;
            std::str::from_utf8(&self.names[i][..self.lens[i] as usize]).unwrap_or("")
        })
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The events `h` accepts now: the triggers of its active states' transitions (exact names,
/// `prefix.*`, `*`), in document order, without the runtime's own (`xstate.*`).
fn accepts(h: &Hosted) -> Vec<String> {
    let chart = h.machine.chart();
    let mut out: Vec<String> = Vec::new();
    for s in 0..chart.state_count() {
        let s = StateId(s as u16);
        if !h.machine.is_active(s) {
            continue;
        }
        for t in chart.on_transitions(s) {
            let t = chart.transition(interstate_core::chart::TransitionId(t));
            let name = match t.trigger {
                Trigger::Exact => chart.event_name(EventId(t.event)).to_string(),
                Trigger::Prefix => {
                    let prefix = chart.str(StrId(t.event));
                    if prefix.ends_with('.') {
                        format!("{prefix}*")
                    } else {
                        format!("{prefix}.*")
                    }
                }
                Trigger::Any => "*".to_string(),
                Trigger::Always => continue,
            };
            if !is_reserved_event(&name) && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `h`'s state report: `{"machine","status","state","accepts","last_events","errors","at_ms"}`,
/// `"journal"` for a durable machine (`{"restored_from": record or null, "dropped": what its
/// journal dropped when opened, or null}`),
/// and `"context"` when the machine has a JSON context (a JSON chart's `context`, as `assign`
/// left it): it is JSON text already, so it is copied in as it is; and with `chart` given, a
/// `"chart"` member holding it (JSON) last.
pub(super) fn report(h: &Hosted, chart: Option<&str>) -> String {
    let mut value = String::new();
    if h.machine.write_value(&mut value).is_err() || value.is_empty() {
        value = "null".into();
    }
    let list = |items: &mut dyn Iterator<Item = &str>| {
        let v: Vec<String> = items.map(json_string).collect();
        format!("[{}]", v.join(","))
    };
    let accepts = accepts(h);
    let mut out = String::with_capacity(128 + value.len());
    let _ = write!(
        out,
        "{{\"machine\":{},\"status\":\"{}\",\"state\":{value},\"accepts\":{},\
         \"last_events\":{},\"errors\":{},\"at_ms\":{}}}",
        json_string(&h.id),
        if h.stopped {
            "stopped"
        } else {
            status_name(h.machine.status())
        },
        list(&mut accepts.iter().map(String::as_str)),
        list(&mut h.events.iter()),
        list(&mut h.errors.iter().map(String::as_str)),
        unix_ms()
    );
    if h.skipped_steps > 0 {
        out.pop();
        let _ = write!(out, ",\"skipped\":{}}}", h.skipped_steps);
    }
    if let Some(d) = &h.durable {
        // A durable machine: the journal record it was restored from, and a torn or
        // corrupted tail its journal dropped when it was opened.
        out.pop();
        let _ = write!(
            out,
            ",\"journal\":{{\"restored_from\":{},\"dropped\":{}}}}}",
            d.restored_from
                .map_or_else(|| "null".to_string(), |n| n.to_string()),
            d.dropped
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string)
        );
    }
    if let Some(context) = h.machine.context_json() {
        out.pop();
        let _ = write!(out, ",\"context\":{context}}}");
    }
    if let Some(chart) = chart {
        out.pop();
        let _ = write!(out, ",\"chart\":{chart}}}");
    }
    out
}

impl Node {
    /// Starts (`on`) or stops watching the state of the machine `machine` on the bus: after
    /// each of its steps, its node reports it (the hub asks it to only while someone
    /// watches), and [`Node::next_state_report`] returns the reports. Kept across
    /// reconnections. On the hub's own node this does nothing (tools watch as clients).
    pub fn watch_state(&mut self, machine: &str, on: bool) {
        if on {
            if !self.state_watches.iter().any(|m| m == machine) {
                self.state_watches.push(machine.to_string());
            }
        } else {
            self.state_watches.retain(|m| m != machine);
        }
        if let Side::Client(c) = &mut self.side {
            let mut sink = super::client_side::Sink::new(
                c.conn.as_mut(),
                &mut self.local.stats.payload_copies,
            );
            c.client.watch_state(machine, on, &mut sink);
        }
    }

    /// The next state report of a watched machine: (machine id, the report as JSON text,
    /// `{"machine","status","state","accepts","last_events","errors","at_ms"}`; a port's is
    /// `{"machine","port":true}`). The first report after a watch starts has a `"chart"`
    /// member too: the chart's outline (states, transitions with their labels), or
    /// `{"omitted":"too large",...}` when it does not fit in a frame.
    pub fn next_state_report(&mut self) -> Option<(String, String)> {
        self.state_reports.pop_front()
    }

    /// Asks the hub again for every watch (after a reconnection: a hub forgets a link's
    /// watches when it closes).
    pub(super) fn rewatch(&mut self) {
        let Side::Client(c) = &mut self.side else {
            return;
        };
        let mut sink =
            super::client_side::Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
        for m in &self.state_watches {
            c.client.watch_state(m, true, &mut sink);
        }
    }

    /// Marks the state report of the machine or port `id` due after a step (or a new
    /// watcher): [`Node::send_due_reports`] sends it at the end of the pump, once however many
    /// steps the machine took, and no sooner than `report_interval` after its last one.
    pub(super) fn report_due(&mut self, id: String) {
        let at = if let Some(&i) = self.local.by_id.get(&id) {
            let h = &mut self.local.machines[i];
            if !h.outline_due {
                h.unreported_steps = h.unreported_steps.saturating_add(1);
            }
            let at = report_time(h, self.turn_now, self.config.report_interval);
            if std::mem::replace(&mut h.report_due, true) {
                // Already waiting; a stop (or a new watcher) may have made it due sooner.
                self.reports_next = Some(self.reports_next.map_or(at, |n| n.min(at)));
                return;
            }
            at
        } else if self.reports_due.contains(&id) {
            return;
        } else {
            self.turn_now
        };
        self.reports_next = Some(self.reports_next.map_or(at, |n| n.min(at)));
        self.reports_due.push(id);
    }

    /// When the next held report is due (a machine reported less than `report_interval` ago
    /// and stepped since): the loop wakes then to send it. Kept, not searched for: the loop
    /// asks at every turn.
    pub(super) fn next_report_deadline(&self) -> Option<Instant> {
        if self.reports_due.is_empty() {
            None
        } else {
            self.reports_next
        }
    }

    /// Sends the due state reports whose time has come (the latest state of each machine that
    /// stepped), keeps the others for later, and skips machines that left this node
    /// meanwhile. Whether any was sent. Before the first one's time it looks at none of
    /// them: a pump of a node with many watched machines costs nothing more per message.
    pub(super) fn send_due_reports(&mut self) -> bool {
        if self.reports_due.is_empty() {
            return false;
        }
        let now = self.turn_now;
        if self.reports_next.is_some_and(|next| now < next) {
            return false;
        }
        let interval = self.config.report_interval;
        let mut due = std::mem::take(&mut self.reports_due);
        let mut sent = false;
        let mut next: Option<Instant> = None;
        due.retain(|id| {
            let (present, at) = match self.local.by_id.get(id) {
                Some(&i) => {
                    let h = &self.local.machines[i];
                    (h.report_due, report_time(h, now, interval))
                }
                None => (self.local.ports.contains_key(id), now),
            };
            if !present {
                return false;
            }
            if now < at {
                next = Some(next.map_or(at, |n| n.min(at)));
                return true;
            }
            self.send_report(id);
            sent = true;
            false
        });
        // Reports marked due while these were sent (none today) join the kept ones.
        if !self.reports_due.is_empty() {
            next = Some(now);
        }
        due.append(&mut self.reports_due);
        self.reports_due = due;
        self.reports_next = next;
        sent
    }

    /// Sends the state report of the machine or port `id` to the hub.
    pub(super) fn send_report(&mut self, id: &str) {
        self.local.stats.state_reports += 1;
        let mut text = match self.local.by_id.get(id) {
            Some(&i) => {
                let h = &mut self.local.machines[i];
                h.report_due = false;
                h.last_report = Some(self.turn_now);
                // A new watcher's first report skips nothing it could have seen.
                h.skipped_steps = if h.outline_due {
                    0
                } else {
                    h.unreported_steps.saturating_sub(1)
                };
                h.unreported_steps = 0;
                if std::mem::take(&mut h.outline_due) {
                    self.local.stats.chart_outlines += 1;
                    let chart = super::outline::outline(h.machine.chart());
                    report(h, Some(&chart))
                } else {
                    report(h, None)
                }
            }
            None => format!("{{\"machine\":{},\"port\":true}}", json_string(id)),
        };
        let limit = self.config.max_frame as usize;
        let full = Frame::State {
            machine: id,
            report: text.as_bytes(),
        };
        if full.encoded_len() > limit {
            if let Some(&i) = self.local.by_id.get(id) {
                // The outline does not fit in a frame: the report says so (the inspector
                // shows it) and carries the state alone.
                let h = &self.local.machines[i];
                let omitted = format!(
                    "{{\"omitted\":\"too large\",\"states\":{},\"transitions\":{},\
                     \"bytes\":{},\"max_frame\":{limit}}}",
                    h.machine.chart().state_count(),
                    h.machine.chart().transition_count(),
                    text.len()
                );
                text = report(h, Some(&omitted));
            }
        }
        let frame = Frame::State {
            machine: id,
            report: text.as_bytes(),
        };
        // A report larger than a frame is cut down to what always fits.
        let small;
        let frame = if frame.encoded_len() > self.config.max_frame as usize {
            small = format!(
                "{{\"machine\":{},\"state\":null,\"truncated\":true}}",
                json_string(id)
            );
            Frame::State {
                machine: id,
                report: small.as_bytes(),
            }
        } else {
            frame
        };
        match &mut self.side {
            Side::Client(c) => {
                let mut sink = super::client_side::Sink::new(
                    c.conn.as_mut(),
                    &mut self.local.stats.payload_copies,
                );
                if let Frame::State { machine, report } = frame {
                    c.client.send_state(machine, report, &mut sink);
                }
            }
            Side::Hub(h) => {
                let Ok(n) = frame.encode(&mut self.scratch) else {
                    return;
                };
                let mut deferred = Deferred::default();
                let mut io = super::hub_side::ForwardIo::new(&mut h.links, &mut deferred);
                h.hub.state_local(id, &self.scratch[4..n], &mut io);
                self.settle(deferred);
            }
        }
    }
}

impl Local {
    /// The hub asks for `machine`'s state reports (`on`: one now, then after each step) or
    /// says nobody watches any more.
    pub(super) fn report_requested(&mut self, machine: &str, on: bool, deferred: &mut Deferred) {
        if let Some(&i) = self.by_id.get(machine) {
            self.machines[i].watched = on;
            if on {
                self.machines[i].outline_due = true;
                deferred.reports.push(machine.to_string());
            }
        } else if on && self.ports.contains_key(machine) {
            deferred.reports.push(machine.to_string());
        }
    }
}

/// When the held report of `h` may go (see [`report_at`]).
fn report_time(
    h: &super::local::Hosted,
    now: Instant,
    interval: interstate_core::Duration,
) -> Instant {
    report_at(h.outline_due || h.stopped, h.last_report, now, interval)
}

/// When a held report may go. A new watcher's first report, a stopped machine's last one
/// (`at_once`), and a report after a quiet spell go at once (`now`). The others wait out the
/// interval and then for the node's next report tick (a multiple of the interval since the
/// node started): the reports of all the machines that step often leave together, in one
/// write and one wake-up of the node, the hub and the watcher, instead of one each, spread
/// over the interval. Two reports of a machine are never closer than the interval.
fn report_at(
    at_once: bool,
    last_report: Option<Instant>,
    now: Instant,
    interval: interstate_core::Duration,
) -> Instant {
    let Some(last) = last_report else {
        return now;
    };
    if at_once || now >= last + interval {
        return now;
    }
    let every = interval.as_millis().max(1);
    Instant::from_millis((last + interval).as_millis().div_ceil(every) * every)
}

#[cfg(test)]
mod tests {
    use super::report_at;
    use interstate_core::{Duration, Instant};

    const MS: fn(u64) -> Instant = Instant::from_millis;

    #[test]
    fn reports_of_busy_machines_wait_for_the_next_tick() {
        let every = Duration::from_millis(50);
        // Never reported, told to go at once, or quiet for an interval: now.
        assert_eq!(report_at(false, None, MS(17), every), MS(17));
        assert_eq!(report_at(true, Some(MS(10)), MS(17), every), MS(17));
        assert_eq!(report_at(false, Some(MS(10)), MS(60), every), MS(60));
        assert_eq!(report_at(false, Some(MS(10)), MS(75), every), MS(75));
        // Reported 7 ms ago at 10: not before 60, and then at the tick of 100.
        assert_eq!(report_at(false, Some(MS(10)), MS(17), every), MS(100));
        // Reported at a tick: the next tick, exactly one interval later.
        assert_eq!(report_at(false, Some(MS(100)), MS(120), every), MS(150));
        // Two machines reported at different times meet at the same tick.
        assert_eq!(
            report_at(false, Some(MS(60)), MS(61), every),
            report_at(false, Some(MS(100)), MS(101), every)
        );
    }

    #[test]
    fn a_zero_interval_reports_every_step() {
        let zero = Duration::from_millis(0);
        assert_eq!(report_at(false, Some(MS(10)), MS(10), zero), MS(10));
    }
}
