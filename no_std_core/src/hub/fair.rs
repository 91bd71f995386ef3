//! Fair service of the hub's source links: which link the hub reads next, how much of it at
//! a time, and when a link stalled behind a full receiver is read again.
//!
//! The platform reads its links in passes and hands every frame it reads to the hub. Three
//! rules, pure logic here, keep one heavy sender from holding everyone else up:
//!
//! - **Deficit round robin by bytes** ([`Deficit`]): in each pass a link may have frames
//!   handled until it has used its [`QUANTUM`] of bytes (a frame is never cut: the overshoot
//!   is paid back in the next pass). A link that runs dry keeps no credit, so an idle link
//!   cannot bank a burst. A flooder then holds a pass for about one quantum instead of
//!   thousands of frames, and a link with a few bytes waiting is reached sooner.
//! - **Sparse links first** ([`PassOrder`]), in the spirit of fq_codel's new flows: a link
//!   that ran dry within [`SPARSE_BYTES`] in its last visit (a paced client, an
//!   acknowledgement stream) is read at the start of the next pass, before the links that had
//!   more waiting; the others are read round robin from a start that moves on by one each
//!   pass, so that no link index is always first (or last).
//! - **Resume below a low-water mark** ([`may_resume`]): a link stalled because its frame did
//!   not fit its target's queue is read again once that queue is down to a quarter of its
//!   capacity, not only when it is empty, so the target's socket does not run dry while the
//!   hub waits for its last byte to go. The rotating start above decides which of several
//!   stalled links refills the target first, so the lowest index does not win every time.
//!
//! Order is kept by construction: a link's frames are always handled in the order they came,
//! and a link's turn only decides *when* its next frames are handled, never their order with
//! respect to each other; frames of one (sender, receiver) pair come over one link.

/// Bytes (frame bodies with their length prefix) a link may have handled in one pass before
/// the other links get their turn: a few hundred small messages, and one whole frame at
/// least (a larger frame overshoots, and the link pays the overshoot back).
pub const QUANTUM: u32 = 16 * 1024;

/// A link that ran dry having used at most this many bytes of its turn counts as sparse:
/// it is read first in the next pass.
pub const SPARSE_BYTES: u32 = 1024;

/// A link's account in the deficit round robin ([`QUANTUM`] per pass).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deficit {
    /// Bytes it may still use in this pass; below zero after a frame overshot it.
    credit: i32,
    /// Bytes it used in this pass.
    used: u32,
    /// It ran dry within [`SPARSE_BYTES`] in its last visit.
    sparse: bool,
}

impl Deficit {
    /// A new link: sparse until it shows otherwise.
    pub const fn new() -> Self {
        Deficit {
            credit: 0,
            used: 0,
            sparse: true,
        }
    }

    /// The link's turn in a pass begins: one more quantum (an overshoot of the last pass is
    /// paid from it; unused credit is not kept beyond one quantum).
    pub fn start_turn(&mut self) {
        self.credit = (self.credit + QUANTUM as i32).min(QUANTUM as i32);
        self.used = 0;
    }

    /// Whether the link may have another frame handled in this turn.
    pub fn may_take(&self) -> bool {
        self.credit > 0
    }

    /// A frame of `bytes` (length prefix included) was handled.
    pub fn took(&mut self, bytes: usize) {
        let bytes = bytes.min(i32::MAX as usize) as u32;
        self.credit = self.credit.saturating_sub(bytes as i32);
        self.used = self.used.saturating_add(bytes);
    }

    /// The turn ends with nothing more to read (`dry`), or with frames left (the quantum is
    /// used, or the link stalled behind its target). A dry link keeps no credit; a link that
    /// ran dry having used little is sparse for the next pass.
    pub fn end_turn(&mut self, dry: bool) {
        if dry {
            self.credit = self.credit.min(0);
        }
        self.sparse = dry && self.used <= SPARSE_BYTES;
    }

    /// Read at the start of the next pass (see [`PassOrder`]).
    pub fn is_sparse(&self) -> bool {
        self.sparse
    }
}

/// The order of one pass over links `0..n`: the sparse ones first (by index), then the
/// others round robin from a start that moves on by one each pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOrder {
    start: usize,
}

