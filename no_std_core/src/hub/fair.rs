//! Fair service of the hub's source links: how much of a link the hub reads at a time, in
//! which order, and when a link stalled behind a full receiver is read again.
//!
//! The platform reads its links in passes and hands every frame it reads to the hub. Three
//! rules, pure logic here, keep one heavy sender from holding everyone else up:
//!
//! - **Deficit round robin by bytes** ([`Deficit`]): in each pass a link may have frames
//!   handled until it has used its quantum of bytes (a frame is never cut: the overshoot is
//!   paid back in the next pass). A link that runs dry keeps no credit, so an idle link
//!   cannot bank a burst. A flooder then holds a pass for about one quantum instead of up to
//!   4096 frames. The quantum trades latency for throughput: a small one (16 KiB) keeps a
//!   pass, and the wait of everything read in it until the pass's writes, short; the
//!   default ([`QUANTUM`], 256 KiB) binds only on a link far ahead of the others.
//! - **A rotating start** ([`PassOrder`]): each pass starts one link further on, so that no
//!   link index is always read first (or last).
//! - **Resume below a low-water mark** ([`may_resume`]): a link stalled because its frame did
//!   not fit its target's queue is read again once that queue is down to a quarter of its
//!   capacity, not only when it is empty, so the target's socket does not run dry while the
//!   hub waits for its last byte to go. With the rotating start, which of several stalled
//!   links refills the target first changes from pass to pass: the lowest index no longer
//!   wins every time.
//!
//! Order is kept by construction: a link's frames are always handled in the order they came;
//! a link's turn only decides *when* its next frames are handled, and the frames of one
//! (sender, receiver) pair all come over one link.

/// Bytes (frame bodies with their length prefix) a link may have handled in one pass before
/// the other links get their turn, by default: about the 4096 small messages a link could
/// have handled per pass before, and several whole frames (a larger frame overshoots, and
/// the link pays the overshoot back). See the module docs for smaller ones.
pub const QUANTUM: u32 = 256 * 1024;

/// A link's account in the deficit round robin ([`QUANTUM`] per pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deficit {
    /// Bytes it gets per pass.
    quantum: i32,
    /// Bytes it may still use in this pass; below zero after a frame overshot it.
    credit: i32,
}

impl Default for Deficit {
    fn default() -> Self {
        Self::new()
    }
}

impl Deficit {
    /// A new link's account.
    pub const fn new() -> Self {
        Self::with_quantum(QUANTUM)
    }

    /// A new link that gets `quantum` bytes per pass instead of [`QUANTUM`].
    pub const fn with_quantum(quantum: u32) -> Self {
        let quantum = if quantum == 0 || quantum > i32::MAX as u32 {
            QUANTUM
        } else {
            quantum
        };
        Deficit {
            quantum: quantum as i32,
            credit: 0,
        }
    }

    /// The link's turn in a pass begins: one more quantum (an overshoot of the last pass is
    /// paid from it; unused credit is not kept beyond one quantum).
    pub fn start_turn(&mut self) {
        self.credit = (self.credit + self.quantum).min(self.quantum);
    }

    /// Whether the link may have another frame handled in this turn.
    pub fn may_take(&self) -> bool {
        self.credit > 0
    }

    /// A frame of `bytes` (length prefix included) was handled.
    pub fn took(&mut self, bytes: usize) {
        let bytes = bytes.min(i32::MAX as usize) as i32;
        self.credit = self.credit.saturating_sub(bytes);
    }

    /// The turn ends with nothing more to read (`dry`), or with frames left (the quantum is
    /// used, or the link stalled behind its target). A dry link keeps no credit.
    pub fn end_turn(&mut self, dry: bool) {
        if dry {
            self.credit = self.credit.min(0);
        }
    }
}

/// The order of the passes over links `0..n`: each starts one link further on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOrder {
    start: usize,
}

