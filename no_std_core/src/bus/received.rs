//! The receiver's side of end-to-end delivery: duplicate suppression and pending
//! acknowledgements, in fixed tables the caller provides.
//!
//! Per (receiver, sender, sender's process) it keeps the highest sequence number delivered
//! (anything at or below it is a duplicate), the highest handed to the application (a
//! machine has it once its step ran; a port once its reader took it, [`Received::handed`])
//! and the highest acknowledged. Only what the application has is acknowledged.
//!
//! Sequence numbers belong to a sender *process*: the registry says which process owns a
//! sender id ([`Received::sender_registered`]), and a message counts against that process's
//! state, so that an earlier owner of the id (a squatter that sent a huge sequence number)
//! cannot make the new owner's messages look like duplicates; the earlier owner's state is
//! kept aside and counts again should it own the id again. A *durable* sender (its registry
//! entry says so, [`Received::sender_registered_as`]) is the exception: its restarted
//! process numbers its messages on from its journal and sends again what it had not had
//! acknowledged, so when a durable owner follows a durable owner the earlier process's
//! state becomes the new one's, and a retransmission is still a duplicate. The state of senders gone from
//! the registry for a while is dropped ([`Received::forget_departed`]), so the tables do not
//! fill with short-lived senders.
//!
//! The tables are open-addressing hash tables over the caller's slots (`P` for pairs, `O`
//! for sender owners: arrays on a device, boxed slices on a host). A full pair table first
//! drops state that nobody needs (earlier owners', departed senders' that owe nothing);
//! when that frees nothing, [`Received::accept`] answers [`Accepted::NoRoom`] and the
//! message is neither delivered nor acknowledged: the sender keeps it.

use crate::hub::MAX_ID;

/// A machine id as the tables store it.
pub type Id = heapless::String<MAX_ID>;

/// Acknowledgements owed to at most this many pairs are tracked one by one; past that,
/// [`Received::emit`] scans the whole table.
const DIRTY_TRACKED: usize = 64;

fn id(s: &str) -> Option<Id> {
    let mut out = Id::new();
    out.push_str(s).ok()?;
    Some(out)
}

fn fnv(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One (receiver, sender, sender process) pair's sequence state: a slot of the pair table.
#[derive(Clone, Debug, Default)]
pub struct PairSlot {
    used: bool,
    receiver: Id,
    sender: Id,
    /// The sender's process (0 while the registry has not named it).
    pid: u32,
    delivered: u64,
    handed: u64,
    acked: u64,
    /// Since when (ms) this is an earlier owner's state, put aside.
    aside_since: Option<u64>,
}

/// Which process owns a sender id, as last seen in the registry: a slot of the owner table.
#[derive(Clone, Debug, Default)]
pub struct OwnerSlot {
    used: bool,
    sender: Id,
    pid: u32,
    /// Its registry entry said it is durable (or a journal restored it as durable).
    durable: bool,
    /// When the sender left the registry (ms), if it is not back.
    departed: Option<u64>,
}

impl PairSlot {
    fn hash(&self) -> u32 {
        pair_hash(&self.receiver, &self.sender)
    }
    fn owes(&self) -> bool {
        self.acked < self.handed || self.handed < self.delivered
    }
}

/// `a == b`, looking at the lengths and the last bytes first: a remembered slot that is not
/// the one wanted (messages from several senders in turn) is told apart in a few
/// instructions when the names differ at the end, as numbered ones do.
fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

fn pair_hash(receiver: &str, sender: &str) -> u32 {
    fnv(&[receiver.as_bytes(), sender.as_bytes()])
}

fn owner_hash(sender: &str) -> u32 {
    fnv(&[sender.as_bytes()])
}

/// What [`Received::accept`] decided about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Accepted {
    /// Deliver it.
    New,
    /// Drop it: delivered before (it is acknowledged again if the application has it).
    Duplicate,
    /// Drop it unacknowledged: the pair table is full (the sender keeps the message).
    NoRoom,
}

