//! What `docs/guarantees.md` promises, checked on a simulated run's records.

use std::collections::BTreeMap;

use interstate_core::bus::policy::{FORGET_DEPARTED_MS, RECONNECT_GRACE};
use interstate_core::wire::FailReason;
use interstate_core::{Duration, Instant};

use super::{Note, Sim};

/// How long a registry removal may take to reach a sender (the longest link delay the
/// tests set, twice, with room to spare).
pub const NEWS: Duration = Duration::from_millis(100);

/// How the run's messages ended, counted apart (as the soak test counts them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub delivered_once: usize,
    pub failed_once: usize,
    /// Delivered, then reported failed because the receiving process died (or lost its
    /// link) before its acknowledgement reached the sender: "not confirmed".
    pub delivered_and_reported_failed: usize,
    /// From a sender killed since: lost, or delivered, no one told.
    pub from_a_killed_sender: usize,
    /// Delivered twice: its sender lost its link after the first delivery, before the
    /// acknowledgement reached it, and was away longer than receivers remember a departed
    /// sender (60 s); it sent the message again and the receiver had forgotten it. Not
    /// described by the docs: `sim_bus.rs`
    /// `known_issue_a_sender_away_longer_than_receivers_remember_it_is_delivered_again`.
    pub delivered_again_after_a_long_absence: usize,
}

