//! Requests on the simulated bus: what a node does for its machines' requests
//! (`platform/src/node/requests.rs`), with the core's pending-request table
//! (`interstate_core::request::Pending`) on the virtual clock. A process's machines may
//! answer the requests they get ([`super::Process::answers`]); a requester's table settles
//! each request once: its reply, a timeout, its target leaving the registry, or a delivery
//! failure.

use interstate_core::request::{ReplyVerdict, RequestFailure, RequestId, Settled};
use interstate_core::wire::{Correlation, Deliver, FailReason};
use interstate_core::{Duration, Instant};

use super::{Process, Records, Sim};

/// Requests one simulated process may have waiting.
pub const REQUESTS: usize = 16;

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its reply arrived (the reply's message number).
    Replied(u64),
    /// It failed: what the requester got as `xstate.error.request`.
    Failed(RequestFailure),
}

/// A request settled: (process, incarnation, request id, how, when).
#[derive(Clone, Debug)]
pub struct Settlement {
    pub proc: usize,
    pub incarnation: u32,
    pub id: u32,
    pub outcome: Outcome,
    pub at: Instant,
}

/// The number a reply to the request numbered `n` carries (apart from every send's).
pub fn reply_number(n: u64) -> u64 {
    n | 1 << 40
}

fn settled(p: usize, pr: &Process, now: Instant, s: Settled, rec: &mut Records) {
    rec.settled.push(Settlement {
        proc: p,
        incarnation: pr.incarnation,
        id: s.id.0,
        outcome: Outcome::Failed(s.reason),
        at: now,
    });
}

/// Requests due at `now` time out. Returns whether any did.
pub fn expire(p: usize, pr: &mut Process, now: Instant, rec: &mut Records) -> bool {
    let mut any = false;
    while let Some(s) = pr.requests.expire(now) {
        settled(p, pr, now, s, rec);
        any = true;
    }
    any
}

/// A message of this process's failed: when it was a request, the request fails.
pub fn request_failed(
    p: usize,
    pr: &mut Process,
    now: Instant,
    correlation: Correlation,
    reason: FailReason,
    rec: &mut Records,
) {
    if let Correlation::Request(id) = correlation {
        if let Some(s) = pr.requests.fail(RequestId(id), reason) {
            settled(p, pr, now, s, rec);
        }
    }
}

/// `machine` left the registry: every request waiting for it fails as `target-gone`.
pub fn targets_gone(p: usize, pr: &mut Process, now: Instant, machine: &str, rec: &mut Records) {
    while let Some(s) = pr.requests.target_gone(machine) {
        settled(p, pr, now, s, rec);
    }
}

/// A machine of this process got a request: when the process answers, the reply goes back
/// to the sender with the request's id.
pub fn answer(pr: &mut Process, d: &Deliver<'_>) {
    if let (Correlation::Request(id), true) = (d.correlation, pr.answers) {
        let n = super::event_number(d.event);
        pr.outbox.push_back((
            d.to.to_string(),
            d.from.to_string(),
            reply_number(n),
            Correlation::Reply(id),
        ));
    }
}

/// A message arrived: when it is a reply, it settles its request, or is late.
pub fn reply_arrived(p: usize, pr: &mut Process, now: Instant, d: &Deliver<'_>, rec: &mut Records) {
    let Correlation::Reply(id) = d.correlation else {
        return;
    };
    match pr.requests.reply(id, Some(d.from)) {
        ReplyVerdict::Settles => rec.settled.push(Settlement {
            proc: p,
            incarnation: pr.incarnation,
            id,
            outcome: Outcome::Replied(super::event_number(d.event)),
            at: now,
        }),
        ReplyVerdict::Late => rec.late_replies.push((p, id, now)),
    }
}

impl Sim {
    /// The application of process `p` sends a request from its id `from` to `to`, waiting
    /// `timeout` for the reply. Returns the message's number and the request id; `Err` when
    /// the table is full (the action sees it); `None`-like panics are the test's mistakes.
    pub fn request(
        &mut self,
        p: usize,
        from: &str,
        to: &str,
        timeout: Duration,
    ) -> Result<(u64, RequestId), interstate_core::Error> {
        let now = self.now;
        let pr = self.procs[p].as_mut().expect("a live requester");
        let id = pr.requests.open(now, to, timeout)?;
        let n = self.next_n;
        self.next_n += 1;
        pr.outbox
            .push_back((from.to_string(), to.to_string(), n, id.request()));
        let inc = pr.incarnation;
        self.rec
            .requests
            .push((p, inc, id.0, n, to.to_string(), now));
        Ok((n, id))
    }

    /// Every request opened by a process alive now (of its current incarnation) was
    /// settled exactly once; none is settled that was not opened.
    pub fn check_requests(&self) -> Result<(), String> {
        for s in &self.rec.settled {
            let opened = self
                .rec
                .requests
                .iter()
                .any(|r| (r.0, r.1, r.2) == (s.proc, s.incarnation, s.id));
            if !opened {
                return Err(format!("settled, never opened: {s:?}"));
            }
        }
        for r in &self.rec.requests {
            let n = self
                .rec
                .settled
                .iter()
                .filter(|s| (s.proc, s.incarnation, s.id) == (r.0, r.1, r.2))
                .count();
            let alive = self.procs[r.0]
                .as_ref()
                .is_some_and(|pr| pr.incarnation == r.1);
            if n > 1 || (alive && n == 0) {
                return Err(format!("request {r:?} settled {n} times"));
            }
        }
        Ok(())
    }

    /// How the request `id` of process `p` was settled (the first time).
    pub fn outcome(&self, p: usize, id: RequestId) -> Option<&Settlement> {
        self.rec
            .settled
            .iter()
            .find(|s| s.proc == p && s.id == id.0)
    }
}
