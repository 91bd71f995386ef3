//! Compiled charts: flat, index-based tables, validated once.
//!
//! A chart is a handful of byte tables of fixed-size little-endian records plus one string
//! table. States are numbered in document order (a pre-order walk of the JSON, the same order
//! XState uses), so:
//! - the root is state 0 and every state's parent has a smaller index;
//! - the descendants of `s` are exactly the states `s+1 ..= end(s)`;
//! - "entry in document order" is ascending index order, "exit in reverse document order"
//!   is descending index order.
//!
//! [`Chart`] is a borrowed view over those tables. [`Chart::new`] checks every index, range and
//! string once, so that stepping a machine can never index out of bounds, loop forever or
//! recurse deeper than [`MAX_DEPTH`], whatever bytes the tables came from.
//!
//! The same tables are what a chart image carries (see [`crate::image`]), so a device can run a
//! chart compiled on a host without allocating: it borrows the tables from the image bytes.

use crate::error::Error;

/// Marks "none" in a `u16` index field.
pub const NONE: u16 = u16::MAX;

/// The deepest state nesting a chart may have (the root is depth 0).
///
/// Stepping recurses along the state tree; this bound keeps its stack use small and fixed.
pub const MAX_DEPTH: usize = 32;

/// The most states a chart may have.
pub const MAX_STATES: usize = 0xFFFE;

/// The most atomic states that can be active at once (across parallel regions), and the most
/// targets one transition may have. Stepping keeps per-microstep lists of this size on the
/// stack; charts beyond it are refused when validated.
pub const MAX_ACTIVE_LEAVES: usize = 64;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name(pub u16);
        impl $name {
            /// The index this id stands for in its table.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// A state, by its index in document order (the root is 0).
    StateId
);
id_type!(
    /// An event name interned by the chart.
    EventId
);
id_type!(
    /// A user action name the chart refers to; the host binds it.
    ActionId
);
id_type!(
    /// A guard name the chart refers to; the host binds it.
    GuardId
);
id_type!(
    /// A named delay (`after: { slowDelay: ... }`); the host binds it to a duration.
    DelayId
);
id_type!(
    /// A string in the chart's string table.
    StrId
);

/// What kind of state a state node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum StateKind {
    /// No child states.
    Atomic = 0,
    /// Exactly one child is active while the state is.
    Compound = 1,
    /// All children (regions) are active while the state is.
    Parallel = 2,
    /// A final state: entering it completes its parent.
    Final = 3,
    /// A shallow history pseudo-state.
    ShallowHistory = 4,
    /// A deep history pseudo-state.
    DeepHistory = 5,
}

impl StateKind {
    /// Decodes a kind byte.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Atomic,
            1 => Self::Compound,
            2 => Self::Parallel,
            3 => Self::Final,
            4 => Self::ShallowHistory,
            5 => Self::DeepHistory,
            _ => return None,
        })
    }
    /// Atomic and final states have no children; XState calls both "atomic".
    #[inline]
    pub const fn is_atomic(self) -> bool {
        matches!(self, Self::Atomic | Self::Final)
    }
    /// Shallow or deep history.
    #[inline]
    pub const fn is_history(self) -> bool {
        matches!(self, Self::ShallowHistory | Self::DeepHistory)
    }
}

/// How a transition is triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Trigger {
    /// An exact event name (`on: { GO: ... }`, `onDone`, `after`): `event` is an [`EventId`].
    Exact = 0,
    /// A partial descriptor `foo.*`: `event` is the [`StrId`] of the prefix `foo.`.
    Prefix = 1,
    /// The wildcard `*`: any event.
    Any = 2,
    /// Eventless (`always`).
    Always = 3,
}

impl Trigger {
    const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Exact,
            1 => Self::Prefix,
            2 => Self::Any,
            3 => Self::Always,
            _ => return None,
        })
    }
}

/// The condition of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Guard {
    /// Always enabled.
    None,
    /// A named guard bound by the host.
    Named(GuardId),
    /// Enabled while the given state is active (XState's `stateIn`).
    InState(StateId),
    /// Enabled while the given state is not active.
    NotInState(StateId),
}

/// One action of an action list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// A user action, bound by name by the host.
    User(ActionId),
    /// `raise`: put an event on the internal queue (same macrostep).
    Raise {
        /// The raised event.
        event: EventId,
    },
    /// A delayed `raise`: the event comes back as an external event after the delay.
    RaiseAfter {
        /// The raised event.
        event: EventId,
        /// The delay.
        delay: Delay,
        /// The send id `cancel` refers to, if any.
        id: Option<StrId>,
    },
    /// `cancel`: drop a pending delayed send or raise by its send id.
    Cancel {
        /// The send id.
        id: StrId,
    },
    /// `sendTo`: send an event to another machine (or to this one by its id).
    SendTo {
        /// The target machine id.
        target: StrId,
        /// The event name.
        event: StrId,
        /// The payload: the JSON text from the chart, or none.
        payload: Option<StrId>,
        /// Optional delay.
        delay: Option<Delay>,
        /// The send id `cancel` refers to, if any.
        id: Option<StrId>,
    },
    /// `log`: hand a message to the host's logger.
    Log {
        /// The message.
        message: StrId,
    },
    /// Arms the timer of an `after` transition (added to the state's entry actions).
    StartAfter {
        /// The `xstate.after.<delay>.<state id>` event.
        event: EventId,
        /// The delay.
        delay: Delay,
    },
    /// Disarms the timer of an `after` transition (added to the state's exit actions).
    CancelAfter {
        /// The `xstate.after.<delay>.<state id>` event.
        event: EventId,
    },
}

