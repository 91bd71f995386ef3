//! Durable machines: with `NodeConfig::state_dir` set, every machine of the node is
//! journalled after each macrostep ([`crate::journal`]) and restored from its journal when it
//! is added again (after a crash, by a restarted process).
//!
//! The order that makes a crash lose nothing acknowledged and send nothing twice from one
//! incarnation: a step's record is written (and, by the policy, synced) before
//! - the node acknowledges the event that step took (`emit_acks` waits for the sync), and
//! - the messages the step sent leave the machine's outbox (`pump` journals first; under
//!   the group policy a durable machine's outbox waits for its group's sync).
//!
//! The outbox and the sequence number of the next send are in the record: messages a crash
//! caught in the outbox are sent after the restore, with the numbers they would have had.

use interstate_core::Error;

use rustc_hash::FxHashMap as HashMap;

use crate::error::PlatformError;
use crate::journal::{record, Durability, Journal};
use crate::registry::Registry;

use super::local::{Hosted, Local};
use super::Node;

/// What the node last journalled of a durable machine: it is journalled again when any of
/// it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Journalled {
    events: u64,
    outbox: usize,
    seq: u64,
}

impl Journalled {
    fn of(h: &Hosted) -> Journalled {
        Journalled {
            events: h.machine.stats().events,
            outbox: h.machine.outbox_len(),
            seq: h.seq,
        }
    }
}

/// A durable machine's journal state, kept with the machine.
#[derive(Clone, Debug)]
pub(super) struct DurableMachine {
    /// What was journalled last (`None`: nothing yet).
    last: Option<Journalled>,
    /// Records written before this process (the step count it was restored from).
    pub(super) restored_from: Option<u64>,
    /// A torn or corrupted tail dropped from its journal when it was opened.
    pub(super) dropped: Option<String>,
    /// The highest sequence number it took from each sender: id -> (process, number).
    pub(super) senders: HashMap<String, (u32, u64)>,
}

/// Senders a durable machine's record remembers at most; past that, those gone from the
/// registry are forgotten first.
const SENDERS_KEPT: usize = 1024;

impl DurableMachine {
    /// The machine took `seq` from `sender` (owned by process `pid`, 0 if unknown).
    pub(super) fn took(&mut self, sender: &str, pid: u32, seq: u64, registry: &Registry) {
        match self.senders.get_mut(sender) {
            Some(e) => *e = (pid, seq),
            None => {
                if self.senders.len() >= SENDERS_KEPT {
                    self.senders.retain(|s, _| registry.contains(s));
                }
                if self.senders.len() < SENDERS_KEPT {
                    self.senders.insert(sender.to_string(), (pid, seq));
                }
            }
        }
    }
}

/// The node's journal and the buffer snapshots are written into.
pub(super) struct Durable {
    pub(super) journal: Journal,
    buf: Vec<u8>,
    senders: Vec<u8>,
}

/// The largest snapshot a node writes (a machine's outbox bytes, context and timers fit
/// well within it for the hosted sizes).
const MAX_SNAPSHOT: usize = 1 << 20;

impl Durable {
    pub(super) fn open(
        dir: &std::path::Path,
        durability: Durability,
    ) -> Result<Self, PlatformError> {
        Ok(Durable {
            journal: Journal::open(dir, durability)?,
            buf: vec![0; 16 << 10],
            senders: Vec::new(),
        })
    }
}

impl Node {
    /// For a new machine of a durable node: opens its journal and restores it from its
    /// newest record. Returns `Ok(None)` when the node is not durable; `Ok(Some((restored,
    /// state)))` otherwise. A snapshot of another chart, or one that does not restore, is an
    /// error saying what to do.
    pub(super) fn open_durable(
        &mut self,
        idx: usize,
    ) -> Result<Option<(bool, DurableMachine)>, PlatformError> {
        let now = self.now();
        let Some(d) = self.local.durable.as_mut() else {
            return Ok(None);
        };
        let h = &mut self.local.machines[idx];
        let (recovered, dropped) = d.journal.open_machine(&h.id)?;
        let dropped = dropped.map(|t| {
            let line = t.to_string();
            (self.log)(&line);
            line
        });
        let mut state = DurableMachine {
            last: None,
            restored_from: None,
            dropped,
            senders: HashMap::default(),
        };
        let Some(r) = recovered else {
            return Ok(Some((false, state)));
        };
        if let Err(e) = h.machine.restore(now, &r.snapshot) {
            let path = d.journal.path_of(&h.id);
            d.journal.close_machine(&h.id);
            let problem = match e {
                Error::SnapshotChart { .. } | Error::SnapshotVersion { .. } => format!(
                    "{e}; it was written by another chart (or another revision of it): run \
                     that chart, or move the file away to start this one afresh"
                ),
                _ => format!(
                    "its newest record does not restore ({e}): move the file away to start afresh"
                ),
            };
            return Err(PlatformError::Journal {
                machine: h.id.clone(),
                path,
                problem,
            });
        }
        h.seq = r.seq;
        state.restored_from = Some(r.steps);
        state.senders = r
            .senders
            .into_iter()
            .map(|(s, pid, seq)| (s, (pid, seq)))
            .collect();
        state.last = Some(Journalled::of(h));
        (self.log)(&format!(
            "machine '{}' restored from its journal (record {})",
            h.id, r.steps
        ));
        Ok(Some((true, state)))
    }

