//! Charts from mutated tables: owned copies of a chart's tables to mutate (`OwnedTables`), and
//! stepping what `Chart::new` accepts from them (`poke`), which must not panic.

use interstate::core::chart::Tables;
use interstate::{Chart, Duration, Event, Instant};

use crate::drive::{NoopBehavior, Op};
use crate::{EVENTS, M, MACHINE_ID, MICROSTEP_LIMIT};

/// Owned copies of a chart's tables, to mutate.
#[derive(Clone)]
pub(crate) struct OwnedTables {
    pub(crate) strings: String,
    pub(crate) bytes: [Vec<u8>; 10],
    pub(crate) history_slots: u16,
}

impl OwnedTables {
    pub(crate) fn of(t: &Tables<'_>) -> Self {
        OwnedTables {
            strings: t.strings.to_string(),
            bytes: [
                t.names.to_vec(),
                t.states.to_vec(),
                t.transitions.to_vec(),
                t.targets.to_vec(),
                t.actions.to_vec(),
                t.events.to_vec(),
                t.event_index.to_vec(),
                t.action_names.to_vec(),
                t.guard_names.to_vec(),
                t.delay_names.to_vec(),
            ],
            history_slots: t.history_slots,
        }
    }
    pub(crate) fn tables(&self) -> Tables<'_> {
        let b = &self.bytes;
        Tables {
            strings: &self.strings,
            names: &b[0],
            states: &b[1],
            transitions: &b[2],
            targets: &b[3],
            actions: &b[4],
            events: &b[5],
            event_index: &b[6],
            action_names: &b[7],
            guard_names: &b[8],
            delay_names: &b[9],
            history_slots: self.history_slots,
        }
    }
    /// Applies one mutation chosen by three random words. Small values are favoured: they are
    /// the ones that look like valid indices and so get past validation.
    pub(crate) fn mutate(&mut self, which: u32, at: u32, value: u32, states: usize) {
        // States, transitions, targets and actions are where stepping reads most.
        let table = [1, 1, 1, 2, 2, 3, 4, 4, 0, 5, 6, 7, 8, 9][which as usize % 14];
        if which % 97 == 0 {
            self.history_slots = (value % 8) as u16;
            return;
        }
        let t = &mut self.bytes[table];
        if t.is_empty() {
            return;
        }
        let i = at as usize % t.len();
        match value % 8 {
            0 => t[i] = (value >> 8) as u8,
            1..=4 => t[i] = ((value >> 8) as usize % states.max(1)) as u8,
            5 => t[i] = t[i].wrapping_add(1),
            6 => t[i] = t[i].wrapping_sub(1),
            _ => {
                // A whole u16 field to NONE.
                let j = i & !1;
                if j + 1 < t.len() {
                    t[j] = 0xFF;
                    t[j + 1] = 0xFF;
                }
            }
        }
    }
}

/// Steps a chart that passed validation but may be nonsense: must not panic.
pub(crate) fn poke(chart: Chart<'_>, ops: &[Op]) {
    let Ok(mut m) = M::new(chart, MACHINE_ID).map(Box::new) else {
        return;
    };
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = NoopBehavior;
    let mut now = Instant::ZERO;
    let _ = m.start(now, &mut b);
    let mut s = String::new();
    for op in ops {
        match *op {
            Op::Send(i) => {
                let _ = m.send(now, Event::new(EVENTS[i]), &mut b);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                for _ in 0..8 {
                    if m.handle_timeout(now, &mut b) != Ok(true) {
                        break;
                    }
                }
            }
        }
        for o in m.outbox() {
            let _ = (o.target, o.event.len(), o.payload.len());
        }
        m.clear_outbox();
        s.clear();
        let _ = m.write_value(&mut s);
        let _ = m.active_states().count();
    }
}
