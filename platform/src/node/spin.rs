//! How long a node spins on shared memory before it parks, and whether it spins at all.
//!
//! Spinning pays only when the data it waits for is being made on another CPU. A spinner that
//! shares its CPU with the peer it waits for holds off that peer until the scheduler preempts
//! it (milliseconds), so it parks at once (`SpinThenPark`) or yields the CPU at every look
//! (`BusySpin`, which never parks). Each side says in the ring which CPU it waits on
//! ([`Ring::publish_cpu`](crate::transport::ring::Ring::publish_cpu)); the CPU number may
//! cost a system call, so it is read again only every [`CPU_REFRESH`].
//!
//! The spin budget adapts: a spin that used its whole budget without input halves it (down to
//! a sixteenth of the configured spin), one that found input doubles it (up to the
//! configured spin), and so does a park that the next input ended within the configured spin
//! (a longer spin would have caught it). Traffic with gaps longer than the spin stops burning
//! the CPU at every wait; a ping-pong keeps (or wins back) the whole budget.

use std::time::{Duration as StdDuration, Instant as StdInstant};

/// How often the CPU number is read again.
pub(super) const CPU_REFRESH: StdDuration = StdDuration::from_millis(1);

/// The node's spinning state.
#[derive(Debug)]
pub(super) struct Spinning {
    cpu: Option<u32>,
    cpu_read_at: Option<StdInstant>,
    /// The current budget; `None`: the configured spin (nothing observed yet).
    budget: Option<StdDuration>,
    /// When the last spin that found nothing ended (and the node parked), until the next
    /// turn looks at how long the park lasted.
    parked_at: Option<StdInstant>,
}

impl Spinning {
    pub(super) fn new() -> Spinning {
        Spinning {
            cpu: None,
            cpu_read_at: None,
            budget: None,
            parked_at: None,
        }
    }

    /// The CPU this process runs on, as last read (at most [`CPU_REFRESH`] old at `now`).
    pub(super) fn cpu(&mut self, now: StdInstant) -> Option<u32> {
        let stale = self
            .cpu_read_at
            .is_none_or(|t| now.saturating_duration_since(t) >= CPU_REFRESH);
        if stale {
            self.cpu = crate::transport::shm::current_cpu();
            self.cpu_read_at = Some(now);
        }
        self.cpu
    }

    /// The spin before parking, out of at most `max`.
    pub(super) fn budget(&self, max: StdDuration) -> StdDuration {
        self.budget.map_or(max, |b| b.min(max))
    }

    /// A spin given its whole budget (out of `max`) ended: with input (`found`) or without.
    pub(super) fn spun(&mut self, max: StdDuration, found: bool) {
        let b = self.budget(max);
        let floor = (max / 16).max(StdDuration::from_micros(1)).min(max);
        self.budget = Some(if found {
            (b * 2).min(max)
        } else {
            (b / 2).max(floor)
        });
    }

    /// The node parks after a spin (out of `max`) that found nothing, at `now`.
    pub(super) fn parking(&mut self, now: StdInstant) {
        self.parked_at = Some(now);
    }

    /// Whether the node parked after a fruitless spin and has not looked at the park since.
    pub(super) fn parked(&self) -> bool {
        self.parked_at.is_some()
    }

    /// The park ended at `now`: if the spin and the park together were no longer than `max`,
    /// a spin of the whole configured length would have found the input: count it as found.
    pub(super) fn woke(&mut self, now: StdInstant, max: StdDuration) {
        if let Some(at) = self.parked_at.take() {
            if self.budget(max) + now.saturating_duration_since(at) <= max {
                self.spun(max, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: StdDuration = StdDuration::from_micros(64);

    #[test]
    fn misses_halve_the_budget_down_to_a_sixteenth_and_hits_restore_it() {
        let mut s = Spinning::new();
        assert_eq!(
            s.budget(MAX),
            MAX,
            "the configured spin until something is seen"
        );
        s.spun(MAX, false);
        assert_eq!(s.budget(MAX), MAX / 2);
        for _ in 0..10 {
            s.spun(MAX, false);
        }
        assert_eq!(s.budget(MAX), MAX / 16, "never below a sixteenth");
        s.spun(MAX, true);
        assert_eq!(s.budget(MAX), MAX / 8);
        for _ in 0..10 {
            s.spun(MAX, true);
        }
        assert_eq!(s.budget(MAX), MAX, "never above the configured spin");
    }

    #[test]
    fn a_park_ended_within_the_configured_spin_wins_the_budget_back() {
        let mut s = Spinning::new();
        let t = StdInstant::now();
        for _ in 0..10 {
            s.spun(MAX, false);
        }
        assert_eq!(s.budget(MAX), MAX / 16);
        s.parking(t);
        assert!(s.parked());
        s.woke(t + StdDuration::from_micros(10), MAX);
        assert!(!s.parked());
        assert_eq!(
            s.budget(MAX),
            MAX / 8,
            "4 + 10 us <= 64 us: a full spin would have caught it"
        );
        s.parking(t);
        s.woke(t + StdDuration::from_millis(5), MAX);
        assert_eq!(
            s.budget(MAX),
            MAX / 8,
            "a long park says nothing for spinning"
        );
        s.woke(t + StdDuration::from_micros(1), MAX);
        assert_eq!(s.budget(MAX), MAX / 8, "no park, nothing to learn");
    }

    #[test]
    fn a_smaller_configured_spin_caps_the_budget() {
        let mut s = Spinning::new();
        s.spun(MAX, true);
        assert_eq!(
            s.budget(StdDuration::from_micros(10)),
            StdDuration::from_micros(10)
        );
        let tiny = StdDuration::from_nanos(500);
        s.spun(tiny, false);
        assert_eq!(
            s.budget(tiny),
            tiny,
            "the floor is never above the configured spin"
        );
    }

    #[test]
    fn the_cpu_number_is_read_again_only_after_the_refresh_time() {
        let mut s = Spinning::new();
        let t = StdInstant::now();
        s.cpu(t);
        assert_eq!(s.cpu_read_at, Some(t));
        s.cpu(t + CPU_REFRESH / 2);
        assert_eq!(
            s.cpu_read_at,
            Some(t),
            "not read again within the refresh time"
        );
        s.cpu(t + CPU_REFRESH);
        assert_eq!(s.cpu_read_at, Some(t + CPU_REFRESH));
    }
}
