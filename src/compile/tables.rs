//! The tables themselves: interning strings and names (events, actions, guards, delays) as
//! small ids, and encoding everything into a [`CompiledChart`] that [`Chart::new`] accepts.

use std::collections::HashMap;

use interstate_core::chart::raw::{ActionRecord, NameRecord, StateRecord, TransitionRecord};
use interstate_core::chart::NONE;
use interstate_core::Chart;

use super::error::{err, CompileError};
use super::{CompiledChart, Compiler};

impl Compiler {
    pub(super) fn intern(&mut self, s: &str) -> Result<u16, CompileError> {
        if let Some(&id) = self.string_ids.get(s) {
            return Ok(id);
        }
        if s.len() > u16::MAX as usize {
            return err(
                "",
                format!("a name or string is {} bytes long; at most 65535", s.len()),
            );
        }
        if self.names.len() >= NONE as usize {
            return err("", "too many distinct strings (at most 65534)");
        }
        let id = self.names.len() as u16;
        let offset = u32::try_from(self.strings.len()).map_err(|_| CompileError {
            path: String::new(),
            message: "string table over 4 GiB".into(),
        })?;
        self.names.push(NameRecord {
            offset,
            len: s.len() as u16,
        });
        self.strings.push_str(s);
        self.string_ids.insert(s.to_string(), id);
        Ok(id)
    }

    fn table_id(
        names: &mut Vec<String>,
        ids: &mut HashMap<String, u16>,
        s: &str,
        what: &str,
    ) -> Result<u16, CompileError> {
        if let Some(&id) = ids.get(s) {
            return Ok(id);
        }
        if names.len() >= NONE as usize {
            return err("", format!("too many distinct {what} (at most 65534)"));
        }
        let id = names.len() as u16;
        names.push(s.to_string());
        ids.insert(s.to_string(), id);
        Ok(id)
    }

    pub(super) fn event(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.events, &mut self.event_ids, s, "events")
    }

    pub(super) fn action_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(
            &mut self.action_names,
            &mut self.action_ids,
            s,
            "action names",
        )
    }

    pub(super) fn guard_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.guard_names, &mut self.guard_ids, s, "guard names")
    }

    pub(super) fn delay_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.delay_names, &mut self.delay_ids, s, "delay names")
    }

    pub(super) fn finish(mut self) -> Result<CompiledChart, CompileError> {
        // Intern the names of the id tables (events, actions, guards, delays).
        let mut events = Vec::new();
        for e in self.events.clone() {
            events.extend_from_slice(&self.intern(&e)?.to_le_bytes());
        }
        let mut order: Vec<u16> = (0..self.events.len() as u16).collect();
        order.sort_by(|&a, &b| self.events[a as usize].cmp(&self.events[b as usize]));
        let event_index = order.iter().flat_map(|e| e.to_le_bytes()).collect();
        let table = |names: Vec<String>, c: &mut Self| -> Result<Vec<u8>, CompileError> {
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(&c.intern(&n)?.to_le_bytes());
            }
            Ok(out)
        };
        let action_names = table(self.action_names.clone(), &mut self)?;
        let guard_names = table(self.guard_names.clone(), &mut self)?;
        let delay_names = table(self.delay_names.clone(), &mut self)?;
        let mut states = vec![0u8; self.state_recs.len() * StateRecord::SIZE];
        for (i, r) in self.state_recs.iter().enumerate() {
            r.encode(&mut states[i * StateRecord::SIZE..]);
        }
        let targets: Vec<u8> = self.targets.iter().flat_map(|t| t.to_le_bytes()).collect();
        // The chart's data records go after every state's actions; a context guard names its
        // condition by its place among them until now.
        let data_base = self.actions.len();
        if data_base + self.chart_data.len() >= NONE as usize {
            return err(
                "",
                "too many actions (at most 65534, context guards included)",
            );
        }
        self.actions.append(&mut self.chart_data);
        let mut transitions = vec![0u8; self.transitions.len() * TransitionRecord::SIZE];
        for (i, r) in self.transitions.iter().enumerate() {
            let mut r = *r;
            if r.guard_kind == interstate_core::chart::raw::GUARD_CONTEXT {
                r.guard += data_base as u16;
            }
            if interstate_core::chart::raw::sibling_move(&states, &targets, &r) {
                r.flags |= TransitionRecord::SIBLING;
            }
            r.encode(&mut transitions[i * TransitionRecord::SIZE..]);
        }
        let mut actions = vec![0u8; self.actions.len() * ActionRecord::SIZE];
        for (i, r) in self.actions.iter().enumerate() {
            r.encode(&mut actions[i * ActionRecord::SIZE..]);
        }
        let mut names = vec![0u8; self.names.len() * NameRecord::SIZE];
        for (i, r) in self.names.iter().enumerate() {
            r.encode(&mut names[i * NameRecord::SIZE..]);
        }
        let compiled = CompiledChart {
            strings: self.strings,
            names,
            states,
            transitions,
            targets,
            actions,
            events,
            event_index,
            action_names,
            guard_names,
            delay_names,
            history_slots: self.history_slots as u16,
            subscriptions: self.subscriptions,
            outputs: self.outputs,
        };
        if let Err(e) = Chart::new(compiled.tables()) {
            return err(
                "",
                format!("internal error, please report: the compiled tables were rejected: {e}"),
            );
        }
        Ok(compiled)
    }
}
