//! Raw record layouts. The host-side compiler writes them; [`Chart`](super::Chart) reads them.
//!
//! All integers are little-endian. Every record has a fixed size so that record `i` of a table
//! starts at `i * SIZE`.

/// The first `N` bytes of `b` as an array: one length check per record instead of one
/// per byte read (the reads below then have constant, checked-at-compile-time indices).
#[inline]
pub(crate) fn head<const N: usize>(b: &[u8]) -> &[u8; N] {
    match b.first_chunk::<N>() {
        Some(h) => h,
        None => panic!("a record is cut short"),
    }
}
#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A state record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    /// [`super::StateKind`] as a byte.
    pub kind: u8,
    /// The parent state, or `NONE` for the root.
    pub parent: u16,
    /// The last descendant (the state itself when it has none).
    pub end: u16,
    /// Compound states: the initial child. Otherwise `NONE`.
    pub initial: u16,
    /// Event transitions (`on`, `onDone`, `after`): first index in the transition table.
    pub on_start: u16,
    /// Event transitions: count. Exact descriptors first, in XState's map order, then
    /// partial descriptors by decreasing length, then `*`.
    pub on_len: u16,
    /// Eventless transitions: first index.
    pub always_start: u16,
    /// Eventless transitions: count.
    pub always_len: u16,
    /// Entry actions: first index in the action table.
    pub entry_start: u16,
    /// Entry actions: count.
    pub entry_len: u16,
    /// Exit actions: first index.
    pub exit_start: u16,
    /// Exit actions: count.
    pub exit_len: u16,
    /// The state's key (its name in its parent's `states`).
    pub key: u16,
    /// The state's id (`#id`), e.g. `machine.a.b`.
    pub id: u16,
    /// Compound and parallel states: the `xstate.done.state.<id>` event. Otherwise `NONE`.
    pub done_event: u16,
    /// History states: the first slot of its memory in the machine's history storage.
    pub history_slot: u16,
    /// History states: how many slots its memory needs: a bit set over the parent's subtree,
    /// 16 states a slot (the parent's bit marks the memory recorded).
    pub history_len: u16,
    /// History states: default targets (first index in the target table).
    pub default_start: u16,
    /// History states: default target count (0: the parent's initial state).
    pub default_len: u16,
}

impl StateRecord {
    /// Encoded size in bytes.
    pub const SIZE: usize = 38;
    /// Reads a record from the first [`Self::SIZE`] bytes of `b`.
    #[inline]
    pub fn decode(b: &[u8]) -> Self {
        let b = head::<{ StateRecord::SIZE }>(b);
        Self {
            kind: b[0],
            parent: u16_at(b, 2),
            end: u16_at(b, 4),
            initial: u16_at(b, 6),
            on_start: u16_at(b, 8),
            on_len: u16_at(b, 10),
            always_start: u16_at(b, 12),
            always_len: u16_at(b, 14),
            entry_start: u16_at(b, 16),
            entry_len: u16_at(b, 18),
            exit_start: u16_at(b, 20),
            exit_len: u16_at(b, 22),
            key: u16_at(b, 24),
            id: u16_at(b, 26),
            done_event: u16_at(b, 28),
            history_slot: u16_at(b, 30),
            history_len: u16_at(b, 32),
            default_start: u16_at(b, 34),
            default_len: u16_at(b, 36),
        }
    }
    /// Writes the record into the first [`Self::SIZE`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.kind;
        b[1] = 0;
        put16(b, 2, self.parent);
        put16(b, 4, self.end);
        put16(b, 6, self.initial);
        put16(b, 8, self.on_start);
        put16(b, 10, self.on_len);
        put16(b, 12, self.always_start);
        put16(b, 14, self.always_len);
        put16(b, 16, self.entry_start);
        put16(b, 18, self.entry_len);
        put16(b, 20, self.exit_start);
        put16(b, 22, self.exit_len);
        put16(b, 24, self.key);
        put16(b, 26, self.id);
        put16(b, 28, self.done_event);
        put16(b, 30, self.history_slot);
        put16(b, 32, self.history_len);
        put16(b, 34, self.default_start);
        put16(b, 36, self.default_len);
    }
}

