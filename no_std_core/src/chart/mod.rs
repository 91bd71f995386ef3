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
//!
//! The pieces: this file holds the ids, the decoded state and transition types, [`Tables`],
//! [`Chart`] and its accessors (what stepping reads); `action` the decoded actions; `raw` the record layouts the compiler writes and the
//! accessors decode; `validate` what [`Chart::new`] checks before it accepts the tables.

mod action;
mod invocations;
pub mod label;
pub mod raw;
pub use action::{Action, AssignOp, CompareOp, ContextCondition, Data, Delay};
pub use invocations::Invocation;
mod validate;

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
    /// Enabled while the state value holds the given state: a `stateIn` written as a key path,
    /// which XState checks with `snapshot.matches`. It is [`Guard::InState`] except after a
    /// quirk of history targets, when the value holds states that are not active.
    InValue(StateId),
    /// Enabled while a context key compares with a literal as the condition record says
    /// (an interstate extension for JSON charts; see [`ContextCondition`]): the index of
    /// that record in the action table.
    Context(u16),
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

impl<'a> Chart<'a> {
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
    /// Whether a machine of this chart has to keep the order in which its states became
    /// active: eventless selection reads it when several atomic states are active (parallel
    /// regions, or what a history target leaves active), and the state value's key order after
    /// a history quirk (several children of one compound state active).
    #[inline]
    pub fn needs_entry_order(&self) -> bool {
        self.features & Self::HISTORY != 0
            || (self.features & Self::EVENTLESS != 0 && self.features & Self::PARALLEL != 0)
    }

    /// The tables this chart views.
    pub fn tables(&self) -> &Tables<'a> {
        &self.t
    }

    /// A 64-bit hash (FNV-1a) of every table: two charts with the same fingerprint have the
    /// same tables, for all practical purposes. A machine snapshot records it, so that a
    /// snapshot of another chart, or of another revision of one, is refused on restore.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            // Each table's length first, so that moving bytes between tables changes it.
            for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        let t = &self.t;
        for table in [
            t.strings.as_bytes(),
            t.names,
            t.states,
            t.transitions,
            t.targets,
            t.actions,
            t.events,
            t.event_index,
            t.action_names,
            t.guard_names,
            t.delay_names,
            &t.history_slots.to_le_bytes(),
        ] {
            eat(table);
        }
        h
    }

    /// Number of strings in the string table.
    pub fn string_count(&self) -> usize {
        self.t.names.len() / NameRecord::SIZE
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
    /// Whether event `e` is named `name`: the name's length, then its bytes, compared with
    /// the string table's (no text slice of the table, whose char-boundary checks cost more
    /// than the compare on a machine's remembered event).
    #[inline]
    pub fn event_is_named(&self, e: EventId, name: &str) -> bool {
        let id = raw::u16_entry(self.t.events, e.index());
        let Some(record) = self
            .t
            .names
            .get(usize::from(id) * NameRecord::SIZE..)
            .filter(|r| r.len() >= NameRecord::SIZE)
        else {
            return false;
        };
        let r = NameRecord::decode(record);
        let start = r.offset as usize;
        usize::from(r.len) == name.len()
            && self.t.strings.as_bytes().get(start..start + name.len()) == Some(name.as_bytes())
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
                4 => Guard::InValue(StateId(r.guard)),
                5 => Guard::Context(r.guard),
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
        let data = if a.flags & ActionRecord::FORWARD_DATA != 0 {
            Data::FromEvent
        } else {
            opt(a.d).map_or(Data::None, Data::Json)
        };
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
                payload: data,
                delay,
            },
            4 => Action::Log {
                message: StrId(a.a),
            },
            5 => Action::StartAfter {
                event: EventId(a.a),
                delay: delay.unwrap_or(Delay::Millis(0)),
            },
            6 => Action::CancelAfter {
                event: EventId(a.a),
            },
            8 => Action::Assign {
                key: StrId(a.a),
                operand: StrId(a.b),
                op: AssignOp::from_u8(a.c as u8).unwrap_or(AssignOp::Set),
            },
            raw::ACTION_REPLY => Action::Reply {
                event: StrId(a.b),
                payload: data,
            },
            raw::ACTION_REQUEST => Action::Request {
                target: StrId(a.a),
                event: StrId(a.b),
                payload: data,
                timeout: delay.unwrap_or(Delay::Millis(0)),
            },
            raw::ACTION_START_CHILD..=raw::ACTION_SEND_PARENT => {
                invocations::decode(&a, index, data, delay)
            }
            _ => Action::Data,
        }
    }

    /// The chart's initial context (its `context` object) as JSON text, if it has one: the
    /// first record of kind 7 in the action table.
    pub fn initial_context(&self) -> Option<&'a str> {
        self.t
            .actions
            .chunks_exact(ActionRecord::SIZE)
            .find_map(|b| {
                let a = ActionRecord::decode(b);
                (a.kind == raw::ACTION_INITIAL_CONTEXT).then(|| self.str(StrId(a.a)))
            })
    }

    /// The context condition record at `index` of the action table (a [`Guard::Context`]).
    pub fn context_condition(&self, index: u16) -> ContextCondition {
        let at = index as usize * ActionRecord::SIZE;
        let a = ActionRecord::decode(
            self.t
                .actions
                .get(at..at + ActionRecord::SIZE)
                .unwrap_or(&[0; ActionRecord::SIZE]),
        );
        ContextCondition {
            key: StrId(a.a),
            literal: StrId(a.b),
            op: CompareOp::from_u8(a.c as u8).unwrap_or(CompareOp::Eq),
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
