//! The harness's model of the hub (links and registry), the platform's work after each
//! operation (`settle`), and the checks of what the hub did against the model.

use std::collections::{BTreeMap, BTreeSet};

use interstate_core::hub::{valid_machine_id, Handled, Hub, LinkId, LOCAL_LINK};
use interstate_core::wire::{
    cut_at_char, DeliveryFailed, FailReason, Frame, RegisterStatus, MAX_STOP_ERROR,
};

use super::io::{Out, RecIo};
use super::{HUB_L, HUB_M, HUB_MAX_FRAME, PER_LINK};

/// The harness's own model of the hub: link states and the registry.
#[derive(Default)]
pub(super) struct Model {
    /// Links that completed the handshake, with their agreed largest frame.
    pub(super) ready: BTreeMap<LinkId, u32>,
    /// Links waiting for their Hello.
    pub(super) awaiting: BTreeSet<LinkId>,
    /// machine id -> owner link.
    pub(super) owner: BTreeMap<String, LinkId>,
    /// Links subscribed to the registry.
    pub(super) registry: BTreeSet<LinkId>,
    /// A frame each stalled link waits to hand in again, and the link it waits on.
    pub(super) stalled: BTreeMap<LinkId, (Vec<u8>, LinkId)>,
    /// Failure reports sent on each link: the nonce of the Ping that asks the link to confirm
    /// it has read them all.
    pub(super) reports: BTreeMap<LinkId, u64>,
    /// Links with a report not yet confirmed (a Pong with the latest count): the hub may hold
    /// their pairs, failing a Deliver it would otherwise forward.
    pub(super) held: BTreeSet<LinkId>,
    /// Machines that stopped on an error, with the error as the hub keeps it (cut at
    /// `MAX_STOP_ERROR`), oldest first (the hub keeps `STOPPED_KEPT`).
    pub(super) stopped: Vec<(String, String)>,
}

impl Model {
    fn ids_of(&self, link: LinkId) -> usize {
        self.owner.values().filter(|&&l| l == link).count()
    }

    /// The status the hub must answer to a Register, and whether the route changes.
    pub(super) fn register(&mut self, link: LinkId, machine: &str) -> RegisterStatus {
        if !valid_machine_id(machine) {
            return RegisterStatus::BadId;
        }
        match self.owner.get(machine) {
            Some(&l) if l == link => RegisterStatus::Ok,
            Some(_) => RegisterStatus::Taken,
            None if link != LOCAL_LINK && self.ids_of(link) >= PER_LINK => RegisterStatus::TooMany,
            None if self.owner.len() >= HUB_M => RegisterStatus::HubFull,
            None => {
                self.owner.insert(machine.to_string(), link);
                self.stopped.retain(|(m, _)| m != machine);
                RegisterStatus::Ok
            }
        }
    }

    pub(super) fn closed(&mut self, link: LinkId) {
        self.ready.remove(&link);
        self.awaiting.remove(&link);
        self.registry.remove(&link);
        self.stalled.remove(&link);
        self.reports.remove(&link);
        self.held.remove(&link);
        self.owner.retain(|_, l| *l != link);
    }

    /// Counts the failure reports among `out`; a link that was sent one may now hold pairs.
    pub(super) fn count_reports(&mut self, out: &[Out]) {
        for o in out {
            if let Out::Sent(l, b) = o {
                if matches!(Frame::decode(b), Ok(Frame::DeliveryFailed(_))) {
                    *self.reports.entry(*l).or_default() += 1;
                    self.held.insert(*l);
                }
            }
        }
    }
}

