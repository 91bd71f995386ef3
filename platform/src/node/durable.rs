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
//! So are the messages that left and were not acknowledged yet (`DurableMachine::sent`):
//! the restarted process puts them back in its outstanding buffer, before anything new,
//! and sends them again with their numbers. Whatever a crash catches is sent again, never
//! lost; what the receiver had taken already it drops as a duplicate, because it carries a
//! durable sender's numbers over to its new process (`Received::sender_registered_as`).

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
    /// The highest sequence number it took from each sender: id -> (process, durable,
    /// number).
    pub(super) senders: HashMap<String, (u32, bool, u64)>,
    /// Its sends that left and may not be acknowledged, encoded for the record
    /// ([`record::push_sent`]): every one still in the outstanding buffer, and perhaps
    /// some acknowledged since (a receiver drops those as duplicates). Made again from the
    /// buffer before each record [`Node::journal_steps`] writes; added to as sends leave.
    pub(super) sent: Vec<u8>,
    /// Sends its journal restored that are not back in the outstanding buffer yet: they
    /// go there, before anything new, once the machine is registered.
    pub(super) resend: Vec<Vec<u8>>,
}

/// Senders a durable machine's record remembers at most; past that, those gone from the
/// registry are forgotten first.
const SENDERS_KEPT: usize = 1024;

impl DurableMachine {
    /// The machine took `seq` from `sender` (owned by process `pid`, 0 if unknown).
    pub(super) fn took(
        &mut self,
        sender: &str,
        pid: u32,
        durable: bool,
        seq: u64,
        registry: &Registry,
    ) {
        match self.senders.get_mut(sender) {
            Some(e) => *e = (pid, durable, seq),
            None => {
                if self.senders.len() >= SENDERS_KEPT {
                    self.senders.retain(|s, _| registry.contains(s));
                }
                if self.senders.len() < SENDERS_KEPT {
                    self.senders.insert(sender.to_string(), (pid, durable, seq));
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
            sent: Vec::new(),
            resend: Vec::new(),
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
            .map(|(s, pid, durable, seq)| (s, (pid, durable, seq)))
            .collect();
        for m in &r.sent {
            record::push_sent(&mut state.sent, m);
        }
        let resent = r.sent.len();
        state.resend = r.sent;
        state.last = Some(Journalled::of(h));
        (self.log)(&format!(
            "machine '{}' restored from its journal (record {}; {resent} unacknowledged \
             sends to send again)",
            h.id, r.steps
        ));
        Ok(Some((true, state)))
    }

    /// Journals every durable machine whose state changed since its last record (a step
    /// on a timer, a request's failure, its start), and returns an error a step's own
    /// journalling met.
    pub(super) fn journal_steps(&mut self) -> Result<(), PlatformError> {
        if self.local.durable.is_none() && self.local.journal_error.is_none() {
            // No journal, so no durable machine (`open_durable` makes them only with one):
            // nothing to look at, on every turn of every other node.
            return Ok(());
        }
        if let Some(e) = self.local.journal_error.take() {
            return Err(e);
        }
        let now = self.turn_now;
        for i in 0..self.local.machines.len() {
            if self.local.needs_record(i) {
                self.refresh_sent(i);
            }
            self.local.journal_machine(i, now)?;
        }
        Ok(())
    }

    /// Makes durable machine `i`'s sends for its record again: those restored and not put
    /// back yet, then those the outstanding buffer holds (acknowledged ones leave it).
    fn refresh_sent(&mut self, i: usize) {
        let h = &mut self.local.machines[i];
        let Some(state) = h.durable.as_mut() else {
            return;
        };
        state.sent.clear();
        for m in &state.resend {
            record::push_sent(&mut state.sent, m);
        }
        let sent = &mut state.sent;
        self.side
            .outstanding()
            .held_from(&h.id, &mut |body| record::push_sent(sent, body));
    }

    /// Puts durable machine `i`'s restored unacknowledged sends back in the outstanding
    /// buffer, in order, before anything new from it. Returns false while some wait for
    /// room (its new sends wait behind them).
    pub(super) fn put_back_resends(&mut self, i: usize) -> bool {
        let Some(state) = self.local.machines[i].durable.as_mut() else {
            return true;
        };
        if state.resend.is_empty() {
            return true;
        }
        let outstanding = self.side.outstanding_mut();
        let mut n = 0;
        for m in &state.resend {
            if outstanding.push(m, false).is_err() {
                break;
            }
            n += 1;
        }
        state.resend.drain(..n);
        state.resend.is_empty()
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

/// A message's encoded `Deliver` body, for a durable machine's record.
pub(super) fn encode_sent(d: &interstate_core::wire::Deliver<'_>) -> Vec<u8> {
    let mut body = vec![0; d.body_len()];
    if d.write_body(&mut body) != Some(body.len()) {
        // Never: the body is as long as it says. Left out rather than written wrong.
        body.clear();
    }
    body
}

impl Local {
    /// A message of durable machine `i` left for another process (`body`, from
    /// [`encode_sent`]): it goes into the machine's records until it is acknowledged.
    pub(super) fn note_sent(&mut self, i: usize, body: &[u8]) {
        if let Some(state) = self.machines[i].durable.as_mut() {
            if !body.is_empty() {
                record::push_sent(&mut state.sent, body);
            }
        }
    }

    /// Whether machine `i` is durable and its state changed since its last record.
    pub(super) fn needs_record(&self, i: usize) -> bool {
        let h = &self.machines[i];
        match &h.durable {
            Some(state) => !h.stopped && state.last != Some(Journalled::of(h)),
            None => false,
        }
    }

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
            for (sender, &(pid, durable, seq)) in &state.senders {
                record::push_sender(&mut d.senders, sender, pid, durable, seq);
            }
        }
        let sent = h.durable.as_ref().map_or(&[][..], |s| &s.sent[..]);
        d.journal
            .append(&h.id, h.seq, &d.senders, &d.buf[..n], sent)?;
        if let Some(state) = h.durable.as_mut() {
            state.last = Some(mark);
        }
        Ok(())
    }
}