impl PassOrder {
    /// The start of the bulk links' round for a pass over `n` links, moving it on for the
    /// next pass.
    pub fn next_start(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let start = self.start % n;
        self.start = (start + 1) % n;
        start
    }

    /// The `i`-th link of a pass over `n` links whose bulk round starts at `start`, in two
    /// rounds of `n`: round 0 (`i < n`) visits link `i` if it is sparse, round 1 visits link
    /// `(start + i - n) % n` if it is not. `None` for a slot that round skips (and past the
    /// end). `sparse` is asked once per slot, at the time of the visit.
    pub fn link_at(i: usize, n: usize, start: usize, sparse: impl Fn(usize) -> bool) -> Option<usize> {
        if i < n {
            return sparse(i).then_some(i);
        }
        if i < 2 * n {
            let l = (start + i - n) % n;
            return (!sparse(l)).then_some(l);
        }
        None
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
        assert!(!d.is_sparse(), "it had more than it could take");

        // A frame larger than the quantum: taken whole, the overshoot owed.
        let mut d = Deficit::new();
        d.start_turn();
        d.took(QUANTUM as usize + 8 * 1024);
        assert!(!d.may_take());
        d.end_turn(false);
        d.start_turn();
        assert!(d.may_take(), "one quantum minus the overshoot is left");
        d.took(8 * 1024 - 1);
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

    /// A link that runs dry keeps no credit and, having used little, is sparse; one that
    /// used much, or was cut off, is not.
    #[test]
    fn a_dry_link_keeps_no_credit_and_a_light_one_is_sparse() {
        let mut d = Deficit::new();
        assert!(d.is_sparse(), "a new link starts sparse");
        d.start_turn();
        d.took(200);
        d.end_turn(true);
        assert!(d.is_sparse());
        d.start_turn();
        d.took(QUANTUM as usize - 1);
        assert!(d.may_take(), "no credit was banked from the light turn");
        d.took(1);
        assert!(!d.may_take());
        d.end_turn(false);
        assert!(!d.is_sparse());
        d.start_turn();
        d.took(SPARSE_BYTES as usize + 1);
        d.end_turn(true);
        assert!(!d.is_sparse(), "more than a sparse link's bytes");
        d.start_turn();
        d.took(40);
        d.end_turn(true);
        assert!(d.is_sparse());
    }

    fn pass(n: usize, start: usize, sparse: &[bool]) -> heapless::Vec<usize, 16> {
        (0..2 * n)
            .filter_map(|i| PassOrder::link_at(i, n, start, |l| sparse[l]))
            .collect()
    }

    /// Each link is visited exactly once per pass: the sparse ones first in index order,
    /// then the others from the rotating start.
    #[test]
    fn a_pass_visits_sparse_links_first_then_the_rest_round_robin() {
        let sparse = [false, true, false, false, true];
        assert_eq!(pass(5, 0, &sparse), [1, 4, 0, 2, 3]);
        assert_eq!(pass(5, 3, &sparse), [1, 4, 3, 0, 2]);
        let mut order = PassOrder::default();
        let starts: heapless::Vec<usize, 8> = (0..7).map(|_| order.next_start(5)).collect();
        assert_eq!(starts, [0, 1, 2, 3, 4, 0, 1]);
        assert_eq!(PassOrder::default().next_start(0), 0);
        assert_eq!(PassOrder::link_at(10, 5, 0, |_| true), None);
    }

    /// Every link comes first in the bulk round within `n` passes: the lowest index does
    /// not always go first (which let it refill a drained target before the others, pass
    /// after pass).
    #[test]
    fn no_bulk_link_is_always_served_first() {
        let n = 4;
        let mut order = PassOrder::default();
        let mut first = [0u32; 4];
        for _ in 0..4 * n {
            let start = order.next_start(n);
            let bulk = pass(n, start, &[false; 4]);
            assert_eq!(bulk.len(), n, "each link once");
            first[bulk[0]] += 1;
        }
        assert_eq!(first, [4; 4]);
    }

    #[test]
    fn stalled_links_resume_below_a_quarter_of_the_queue() {
        assert!(may_resume(0, 1 << 20));
        assert!(may_resume(256 * 1024, 1 << 20));
        assert!(!may_resume(256 * 1024 + 1, 1 << 20));
        assert!(!may_resume(1 << 20, 1 << 20));
    }
}
