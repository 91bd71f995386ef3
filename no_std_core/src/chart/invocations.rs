//! A chart's invocations (`invoke`): the children its states start, as a host reads them to
//! bind every `src` before a machine runs, and to start and stop the children it runs.

use super::raw::{self, ActionRecord};
use super::{Action, Chart, Data, Delay, StrId, NONE};

/// One `invoke` of one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invocation<'a> {
    /// The index of its start record in the action table: its identity within the chart.
    pub start: u16,
    /// What to run: the name of an actor the host binds.
    pub src: &'a str,
    /// The invoke id: the child's name among the machine's children.
    pub id: &'a str,
    /// The `input` as JSON text, if any.
    pub input: Option<&'a str>,
}

impl<'a> Chart<'a> {
    /// The chart's invocations, in document order (a state's in the order it lists them).
    pub fn invocations(&self) -> impl Iterator<Item = Invocation<'a>> + '_ {
        let chart = *self;
        self.t
            .actions
            .chunks_exact(ActionRecord::SIZE)
            .enumerate()
            .filter_map(move |(i, b)| {
                let a = ActionRecord::decode(b);
                (a.kind == raw::ACTION_START_CHILD).then(|| chart.invocation_of(&a, i as u16))
            })
    }

    /// The invocation whose start record is at `start` of the action table, if it is one.
    pub fn invocation(&self, start: u16) -> Option<Invocation<'a>> {
        let at = start as usize * ActionRecord::SIZE;
        let a = ActionRecord::decode(self.t.actions.get(at..at + ActionRecord::SIZE)?);
        (a.kind == raw::ACTION_START_CHILD).then(|| self.invocation_of(&a, start))
    }

    /// Whether the chart invokes anything.
    pub fn has_invocations(&self) -> bool {
        self.invocations().next().is_some()
    }

    fn invocation_of(&self, a: &ActionRecord, start: u16) -> Invocation<'a> {
        Invocation {
            start,
            src: self.str(StrId(a.a)),
            id: self.str(StrId(a.b)),
            input: (a.d != NONE).then(|| self.str(StrId(a.d))),
        }
    }
}

/// Decodes the action record `a` at `index` of kinds 12 to 15 (see [`raw::ActionRecord`]).
pub(super) fn decode(a: &ActionRecord, index: u16, data: Data, delay: Option<Delay>) -> Action {
    let opt = |s: u16| (s != NONE).then_some(StrId(s));
    match a.kind {
        raw::ACTION_START_CHILD => Action::StartChild {
            start: index,
            src: StrId(a.a),
            id: StrId(a.b),
            input: opt(a.d),
        },
        raw::ACTION_STOP_CHILD => Action::StopChild {
            start: a.c,
            id: StrId(a.b),
        },
        raw::ACTION_SEND_CHILD => Action::SendToChild {
            child: StrId(a.a),
            event: StrId(a.b),
            payload: data,
            delay,
            id: opt(a.c),
            entering: a.flags & ActionRecord::ENTERING_CHILD != 0,
        },
        raw::ACTION_SEND_PARENT => Action::SendParent {
            event: StrId(a.b),
            payload: data,
            delay,
            id: opt(a.c),
        },
        _ => Action::Data,
    }
}
