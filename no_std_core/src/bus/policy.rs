//! The timing rules of a bus client: when acknowledgements go out, how long messages wait
//! for their targets after a reconnect, how often a refused registration is asked for again,
//! and how long a departed sender's duplicate state is kept. Pure decisions on the time the
//! host passes in.

use crate::time::{Duration, Instant};

/// Owed acknowledgements go out at the latest this long after the first is owed.
pub const ACK_DELAY: Duration = Duration::from_millis(2);
/// Or as soon as this many deliveries are owed.
pub const ACK_BATCH: usize = 256;
/// After a reconnect, messages to machines not (yet) back in the registry wait this long for
/// them to re-register before they are sent (and fail if really gone).
pub const RECONNECT_GRACE: Duration = Duration::from_millis(3_000);
/// A sender gone from the registry has its duplicate state kept this long (ms).
pub const FORGET_DEPARTED_MS: u64 = 60_000;
/// A sender away from the bus this long (from the last frame it had from the hub to its next
/// link's welcome) does not send again what it had written to its lost link: receivers forget
/// a departed sender after [`FORGET_DEPARTED_MS`] and would take it for new. It reports each
/// failed (`disconnected`: not confirmed) instead. Half of that, so that a receiver reading
/// the hub's frames up to this late still knows the sender is back before it forgets it.
pub const RESEND_WITHIN: Duration = Duration::from_millis(FORGET_DEPARTED_MS / 2);
/// How often the duplicate filter looks for departed senders to forget.
pub const SWEEP_EVERY: Duration = Duration::from_millis(1_000);
/// The first delay before an id the hub still holds for this process's previous connection
/// is asked for again; it doubles up to [`REGISTER_RETRY_MAX`].
pub const REGISTER_RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest delay between two requests for a held id.
pub const REGISTER_RETRY_MAX: Duration = Duration::from_millis(1_000);

/// When owed acknowledgements go out: they ride on a write that happens anyway, or go out in
/// batches, or after a short delay, never one write per message.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckTimer {
    due: Option<Instant>,
}

impl AckTimer {
    /// Whether to emit now. `owed`: deliveries not acknowledged; `dirty`: any
    /// acknowledgement owed at all; `piggyback`: a write to the link is pending anyway.
    /// Starts the delay when acknowledgements are first owed.
    pub fn should_emit(&mut self, now: Instant, dirty: bool, owed: usize, piggyback: bool) -> bool {
        if !dirty {
            self.due = None;
            return false;
        }
        let due = *self.due.get_or_insert(now + ACK_DELAY);
        if !piggyback && owed < ACK_BATCH && now < due {
            return false;
        }
        self.due = None;
        true
    }

    /// When acknowledgements are due at the latest, if any are owed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }
}

/// Asking again for ids the hub still holds for this process's previous connection: 50 ms,
/// doubling to 1 s, while any is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterRetry {
    next: Option<(Instant, Duration)>,
}

impl RegisterRetry {
    /// An id was refused as held: schedules a retry unless one is scheduled.
    pub fn refused(&mut self, now: Instant) {
        if self.next.is_none() {
            self.next = Some((now + REGISTER_RETRY_MIN, REGISTER_RETRY_MIN));
        }
    }

    /// Forgets the schedule (a new connection registers everything afresh).
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// Whether a retry is due now; if so, the schedule is taken: call [`Self::asked`] when
    /// some id was asked for again, to schedule the next one with a doubled delay.
    pub fn due(&mut self, now: Instant) -> Option<Duration> {
        match self.next {
            Some((at, backoff)) if at <= now => {
                self.next = None;
                Some(backoff)
            }
            _ => None,
        }
    }

    /// Ids were asked for again after a retry of `backoff`: the next comes after twice that
    /// (at most [`REGISTER_RETRY_MAX`]).
    pub fn asked(&mut self, now: Instant, backoff: Duration) {
        let next =
            Duration::from_millis((backoff.as_millis() * 2).min(REGISTER_RETRY_MAX.as_millis()));
        self.next = Some((now + next, next));
    }

    /// When the next retry is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.map(|(at, _)| at)
    }
}

/// The grace after a reconnect (see [`RECONNECT_GRACE`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Grace {
    until: Option<Instant>,
}

