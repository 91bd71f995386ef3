//! A sender's credit: how many bytes of messages its client lets be in flight (taken and not
//! yet acknowledged), sized by time as well as by the outstanding buffer's bytes.
//!
//! A message's sojourn is the time from when the client took it to its acknowledgement: its
//! time in every queue on its way (the client's link queue, the sockets, the hub's queue for
//! the receiver, the receiver's read) and back. When the oldest message in flight has been
//! older than [`SOJOURN_TARGET`] for a whole [`SOJOURN_INTERVAL`] while messages were
//! released (a standing queue that drains, in the spirit of CoDel: not a burst), the credit
//! is cut to what would have met the target at the rate the messages drained (the bytes in
//! flight times the target over the sojourn), at most once an interval and never below
//! [`MIN_CREDIT`]. While the oldest message is younger than the target and the credit is
//! what holds the sender back, it grows by a quarter every [`SOJOURN_TARGET`], up to the
//! whole buffer.
//!
//! A receiver that takes nothing at all (nothing released for [`STALLED_AFTER`]) is not a
//! queue to size by time: no rate to meet a target at. Then the credit is not cut and grows
//! as if sojourns were short, so that the buffer's bytes bound the sender, as before the
//! credit (what it sends waits for the receiver, or fails when the receiver goes).
//!
//! A credit that is used up refuses new messages ([`super::SendRefused::Full`]): they wait in
//! the application (a machine's outbox, a port's blocked send) until acknowledgements free
//! room, as for a full buffer. Nothing is dropped: backpressure only. The effect is that a
//! flooding sender keeps about a target's worth of traffic in flight instead of a whole
//! buffer, so a queue it shares with others (the hub's queue for a receiver) holds
//! milliseconds, not a third of a second, and a sender with little traffic is not stuck
//! behind it. A sender that never fills its credit is never held back by it.
//!
//! Pure decisions on the time the host passes in; its storage is fixed (no allocation).

use heapless::Deque;

use crate::time::{Duration, Instant};

/// The sojourn (taken to acknowledged) a sender's oldest message in flight may have before
/// the sender is pushed back.
pub const SOJOURN_TARGET: Duration = Duration::from_millis(5);
/// How long the oldest message in flight must stay older than [`SOJOURN_TARGET`] before the
/// credit is cut (and the least time between two cuts).
pub const SOJOURN_INTERVAL: Duration = Duration::from_millis(20);
/// The credit is never cut below this many bytes (about 180 small messages), so that the
/// time a busy machine's scheduler takes from a process, which no window can shorten, does
/// not starve a sender.
pub const MIN_CREDIT: usize = 4 * 1024;
/// A new sender's credit (it grows while sojourns stay under the target).
pub const INITIAL_CREDIT: usize = 16 * 1024;
/// Held messages and none released for this long: the receiver is stalled, not slow (see
/// the module's documentation).
pub const STALLED_AFTER: Duration = Duration::from_millis(100);
/// How many (message number, time) marks are kept: one per millisecond in which messages
/// were taken. Older ones are forgotten when it is full, which only makes an old message
/// look younger than it is (its age is then at least the marks' span, far above the target).
const MARKS: usize = 64;

/// The credit of one sender (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Credit {
    capacity: usize,
    limit: usize,
    /// (number of the first message taken at that time, time), oldest first.
    marks: Deque<(u64, Instant), MARKS>,
    /// Since when the oldest message in flight has been older than the target, and how
    /// many messages had been released then.
    above_since: Option<(Instant, u64)>,
    /// Messages released when last seen, and when that count last moved (or nothing was
    /// held).
    released: u64,
    released_at: Instant,
    /// No cut or growth before this.
    next_change: Instant,
}