/// A delay: a number of milliseconds fixed in the chart, or a name the host binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Delay {
    /// Milliseconds.
    Millis(u32),
    /// A named delay.
    Named(DelayId),
}

/// Raw record layouts. The host-side compiler writes them; [`Chart`] reads them.
///
/// All integers are little-endian. Every record has a fixed size so that record `i` of a table
/// starts at `i * SIZE`.
pub mod raw {
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
        /// History states: how many slots its memory may need.
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
        /// 0 none, 1 named guard, 2 in-state, 3 not-in-state.
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
        let atomic =
            |k: u8| k == super::StateKind::Atomic as u8 || k == super::StateKind::Final as u8;
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
}

use raw::{ActionRecord, NameRecord, StateRecord, TransitionRecord};

/// The tables of a chart, borrowed. Build them with the host-side compiler, or decode them from
/// an image with [`crate::image::decode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tables<'a> {
    /// All strings, concatenated.
    pub strings: &'a str,
    /// [`NameRecord`]s: string id -> span of `strings`.
    pub names: &'a [u8],
    /// [`StateRecord`]s in document order.
    pub states: &'a [u8],
    /// [`TransitionRecord`]s.
    pub transitions: &'a [u8],
    /// `u16` state indices: transition targets and history defaults.
    pub targets: &'a [u8],
    /// [`ActionRecord`]s.
    pub actions: &'a [u8],
    /// `u16` string ids: event id -> its name.
    pub events: &'a [u8],
    /// `u16` event ids sorted by name, for lookup by name.
    pub event_index: &'a [u8],
    /// `u16` string ids: action id -> its name.
    pub action_names: &'a [u8],
    /// `u16` string ids: guard id -> its name.
    pub guard_names: &'a [u8],
    /// `u16` string ids: delay id -> its name.
    pub delay_names: &'a [u8],
    /// The number of `u16` slots of history memory a machine needs for this chart.
    pub history_slots: u16,
}

/// A validated chart: a borrowed view over [`Tables`].
///
/// Cheap to copy. Every accessor is a table lookup; none can fail once [`Chart::new`] has
/// accepted the tables.
#[derive(Clone, Copy, Debug)]
pub struct Chart<'a> {
    t: Tables<'a>,
    state_count: u16,
    max_depth: u8,
    /// What the chart uses ([`Chart::HISTORY`], ...), found in [`Chart::new`]: stepping skips
    /// the work a chart without these cannot need.
    features: u8,
}

/// One transition, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// How it is triggered.
    pub trigger: Trigger,
    /// Exact: the event. Prefix: the prefix string. Otherwise unused.
    pub event: u16,
    /// The source state.
    pub source: StateId,
    /// Its guard.
    pub guard: Guard,
    /// Whether it re-enters its source (`reenter: true`).
    pub reenter: bool,
    targets: (u16, u16),
    actions: (u16, u16),
}

/// An index of a transition in the chart's transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransitionId(pub u16);

fn bad(table: &'static str, index: usize, reason: &'static str) -> Error {
    Error::InvalidChart {
        table,
        index: index as u32,
        reason,
    }
}

fn table_len(table: &[u8], size: usize, name: &'static str) -> Result<usize, Error> {
    if table.len() % size != 0 {
        return Err(bad(
            name,
            table.len() / size,
            "table length is not a whole number of records",
        ));
    }
    let n = table.len() / size;
    if n > NONE as usize {
        return Err(bad(name, n, "too many records (at most 65534)"));
    }
    Ok(n)
}

fn range_ok(start: u16, len: u16, total: usize) -> bool {
    start as usize + len as usize <= total
}