impl Grace {
    /// The link is ready again.
    pub fn reconnected(&mut self, now: Instant) {
        self.until = Some(now + RECONNECT_GRACE);
    }
    /// Whether a message to `to` may go out now: after the grace, or when the registry
    /// snapshot has come and shows `to`.
    pub fn may_send(&self, now: Instant, synced: bool, present: impl FnOnce() -> bool) -> bool {
        !self.in_grace(now) || (synced && present())
    }
    /// Whether the grace is running.
    pub fn in_grace(&self, now: Instant) -> bool {
        self.until.is_some_and(|g| now < g)
    }
    /// When the grace ends, while it runs at `now`.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|&g| now < g)
    }
}

/// Where a machine id's registration with the hub stands, for one id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Registration {
    /// Asked for, no answer yet: its messages wait.
    Pending,
    /// Routed to this process: its messages go out.
    Registered,
    /// The hub still holds it for this process's previous connection: its messages wait
    /// while it is asked for again.
    HeldElsewhere,
    /// Refused for good (taken by another process, bad id, hub full): its messages go out
    /// and fail visibly (`not-owner`).
    Refused,
}

impl Registration {
    /// Whether messages from the id go out now.
    pub fn may_send(self) -> bool {
        matches!(self, Registration::Registered | Registration::Refused)
    }
}

/// What a registration answer means for an id, given whether the hub had accepted the id
/// from this process before (`owned`) and its state before the answer.
pub fn registration_answer(status: crate::wire::RegisterStatus, owned: bool) -> Registration {
    use crate::wire::RegisterStatus;
    match status {
        RegisterStatus::Ok => Registration::Registered,
        // The hub still holds the id for this process's previous connection (it has not
        // noticed that it broke): asked again shortly; messages wait meanwhile rather than
        // fail as `not-owner`.
        RegisterStatus::Taken if owned => Registration::HeldElsewhere,
        _ => Registration::Refused,
    }
}

/// What a process that lost its hub finds at the bus's socket when it tries to connect
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HubProbe {
    /// Something accepts connections there: a hub serves (or is starting to).
    Live,
    /// A socket file nobody listens on: its hub died.
    Refused,
    /// No socket: its hub went away (or has not bound it yet).
    Missing,
    /// Anything else (permissions, a timeout, too many files): nothing to conclude.
    Unknown,
}

/// Failover: whether a process whose link to the hub is down should try to serve the bus
/// itself. Only a process that may serve (the auto role) does, and only when nobody serves
/// the bus: the socket refuses connections or is gone. Trying is not winning: the bus lock
/// decides which one of the processes that try serves, and the others stay clients and
/// reconnect to it.
pub fn may_take_over(may_serve: bool, probe: HubProbe) -> bool {
    may_serve && matches!(probe, HubProbe::Refused | HubProbe::Missing)
}

#[cfg(test)]
mod failover_tests {
    use super::*;

    #[test]
    fn only_a_process_that_may_serve_takes_over_and_only_from_a_dead_hub() {
        for probe in [HubProbe::Refused, HubProbe::Missing] {
            assert!(may_take_over(true, probe));
            assert!(
                !may_take_over(false, probe),
                "a client-role process never serves"
            );
        }
        // A live socket (the hub, or a new one) and what cannot be read as death: reconnect.
        for probe in [HubProbe::Live, HubProbe::Unknown] {
            assert!(!may_take_over(true, probe));
            assert!(!may_take_over(false, probe));
        }
    }

    #[test]
    fn the_handover_grace_is_the_reconnect_grace() {
        // The new hub holds its own process's messages for targets not back yet as long
        // as a reconnecting client holds its own.
        let mut g = Grace::default();
        g.reconnected(Instant::from_millis(10));
        assert!(g.in_grace(Instant::from_millis(10)));
        let end = 10 + RECONNECT_GRACE.as_millis();
        assert!(g.in_grace(Instant::from_millis(end - 1)));
        assert!(!g.in_grace(Instant::from_millis(end)));
        assert_eq!(
            g.poll_timeout(Instant::from_millis(10)),
            Some(Instant::from_millis(end))
        );
    }
}