/// Linear probing over `slots`: the index holding the entry `eq` selects, or `Err` with the
/// first free index on its probe path (`None`: the table is full).
fn probe<T>(
    slots: &[T],
    hash: u32,
    used: impl Fn(&T) -> bool,
    eq: impl Fn(&T) -> bool,
) -> Result<usize, Option<usize>> {
    let n = slots.len();
    if n == 0 {
        return Err(None);
    }
    let mut i = hash as usize % n;
    for _ in 0..n {
        let s = &slots[i];
        if !used(s) {
            return Err(Some(i));
        }
        if eq(s) {
            return Ok(i);
        }
        i = (i + 1) % n;
    }
    Err(None)
}

/// Removes slot `i` by backward shift (no tombstones): later entries of the same probe run
/// move up so that every entry stays reachable from its home slot.
fn remove_at<T: Default>(
    slots: &mut [T],
    mut i: usize,
    used: impl Fn(&T) -> bool,
    hash: impl Fn(&T) -> u32,
) {
    let n = slots.len();
    slots[i] = T::default();
    let mut j = i;
    loop {
        j = (j + 1) % n;
        if !used(&slots[j]) {
            return;
        }
        let home = hash(&slots[j]) as usize % n;
        // Entry j may move to i when i lies on its probe path: home ..= j (cyclically).
        let between = if i <= j {
            home <= i || home > j
        } else {
            home <= i && home > j
        };
        if between {
            slots.swap(i, j);
            i = j;
        }
    }
}

/// Duplicate suppression and owed acknowledgements for the machines of one process.
pub struct Received<P, O> {
    pairs: P,
    owners: O,
    pairs_used: usize,
    /// Pair slots that owe an acknowledgement (when `dirty_overflow` is false).
    dirty: heapless::Vec<u32, DIRTY_TRACKED>,
    /// Some owed pair is not in `dirty`: `emit` scans the whole table.
    dirty_overflow: bool,
    owed: usize,
    /// The pair slot the last message was accepted into (`usize::MAX`: none). Checked by
    /// its key before use, so a stale index only misses; forgotten whenever slots move or
    /// change keys, so that a hit is always the slot `find_pair` would find. Most messages
    /// come from the pair of the one before, and their two lookups (FNV over both names,
    /// a probe each) were two thirds of `accept` (counted).
    pair_hint: usize,
    /// The owner slot of the last message's sender, checked the same way.
    owner_hint: usize,
}