/// Runs the platform's side after an operation: links the hub asked to close are closed
/// (`link_closed`, then every frame still queued on them handed back as undeliverable), as
/// `Node::settle` does, until nothing is left to close. Returns the outputs of that work.
pub(super) fn settle(
    hub: &mut Hub<HUB_L, HUB_M>,
    io: &mut RecIo,
    model: &mut Model,
    mut out: Vec<Out>,
) -> Vec<Out> {
    let mut all = Vec::new();
    loop {
        let closes: Vec<LinkId> = out
            .iter()
            .filter_map(|o| match o {
                Out::Closed(l, _) if *l != LinkId::MAX => Some(*l),
                _ => None,
            })
            .collect();
        all.append(&mut out);
        if closes.is_empty() {
            return all;
        }
        for link in closes {
            let l = link as usize;
            if !io.open[l] {
                continue;
            }
            hub.link_closed(link, io);
            // Before undeliverable: the hub may still report to the link's own senders, so
            // the model's ownership must go first.
            model.closed(link);
            let unwritten = std::mem::take(&mut io.queues[l]);
            io.open[l] = false;
            io.agreed[l] = 0;
            for body in unwritten {
                let before = io.out.len();
                hub.undeliverable(&body, io);
                check_undeliverable(&body, &io.out[before..], model, io);
            }
        }
        out = std::mem::take(&mut io.out);
    }
}

/// A frame queued on a closed link: a Deliver goes back to its sender as `TargetGone` (when
/// the sender is still on the bus and its queue has room); anything else is dropped.
fn check_undeliverable(body: &[u8], out: &[Out], model: &Model, _io: &RecIo) {
    // (Copies of the failure report for monitoring links aside.)
    let sent: Vec<&Out> = out
        .iter()
        .filter(|o| match o {
            Out::Sent(_, b) => !matches!(Frame::decode(b), Ok(Frame::Monitored { .. })),
            o => matches!(o, Out::Forwarded(..)),
        })
        .collect();
    match Frame::decode(body) {
        Ok(Frame::Deliver(d)) => {
            let mut reports = 0;
            for o in &sent {
                let Out::Sent(link, b) = o else {
                    panic!("undeliverable forwarded something");
                };
                if matches!(Frame::decode(b), Ok(Frame::Ping { .. })) {
                    // The hub asks the sender's link to confirm it read the report.
                    continue;
                }
                reports += 1;
                assert_eq!(
                    model.owner.get(d.from),
                    Some(link),
                    "a failure went to a link that does not own the sender"
                );
                match Frame::decode(b) {
                    Ok(Frame::DeliveryFailed(f)) => {
                        assert_eq!(
                            (f.from, f.to, f.event, f.seq),
                            (d.from, d.to, d.event, d.seq)
                        );
                        assert_eq!(f.reason, FailReason::TargetGone);
                    }
                    other => panic!("undeliverable sent {other:?}"),
                }
            }
            assert!(reports <= 1);
        }
        _ => assert!(
            sent.is_empty(),
            "undeliverable answered a frame that is not a Deliver"
        ),
    }
}