impl<'a> Chart<'a> {
    /// Validates `tables` and returns the chart.
    ///
    /// Every index, range and string is checked here once: a chart that passes can be stepped
    /// without any further checks failing, whatever the bytes came from.
    pub fn new(t: Tables<'a>) -> Result<Self, Error> {
        let n_names = table_len(t.names, NameRecord::SIZE, "names")?;
        for i in 0..n_names {
            let r = NameRecord::decode(&t.names[i * NameRecord::SIZE..]);
            let start = r.offset as usize;
            if t.strings.get(start..start + r.len as usize).is_none() {
                return Err(bad(
                    "names",
                    i,
                    "span outside the string table or not on a character boundary",
                ));
            }
        }
        let str_ok = |id: u16| (id as usize) < n_names;
        let n_states = table_len(t.states, StateRecord::SIZE, "states")?;
        let n_trans = table_len(t.transitions, TransitionRecord::SIZE, "transitions")?;
        let n_targets = table_len(t.targets, 2, "targets")?;
        let n_actions = table_len(t.actions, ActionRecord::SIZE, "actions")?;
        let n_events = table_len(t.events, 2, "events")?;
        let n_action_names = table_len(t.action_names, 2, "action_names")?;
        let n_guards = table_len(t.guard_names, 2, "guard_names")?;
        let n_delays = table_len(t.delay_names, 2, "delay_names")?;
        if n_states == 0 {
            return Err(bad("states", 0, "a chart needs at least a root state"));
        }
        if n_states > MAX_STATES {
            return Err(bad("states", n_states, "too many states"));
        }
        for (name, table) in [
            ("events", t.events),
            ("action_names", t.action_names),
            ("guard_names", t.guard_names),
            ("delay_names", t.delay_names),
        ] {
            for i in 0..table.len() / 2 {
                if !str_ok(raw::u16_entry(table, i)) {
                    return Err(bad(name, i, "string id out of range"));
                }
            }
        }
        // Event index: a permutation of the events, sorted by name.
        if table_len(t.event_index, 2, "event_index")? != n_events {
            return Err(bad("event_index", 0, "must list every event once"));
        }
        let ev_name = |e: u16| -> &'a str {
            let s = raw::u16_entry(t.events, e as usize);
            let r = NameRecord::decode(&t.names[s as usize * NameRecord::SIZE..]);
            &t.strings[r.offset as usize..r.offset as usize + r.len as usize]
        };
        for i in 0..n_events {
            let e = raw::u16_entry(t.event_index, i);
            if e as usize >= n_events {
                return Err(bad("event_index", i, "event id out of range"));
            }
            if i > 0 && ev_name(raw::u16_entry(t.event_index, i - 1)) >= ev_name(e) {
                return Err(bad("event_index", i, "not strictly sorted by name"));
            }
        }
        for i in 0..n_targets {
            if raw::u16_entry(t.targets, i) as usize >= n_states {
                return Err(bad("targets", i, "state index out of range"));
            }
        }
        for i in 0..n_actions {
            let a = ActionRecord::decode(&t.actions[i * ActionRecord::SIZE..]);
            let delay_ok = a.flags & ActionRecord::HAS_DELAY == 0
                || a.flags & ActionRecord::NAMED_DELAY == 0
                || (a.delay as usize) < n_delays;
            let opt_str = |s: u16| s == NONE || str_ok(s);
            let ok = delay_ok
                && match a.kind {
                    0 => (a.a as usize) < n_action_names,
                    1 => (a.a as usize) < n_events && opt_str(a.c),
                    2 => str_ok(a.c),
                    3 => str_ok(a.a) && str_ok(a.b) && opt_str(a.c) && opt_str(a.d),
                    4 => str_ok(a.a),
                    5 => (a.a as usize) < n_events && a.flags & ActionRecord::HAS_DELAY != 0,
                    6 => (a.a as usize) < n_events,
                    _ => false,
                };
            if !ok {
                return Err(bad(
                    "actions",
                    i,
                    "unknown action kind or operand out of range",
                ));
            }
        }
        // The state tree: pre-order, parents before children, subtrees contiguous.
        let mut stack = [0u16; MAX_DEPTH + 1];
        let mut depth = 0usize;
        let mut max_depth = 0usize;
        for i in 0..n_states {
            let s = StateRecord::decode(&t.states[i * StateRecord::SIZE..]);
            let Some(kind) = StateKind::from_u8(s.kind) else {
                return Err(bad("states", i, "unknown state kind"));
            };
            if (s.end as usize) < i || s.end as usize >= n_states {
                return Err(bad("states", i, "subtree end out of range"));
            }
            if i == 0 {
                if s.parent != NONE {
                    return Err(bad("states", 0, "the root has no parent"));
                }
                if s.end as usize != n_states - 1 {
                    return Err(bad("states", 0, "the root's subtree must hold every state"));
                }
                if !matches!(
                    kind,
                    StateKind::Atomic | StateKind::Compound | StateKind::Parallel
                ) {
                    return Err(bad(
                        "states",
                        0,
                        "the root must be atomic, compound or parallel",
                    ));
                }
            } else {
                loop {
                    let top =
                        StateRecord::decode(&t.states[stack[depth] as usize * StateRecord::SIZE..]);
                    if (top.end as usize) >= i {
                        break;
                    }
                    if depth == 0 {
                        return Err(bad("states", i, "outside the root's subtree"));
                    }
                    depth -= 1;
                }
                let top = stack[depth];
                let parent = StateRecord::decode(&t.states[top as usize * StateRecord::SIZE..]);
                if s.parent != top {
                    return Err(bad("states", i, "parent does not match the document order"));
                }
                if s.end > parent.end {
                    return Err(bad("states", i, "subtree extends past its parent's"));
                }
                if !matches!(
                    StateKind::from_u8(parent.kind),
                    Some(StateKind::Compound | StateKind::Parallel)
                ) {
                    return Err(bad("states", i, "parent is neither compound nor parallel"));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad("states", i, "nested deeper than MAX_DEPTH"));
                }
                max_depth = max_depth.max(depth);
                stack[depth] = i as u16;
            }
            let has_children = s.end as usize > i;
            match kind {
                StateKind::Compound => {
                    let init = s.initial as usize;
                    let ok = has_children
                        && init > i
                        && init <= s.end as usize
                        && StateRecord::decode(&t.states[init * StateRecord::SIZE..]).parent
                            as usize
                            == i;
                    if !ok {
                        return Err(bad("states", i, "a compound state needs an initial child"));
                    }
                }
                StateKind::Parallel => {}
                _ => {
                    if has_children {
                        return Err(bad(
                            "states",
                            i,
                            "atomic, final and history states have no children",
                        ));
                    }
                }
            }
            if matches!(kind, StateKind::Compound | StateKind::Parallel) {
                if s.done_event as usize >= n_events {
                    return Err(bad(
                        "states",
                        i,
                        "compound and parallel states need a done event",
                    ));
                }
            } else if s.done_event != NONE {
                return Err(bad(
                    "states",
                    i,
                    "only compound and parallel states have a done event",
                ));
            }
            if !str_ok(s.key) || !str_ok(s.id) {
                return Err(bad("states", i, "key or id string out of range"));
            }
            if !range_ok(s.on_start, s.on_len, n_trans)
                || !range_ok(s.always_start, s.always_len, n_trans)
            {
                return Err(bad("states", i, "transition range out of the table"));
            }
            if !range_ok(s.entry_start, s.entry_len, n_actions)
                || !range_ok(s.exit_start, s.exit_len, n_actions)
            {
                return Err(bad("states", i, "action range out of the table"));
            }
            for (start, len, always) in [
                (s.on_start, s.on_len, false),
                (s.always_start, s.always_len, true),
            ] {
                for ti in start..start + len {
                    let tr = TransitionRecord::decode(
                        &t.transitions[ti as usize * TransitionRecord::SIZE..],
                    );
                    if tr.source as usize != i {
                        return Err(bad(
                            "transitions",
                            ti as usize,
                            "source does not match the state listing it",
                        ));
                    }
                    if (tr.trigger == Trigger::Always as u8) != always {
                        return Err(bad(
                            "transitions",
                            ti as usize,
                            "eventless and event transitions are listed apart",
                        ));
                    }
                }
            }
            if kind.is_history() {
                let need = history_capacity(&t, i, kind);
                if (s.history_len as usize) < need
                    || !range_ok(s.history_slot, s.history_len, t.history_slots as usize)
                {
                    return Err(bad("states", i, "history memory slots missing or too few"));
                }
                if !range_ok(s.default_start, s.default_len, n_targets) {
                    return Err(bad("states", i, "history default targets out of the table"));
                }
                let (lo, hi) = (
                    s.parent as usize,
                    StateRecord::decode(&t.states[s.parent as usize * StateRecord::SIZE..]).end
                        as usize,
                );
                for k in s.default_start..s.default_start + s.default_len {
                    let target = raw::u16_entry(t.targets, k as usize) as usize;
                    let tk = StateRecord::decode(&t.states[target * StateRecord::SIZE..]).kind;
                    if target <= lo
                        || target > hi
                        || StateKind::from_u8(tk).is_some_and(StateKind::is_history)
                    {
                        return Err(bad("states", i, "a history default target must be a descendant of its parent, not a history state"));
                    }
                }
                if s.default_len > 1 && !targets_orthogonal(&t, s.default_start, s.default_len) {
                    return Err(bad(
                        "states",
                        i,
                        "history default targets must lie in different parallel regions",
                    ));
                }
            }
        }
        for ti in 0..n_trans {
            let tr = TransitionRecord::decode(&t.transitions[ti * TransitionRecord::SIZE..]);
            let Some(trigger) = Trigger::from_u8(tr.trigger) else {
                return Err(bad("transitions", ti, "unknown trigger"));
            };
            if tr.source as usize >= n_states {
                return Err(bad("transitions", ti, "source out of range"));
            }
            let ev_ok = match trigger {
                Trigger::Exact => (tr.event as usize) < n_events,
                Trigger::Prefix => str_ok(tr.event),
                Trigger::Any | Trigger::Always => true,
            };
            let guard_ok = match tr.guard_kind {
                0 => true,
                1 => (tr.guard as usize) < n_guards,
                2 | 3 => (tr.guard as usize) < n_states,
                _ => false,
            };
            if !ev_ok || !guard_ok {
                return Err(bad("transitions", ti, "event or guard out of range"));
            }
            if !range_ok(tr.targets_start, tr.targets_len, n_targets)
                || !range_ok(tr.actions_start, tr.actions_len, n_actions)
            {
                return Err(bad(
                    "transitions",
                    ti,
                    "target or action range out of the table",
                ));
            }
            if tr.targets_len as usize > MAX_ACTIVE_LEAVES {
                return Err(bad("transitions", ti, "more than 64 targets"));
            }
            if tr.targets_len > 1 && !targets_orthogonal(&t, tr.targets_start, tr.targets_len) {
                return Err(bad(
                    "transitions",
                    ti,
                    "several targets must lie in different regions of a parallel state",
                ));
            }
            if raw::sibling_move(t.states, t.targets, &tr)
                != (tr.flags & TransitionRecord::SIBLING != 0)
            {
                return Err(bad(
                    "transitions",
                    ti,
                    "the sibling-move flag does not match the transition",
                ));
            }
        }
        let mut features = 0u8;
        for i in 0..n_states {
            let s = state_rec(&t, i);
            features |= match StateKind::from_u8(s.kind) {
                Some(StateKind::ShallowHistory | StateKind::DeepHistory) => Self::HISTORY,
                Some(StateKind::Final) => Self::FINAL,
                Some(StateKind::Parallel) => Self::PARALLEL,
                _ => 0,
            };
            if s.always_len > 0 {
                features |= Self::EVENTLESS;
            }
        }
        if max_leaves(&t, 0, 0) > MAX_ACTIVE_LEAVES {
            return Err(bad(
                "states",
                0,
                "more than 64 atomic states can be active at once across parallel regions",
            ));
        }
        Ok(Chart {
            t,
            state_count: n_states as u16,
            max_depth: max_depth as u8,
            features,
        })
    }

    /// Feature bit: the chart has history states.
    const HISTORY: u8 = 1;
    /// Feature bit: the chart has final states.
    const FINAL: u8 = 2;
    /// Feature bit: the chart has parallel states.
    const PARALLEL: u8 = 4;
    /// Feature bit: the chart has eventless (`always`) transitions.
    const EVENTLESS: u8 = 8;

    /// Whether the chart has history states.
    #[inline]
    pub fn has_history(&self) -> bool {
        self.features & Self::HISTORY != 0
    }
    /// Whether the chart has final states.
    #[inline]
    pub fn has_final(&self) -> bool {
        self.features & Self::FINAL != 0
    }
    /// Whether the chart has parallel states.
    #[inline]
    pub fn has_parallel(&self) -> bool {
        self.features & Self::PARALLEL != 0
    }
    /// Whether the chart has eventless (`always`) transitions.
    #[inline]
    pub fn has_eventless(&self) -> bool {
        self.features & Self::EVENTLESS != 0
    }

    /// The tables this chart views.
    pub fn tables(&self) -> &Tables<'a> {
        &self.t
    }

    /// Number of states, history states included.
    #[inline]
    pub fn state_count(&self) -> usize {
        self.state_count as usize
    }
    /// Number of transitions (event and eventless).
    pub fn transition_count(&self) -> usize {
        self.t.transitions.len() / TransitionRecord::SIZE
    }
    /// Number of interned events.
    pub fn event_count(&self) -> usize {
        self.t.events.len() / 2
    }
    /// Number of distinct user action names.
    pub fn action_count(&self) -> usize {
        self.t.action_names.len() / 2
    }
    /// Number of distinct guard names.
    pub fn guard_count(&self) -> usize {
        self.t.guard_names.len() / 2
    }
    /// Number of distinct named delays.
    pub fn delay_count(&self) -> usize {
        self.t.delay_names.len() / 2
    }
    /// The deepest nesting (root = 0).
    pub fn depth(&self) -> usize {
        self.max_depth as usize
    }
    /// History memory slots a machine needs.
    pub fn history_slots(&self) -> usize {
        self.t.history_slots as usize
    }

    /// A string of the string table.
    #[inline]
    pub fn str(&self, id: StrId) -> &'a str {
        let r = NameRecord::decode(&self.t.names[id.index() * NameRecord::SIZE..]);
        &self.t.strings[r.offset as usize..r.offset as usize + r.len as usize]
    }
    #[inline]
    fn u16_str(&self, table: &[u8], i: usize) -> &'a str {
        self.str(StrId(raw::u16_entry(table, i)))
    }

    /// One `u16` field of a state record, at byte offset `at` (see [`StateRecord::encode`]):
    /// the hot accessors read only what they need instead of decoding the whole record.
    #[inline]
    fn state_field(&self, s: StateId, at: usize) -> u16 {
        u16_or(self.t.states, s.index() * StateRecord::SIZE + at, 0)
    }
    /// A (start, count) pair of a state record at byte offset `at`, as a range: one read.
    #[inline]
    fn state_range(&self, s: StateId, at: usize) -> core::ops::Range<u16> {
        range_or_empty(self.t.states, s.index() * StateRecord::SIZE + at)
    }
    #[inline]
    pub(crate) fn rec(&self, s: StateId) -> StateRecord {
        StateRecord::decode(&self.t.states[s.index() * StateRecord::SIZE..])
    }
    /// The kind of a state.
    #[inline]
    pub fn kind(&self, s: StateId) -> StateKind {
        // Validated in `new`.
        match self.t.states.get(s.index() * StateRecord::SIZE) {
            Some(&k) => StateKind::from_u8(k).unwrap_or(StateKind::Atomic),
            None => StateKind::Atomic,
        }
    }
    /// The parent of a state (`None` for the root).
    #[inline]
    pub fn parent(&self, s: StateId) -> Option<StateId> {
        let p = u16_or(self.t.states, s.index() * StateRecord::SIZE + 2, NONE);
        (p != NONE).then_some(StateId(p))
    }
    /// The last descendant of `s` (or `s`).
    #[inline]
    pub fn end(&self, s: StateId) -> StateId {
        StateId(u16_or(
            self.t.states,
            s.index() * StateRecord::SIZE + 4,
            s.0,
        ))
    }
    /// Whether `d` is a proper descendant of `a`.
    #[inline]
    pub fn is_descendant(&self, d: StateId, a: StateId) -> bool {
        d.0 > a.0 && d.0 <= self.end(a).0
    }
    /// The children of `s`, history states included, in document order.
    pub fn children(&self, s: StateId) -> Children<'_, 'a> {
        Children {
            chart: self,
            next: s.0 + 1,
            end: self.end(s).0,
        }
    }
    /// The key of a state (its name within its parent; empty for the root).
    pub fn key(&self, s: StateId) -> &'a str {
        self.str(StrId(self.rec(s).key))
    }
    /// The id of a state (`#id` without the `#`).
    pub fn state_id(&self, s: StateId) -> &'a str {
        self.str(StrId(self.rec(s).id))
    }
    /// Finds a state by its id.
    pub fn find_state(&self, id: &str) -> Option<StateId> {
        (0..self.state_count)
            .map(StateId)
            .find(|&s| self.state_id(s) == id)
    }
    /// The initial child of a compound state.
    pub fn initial(&self, s: StateId) -> Option<StateId> {
        let i = self.state_field(s, 6);
        (i != NONE).then_some(StateId(i))
    }
    /// The done event of a compound or parallel state.
    pub fn done_event(&self, s: StateId) -> Option<EventId> {
        let e = self.rec(s).done_event;
        (e != NONE).then_some(EventId(e))
    }

    /// The name of an event.
    pub fn event_name(&self, e: EventId) -> &'a str {
        self.u16_str(self.t.events, e.index())
    }
    /// Looks an event up by name (binary search).
    pub fn event(&self, name: &str) -> Option<EventId> {
        let n = self.event_count();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let e = raw::u16_entry(self.t.event_index, mid);
            match self.event_name(EventId(e)).cmp(name) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some(EventId(e)),
            }
        }
        None
    }
    /// The name of a user action.
    pub fn action_name(&self, a: ActionId) -> &'a str {
        self.u16_str(self.t.action_names, a.index())
    }
    /// Looks a user action up by name.
    pub fn action(&self, name: &str) -> Option<ActionId> {
        (0..self.action_count() as u16)
            .map(ActionId)
            .find(|&a| self.action_name(a) == name)
    }
    /// The name of a guard.
    pub fn guard_name(&self, g: GuardId) -> &'a str {
        self.u16_str(self.t.guard_names, g.index())
    }
    /// Looks a guard up by name.
    pub fn guard(&self, name: &str) -> Option<GuardId> {
        (0..self.guard_count() as u16)
            .map(GuardId)
            .find(|&g| self.guard_name(g) == name)
    }
    /// The name of a named delay.
    pub fn delay_name(&self, d: DelayId) -> &'a str {
        self.u16_str(self.t.delay_names, d.index())
    }
    /// Looks a named delay up by name.
    pub fn delay(&self, name: &str) -> Option<DelayId> {
        (0..self.delay_count() as u16)
            .map(DelayId)
            .find(|&d| self.delay_name(d) == name)
    }

    /// Decodes a transition.
    #[inline]
    pub fn transition(&self, id: TransitionId) -> Transition {
        // One bounds check and no panic path, as in `u16_or`: a validated chart's transition
        // ids are all in the table.
        let at = id.0 as usize * TransitionRecord::SIZE;
        let r = TransitionRecord::decode(
            self.t
                .transitions
                .get(at..at + TransitionRecord::SIZE)
                .unwrap_or(&[0; TransitionRecord::SIZE]),
        );
        Transition {
            trigger: Trigger::from_u8(r.trigger).unwrap_or(Trigger::Always),
            event: r.event,
            source: StateId(r.source),
            guard: match r.guard_kind {
                1 => Guard::Named(GuardId(r.guard)),
                2 => Guard::InState(StateId(r.guard)),
                3 => Guard::NotInState(StateId(r.guard)),
                _ => Guard::None,
            },
            reenter: r.flags & TransitionRecord::REENTER != 0,
            targets: (r.targets_start, r.targets_len),
            actions: (r.actions_start, r.actions_len),
        }
    }
    /// The event transitions of a state (`on`, `onDone`, `after`), in selection order.
    #[inline]
    pub fn on_transitions(&self, s: StateId) -> core::ops::Range<u16> {
        self.state_range(s, 8)
    }
    /// The eventless transitions of a state, in document order.
    #[inline]
    pub fn always_transitions(&self, s: StateId) -> core::ops::Range<u16> {
        self.state_range(s, 12)
    }
    /// The targets of a transition.
    #[inline]
    pub fn targets(&self, t: &Transition) -> StateList<'a> {
        StateList {
            table: self.t.targets,
            next: t.targets.0,
            end: t.targets.0 + t.targets.1,
        }
    }
    /// The actions of a transition.
    #[inline]
    pub fn transition_actions(&self, t: &Transition) -> core::ops::Range<u16> {
        t.actions.0..t.actions.0 + t.actions.1
    }
    /// For a transition triggered by an exact event, its event and whether it has a guard;
    /// `None` for the other triggers. Read from the record without decoding the rest.
    #[inline]
    pub fn exact_trigger(&self, t: TransitionId) -> Option<(u16, bool)> {
        let at = t.0 as usize * TransitionRecord::SIZE;
        let r = self.t.transitions.get(at..at + 8)?;
        (r[0] == Trigger::Exact as u8).then(|| (u16::from_le_bytes([r[4], r[5]]), r[6] != 0))
    }
    /// The source and the target of a sibling move ([`raw::sibling_move`], flagged by the
    /// compiler and checked by [`Chart::new`]); `None` for other transitions. Read from the
    /// record without decoding the rest.
    #[inline]
    pub fn sibling_move(&self, t: TransitionId) -> Option<(StateId, StateId)> {
        let at = t.0 as usize * TransitionRecord::SIZE;
        let r = self.t.transitions.get(at..at + 12)?;
        if r[1] & TransitionRecord::SIBLING == 0 {
            return None;
        }
        let first = u16::from_le_bytes([r[10], r[11]]);
        let x = u16_or(self.t.targets, first as usize * 2, NONE);
        (x != NONE).then_some((StateId(u16::from_le_bytes([r[2], r[3]])), StateId(x)))
    }
    /// The actions of a transition, by its id: one field read.
    #[inline]
    pub fn transition_actions_of(&self, t: TransitionId) -> core::ops::Range<u16> {
        range_or_empty(
            self.t.transitions,
            t.0 as usize * TransitionRecord::SIZE + 14,
        )
    }
    /// The entry actions of a state.
    #[inline]
    pub fn entry_actions(&self, s: StateId) -> core::ops::Range<u16> {
        self.state_range(s, 16)
    }
    /// The exit actions of a state.
    #[inline]
    pub fn exit_actions(&self, s: StateId) -> core::ops::Range<u16> {
        self.state_range(s, 20)
    }
    /// History states: their default targets (empty: the parent's initial state).
    pub fn history_defaults(&self, s: StateId) -> StateList<'a> {
        let r = self.rec(s);
        StateList {
            table: self.t.targets,
            next: r.default_start,
            end: r.default_start + r.default_len,
        }
    }
    /// History states: (first slot, slot count) of their memory.
    pub fn history_memory(&self, s: StateId) -> (usize, usize) {
        let r = self.rec(s);
        (r.history_slot as usize, r.history_len as usize)
    }

    /// The user action at `index` of the action table, or `None` for any other kind: the
    /// common case read without decoding the whole record.
    #[inline]
    pub fn user_action_at(&self, index: u16) -> Option<ActionId> {
        let at = index as usize * ActionRecord::SIZE;
        match self.t.actions.get(at..at + 4) {
            Some(&[0, _, a0, a1]) => Some(ActionId(u16::from_le_bytes([a0, a1]))),
            _ => None,
        }
    }

    /// Decodes an action.
    #[inline]
    pub fn action_at(&self, index: u16) -> Action {
        let a = ActionRecord::decode(&self.t.actions[index as usize * ActionRecord::SIZE..]);
        let delay = (a.flags & ActionRecord::HAS_DELAY != 0).then_some(
            if a.flags & ActionRecord::NAMED_DELAY != 0 {
                Delay::Named(DelayId(a.delay as u16))
            } else {
                Delay::Millis(a.delay)
            },
        );
        let opt = |s: u16| (s != NONE).then_some(StrId(s));
        match a.kind {
            0 => Action::User(ActionId(a.a)),
            1 => match delay {
                None => Action::Raise {
                    event: EventId(a.a),
                },
                Some(delay) => Action::RaiseAfter {
                    event: EventId(a.a),
                    delay,
                    id: opt(a.c),
                },
            },
            2 => Action::Cancel { id: StrId(a.c) },
            3 => Action::SendTo {
                target: StrId(a.a),
                event: StrId(a.b),
                id: opt(a.c),
                payload: opt(a.d),
                delay,
            },
            4 => Action::Log {
                message: StrId(a.a),
            },
            5 => Action::StartAfter {
                event: EventId(a.a),
                delay: delay.unwrap_or(Delay::Millis(0)),
            },
            _ => Action::CancelAfter {
                event: EventId(a.a),
            },
        }
    }
}