impl PassOrder {
    /// The first link of a pass over `n` links, moving the start on for the next pass.
    pub fn next_start(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let start = self.start % n;
        self.start = (start + 1) % n;
        start
    }

    /// The `i`-th link (`i < n`) of a pass over `n` links that starts at `start`.
    pub fn link_at(i: usize, n: usize, start: usize) -> usize {
        (start + i) % n.max(1)
    }
}

/// Whether a link stalled behind a target whose queue holds `pending` of `capacity` bytes
/// may be read again: once the queue is down to a quarter of its capacity.
pub fn may_resume(pending: usize, capacity: usize) -> bool {
    pending <= capacity / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link handles frames until its quantum is used; the overshoot of a large frame is
    /// paid back in the next pass; credit does not pile up past one quantum.
    #[test]
    fn a_link_gets_a_quantum_per_pass_and_pays_back_its_overshoot() {
        let mut d = Deficit::new();
        d.start_turn();
        let mut frames = 0;
        while d.may_take() {
            d.took(100);
            frames += 1;
        }
        assert_eq!(frames, (QUANTUM as usize).div_ceil(100));
        d.end_turn(false);

        // A frame larger than the quantum: taken whole, the overshoot owed.
        let mut d = Deficit::new();
        d.start_turn();
        d.took(QUANTUM as usize + 8 * 1024);
        assert!(!d.may_take());
        d.end_turn(false);
        d.start_turn();
        assert!(d.may_take(), "one quantum minus the overshoot is left");
        d.took(QUANTUM as usize - 8 * 1024 - 1);
        assert!(d.may_take());
        d.took(1);
        assert!(!d.may_take(), "the overshoot was paid from this pass");

        // Unused credit of a link that still has frames does not grow past a quantum.
        let mut d = Deficit::new();
        for _ in 0..5 {
            d.start_turn();
            d.end_turn(false);
        }
        d.start_turn();
        d.took(QUANTUM as usize);
        assert!(!d.may_take());
    }

    /// A link that runs dry keeps no credit; one cut off keeps what it owes.
    #[test]
    fn a_dry_link_keeps_no_credit() {
        let mut d = Deficit::new();
        d.start_turn();
        d.took(200);
        d.end_turn(true);
        d.start_turn();
        d.took(QUANTUM as usize - 1);
        assert!(d.may_take(), "no credit was banked from the light turn");
        d.took(1);
        assert!(!d.may_take());
        d.took(100);
        d.end_turn(true);
        d.start_turn();
        d.took(QUANTUM as usize - 101);
        assert!(d.may_take(), "a dry link still pays back its overshoot");
        d.took(1);
        assert!(!d.may_take());
        assert_eq!(Deficit::with_quantum(0), Deficit::new(), "no zero quantum");
    }

    fn pass(n: usize, start: usize) -> heapless::Vec<usize, 16> {
        (0..n).map(|i| PassOrder::link_at(i, n, start)).collect()
    }

    /// Each link is read once per pass, and every link comes first in turn: the lowest
    /// index does not always go first (which let it refill a drained target before the
    /// others, pass after pass).
    #[test]
    fn every_link_is_read_once_a_pass_and_first_in_turn() {
        assert_eq!(pass(5, 3), [3, 4, 0, 1, 2]);
        let n = 4;
        let mut order = PassOrder::default();
        let mut first = [0u32; 4];
        for _ in 0..4 * n {
            let start = order.next_start(n);
            let mut seen = pass(n, start);
            first[seen[0]] += 1;
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3], "each link once");
        }
        assert_eq!(first, [4; 4]);
        assert_eq!(PassOrder::default().next_start(0), 0);
    }

    #[test]
    fn stalled_links_resume_below_a_quarter_of_the_queue() {
        assert!(may_resume(0, 1 << 20));
        assert!(may_resume(256 * 1024, 1 << 20));
        assert!(!may_resume(256 * 1024 + 1, 1 << 20));
        assert!(!may_resume(1 << 20, 1 << 20));
    }
}
