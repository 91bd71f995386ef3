//! Requests and their replies, sans-IO: the requester's side of request/response.
//!
//! A request is a message with [`Correlation::Request`]; its receiver answers with
//! [`crate::ActionContext::reply`], which sends the reply back to the requester with
//! [`Correlation::Reply`] and the same id. The requester keeps every request waiting for its
//! reply in a bounded table ([`Pending`]) and settles each exactly once:
//!
//! - its reply arrives, from the machine the request went to: delivered as an ordinary event
//!   (its [`crate::Event::correlation`] names the request);
//! - no reply within the timeout, on the host's clock ([`Pending::expire`]);
//! - its target leaves the bus ([`Pending::target_gone`]: the host watches the registry), or
//!   the request is reported undeliverable ([`Pending::fail`]): unknown target, target
//!   stopped, too large, and the bus's other reasons.
//!
//! Each of the last three becomes one [`REQUEST_ERROR_EVENT`] with a JSON payload
//! ([`write_error_payload`]). Once settled, a request is forgotten: a reply that comes
//! later is a *late* reply ([`ReplyVerdict::Late`]), dropped and counted by the host (a
//! machine's [`crate::Stats::late_replies`]), never delivered.
//! A full table is an error the requesting action sees ([`Error::RequestsFull`]).
//!
//! Request ids are the requester's own, so a reply is matched by its id *and* by who sent
//! it: a reply from another machine with a matching id is late, not a settlement.

use core::fmt::{self, Write};

use crate::error::Error;
use crate::machine::MAX_MACHINE_ID;
use crate::time::{Duration, Instant};
use crate::wire::{Correlation, FailReason};

/// The event a requester receives when a request fails: no reply in time, the target left
/// the bus, or the request could not be delivered. Payload: see [`write_error_payload`].
pub const REQUEST_ERROR_EVENT: &str = "xstate.error.request";

/// The id of a request, unique among its requester's pending requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub u32);

impl RequestId {
    /// The correlation a request with this id carries.
    pub fn request(self) -> Correlation {
        Correlation::Request(self.0)
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RequestFailure {
    /// No reply came within the timeout.
    Timeout,
    /// The target left the bus before it replied (its process exited or was killed, or it
    /// stopped), after it may have received the request.
    TargetGone,
    /// The request was not delivered.
    Undelivered(FailReason),
}

impl RequestFailure {
    /// The short, stable name in the error payload's `reason`.
    pub fn code(self) -> &'static str {
        match self {
            RequestFailure::Timeout => "timeout",
            RequestFailure::TargetGone => "target-gone",
            RequestFailure::Undelivered(r) => r.code(),
        }
    }
    /// A sentence a user can act on.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestFailure::Timeout => "no reply came within the request's timeout",
            RequestFailure::TargetGone => "the target left the bus before it replied",
            RequestFailure::Undelivered(r) => r.as_str(),
        }
    }
}

/// A request settled without its reply: what the requester is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The request.
    pub id: RequestId,
    /// The machine it went to.
    pub target: heapless::String<MAX_MACHINE_ID>,
    /// Why it failed.
    pub reason: RequestFailure,
}

/// What a reply did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReplyVerdict {
    /// It settled a pending request: deliver it.
    Settles,
    /// Its request is settled already (timed out, failed) or was never this requester's:
    /// drop it (and count it).
    Late,
}

#[derive(Clone, Debug)]
struct Entry {
    id: u32,
    due: Instant,
    target: heapless::String<MAX_MACHINE_ID>,
}

/// A requester's pending requests: at most `N`, each with its target and its deadline.
#[derive(Clone, Debug)]
pub struct Pending<const N: usize> {
    entries: heapless::Vec<Entry, N>,
    next: u32,
}

impl<const N: usize> Default for Pending<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Pending<N> {
    /// An empty table.
    pub const fn new() -> Self {
        Pending {
            entries: heapless::Vec::new(),
            next: 0,
        }
    }

    /// Starts request ids after `base` (a host that restarts a requester gives it a new
    /// base, so that a late reply to its previous incarnation matches nothing).
    pub fn set_base(&mut self, base: u32) {
        self.next = base;
    }