/// A transition record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransitionRecord {
    /// [`super::Trigger`] as a byte.
    pub trigger: u8,
    /// Bit 0: `reenter`. Bit 1: a sibling move (see [`sibling_move`]), which the
    /// compiler works out and [`super::Chart::new`] checks.
    pub flags: u8,
    /// The source state.
    pub source: u16,
    /// Exact: the event id. Prefix: the string id of the prefix (`foo` for `foo.*`).
    pub event: u16,
    /// 0 none, 1 named guard, 2 in-state, 3 not-in-state, 4 in-value, 5 context condition
    /// (`guard` is then the index of a condition record in the action table).
    pub guard_kind: u8,
    /// The guard id or the state index.
    pub guard: u16,
    /// Targets: first index in the target table.
    pub targets_start: u16,
    /// Targets: count (0: targetless).
    pub targets_len: u16,
    /// Transition actions: first index in the action table.
    pub actions_start: u16,
    /// Transition actions: count.
    pub actions_len: u16,
}

impl TransitionRecord {
    /// Encoded size in bytes.
    pub const SIZE: usize = 18;
    /// `flags` bit: the transition re-enters its source.
    pub const REENTER: u8 = 1;
    /// `flags` bit: the transition is a sibling move (see [`sibling_move`]).
    pub const SIBLING: u8 = 2;
    /// Reads a record.
    #[inline]
    pub fn decode(b: &[u8]) -> Self {
        let b = head::<{ TransitionRecord::SIZE }>(b);
        Self {
            trigger: b[0],
            flags: b[1],
            source: u16_at(b, 2),
            event: u16_at(b, 4),
            guard_kind: b[6],
            guard: u16_at(b, 8),
            targets_start: u16_at(b, 10),
            targets_len: u16_at(b, 12),
            actions_start: u16_at(b, 14),
            actions_len: u16_at(b, 16),
        }
    }
    /// Writes the record.
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.trigger;
        b[1] = self.flags;
        put16(b, 2, self.source);
        put16(b, 4, self.event);
        b[6] = self.guard_kind;
        b[7] = 0;
        put16(b, 8, self.guard);
        put16(b, 10, self.targets_start);
        put16(b, 12, self.targets_len);
        put16(b, 14, self.actions_start);
        put16(b, 16, self.actions_len);
    }
}

/// An action record.
///
/// | kind | action      | a        | b        | c           | d            | delay |
/// |------|-------------|----------|----------|-------------|--------------|-------|
/// | 0    | user        | action   |          |             |              |       |
/// | 1    | raise       | event    |          | send id str |              | opt.  |
/// | 2    | cancel      |          |          | send id str |              |       |
/// | 3    | sendTo      | target s | event s  | send id str | payload str  | opt.  |
/// | 4    | log         | message  |          |             |              |       |
/// | 5    | start after | event    |          |             |              | yes   |
/// | 6    | cancel after| event    |          |             |              |       |
/// | 7    | initial context | JSON text |     |             |              |       |
/// | 8    | assign      | key lit. | operand  | op (`AssignOp`) |          |       |
/// | 9    | context condition | key lit. | literal | op (`CompareOp`) |    |       |
/// | 10   | reply       |          | event s  |             | payload str  |       |
/// | 11   | request     | target s | event s  |             | payload str  | yes   |
/// | 12   | start child | src s    | invoke id s |          | input str    |       |
/// | 13   | stop child  |          | invoke id s | its start record |     |       |
/// | 14   | send child  | invoke id s | event s | send id str | payload str  | opt.  |
/// | 15   | send parent |          | event s  | send id str | payload str  | opt.  |
///
/// Kinds 7 and 9 are data, not actions: no state's action list holds them. The chart's
/// `context` object is the one record of kind 7; a transition with guard kind 5 names the
/// index of its record of kind 9. Key literals are JSON string literals, quotes included.
///
/// Kinds 12 and 13 are a state's invocations (`invoke`): the start record after the state's
/// entry actions, the stop record (naming its start record's index) after its exit actions.
///
/// Flag [`ActionRecord::FORWARD_DATA`] (kinds 3, 10, 11, 14, 15; payload none): the message carries
/// the current event's payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionRecord {
    /// The kind (table above).
    pub kind: u8,
    /// Bit 0: has a delay. Bit 1: the delay is a [`super::DelayId`], not milliseconds.
    pub flags: u8,
    /// First operand.
    pub a: u16,
    /// Second operand.
    pub b: u16,
    /// Third operand.
    pub c: u16,
    /// Fourth operand.
    pub d: u16,
    /// Milliseconds, or a delay id.
    pub delay: u32,
}