impl<P, O> Received<P, O>
where
    P: AsRef<[PairSlot]> + AsMut<[PairSlot]>,
    O: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>,
{
    /// Empty tables over the caller's slots (every slot must be `Default`, i.e. unused).
    pub fn new(pairs: P, owners: O) -> Self {
        Received {
            pairs,
            owners,
            pairs_used: 0,
            dirty: heapless::Vec::new(),
            dirty_overflow: false,
            owed: 0,
            pair_hint: usize::MAX,
            owner_hint: usize::MAX,
        }
    }

    /// Whether the registry (or a journal) last said `sender` is durable.
    pub fn sender_durable(&self, sender: &str) -> bool {
        let owners = self.owners.as_ref();
        match probe(
            owners,
            owner_hash(sender),
            |o| o.used,
            |o| o.sender == sender,
        ) {
            Ok(i) => owners[i].durable,
            Err(_) => false,
        }
    }

    /// The process owning `sender`, as the registry last said (0: not known yet).
    fn owner_pid(&self, sender: &str) -> u32 {
        let owners = self.owners.as_ref();
        match probe(
            owners,
            owner_hash(sender),
            |o| o.used,
            |o| o.sender == sender,
        ) {
            Ok(i) => owners[i].pid,
            Err(_) => 0,
        }
    }

    fn find_pair(&self, receiver: &str, sender: &str, pid: u32) -> Result<usize, Option<usize>> {
        probe(
            self.pairs.as_ref(),
            pair_hash(receiver, sender),
            |p| p.used,
            |p| p.receiver == receiver && p.sender == sender && p.pid == pid,
        )
    }

    /// [`Self::owner_pid`] through `owner_hint` (an owner's key, its sender, is unique in
    /// the table, so a slot that holds it is the one the probe finds).
    // Inlined into both callers (`accept` and `handed`): out of line, a hit costs about 40
    // instructions more (counted), which is what the hint saves.
    #[inline(always)]
    fn owner_pid_hinted(&mut self, sender: &str) -> u32 {
        let owners = self.owners.as_ref();
        if let Some(o) = owners.get(self.owner_hint) {
            if o.used && same_id(&o.sender, sender) {
                return o.pid;
            }
        }
        match probe(
            owners,
            owner_hash(sender),
            |o| o.used,
            |o| o.sender == sender,
        ) {
            Ok(i) => {
                self.owner_hint = i;
                owners[i].pid
            }
            Err(_) => 0,
        }
    }

    /// [`Self::find_pair`] through `pair_hint`.
    #[inline(always)]
    fn find_pair_hinted(
        &self,
        receiver: &str,
        sender: &str,
        pid: u32,
    ) -> Result<usize, Option<usize>> {
        if let Some(p) = self.pairs.as_ref().get(self.pair_hint) {
            if p.used
                && p.pid == pid
                && same_id(&p.sender, sender)
                && same_id(&p.receiver, receiver)
            {
                return Ok(self.pair_hint);
            }
        }
        self.find_pair(receiver, sender, pid)
    }

    fn mark_dirty(&mut self, i: usize) {
        if !self.dirty_overflow
            && !self.dirty.contains(&(i as u32))
            && self.dirty.push(i as u32).is_err()
        {
            self.dirty_overflow = true;
        }
    }

    fn remove_pair(&mut self, i: usize) {
        remove_at(self.pairs.as_mut(), i, |p| p.used, PairSlot::hash);
        self.pair_hint = usize::MAX;
        self.pairs_used -= 1;
        // Slots moved: the tracked indices may be stale.
        if !self.dirty.is_empty() {
            self.dirty.clear();
            self.dirty_overflow = true;
        }
    }

    /// Drops every pair `drop` selects; returns how many.
    fn drop_pairs(&mut self, drop: &dyn Fn(&PairSlot, &[OwnerSlot]) -> bool) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.pairs.as_ref().len() {
            let p = &self.pairs.as_ref()[i];
            if p.used && drop(p, self.owners.as_ref()) {
                self.remove_pair(i);
                n += 1;
                // The slot now holds a shifted entry (or nothing): look at it again.
                continue;
            }
            i += 1;
        }
        n
    }

    /// Records a message from `sender` to `receiver`. `handed`: the application has it once
    /// it is delivered (a machine); otherwise (a port) it is acknowledged only after
    /// [`Received::handed`].
    pub fn accept(&mut self, receiver: &str, sender: &str, seq: u64, handed: bool) -> Accepted {
        let pid = self.owner_pid_hinted(sender);
        let i = match self.find_pair_hinted(receiver, sender, pid) {
            Ok(i) => {
                let p = &mut self.pairs.as_mut()[i];
                if seq <= p.delivered {
                    // Acknowledge it again (the first acknowledgement may have been lost),
                    // if the application has it.
                    if seq <= p.handed {
                        p.acked = p.acked.min(seq.saturating_sub(1));
                        self.mark_dirty(i);
                    }
                    return Accepted::Duplicate;
                }
                i
            }
            Err(free) => {
                let cap = self.pairs.as_ref().len();
                // Keep an eighth free so probe runs stay short.
                let limit = cap - cap / 8;
                let free = if self.pairs_used >= limit || free.is_none() {
                    self.make_room();
                    match self.find_pair(receiver, sender, pid) {
                        Err(Some(f)) if self.pairs_used < limit => Some(f),
                        _ => None,
                    }
                } else {
                    free
                };
                let (Some(f), Some(r), Some(s)) = (free, id(receiver), id(sender)) else {
                    return Accepted::NoRoom;
                };
                self.pairs.as_mut()[f] = PairSlot {
                    used: true,
                    receiver: r,
                    sender: s,
                    pid,
                    ..PairSlot::default()
                };
                self.pairs_used += 1;
                f
            }
        };
        self.pair_hint = i;
        let p = &mut self.pairs.as_mut()[i];
        p.delivered = seq;
        if handed {
            p.handed = seq;
            self.owed += 1;
            self.mark_dirty(i);
        }
        Accepted::New
    }

    /// A full table: drops what no one needs (earlier owners' state, departed senders'
    /// that owes nothing), whatever its age.
    fn make_room(&mut self) {
        self.drop_pairs(&|p, owners| {
            if p.owes() {
                return false;
            }
            if p.aside_since.is_some() {
                return true;
            }
            match probe(
                owners,
                owner_hash(&p.sender),
                |o| o.used,
                |o| o.sender == p.sender,
            ) {
                Ok(i) => owners[i].departed.is_some(),
                Err(_) => false,
            }
        });
    }

    /// The application (a port's reader) has the message `seq` from `sender`.
    pub fn handed(&mut self, receiver: &str, sender: &str, seq: u64) {
        // Through the hints: a port's reader most often takes the message just accepted.
        let pid = self.owner_pid_hinted(sender);
        if let Ok(i) = self.find_pair_hinted(receiver, sender, pid) {
            let p = &mut self.pairs.as_mut()[i];
            // (A message from an earlier owner of the id, read late, is above what the new
            // owner has delivered and must not acknowledge the new owner's messages.)
            if seq > p.handed && seq <= p.delivered {
                p.handed = seq;
                self.owed += 1;
                self.mark_dirty(i);
            }
        }
    }

    /// Sets `aside_since` of every pair of `sender` owned by `pid`.
    fn set_aside(&mut self, sender: &str, pid: u32, aside: Option<u64>) {
        for p in self.pairs.as_mut().iter_mut() {
            if p.used && p.sender == sender && p.pid == pid {
                p.aside_since = aside;
            }
        }
    }

    /// The registry shows `sender` owned by process `pid` (at `now_ms`). If another process
    /// owned it before, that process's sequence state is put aside (and counts again should
    /// it own the id again): the new owner's numbers are its own.
    pub fn sender_registered(&mut self, sender: &str, pid: u32, now_ms: u64) {
        self.sender_registered_as(sender, pid, false, now_ms)
    }

    /// [`Received::sender_registered`], with what the registry entry says of the sender's
    /// durability. When a durable owner follows a durable owner (the hub held the id for its
    /// restarted process), the earlier process's state becomes the new process's: a durable
    /// machine numbers its messages on from its journal and sends again, with their first
    /// numbers, what it had not had acknowledged, and those taken before are duplicates. (A
    /// non-durable owner before or after keeps the rule above: its numbers are its own.)
    pub fn sender_registered_as(&mut self, sender: &str, pid: u32, durable: bool, now_ms: u64) {
        // Pairs may change keys here (their process named or changed).
        self.pair_hint = usize::MAX;
        let owners = self.owners.as_ref();
        match probe(
            owners,
            owner_hash(sender),
            |o| o.used,
            |o| o.sender == sender,
        ) {
            Ok(i) if owners[i].pid == pid => {
                let o = &mut self.owners.as_mut()[i];
                o.departed = None;
                o.durable = durable;
            }
            Ok(i) if durable && owners[i].durable => {
                let before = owners[i].pid;
                let o = &mut self.owners.as_mut()[i];
                o.pid = pid;
                o.departed = None;
                // State a process with the new pid left (pids are reused) gives way to the
                // durable sender's own.
                self.drop_pairs(&|p, _| p.sender == sender && p.pid == pid);
                for p in self.pairs.as_mut().iter_mut() {
                    if p.used && p.sender == sender && p.pid == before {
                        p.pid = pid;
                        p.aside_since = None;
                    }
                }
            }
            Ok(i) => {
                let before = owners[i].pid;
                let o = &mut self.owners.as_mut()[i];
                o.pid = pid;
                o.durable = durable;
                o.departed = None;
                self.set_aside(sender, before, Some(now_ms));
                self.set_aside(sender, pid, None);
            }
            Err(free) => {
                let free = free.or_else(|| {
                    // Full: make room by dropping owners that departed and own no state.
                    self.forget_owners(&|_| true);
                    probe(
                        self.owners.as_ref(),
                        owner_hash(sender),
                        |o| o.used,
                        |o| o.sender == sender,
                    )
                    .err()
                    .flatten()
                });
                let (Some(f), Some(s)) = (free, id(sender)) else {
                    // Untracked: its messages count as from process 0, as before any
                    // registration (duplicates are still recognised).
                    return;
                };
                self.owners.as_mut()[f] = OwnerSlot {
                    used: true,
                    sender: s,
                    pid,
                    durable,
                    departed: None,
                };
                // State kept before the registry named the process is that process's.
                for p in self.pairs.as_mut().iter_mut() {
                    if p.used && p.sender == sender && p.pid == 0 {
                        p.pid = pid;
                    }
                }
            }
        }
    }

    /// `sender` left the registry at `now_ms`.
    pub fn sender_departed(&mut self, sender: &str, now_ms: u64) {
        let owners = self.owners.as_ref();
        if let Ok(i) = probe(
            owners,
            owner_hash(sender),
            |o| o.used,
            |o| o.sender == sender,
        ) {
            self.owners.as_mut()[i].departed.get_or_insert(now_ms);
        }
    }

    /// Every sender for which `present` is false left the registry at `now_ms` (if it had not
    /// already): for a new registry snapshot, after a reconnect.
    pub fn departed_unless(&mut self, present: &dyn Fn(&str) -> bool, now_ms: u64) {
        for o in self.owners.as_mut().iter_mut() {
            if o.used && !present(&o.sender) {
                o.departed.get_or_insert(now_ms);
            }
        }
    }

    /// Removes the owners `gone` selects that own no pair state any more; returns how many.
    fn forget_owners(&mut self, gone: &dyn Fn(&OwnerSlot) -> bool) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.owners.as_ref().len() {
            let o = &self.owners.as_ref()[i];
            if o.used && o.departed.is_some() && gone(o) {
                let (sender, pid) = (o.sender.clone(), o.pid);
                let kept = self
                    .pairs
                    .as_ref()
                    .iter()
                    .any(|p| p.used && p.sender == sender && p.pid == pid);
                if !kept {
                    remove_at(
                        self.owners.as_mut(),
                        i,
                        |o| o.used,
                        |o| owner_hash(&o.sender),
                    );
                    n += 1;
                    continue;
                }
            }
            i += 1;
        }
        n
    }

    /// Drops the state of senders that left the registry more than `after_ms` before
    /// `now_ms` and did not come back, and earlier owners' state put aside that long ago.
    /// (Not sooner: a sender whose link broke comes back under the same process and sends
    /// again what was not acknowledged, and its duplicates must still be recognised.) State
    /// that still owes an acknowledgement (a port not read yet) is kept. Returns how many
    /// senders were forgotten.
    pub fn forget_departed(&mut self, now_ms: u64, after_ms: u64) -> usize {
        let old = |at: Option<u64>| at.is_some_and(|d| now_ms.saturating_sub(d) >= after_ms);
        self.drop_pairs(&|p, owners| {
            if old(p.aside_since) {
                return true;
            }
            if p.owes() {
                return false;
            }
            match probe(
                owners,
                owner_hash(&p.sender),
                |o| o.used,
                |o| o.sender == p.sender,
            ) {
                Ok(i) => owners[i].pid == p.pid && old(owners[i].departed),
                Err(_) => false,
            }
        });
        self.forget_owners(&|o| old(o.departed))
    }

    /// A durable receiver restored from its journal: process `pid`, owner of `sender`, had
    /// its messages to `receiver` up to `delivered` taken before the receiver's process
    /// died. A retransmission of any of them (its sender sends again what it never had
    /// acknowledged, after a reconnect) is then a duplicate: dropped, and acknowledged. The
    /// registry's later word on who owns `sender` counts as usual: another process's
    /// numbers are its own. Returns false when the pair table has no room (the
    /// retransmissions are then taken as new).
    pub fn restore_delivered(
        &mut self,
        receiver: &str,
        sender: &str,
        pid: u32,
        delivered: u64,
    ) -> bool {
        self.restore_delivered_as(receiver, sender, pid, false, delivered)
    }

    /// [`Received::restore_delivered`] for a sender the journal knew as durable (or not):
    /// a durable sender's restarted process then finds its numbers carried over
    /// ([`Received::sender_registered_as`]).
    pub fn restore_delivered_as(
        &mut self,
        receiver: &str,
        sender: &str,
        pid: u32,
        durable: bool,
        delivered: u64,
    ) -> bool {
        if self.owner_pid(sender) == 0 {
            // Its owner as the journal knew it, until the registry says otherwise.
            self.sender_registered_as(sender, pid, durable, 0);
        }
        match self.find_pair(receiver, sender, pid) {
            Ok(i) => {
                let p = &mut self.pairs.as_mut()[i];
                if delivered > p.delivered {
                    p.delivered = delivered;
                    p.handed = delivered;
                    p.acked = p.acked.max(delivered);
                }
                true
            }
            Err(free) => {
                let cap = self.pairs.as_ref().len();
                if self.pairs_used >= cap - cap / 8 {
                    return false;
                }
                let (Some(f), Some(r), Some(s)) = (free, id(receiver), id(sender)) else {
                    return false;
                };
                // Nothing owed: the acknowledgements of these went out (or died) with the
                // earlier process; a retransmission asks for one again.
                self.pair_hint = usize::MAX;
                self.pairs.as_mut()[f] = PairSlot {
                    used: true,
                    receiver: r,
                    sender: s,
                    pid,
                    delivered,
                    handed: delivered,
                    acked: delivered,
                    aside_since: None,
                };
                self.pairs_used += 1;
                true
            }
        }
    }

    /// Pairs whose state is kept, earlier owners' included (for tests and statistics).
    pub fn senders(&self) -> usize {
        self.pairs_used
    }

    /// The pair table's capacity.
    pub fn capacity(&self) -> usize {
        self.pairs.as_ref().len()
    }

    /// Calls `send(receiver, sender, seq)` for every pair with unacknowledged deliveries; a
    /// pair is marked acknowledged when `send` returns true.
    pub fn emit(&mut self, send: &mut dyn FnMut(&str, &str, u64) -> bool) {
        if !self.is_dirty() {
            return;
        }
        let mut all = true;
        let mut one = |p: &mut PairSlot| {
            if p.used && p.handed > p.acked {
                if send(&p.receiver, &p.sender, p.handed) {
                    p.acked = p.handed;
                } else {
                    all = false;
                }
            }
        };
        if self.dirty_overflow {
            self.pairs.as_mut().iter_mut().for_each(&mut one);
        } else {
            for &i in &self.dirty {
                if let Some(p) = self.pairs.as_mut().get_mut(i as usize) {
                    one(p);
                }
            }
        }
        if all {
            self.dirty.clear();
            self.dirty_overflow = false;
            self.owed = 0;
        } else {
            // Kept as it is: what was not sent is found again by the next full scan.
            self.dirty.clear();
            self.dirty_overflow = true;
        }
    }

    /// Deliveries not yet acknowledged.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Whether any acknowledgement is owed (including re-acknowledgements of duplicates).
    pub fn is_dirty(&self) -> bool {
        self.dirty_overflow || !self.dirty.is_empty()
    }
}

#[cfg(test)]
#[path = "received_tests.rs"]
mod tests;
