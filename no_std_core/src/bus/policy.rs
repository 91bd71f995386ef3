//! The timing rules of a bus client: when acknowledgements go out, how long messages wait
//! for their targets after a reconnect, how often a refused registration is asked for again,
//! and how long a departed sender's duplicate state is kept. Pure decisions on the time the
//! host passes in.

use crate::time::{Duration, Instant};

/// Owed acknowledgements go out at the latest this long after the first is owed.
pub const ACK_DELAY: Duration = Duration::from_millis(2);
/// Or as soon as this many deliveries are owed.
pub const ACK_BATCH: usize = 256;
/// Or as soon as the deliveries since the last acknowledgements carry this many bytes: half
/// the smallest credit a sender can have ([`super::credit::MIN_CREDIT`]). A sender's credit
/// may hold fewer than [`ACK_BATCH`] messages; without this, a sender its credit holds back
/// would wait [`ACK_DELAY`] for every credit's worth (a one-way flood through a hub fell to
/// about 4 KiB per 3 ms), and that wait, counted in its messages' sojourn, kept the credit
/// small. Counted over all senders: the acknowledgements owed then go out together, one
/// per pair, at the end of the host's turn (so a busy receiver still sends one a turn).
pub const ACK_BYTES: usize = super::credit::MIN_CREDIT / 2;
/// Or, riding on a write to the link that happens anyway, as soon as this many are owed.
/// Not at every such write: in a ping-pong every reply is one, and an acknowledgement frame
/// per message (encoded, written, read, decoded and looked up on the other side) was about a
/// quarter of a shared-memory round trip's cost (docs/performance.md). With 16, a ping-pong
/// pays for one frame in 16 round trips, and a sender's oldest unacknowledged message still
/// waits at most [`ACK_DELAY`] beyond its delivery, well under the credit's sojourn target.
/// Held acknowledgements never let a departure overtake them: a client emits what it owes
/// before any frame announcing that one of its ids leaves, and before it goes
/// ([`super::Client::emit_acks_now`]).
pub const ACK_PIGGYBACK: usize = 16;
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

/// When owed acknowledgements go out: they ride on a write that happens anyway once a few
/// are owed ([`ACK_PIGGYBACK`]), or go out in batches (by count, [`ACK_BATCH`], or by bytes,
/// [`ACK_BYTES`]), or after a short delay ([`ACK_DELAY`]): never one write, nor one frame,
/// per message.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckTimer {
    due: Option<Instant>,
    /// Bytes of the messages delivered since acknowledgements last went out.
    bytes: usize,
}

impl AckTimer {
    /// A message of `bytes` (its frame body) was delivered: it counts toward [`ACK_BYTES`].
    pub fn delivered(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Whether to emit now. `owed`: deliveries not acknowledged; `dirty`: any
    /// acknowledgement owed at all; `piggyback`: a write to the link is pending anyway.
    /// Starts the delay when acknowledgements are first owed.
    pub fn should_emit(&mut self, now: Instant, dirty: bool, owed: usize, piggyback: bool) -> bool {
        if !dirty {
            self.due = None;
            return false;
        }
        let due = *self.due.get_or_insert(now + ACK_DELAY);
        let batch = if piggyback { ACK_PIGGYBACK } else { ACK_BATCH };
        if owed < batch && self.bytes < ACK_BYTES && now < due {
            return false;
        }
        self.due = None;
        self.bytes = 0;
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
mod ack_tests {
    use super::*;

    // Half the smallest credit at most: a sender at its floor still has half in flight when
    // the acknowledgements go out.
    const _: () = assert!(ACK_BYTES * 2 <= crate::bus::credit::MIN_CREDIT);

    #[test]
    fn acknowledgements_go_out_by_count_by_bytes_after_the_delay_or_on_a_write() {
        let at = Instant::from_millis;
        let mut t = AckTimer::default();
        // Nothing owed: nothing to do, whatever was delivered.
        t.delivered(ACK_BYTES);
        assert!(!t.should_emit(at(0), false, 0, true));
        // Owed, under every bound: they wait for the delay...
        let mut t = AckTimer::default();
        t.delivered(ACK_BYTES - 1);
        assert!(!t.should_emit(at(0), true, 1, false));
        assert_eq!(t.poll_timeout(), Some(at(0) + ACK_DELAY));
        assert!(!t.should_emit(at(1), true, 2, false));
        assert!(t.should_emit(at(0) + ACK_DELAY, true, 2, false));
        // ... unless they ride on a write once a few are owed, or reach the batch...
        assert!(!t.should_emit(at(10), true, 1, false));
        assert!(!t.should_emit(at(10), true, 1, true));
        assert!(!t.should_emit(at(10), true, ACK_PIGGYBACK - 1, true));
        assert!(t.should_emit(at(10), true, ACK_PIGGYBACK, true));
        assert!(!t.should_emit(at(20), true, ACK_BATCH - 1, false));
        assert!(t.should_emit(at(20), true, ACK_BATCH, false));
        // ... or their messages carry half the smallest credit: a sender whose credit
        // holds fewer than a batch gets them before it runs dry.
        t.delivered(ACK_BYTES / 2);
        assert!(!t.should_emit(at(30), true, 3, false));
        t.delivered(ACK_BYTES / 2);
        assert!(t.should_emit(at(30), true, 4, false));
        // The count starts again once they went out.
        t.delivered(1);
        assert!(!t.should_emit(at(31), true, 1, false));
    }

    #[test]
    fn a_ping_pong_carries_acknowledgements_on_one_reply_in_sixteen() {
        let at = Instant::from_millis;
        let mut t = AckTimer::default();
        // One owed at each reply, each reply a pending write: only every 16th carries them.
        let mut emitted = 0;
        let mut owed = 0;
        for _ in 0..(4 * ACK_PIGGYBACK) {
            owed += 1;
            t.delivered(64);
            if t.should_emit(at(100), true, owed, true) {
                emitted += 1;
                owed = 0;
            }
        }
        assert_eq!(emitted, 4);
        // Still never later than the delay, one owed or many.
        assert!(!t.should_emit(at(200), true, 1, false));
        assert!(t.should_emit(at(200) + ACK_DELAY, true, 1, false));
    }
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