    /// Journals every durable machine whose state changed since its last record (a step
    /// on a timer, a request's failure, its start), and returns an error a step's own
    /// journalling met.
    pub(super) fn journal_steps(&mut self) -> Result<(), PlatformError> {
        if let Some(e) = self.local.journal_error.take() {
            return Err(e);
        }
        let now = self.turn_now;
        for i in 0..self.local.machines.len() {
            self.local.journal_machine(i, now)?;
        }
        Ok(())
    }

    /// Syncs the journal if its group is due. Returns whether records still wait for their
    /// sync (acknowledgements and durable machines' sends wait with them).
    pub(super) fn journal_holds(&mut self) -> Result<bool, PlatformError> {
        let Some(d) = self.local.durable.as_mut() else {
            return Ok(false);
        };
        if !d.journal.has_unsynced() {
            return Ok(false);
        }
        let done = d.journal.sync_if_due(std::time::Instant::now())?;
        Ok(!done)
    }

    /// Syncs every record written, whatever the policy (before acknowledging everything).
    pub(super) fn journal_sync_all(&mut self) -> Result<(), PlatformError> {
        self.journal_steps()?;
        match self.local.durable.as_mut() {
            Some(d) => d.journal.sync(),
            None => Ok(()),
        }
    }

    /// When the journal's waiting group is due to be synced, as a loop deadline.
    pub(super) fn journal_deadline(&self) -> Option<interstate_core::Instant> {
        let due = self.local.durable.as_ref()?.journal.sync_deadline()?;
        let left = due.saturating_duration_since(std::time::Instant::now());
        Some(self.turn_now + interstate_core::Duration::from_millis(left.as_millis() as u64 + 1))
    }

    /// The journal's state directory, policy and counters, when the node is durable.
    pub fn journal(&self) -> Option<&Journal> {
        self.local.durable.as_ref().map(|d| &d.journal)
    }
}

impl Local {
    /// Journals machine `i` if it is durable and its state changed since its last record.
    pub(super) fn journal_machine(
        &mut self,
        i: usize,
        now: interstate_core::Instant,
    ) -> Result<(), PlatformError> {
        let Some(d) = self.durable.as_mut() else {
            return Ok(());
        };
        let h = &mut self.machines[i];
        // A machine stopped by an error keeps its last good record: its failed step may
        // have left it half-changed (and it is not snapshotted).
        if h.stopped {
            return Ok(());
        }
        let mark = Journalled::of(h);
        match &h.durable {
            Some(state) if state.last != Some(mark) => {}
            _ => return Ok(()),
        }
        let n = loop {
            match h.machine.snapshot(now, &mut d.buf) {
                Ok(n) => break n,
                Err(Error::SnapshotBufferTooSmall { .. }) if d.buf.len() < MAX_SNAPSHOT => {
                    let grown = d.buf.len() * 2;
                    d.buf.resize(grown, 0);
                }
                Err(e) => {
                    return Err(PlatformError::Journal {
                        machine: h.id.clone(),
                        path: d.journal.path_of(&h.id),
                        problem: format!("its state cannot be snapshotted: {e}"),
                    })
                }
            }
        };
        d.senders.clear();
        if let Some(state) = &h.durable {
            for (sender, &(pid, seq)) in &state.senders {
                record::push_sender(&mut d.senders, sender, pid, seq);
            }
        }
        d.journal.append(&h.id, h.seq, &d.senders, &d.buf[..n])?;
        if let Some(state) = h.durable.as_mut() {
            state.last = Some(mark);
        }
        Ok(())
    }
}