pub(super) fn sent_frames(out: &[Out], link: LinkId) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Out::Sent(l, b) if *l == link => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// Checks what the hub did with a well-formed frame from a Ready link, against the model.
pub(super) fn check_ready_frame(
    link: LinkId,
    body: &[u8],
    handled: Handled,
    out: &[Out],
    model: &mut Model,
    io: &RecIo,
    monitors: &BTreeSet<LinkId>,
) {
    let frame = Frame::decode(body).expect("checked by the caller");
    let forwards: Vec<(LinkId, &Vec<u8>)> = out
        .iter()
        .filter_map(|o| match o {
            Out::Forwarded(l, b) => Some((*l, b)),
            _ => None,
        })
        .collect();
    let failures: Vec<DeliveryFailed<'_>> = out
        .iter()
        .filter_map(|o| match o {
            Out::Sent(l, b) if *l == link => match Frame::decode(b) {
                Ok(Frame::DeliveryFailed(f)) => Some(f),
                _ => None,
            },
            _ => None,
        })
        .collect();
    match frame {
        Frame::Deliver(d) => {
            let owner_from = model.owner.get(d.from).copied();
            let target = model.owner.get(d.to).copied();
            match handled {
                Handled::Stalled(t) => {
                    assert!(
                        forwards.is_empty() && failures.is_empty(),
                        "a stalled Deliver had effects"
                    );
                    assert!(io.open[t as usize], "stalled on a link that is not open");
                    model.stalled.insert(link, (body.to_vec(), t));
                }
                Handled::Closed => panic!("a well-formed Deliver closed its link"),
                Handled::Done => {
                    let expected = if owner_from != Some(link) {
                        Err(FailReason::NotOwner)
                    } else if let Some(t) = target {
                        let limit = if t == LOCAL_LINK {
                            HUB_MAX_FRAME
                        } else {
                            model.ready.get(&t).copied().unwrap_or(0)
                        };
                        if body.len() > limit as usize {
                            Err(FailReason::TooLarge)
                        } else {
                            Ok(t)
                        }
                    } else if model.stopped.iter().any(|(m, _)| m == d.to) {
                        Err(FailReason::TargetStopped)
                    } else {
                        Err(FailReason::UnknownTarget)
                    };
                    match expected {
                        // A pair held on its link after an unconfirmed failure fails too
                        // (with the reason of that failure), and is not forwarded.
                        Ok(_) if model.held.contains(&link) && !failures.is_empty() => {
                            assert!(forwards.is_empty(), "a held pair was forwarded");
                            assert_eq!(failures.len(), 1, "a held Deliver reported twice");
                            let f = failures[0];
                            assert_eq!(
                                (f.from, f.to, f.event, f.seq),
                                (d.from, d.to, d.event, d.seq)
                            );
                        }
                        Ok(t) => {
                            assert!(failures.is_empty(), "a routed message also failed");
                            assert_eq!(
                                forwards.len(),
                                1,
                                "a Deliver from its owner was not forwarded exactly once"
                            );
                            assert_eq!(
                                forwards[0].0, t,
                                "forwarded to a link that does not own the target"
                            );
                            assert_eq!(
                                forwards[0].1.as_slice(),
                                body,
                                "the forwarded body changed"
                            );
                            // Monitor copies only to monitoring links.
                            for o in out {
                                if let Out::Sent(l, b) = o {
                                    if let Ok(Frame::Monitored {
                                        frame,
                                        link: from_link,
                                        ..
                                    }) = Frame::decode(b)
                                    {
                                        assert!(
                                            monitors.contains(l),
                                            "a monitor copy to a link that did not ask"
                                        );
                                        assert_eq!((frame, from_link), (body, link));
                                    }
                                }
                            }
                        }
                        Err(reason) => {
                            assert!(
                                forwards.is_empty(),
                                "a refused Deliver was forwarded: {reason:?}"
                            );
                            assert_eq!(
                                failures.len(),
                                1,
                                "a refused Deliver was not reported exactly once"
                            );
                            let f = failures[0];
                            assert_eq!(
                                (f.from, f.to, f.event, f.seq, f.reason),
                                (d.from, d.to, d.event, d.seq, reason)
                            );
                            // A stopped target's report carries its error; others nothing.
                            let detail = match reason {
                                FailReason::TargetStopped => model
                                    .stopped
                                    .iter()
                                    .find(|(m, _)| m == d.to)
                                    .map_or("", |(_, e)| e.as_str()),
                                _ => "",
                            };
                            assert_eq!(f.detail, detail, "the failure's detail");
                        }
                    }
                }
            }
        }
        Frame::Ack { from, to, .. } => match handled {
            Handled::Stalled(t) => {
                assert!(forwards.is_empty());
                model.stalled.insert(link, (body.to_vec(), t));
            }
            Handled::Closed => panic!("a well-formed Ack closed its link"),
            Handled::Done => {
                let target = model.owner.get(to).copied();
                if model.owner.get(from) == Some(&link) && target.is_some() {
                    assert_eq!(forwards.len(), 1, "an Ack from its owner was not forwarded");
                    assert_eq!(Some(forwards[0].0), target);
                    assert_eq!(forwards[0].1.as_slice(), body);
                } else {
                    assert!(
                        forwards.is_empty(),
                        "a spoofed or unroutable Ack was forwarded"
                    );
                }
                assert!(
                    failures.is_empty(),
                    "an Ack was answered with DeliveryFailed"
                );
            }
        },
        Frame::Register { machine } => {
            let status = model.register(link, machine);
            let results: Vec<_> = sent_frames(out, link)
                .into_iter()
                .filter_map(|b| match Frame::decode(&b) {
                    Ok(Frame::RegisterResult { machine: m, status }) => {
                        Some((m.to_string(), status))
                    }
                    _ => None,
                })
                .collect();
            match handled {
                Handled::Done => assert_eq!(
                    results,
                    vec![(machine.to_string(), status)],
                    "register result"
                ),
                Handled::Stalled(t) => {
                    assert_eq!(t, link, "a Register stalls only on its own link");
                    assert!(results.is_empty());
                    model.stalled.insert(link, (body.to_vec(), t));
                }
                Handled::Closed => panic!("a Register closed its link"),
            }
        }
        Frame::Unregister { machine } => {
            if model.owner.get(machine) == Some(&link) {
                model.owner.remove(machine);
            }
            assert_eq!(handled, Handled::Done);
        }
        Frame::Stopped { machine, error } => {
            if model.owner.get(machine) == Some(&link) {
                model.owner.remove(machine);
                if model.stopped.len() == interstate_core::hub::STOPPED_KEPT {
                    model.stopped.remove(0);
                }
                let kept = cut_at_char(error, MAX_STOP_ERROR);
                model.stopped.push((machine.to_string(), kept.to_string()));
            }
            assert_eq!(handled, Handled::Done);
        }
        // Copied to monitoring links only, unchanged, and only from the sender's owner;
        // never routed, never answered.
        Frame::NodeFailure(f) => {
            assert_eq!(handled, Handled::Done, "a NodeFailure is always taken");
            assert!(forwards.is_empty() && failures.is_empty());
            let owned = model.owner.get(f.from) == Some(&link);
            for o in out {
                if let Out::Sent(l, b) = o {
                    match Frame::decode(b) {
                        Ok(Frame::Monitored {
                            frame,
                            link: from_link,
                            ..
                        }) => {
                            assert!(owned, "a NodeFailure for an id not owned was copied");
                            assert!(monitors.contains(l), "a copy to a link that did not ask");
                            assert_eq!((frame, from_link), (body, link));
                        }
                        Ok(Frame::Ping { .. }) => {}
                        other => panic!("a NodeFailure was answered with {other:?}"),
                    }
                }
            }
        }
        // A first registry subscription: a snapshot, one entry per route (this link's own
        // included), then the end, unless it did not fit and the link was closed.
        Frame::Subscribe { registry: true, .. } if model.registry.insert(link) => {
            let frames = sent_frames(out, link);
            if handled == Handled::Done {
                let entries = frames
                    .iter()
                    .filter(|b| matches!(Frame::decode(b), Ok(Frame::RegistryEntry(_))))
                    .count();
                assert_eq!(entries, model.owner.len(), "the snapshot misses routes");
                assert!(matches!(
                    frames.last().map(|b| Frame::decode(b)),
                    Some(Ok(Frame::SnapshotEnd))
                ));
            }
        }
        Frame::Pong { nonce } if model.reports.get(&link) == Some(&nonce) => {
            model.held.remove(&link);
        }
        Frame::Ping { nonce } => match handled {
            Handled::Done => {
                let frames = sent_frames(out, link);
                assert_eq!(frames.len(), 1);
                assert_eq!(Frame::decode(&frames[0]).ok(), Some(Frame::Pong { nonce }));
            }
            Handled::Stalled(t) => {
                assert_eq!(t, link);
                model.stalled.insert(link, (body.to_vec(), t));
            }
            Handled::Closed => panic!("a Ping closed its link"),
        },
        _ => {}
    }
}
