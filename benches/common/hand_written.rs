//! The hand-written machines of the step benchmark: a `match` on (state, event) making the
//! same action calls as the charts of `step_charts.rs`, in the same order, through the same
//! kind of callback. Shared by `benches/step.rs` (criterion) and `examples/step_events.rs`
//! (instruction counts), so that both measure the same code.

use interstate::core::{ActionId, EventId};

/// The hand-written machines' callback: the same body, the same static dispatch.
pub trait Actions {
    fn action(&mut self, action: ActionId);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ab {
    A,
    B,
}

pub struct HandFlat {
    pub state: Ab,
    pub t: EventId,
    pub en_a: ActionId,
    pub en_b: ActionId,
}

impl HandFlat {
    #[inline]
    pub fn send(&mut self, e: EventId, acts: &mut impl Actions) {
        match (self.state, e == self.t) {
            (Ab::A, true) => {
                self.state = Ab::B;
                acts.action(self.en_b);
            }
            (Ab::B, true) => {
                self.state = Ab::A;
                acts.action(self.en_a);
            }
            (_, false) => {}
        }
    }
}

pub struct HandDeep {
    pub state: Ab,
    pub t: EventId,
    /// Entry and exit actions of levels 1..=5 of each branch.
    pub en: [[ActionId; 5]; 2],
    pub ex: [[ActionId; 5]; 2],
}

impl HandDeep {
    #[inline]
    pub fn send(&mut self, e: EventId, acts: &mut impl Actions) {
        if e != self.t {
            return;
        }
        let (from, to) = match self.state {
            Ab::A => (0, 1),
            Ab::B => (1, 0),
        };
        // Exit innermost first, enter outermost first.
        for &a in self.ex[from].iter().rev() {
            acts.action(a);
        }
        for &a in &self.en[to] {
            acts.action(a);
        }
        self.state = if to == 0 { Ab::A } else { Ab::B };
    }
}

pub struct HandParallel {
    pub regions: [Ab; 4],
    pub t: EventId,
    /// Entry actions of x and y in each region.
    pub en: [[ActionId; 2]; 4],
}

impl HandParallel {
    #[inline]
    pub fn send(&mut self, e: EventId, acts: &mut impl Actions) {
        if e != self.t {
            return;
        }
        for (r, s) in self.regions.iter_mut().enumerate() {
            *s = match *s {
                Ab::A => {
                    acts.action(self.en[r][1]);
                    Ab::B
                }
                Ab::B => {
                    acts.action(self.en[r][0]);
                    Ab::A
                }
            };
        }
    }
}