    /// Opens a request to `target`, due at `now + timeout`: its id, or
    /// [`Error::RequestsFull`] (or [`Error::MachineIdTooLong`] for a target no bus routes).
    pub fn open(
        &mut self,
        now: Instant,
        target: &str,
        timeout: Duration,
    ) -> Result<RequestId, Error> {
        if self.entries.is_full() {
            return Err(Error::RequestsFull { capacity: N });
        }
        let mut t = heapless::String::new();
        t.push_str(target).map_err(|_| Error::MachineIdTooLong {
            len: target.len(),
            capacity: MAX_MACHINE_ID,
        })?;
        // Ids skip 0 and any still pending (after 2^32 requests they wrap).
        let id = loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.entries.iter().any(|e| e.id == self.next) {
                break self.next;
            }
        };
        let _ = self.entries.push(Entry {
            id,
            due: now + timeout,
            target: t,
        });
        Ok(RequestId(id))
    }

    /// The next id counter and every pending request as (id, due, target), for a snapshot.
    pub(crate) fn parts(&self) -> (u32, impl Iterator<Item = (u32, Instant, &str)>) {
        (
            self.next,
            self.entries
                .iter()
                .map(|e| (e.id, e.due, e.target.as_str())),
        )
    }

    /// Puts back a request of a snapshot (see [`Pending::parts`]): refused when the table is
    /// full, the id is 0 or pending already, or the target is too long.
    pub(crate) fn restore_entry(&mut self, id: u32, due: Instant, target: &str) -> Result<(), ()> {
        if id == 0 || self.entries.iter().any(|e| e.id == id) {
            return Err(());
        }
        let mut t = heapless::String::new();
        t.push_str(target).map_err(|_| ())?;
        self.entries
            .push(Entry { id, due, target: t })
            .map_err(|_| ())
    }

    /// Sets the id counter back (a snapshot's).
    pub(crate) fn restore_next(&mut self, next: u32) {
        self.next = next;
    }

    /// Forgets a request without settling it (its message could not be queued: the action
    /// that opened it sees the error instead).
    pub fn withdraw(&mut self, id: RequestId) {
        if let Some(i) = self.entries.iter().position(|e| e.id == id.0) {
            self.entries.swap_remove(i);
        }
    }

    /// A reply to request `id` came from `from`.
    pub fn reply(&mut self, id: u32, from: Option<&str>) -> ReplyVerdict {
        let found = self
            .entries
            .iter()
            .position(|e| e.id == id && Some(e.target.as_str()) == from);
        match found {
            Some(i) => {
                self.entries.swap_remove(i);
                ReplyVerdict::Settles
            }
            None => ReplyVerdict::Late,
        }
    }

    /// Request `id` was reported undeliverable: settles it, unless it is settled already.
    pub fn fail(&mut self, id: RequestId, reason: FailReason) -> Option<Settled> {
        let i = self.entries.iter().position(|e| e.id == id.0)?;
        // A target that left after taking the request is `target-gone`, whoever says so.
        let reason = match reason {
            FailReason::TargetGone => RequestFailure::TargetGone,
            r => RequestFailure::Undelivered(r),
        };
        Some(self.settle(i, reason))
    }

    /// `machine` left the bus: settles one request waiting for it (call again until `None`).
    pub fn target_gone(&mut self, machine: &str) -> Option<Settled> {
        let i = self.entries.iter().position(|e| e.target == machine)?;
        Some(self.settle(i, RequestFailure::TargetGone))
    }

    /// Settles the earliest request due at or before `now` as timed out (call again until
    /// `None`).
    pub fn expire(&mut self, now: Instant) -> Option<Settled> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.due <= now)
            .min_by_key(|(_, e)| (e.due, e.id))?;
        Some(self.settle(i, RequestFailure::Timeout))
    }

    fn settle(&mut self, i: usize, reason: RequestFailure) -> Settled {
        let e = self.entries.swap_remove(i);
        Settled {
            id: RequestId(e.id),
            target: e.target,
            reason,
        }
    }

    /// The earliest deadline of a pending request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.due).min()
    }

    /// Requests waiting for their replies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a reply to request `id` from `from` would settle it (without settling it).
    pub fn matches(&self, id: u32, from: &str) -> bool {
        self.entries.iter().any(|e| e.id == id && e.target == from)
    }

    /// Whether request `id` is waiting for its reply.
    pub fn is_pending(&self, id: RequestId) -> bool {
        self.entries.iter().any(|e| e.id == id.0)
    }
}