/// Checks the promises on everything `sim` recorded; call it once the bus has settled.
///
/// - no message reached a process not hosting its target, and no duplicate filter was full
///   (the tests size it for their runs);
/// - every failure is reported once, to the sender's incarnation that sent it;
/// - no message is delivered twice (save the known issue counted in
///   `Summary::delivered_again_after_a_long_absence`);
/// - per (sender incarnation, sender, receiver), delivered messages come in sending order;
/// - a message from a sender alive at the end is delivered or reported failed; both only
///   as `unknown-target` once the sender held it the whole grace after a reconnect (sent
///   again, its acknowledgement lost with the link or the hub), or as `target-gone` or
///   `unknown-target` when
///   the receiver's process was killed or lost its link (its ids left the registry) after
///   the message was sent and before the report, or so shortly before the send that the
///   sender had not heard yet (`NEWS`): "not confirmed", not "not processed";
/// - a message from a sender killed since may be lost, unless the hub had taken it from
///   the sender's link and routed it and lived on: then a receiver that stays on the bus
///   gets it;
/// - nothing fails as `not-owner` (every send is from an id of its process);
/// - between two processes neither killed nor cut off (hub restarts, delays and clock
///   jumps allowed), every message is delivered exactly once and none fails, save as
///   `disconnected` (its sender's buffer full while the hub was away) or as
///   `unknown-target` once the sender had held it the whole grace after its reconnect
///   (the receiver was not back in time: a clock jump can do that).
pub fn check(sim: &Sim) -> Result<Summary, String> {
    let rec = &sim.rec;
    for note in &rec.notes {
        if matches!(note, Note::Stray(..) | Note::FilterFull(..)) {
            return Err(format!("{note:?}"));
        }
    }
    let mut summary = Summary {
        sent: rec.sent.len(),
        ..Summary::default()
    };
    let mut delivered: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, d) in rec.delivered.iter().enumerate() {
        delivered.entry(d.n).or_default().push(i);
    }
    let mut failed: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, f) in rec.failed.iter().enumerate() {
        failed.entry(f.n).or_default().push(i);
    }
    let sent: BTreeMap<u64, usize> = rec.sent.iter().enumerate().map(|(i, s)| (s.n, i)).collect();
    if sent.len() != rec.sent.len() {
        return Err("a message number was handed to a client twice".into());
    }
    for f in &rec.failed {
        let Some(s) = sent.get(&f.n).map(|&i| &rec.sent[i]) else {
            return Err(format!("a failure for a message never sent: {f:?}"));
        };
        if (s.proc, s.incarnation, &s.from, &s.to, s.seq)
            != (f.proc, f.incarnation, &f.from, &f.to, f.seq)
        {
            return Err(format!(
                "a failure reported to the wrong sender: {f:?} for {s:?}"
            ));
        }
        if f.reason == FailReason::NotOwner {
            return Err(format!("a message failed as not-owner: {f:?}"));
        }
    }
    let routed: BTreeMap<u64, Instant> = rec.routed.iter().copied().collect();
    let disrupted_within = |p: usize, from: Instant, to: Instant| {
        rec.disruptions
            .iter()
            .any(|&(q, at)| q == p && at + NEWS >= from && at <= to)
    };
    // The sender lost its link (or the hub) between two deliveries of one message and was
    // back only after its receivers forget a departed sender: a case the docs do not
    // describe (`sim_bus.rs` `known_issue_*`), counted apart, never taken for a pass of
    // anything else.
    let long_absence = |p: usize, inc: u32, first: Instant, second: Instant| {
        let losses = rec.disruptions.iter().filter(|d| d.0 == p).map(|d| d.1);
        let losses = losses.chain(rec.hub_restarts.iter().copied());
        losses
            .filter(|&t| t + NEWS >= first && t <= second)
            .any(|t| {
                let back = rec
                    .readies
                    .iter()
                    .filter(|r| (r.0, r.1) == (p, inc) && r.2 >= t);
                back.map(|r| r.2)
                    .min()
                    .is_some_and(|r| r >= t + Duration::from_millis(FORGET_DEPARTED_MS))
            })
    };
    // An `unknown-target` once its sender had held it the whole grace after its last
    // reconnect: the receiver was not back in time.
    let grace_over = |fl: &super::Failure| {
        let last_ready = rec
            .readies
            .iter()
            .filter(|r| (r.0, r.1) == (fl.proc, fl.incarnation) && r.2 <= fl.at)
            .map(|r| r.2)
            .max();
        fl.reason == FailReason::UnknownTarget
            && last_ready.is_some_and(|r| fl.at >= r + RECONNECT_GRACE)
    };
    let stable = |p: usize| rec.disruptions.iter().all(|&(q, _)| q != p);
    let host_of = |id: &str| sim.host_of(id);
    for s in &rec.sent {
        let d = delivered.get(&s.n).map_or(&[][..], |v| v);
        let f = failed.get(&s.n).map_or(&[][..], |v| v);
        if f.len() > 1 {
            return Err(format!("reported failed {} times: {s:?}", f.len()));
        }
        if d.len() > 1 {
            let at: Vec<_> = d.iter().map(|&i| &rec.delivered[i]).collect();
            if d.len() == 2 && long_absence(s.proc, s.incarnation, at[0].at, at[1].at) {
                summary.delivered_again_after_a_long_absence += 1;
                continue;
            }
            return Err(format!("delivered {} times: {s:?}: {at:?}", d.len()));
        }
        let sender_alive = sim.procs[s.proc]
            .as_ref()
            .is_some_and(|pr| pr.incarnation == s.incarnation);
        let target = host_of(&s.to);
        if !sender_alive {
            // Lost with its sender, unless the hub had taken it: then it is delivered (to a
            // receiver that stays on the bus).
            // (The hub dying after it took it, with it still queued, loses it too.)
            let taken = routed
                .get(&s.n)
                .is_some_and(|&at| rec.hub_restarts.iter().all(|&h| h < at));
            if taken && d.is_empty() && target.is_some_and(stable) {
                return Err(format!(
                    "taken by the hub from a killed sender, lost: {s:?}"
                ));
            }
            summary.from_a_killed_sender += 1;
            continue;
        }
        match (
            d.first().map(|&i| &rec.delivered[i]),
            f.first().map(|&i| &rec.failed[i]),
        ) {
            (None, None) => return Err(format!("neither delivered nor reported failed: {s:?}")),
            (Some(_), None) => summary.delivered_once += 1,
            (None, Some(fl)) => {
                let excused = fl.reason == FailReason::Disconnected
                    || grace_over(fl)
                    || target.is_none_or(|t| !stable(t));
                if !excused {
                    return Err(format!(
                        "failed between two live, connected processes: {fl:?} for {s:?}"
                    ));
                }
                summary.failed_once += 1;
            }
            (Some(dl), Some(fl)) => {
                let reason_ok = matches!(
                    fl.reason,
                    FailReason::TargetGone | FailReason::UnknownTarget
                );
                // Or sent again after a reconnect (its acknowledgement lost with the link
                // or the hub), held the whole grace, and failed as `unknown-target`.
                let excused =
                    (reason_ok && disrupted_within(dl.proc, s.at, fl.at)) || grace_over(fl);
                if !excused {
                    return Err(format!(
                        "delivered and reported failed, the receiver undisturbed: {dl:?}, {fl:?}"
                    ));
                }
                summary.delivered_and_reported_failed += 1;
            }
        }
    }
    // Order per (sender incarnation, sender, receiver), in delivery order.
    let mut last: BTreeMap<(usize, u32, &str, &str), u64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for d in &rec.delivered {
        if !seen.insert(d.n) {
            // The second delivery of the known issue above (any other failed already).
            continue;
        }
        let s = &rec.sent[sent[&d.n]];
        let key = (s.proc, s.incarnation, s.from.as_str(), s.to.as_str());
        if let Some(&prev) = last.get(&key) {
            if s.seq <= prev {
                return Err(format!("out of order: {s:?} after seq {prev}"));
            }
        }
        last.insert(key, s.seq);
    }
    Ok(summary)
}