impl Credit {
    /// The credit of a sender whose outstanding buffer holds `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Credit {
            capacity,
            limit: INITIAL_CREDIT.min(capacity),
            marks: Deque::new(),
            above_since: None,
            released: 0,
            released_at: Instant::ZERO,
            next_change: Instant::ZERO,
        }
    }

    /// The bytes the sender may have in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Message number `number` (counting every message ever taken, from 0) was taken at
    /// `now`.
    pub fn taken(&mut self, number: u64, now: Instant) {
        if self.marks.back().is_some_and(|m| m.1 == now) {
            return;
        }
        if self.marks.is_full() {
            self.marks.pop_front();
        }
        let _ = self.marks.push_back((number, now));
    }

    /// The age at `now` of message number `oldest` (the oldest not yet released), forgetting
    /// the marks of messages released before it.
    pub fn age_of(&mut self, oldest: u64, now: Instant) -> Duration {
        while self.marks.iter().nth(1).is_some_and(|m| m.0 <= oldest) {
            self.marks.pop_front();
        }
        self.marks.front().map_or(Duration::ZERO, |m| now - m.1)
    }

    /// Whether a message of `need` bytes may be taken at `now`, with `held` bytes in flight
    /// whose oldest message is `oldest` old (`None`: nothing in flight), `released`
    /// messages having been released so far ([`super::Outstanding::released`]). Cuts or
    /// grows the credit first, by the rule above. An empty sender always may (a message
    /// larger than the credit still goes, alone).
    pub fn admits(
        &mut self,
        now: Instant,
        held: usize,
        need: usize,
        oldest: Option<Duration>,
        released: u64,
    ) -> bool {
        if released != self.released || oldest.is_none() {
            self.released = released;
            self.released_at = now;
        }
        let stalled = now - self.released_at >= STALLED_AFTER;
        match oldest {
            Some(age) if age >= SOJOURN_TARGET && !stalled => {
                let (since, released_then) = *self.above_since.get_or_insert((now, released));
                if now - since >= SOJOURN_INTERVAL
                    && now >= self.next_change
                    && released > released_then
                {
                    // What would have met the target at the rate the queue drained.
                    let fits = (held as u64).saturating_mul(SOJOURN_TARGET.as_millis())
                        / age.as_millis().max(1);
                    self.limit = self
                        .limit
                        .min((fits as usize).max(MIN_CREDIT))
                        .min(self.capacity);
                    self.next_change = now + SOJOURN_INTERVAL;
                }
            }
            _ => {
                self.above_since = None;
                if held + need > self.limit && now >= self.next_change {
                    self.limit = (self.limit + self.limit / 4).min(self.capacity);
                    self.next_change = now + SOJOURN_TARGET;
                }
            }
        }
        held == 0 || held + need <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// `admits` for a sender whose messages drain (`at` messages released by `at` ms).
    fn draining(c: &mut Credit, at: u64, held: usize, age: Option<u64>) -> bool {
        c.admits(ms(at), held, 100, age.map(Duration::from_millis), at)
    }

    #[test]
    fn a_sojourn_above_the_target_for_an_interval_cuts_the_credit_once_an_interval() {
        let mut c = Credit::new(1 << 20);
        let start = c.limit();
        // Above the target, but not yet for an interval: nothing changes.
        assert!(draining(&mut c, 0, 1000, Some(10)));
        assert!(draining(&mut c, 19, 1000, Some(30)));
        assert_eq!(c.limit(), start);
        // For an interval: cut to the bytes in flight times target / sojourn (not below
        // the floor).
        let held = start;
        let age = SOJOURN_TARGET.as_millis() * 2;
        assert!(!draining(&mut c, 20, held, Some(age)));
        let cut = MIN_CREDIT.max(held / 2);
        assert_eq!(c.limit(), cut);
        // Not again within the interval, however bad it looks.
        draining(&mut c, 30, held, Some(100));
        assert_eq!(c.limit(), cut);
        draining(&mut c, 40, held, Some(100));
        assert_eq!(c.limit(), MIN_CREDIT, "never below the floor");
    }

    #[test]
    fn a_burst_below_the_interval_cuts_nothing_and_a_dip_restarts_the_interval() {
        let mut c = Credit::new(1 << 20);
        let start = c.limit();
        draining(&mut c, 0, 1000, Some(50));
        draining(&mut c, 15, 1000, Some(50));
        // Below the target once: the standing queue is gone.
        draining(&mut c, 16, 1000, Some(1));
        draining(&mut c, 30, 1000, Some(50));
        draining(&mut c, 49, 1000, Some(50));
        assert_eq!(c.limit(), start);
    }

    #[test]
    fn the_credit_grows_only_while_it_holds_the_sender_back_and_sojourns_are_short() {
        let mut c = Credit::new(1 << 20);
        let start = c.limit();
        // Plenty of room: no growth.
        assert!(draining(&mut c, 0, 100, Some(1)));
        assert_eq!(c.limit(), start);
        // Held back with short sojourns: a quarter more (which lets this one in), at most
        // every target's time.
        assert!(draining(&mut c, 1, start, Some(1)));
        assert_eq!(c.limit(), start + start / 4);
        let limit = c.limit();
        draining(&mut c, 2, limit, Some(1));
        assert_eq!(c.limit(), start + start / 4);
        let mut t = 6;
        while c.limit() < 1 << 20 {
            let limit = c.limit();
            draining(&mut c, t, limit, None);
            t += 5;
        }
        assert_eq!(c.limit(), 1 << 20, "up to the whole buffer, not past it");
        // An empty sender may always send, even a message larger than its credit.
        assert!(c.admits(ms(t), 0, 2 << 20, None, t));
    }

    #[test]
    fn a_receiver_that_takes_nothing_is_bounded_by_the_buffer_not_cut_by_time() {
        let mut c = Credit::new(1 << 20);
        let start = c.limit();
        // Nothing held at 0; then messages wait and none is released, ever.
        c.admits(ms(0), 0, 100, None, 7);
        let mut t = 1;
        while t < 400 {
            let limit = c.limit();
            c.admits(ms(t), limit, 100, Some(Duration::from_millis(t)), 7);
            assert!(c.limit() >= start, "cut at {t} ms though nothing drained");
            t += 1;
        }
        assert_eq!(c.limit(), 1 << 20, "grown to the whole buffer once stalled");
        // It drains again, slowly: now it is a queue, and it is cut.
        for t in 400..440 {
            c.admits(ms(t), 64 * 1024, 100, Some(Duration::from_millis(50)), t);
        }
        assert!(c.limit() < 1 << 20);
    }

    #[test]
    fn the_age_is_that_of_the_oldest_message_not_yet_released() {
        let mut c = Credit::new(1 << 20);
        c.taken(0, ms(10));
        c.taken(1, ms(10));
        c.taken(2, ms(12));
        c.taken(5, ms(20));
        assert_eq!(c.age_of(0, ms(30)), Duration::from_millis(20));
        assert_eq!(c.age_of(1, ms(30)), Duration::from_millis(20));
        assert_eq!(c.age_of(3, ms(30)), Duration::from_millis(18));
        assert_eq!(c.age_of(5, ms(30)), Duration::from_millis(10));
        // Forgetting the oldest marks when full makes old messages look younger, no more.
        let mut c = Credit::new(1 << 20);
        for i in 0..(MARKS as u64 + 10) {
            c.taken(i, ms(i));
        }
        assert_eq!(c.age_of(0, ms(100)), Duration::from_millis(90));
    }
}
