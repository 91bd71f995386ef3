//! The state value as JSON, exactly as XState v5's `snapshot.value`, written without
//! allocating: [`Machine::write_value`](super::Machine::write_value) and the string escaping
//! it needs.

use core::fmt;

use crate::chart::{StateId, StateKind, MAX_DEPTH};

use super::Machine;

impl<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > Machine<'c, W, Q, O, T, H, B, C, R>
{
    /// Writes the state value as JSON, exactly as XState v5's `snapshot.value`: the key of
    /// the active child for a compound state whose child is atomic, objects for the rest.
    pub fn write_value(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        self.write_value_of(w, StateId(0), 0)
    }

    fn write_value_of(&self, w: &mut dyn fmt::Write, s: StateId, depth: usize) -> fmt::Result {
        let kind = self.chart.kind(s);
        // XState's value holds the active states and all their ancestors, even one that a
        // quirk left inactive above an active state.
        let mut active = self.chart.children(s).filter(|&c| self.in_value(c));
        if kind == StateKind::Compound {
            if let Some(c) = self.active_child(s) {
                if self.chart.kind(c).is_atomic() {
                    return write_json_str(w, self.chart.key(c));
                }
            }
        }
        if depth > MAX_DEPTH {
            return w.write_str("{}");
        }
        w.write_char('{')?;
        let mut first = true;
        for c in &mut active {
            if !first {
                w.write_char(',')?;
            }
            first = false;
            write_json_str(w, self.chart.key(c))?;
            w.write_char(':')?;
            self.write_value_of(w, c, depth + 1)?;
        }
        w.write_char('}')
    }
}

fn write_json_str(w: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}