/// Iterator over the children of a state.
pub struct Children<'c, 'a> {
    chart: &'c Chart<'a>,
    next: u16,
    end: u16,
}

impl Iterator for Children<'_, '_> {
    type Item = StateId;
    fn next(&mut self) -> Option<StateId> {
        if self.next > self.end || self.end == NONE {
            return None;
        }
        let c = StateId(self.next);
        let e = self.chart.end(c).0;
        // `end(c) >= c` is validated, so this always advances.
        self.next = if e == NONE { NONE } else { e + 1 };
        if self.next == NONE {
            self.end = NONE;
        }
        Some(c)
    }
}

/// Iterator over a list of states in the target table.
#[derive(Clone)]
pub struct StateList<'a> {
    table: &'a [u8],
    next: u16,
    end: u16,
}

impl StateList<'_> {
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.next >= self.end
    }
}

impl Iterator for StateList<'_> {
    type Item = StateId;
    #[inline]
    fn next(&mut self) -> Option<StateId> {
        if self.next >= self.end {
            return None;
        }
        let s = u16_or(self.table, self.next as usize * 2, 0);
        self.next += 1;
        Some(StateId(s))
    }
}

/// The little-endian `u16` at `table[at..at + 2]`, or `or` past the end: one bounds check and
/// no panic path for the hot accessors. The tables of a validated chart are never read past
/// their end, so `or` is never what a step sees.
#[inline(always)]
fn u16_or(table: &[u8], at: usize, or: u16) -> u16 {
    match table.get(at..at + 2) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => or,
    }
}

