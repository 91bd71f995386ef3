//! One frame from a link: counted, decoded, checked against the link's state (the first
//! must be a Hello), and handed to the rule that owns its kind.

use heapless::String;

use super::{truncated, Handled, Hub, HubIo, LinkFull, LinkId, LinkState};
use crate::error::Error;
use crate::time::Instant;
use crate::topic::SubscriptionSlots;
use crate::wire::{Frame, Reject, RejectCode, PROTOCOL_VERSION};

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// Handles one frame body from `link`.
    ///
    /// The body must be one whole frame (see [`crate::wire::split_frame`]). On
    /// [`Handled::Stalled`] nothing was done: hand the same body in again later.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        let Some(state) = self.links.get(link as usize).map(|l| l.state) else {
            return Handled::Closed;
        };
        if state == LinkState::Free {
            return Handled::Closed;
        }
        self.count_frame_in(link, body.len());
        let frame = match Frame::decode(body) {
            Ok(f) => f,
            Err(Error::MalformedFrame(why)) => return self.violation(link, why, io),
            Err(_) => return self.violation(link, "undecodable frame", io),
        };
        self.links[link as usize].last_rx = now;
        self.now = self.now.max(now);
        if self.links[link as usize]
            .unconfirmed
            .ask_at()
            .is_some_and(|at| at <= now)
        {
            // The Ping asking for the confirmation found no room, or went unanswered.
            self.ask_confirmation(now, link, io);
        }
        if state == LinkState::AwaitHello {
            return match frame {
                Frame::Hello(h) => self.hello(link, h, io),
                _ => {
                    let _ = io.send(
                        link,
                        &Frame::Reject(Reject {
                            code: RejectCode::NotInterstate,
                            version: PROTOCOL_VERSION,
                            message: "the first frame must be a hello",
                        }),
                    );
                    self.stats.rejected += 1;
                    self.violation(link, "first frame was not a hello", io)
                }
            };
        }
        match frame {
            Frame::Deliver(d) => self.deliver(now, link, d, body, io),
            Frame::Ack { from, to, seq } => self.ack(link, from, to, Some(seq), body, io),
            Frame::Register { machine } => self.register(now, link, machine, false, io),
            Frame::RegisterDurable { machine } => self.register(now, link, machine, true, io),
            Frame::Resending { machine } => {
                self.resending(link, machine);
                Handled::Done
            }
            f @ (Frame::DirectAllow { .. }
            | Frame::DirectOpen { .. }
            | Frame::DirectClose { .. }) => {
                self.direct_frame(link, &f, io);
                Handled::Done
            }
            Frame::Unregister { machine } => {
                self.unregister(link, machine, io);
                Handled::Done
            }
            Frame::Stopped { machine, error } => {
                self.stopped(link, machine, error, io);
                Handled::Done
            }
            Frame::NodeFailure(f) => self.node_failure(link, &f, body, io),
            Frame::Subscribe { registry, monitor } => {
                let l = &mut self.links[link as usize];
                if l.monitor != monitor {
                    if monitor {
                        self.monitors += 1;
                    } else {
                        self.monitors -= 1;
                    }
                }
                l.monitor = monitor;
                if monitor && self.direct.count() > 0 {
                    // Monitors see what crosses the hub: from now on everything does.
                    self.close_all_direct(io);
                }
                let l = &mut self.links[link as usize];
                if registry && !l.registry {
                    l.registry = true;
                    for (machine, r) in self.routes.iter() {
                        let entry = self.entry(&machine.0, *r);
                        if io.send(link, &Frame::RegistryEntry(entry)).is_err() {
                            return self.violation(
                                link,
                                "registry snapshot does not fit the link's queue",
                                io,
                            );
                        }
                    }
                    if io.send(link, &Frame::SnapshotEnd).is_err() {
                        return self.violation(
                            link,
                            "registry snapshot does not fit the link's queue",
                            io,
                        );
                    }
                }
                Handled::Done
            }
            Frame::Watch { machine, on } => self.watch(link, machine, on, io),
            f @ (Frame::TopicSubscribe { .. }
            | Frame::TopicUnsubscribe { .. }
            | Frame::TopicWatch { .. }) => self.topic_frame(link, f, io),
            Frame::State { machine, .. } => self.state(link, machine, body, io),
            Frame::StatsRequest { .. } => self.stats_request(link, io),
            Frame::Stats {
                link: asker,
                report,
                ..
            } => self.stats_report(link, asker, report, io),
            Frame::Ping { nonce } => match io.send(link, &Frame::Pong { nonce }) {
                Ok(()) => Handled::Done,
                Err(LinkFull) => Handled::Stalled(link),
            },
            Frame::Pong { nonce } => {
                self.confirmed(now, link, nonce, io);
                Handled::Done
            }
            Frame::Goodbye { reason } => {
                let mut why: String<96> = String::new();
                let _ = why.push_str("goodbye: ");
                let _ = why.push_str(truncated::<80>(reason).as_str());
                io.close(link, why.as_str());
                self.link_closed(link, io);
                Handled::Closed
            }
            Frame::Hello(_) => self.violation(link, "second hello", io),
            _ => self.violation(link, "a frame only the hub sends", io),
        }
    }
}