/// Writes `s` as a JSON string literal.
fn json_str(w: &mut dyn Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// The payload of a [`REQUEST_ERROR_EVENT`]:
/// `{"request":7,"to":"worker","reason":"timeout","message":"..."}`, where `reason` is
/// `timeout`, `target-gone`, or a delivery failure's code (`unknown-target`,
/// `target-stopped`, `too-large`, ...: [`FailReason::code`]).
pub fn write_error_payload(s: &Settled, w: &mut dyn Write) -> fmt::Result {
    write!(w, "{{\"request\":{},\"to\":", s.id.0)?;
    json_str(w, &s.target)?;
    write!(w, ",\"reason\":\"{}\",\"message\":", s.reason.code())?;
    json_str(w, s.reason.as_str())?;
    w.write_char('}')
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_reply_settles_once_and_a_second_is_late() {
        let mut p = Pending::<2>::new();
        let id = p.open(Instant::ZERO, "w", MS(100)).unwrap();
        assert_eq!(p.reply(id.0, Some("w")), ReplyVerdict::Settles);
        assert_eq!(p.reply(id.0, Some("w")), ReplyVerdict::Late);
        assert!(p.is_empty());
    }

    #[test]
    fn a_reply_from_another_machine_settles_nothing() {
        let mut p = Pending::<2>::new();
        let id = p.open(Instant::ZERO, "w", MS(100)).unwrap();
        assert_eq!(p.reply(id.0, Some("x")), ReplyVerdict::Late);
        assert_eq!(p.reply(id.0, None), ReplyVerdict::Late);
        assert!(p.is_pending(id));
    }

    #[test]
    fn a_timeout_settles_once_then_the_reply_is_late() {
        let mut p = Pending::<2>::new();
        let id = p.open(Instant::ZERO, "w", MS(100)).unwrap();
        assert_eq!(p.poll_timeout(), Some(Instant::from_millis(100)));
        assert_eq!(p.expire(Instant::from_millis(99)), None);
        let s = p.expire(Instant::from_millis(100)).unwrap();
        assert_eq!((s.id, s.reason), (id, RequestFailure::Timeout));
        assert_eq!(p.expire(Instant::from_millis(1000)), None);
        assert_eq!(p.fail(id, FailReason::UnknownTarget), None);
        assert_eq!(p.target_gone("w"), None);
        assert_eq!(p.reply(id.0, Some("w")), ReplyVerdict::Late);
    }

    #[test]
    fn a_full_table_is_an_error_and_ids_are_unique() {
        let mut p = Pending::<2>::new();
        let a = p.open(Instant::ZERO, "w", MS(1)).unwrap();
        let b = p.open(Instant::ZERO, "w", MS(1)).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            p.open(Instant::ZERO, "w", MS(1)),
            Err(Error::RequestsFull { capacity: 2 })
        );
        p.withdraw(a);
        p.set_base(u32::MAX - 1);
        // Wraps past 0, and past the id still pending.
        let c = p.open(Instant::ZERO, "w", MS(1)).unwrap();
        assert_eq!(c, RequestId(u32::MAX));
        let _ = p.reply(b.0, Some("w"));
        let d = p.open(Instant::ZERO, "w", MS(1)).unwrap();
        assert_eq!(d, RequestId(1));
    }

    #[test]
    fn target_gone_settles_every_request_to_it() {
        let mut p = Pending::<4>::new();
        p.open(Instant::ZERO, "w", MS(1)).unwrap();
        p.open(Instant::ZERO, "x", MS(1)).unwrap();
        p.open(Instant::ZERO, "w", MS(1)).unwrap();
        let mut n = 0;
        while let Some(s) = p.target_gone("w") {
            assert_eq!(s.reason, RequestFailure::TargetGone);
            n += 1;
        }
        assert_eq!((n, p.len()), (2, 1));
    }

    #[test]
    fn the_error_payload_is_json() {
        let mut t = heapless::String::new();
        t.push_str("a\"b").unwrap();
        let s = Settled {
            id: RequestId(7),
            target: t,
            reason: RequestFailure::Undelivered(FailReason::UnknownTarget),
        };
        let mut out = String::new();
        write_error_payload(&s, &mut out).unwrap();
        assert_eq!(
            out,
            "{\"request\":7,\"to\":\"a\\\"b\",\"reason\":\"unknown-target\",\
             \"message\":\"no machine with that id is registered on the bus\"}"
        );
    }
}
