//! The decoded types of a chart's action table: [`Action`] and what its variants carry
//! (assignments, context conditions, payloads, delays). [`Chart::action_at`](super::Chart::action_at)
//! decodes them from the records `raw` lays out.

use super::{ActionId, DelayId, EventId, StrId};

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
        /// The payload.
        payload: Data,
        /// Optional delay.
        delay: Option<Delay>,
        /// The send id `cancel` refers to, if any.
        id: Option<StrId>,
    },
    /// `sendTo` the sender (`"to": {"sender": true}`): send an event back to the machine
    /// that sent the current event; the reply to it when it is a request.
    Reply {
        /// The event name.
        event: StrId,
        /// The payload.
        payload: Data,
    },
    /// `request`: send an event to a machine as a request, and wait `timeout` for its reply
    /// (or get `xstate.error.request`).
    Request {
        /// The target machine id.
        target: StrId,
        /// The event name.
        event: StrId,
        /// The payload.
        payload: Data,
        /// How long to wait for the reply.
        timeout: Delay,
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
    /// Starts a state's invoked child (an `invoke`, run after the state's entry actions).
    StartChild {
        /// This record's index in the action table: the invocation's identity.
        start: u16,
        /// What to run: a name the host binds (an actor `src`).
        src: StrId,
        /// The invoke id: the child's name among this machine's children.
        id: StrId,
        /// The `input` as JSON text, if any.
        input: Option<StrId>,
    },
    /// Stops a state's invoked child (run after the state's exit actions).
    StopChild {
        /// The index of the invocation's [`Action::StartChild`] record.
        start: u16,
        /// The invoke id.
        id: StrId,
    },
    /// `sendTo` one of this machine's invoked children, by invoke id.
    SendToChild {
        /// The invoke id.
        child: StrId,
        /// The event name.
        event: StrId,
        /// The payload.
        payload: Data,
        /// Optional delay.
        delay: Option<Delay>,
        /// The send id `cancel` refers to, if any.
        id: Option<StrId>,
        /// Whether the send is in the entry actions of the state that invokes the child (it
        /// then reaches the child that state is about to start).
        entering: bool,
    },
    /// `sendParent`: send an event to the machine that invoked this one.
    SendParent {
        /// The event name.
        event: StrId,
        /// The payload.
        payload: Data,
        /// Optional delay.
        delay: Option<Delay>,
        /// The send id `cancel` refers to, if any.
        id: Option<StrId>,
    },
    /// `assign`: changes one key of the machine's JSON context.
    Assign {
        /// The key, as a JSON string literal (quotes included), e.g. `"count"`.
        key: StrId,
        /// What to do with it.
        op: AssignOp,
        /// The operand: the literal's JSON text ([`AssignOp::Set`], [`AssignOp::Add`]) or
        /// the event field's name as a JSON string literal ([`AssignOp::FromEvent`]).
        operand: StrId,
    },
    /// A record that is not an action: the chart's initial context or a context condition.
    /// No state's action list holds one; running it does nothing.
    Data,
}

/// What an [`Action::Assign`] does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum AssignOp {
    /// Sets the key to a JSON literal.
    Set = 0,
    /// Copies a top-level field of the event's JSON data (removes the key when the event has
    /// no such field, as XState leaves it `undefined`).
    FromEvent = 1,
    /// Adds a number to the key's number.
    Add = 2,
}

impl AssignOp {
    /// The op from its byte in an action record.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Set,
            1 => Self::FromEvent,
            2 => Self::Add,
            _ => return None,
        })
    }
}

/// How a context condition compares a context key with its literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum CompareOp {
    /// Equal: numbers by value, anything else by its JSON text.
    Eq = 0,
    /// Not equal.
    Ne = 1,
    /// Less than (numbers only; false otherwise).
    Lt = 2,
    /// Less than or equal (numbers only).
    Le = 3,
    /// Greater than (numbers only).
    Gt = 4,
    /// Greater than or equal (numbers only).
    Ge = 5,
}

impl CompareOp {
    /// The op from its byte in a condition record.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Eq,
            1 => Self::Ne,
            2 => Self::Lt,
            3 => Self::Le,
            4 => Self::Gt,
            5 => Self::Ge,
            _ => return None,
        })
    }
}

/// A context condition (a [`Guard::Context`](super::Guard::Context)): `context[key] op literal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ContextCondition {
    /// The key, as a JSON string literal (quotes included).
    pub key: StrId,
    /// The comparison.
    pub op: CompareOp,
    /// The literal's JSON text.
    pub literal: StrId,
}

/// The payload of a message a built-in action sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Data {
    /// None.
    None,
    /// The JSON text from the chart.
    Json(StrId),
    /// The current event's payload, forwarded as it is (`"data": {"from": "event"}`).
    FromEvent,
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