/// The (start, count) pair of `u16` at `table[at..at + 4]` as a range, or an empty range past
/// the end (see [`u16_or`]).
#[inline(always)]
fn range_or_empty(table: &[u8], at: usize) -> core::ops::Range<u16> {
    match table.get(at..at + 4) {
        Some(&[a, b, c, d]) => {
            let start = u16::from_le_bytes([a, b]);
            start..start + u16::from_le_bytes([c, d])
        }
        _ => 0..0,
    }
}

fn state_rec(t: &Tables<'_>, i: usize) -> StateRecord {
    StateRecord::decode(&t.states[i * StateRecord::SIZE..])
}

/// How many states a history memory may need to hold: shallow history remembers the active
/// children of its parent, deep history its active atomic descendants.
///
/// Only called on states already checked (indices in range, tree structure sound for every
/// state up to `hist`, which comes after its parent's whole subtree has been listed... or not:
/// the parent's later children are checked afterwards, so this only trusts `end` bounds).
fn history_capacity(t: &Tables<'_>, hist: usize, kind: StateKind) -> usize {
    let parent = state_rec(t, hist).parent as usize;
    if kind == StateKind::ShallowHistory {
        let p = state_rec(t, parent);
        if p.kind == StateKind::Parallel as u8 {
            count_children(t, parent)
        } else {
            1
        }
    } else {
        max_leaves(t, parent, 0)
    }
}