impl ActionRecord {
    /// Encoded size in bytes.
    pub const SIZE: usize = 14;
    /// `flags` bit: the action has a delay.
    pub const HAS_DELAY: u8 = 1;
    /// `flags` bit: the delay is named.
    pub const NAMED_DELAY: u8 = 2;
    /// `flags` bit: the message forwards the current event's payload.
    pub const FORWARD_DATA: u8 = 4;
    /// `flags` bit (kind 14): the send is in the entry actions of the state that invokes its
    /// child, and reaches the child that state is about to start.
    pub const ENTERING_CHILD: u8 = 8;
    /// Reads a record.
    #[inline]
    pub fn decode(b: &[u8]) -> Self {
        let b = head::<{ ActionRecord::SIZE }>(b);
        Self {
            kind: b[0],
            flags: b[1],
            a: u16_at(b, 2),
            b: u16_at(b, 4),
            c: u16_at(b, 6),
            d: u16_at(b, 8),
            delay: u32_at(b, 10),
        }
    }
    /// Writes the record.
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.kind;
        b[1] = self.flags;
        put16(b, 2, self.a);
        put16(b, 4, self.b);
        put16(b, 6, self.c);
        put16(b, 8, self.d);
        put32(b, 10, self.delay);
    }
}

/// [`ActionRecord::kind`] of the chart's initial context.
pub const ACTION_INITIAL_CONTEXT: u8 = 7;
/// [`ActionRecord::kind`] of an `assign`.
pub const ACTION_ASSIGN: u8 = 8;
/// [`ActionRecord::kind`] of a context condition.
pub const ACTION_CONTEXT_CONDITION: u8 = 9;
/// [`ActionRecord::kind`] of a reply (`sendTo` the sender).
pub const ACTION_REPLY: u8 = 10;
/// [`ActionRecord::kind`] of a request.
pub const ACTION_REQUEST: u8 = 11;
/// [`ActionRecord::kind`] of an invocation's start (`invoke`, after the entry actions).
pub const ACTION_START_CHILD: u8 = 12;
/// [`ActionRecord::kind`] of an invocation's stop (after the exit actions).
pub const ACTION_STOP_CHILD: u8 = 13;
/// [`ActionRecord::kind`] of a `sendTo` whose `to` is one of the chart's invoke ids.
pub const ACTION_SEND_CHILD: u8 = 14;
/// [`ActionRecord::kind`] of a `sendParent`.
pub const ACTION_SEND_PARENT: u8 = 15;
/// [`TransitionRecord::guard_kind`] of a context condition.
pub const GUARD_CONTEXT: u8 = 5;

/// A string span in the string table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameRecord {
    /// Byte offset.
    pub offset: u32,
    /// Byte length.
    pub len: u16,
}

impl NameRecord {
    /// Encoded size in bytes.
    pub const SIZE: usize = 6;
    /// Reads a record.
    #[inline]
    pub fn decode(b: &[u8]) -> Self {
        let b = head::<{ NameRecord::SIZE }>(b);
        Self {
            offset: u32_at(b, 0),
            len: u16_at(b, 4),
        }
    }
    /// Writes the record.
    pub fn encode(&self, b: &mut [u8]) {
        put32(b, 0, self.offset);
        put16(b, 4, self.len);
    }
}

/// Whether a transition is a sibling move: one target, not re-entering, from an atomic
/// (or final) state to another atomic (or final) state with the same compound parent.
/// Its exit and entry sets are then the source and the target, whenever the source is
/// its parent's only active descendant; stepping relies on the flag the compiler sets
/// ([`TransitionRecord::SIBLING`]) instead of reading four state records per event.
///
/// `states` and `targets` are the chart's tables; out-of-range indices make it false.
pub fn sibling_move(states: &[u8], targets: &[u8], tr: &TransitionRecord) -> bool {
    // (kind, parent) of a state.
    let state = |s: u16| {
        let at = s as usize * StateRecord::SIZE;
        states.get(at..at + 4).map(|b| (b[0], u16_at(b, 2)))
    };
    let atomic = |k: u8| k == super::StateKind::Atomic as u8 || k == super::StateKind::Final as u8;
    let at = tr.targets_start as usize * 2;
    let Some(x) = targets.get(at..at + 2).map(|b| u16_at(b, 0)) else {
        return false;
    };
    let (Some((sk, sp)), Some((xk, xp))) = (state(tr.source), state(x)) else {
        return false;
    };
    tr.targets_len == 1
        && tr.flags & TransitionRecord::REENTER == 0
        && x != tr.source
        && atomic(sk)
        && atomic(xk)
        && sp == xp
        && state(sp).is_some_and(|(pk, _)| pk == super::StateKind::Compound as u8)
}

/// Reads entry `i` of a table of `u16`.
#[inline]
pub fn u16_entry(table: &[u8], i: usize) -> u16 {
    u16_at(table, i * 2)
}