fn count_children(t: &Tables<'_>, s: usize) -> usize {
    let end = state_rec(t, s).end as usize;
    let mut c = s + 1;
    let mut n = 0;
    while c <= end {
        let r = state_rec(t, c);
        if !StateKind::from_u8(r.kind).is_some_and(StateKind::is_history) {
            n += 1;
        }
        // `end >= c` is not yet validated for later states: guard the walk.
        c = (r.end as usize).max(c) + 1;
    }
    n
}

fn max_leaves(t: &Tables<'_>, s: usize, depth: usize) -> usize {
    let r = state_rec(t, s);
    let end = (r.end as usize).min(t.states.len() / StateRecord::SIZE - 1);
    if end <= s || depth > MAX_DEPTH {
        return 1;
    }
    let parallel = r.kind == StateKind::Parallel as u8;
    let mut c = s + 1;
    let mut acc = 0usize;
    while c <= end {
        let cr = state_rec(t, c);
        if !StateKind::from_u8(cr.kind).is_some_and(StateKind::is_history) {
            let l = max_leaves(t, c, depth + 1);
            acc = if parallel {
                acc.saturating_add(l)
            } else {
                acc.max(l)
            };
        }
        c = (cr.end as usize).max(c) + 1;
    }
    acc.max(1)
}

/// Several targets are legal only if no two are in the same branch of a compound state: for
/// each pair, neither contains the other and their nearest common ancestor is parallel.
fn targets_orthogonal(t: &Tables<'_>, start: u16, len: u16) -> bool {
    let n = t.states.len() / StateRecord::SIZE;
    for i in start..start + len {
        for j in (i + 1)..start + len {
            let a = raw::u16_entry(t.targets, i as usize) as usize;
            let b = raw::u16_entry(t.targets, j as usize) as usize;
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            if lo == hi || hi <= state_rec(t, lo).end as usize {
                return false;
            }
            // Nearest common ancestor: walk up from `lo` until its subtree holds `hi`.
            let mut anc = state_rec(t, lo).parent as usize;
            let mut steps = 0;
            while anc < n && (state_rec(t, anc).end as usize) < hi {
                anc = state_rec(t, anc).parent as usize;
                steps += 1;
                if steps > MAX_DEPTH + 1 {
                    return false;
                }
            }
            if anc >= n || state_rec(t, anc).kind != StateKind::Parallel as u8 {
                return false;
            }
        }
    }
    true
}
