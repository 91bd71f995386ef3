//! Link lifecycle: admission of a new connection, the handshake (Hello/Welcome), a link's
//! close (its ids leave the registry), and the timeouts: no Hello in time, a silent link,
//! a failure report's confirmation asked again.

use super::{truncated, HelloRules};
use super::{Handled, Hub, HubIo, Link, LinkFull, LinkId, LinkState, PeerCredentials, LOCAL_LINK};
use crate::time::Instant;
use crate::topic::SubscriptionSlots;
use crate::wire::{Frame, Hello, Reject, RejectCode, Welcome, PROTOCOL_VERSION};

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// A new connection. Returns its link id, or `None` when it was refused (it has been sent
    /// a Reject and closed through `io`, with a log line).
    pub fn link_opened(
        &mut self,
        now: Instant,
        peer: PeerCredentials,
        io: &mut dyn HubIo,
    ) -> Option<LinkId> {
        let allowed = self.config.allowed_uids.contains(&peer.uid)
            || self.config.allowed_gids.contains(&peer.gid);
        let slot = self
            .links
            .iter()
            .skip(1)
            .position(|l| l.state == LinkState::Free)
            .map(|i| i as LinkId + 1);
        let (code, message) = match (allowed, slot) {
            (false, _) => (
                RejectCode::NotAllowed,
                "this user is not allowed on the bus (see the hub's allow list)",
            ),
            (true, None) => (
                RejectCode::TooManyLinks,
                "the hub has as many links as it accepts; try again later",
            ),
            (true, Some(link)) => {
                self.links[link as usize] = Link {
                    state: LinkState::AwaitHello,
                    peer,
                    opened_at: now,
                    last_rx: now,
                    transport: self.config.transport,
                    ..Link::FREE
                };
                self.stats.links += 1;
                self.stats.links_opened += 1;
                self.link_deadline_changed(link);
                return Some(link);
            }
        };
        // Refused before it has a slot: the platform addresses it by a link id no one has.
        self.stats.rejected += 1;
        core_log!(
            warn,
            "hub: refused a connection of uid {}: {}",
            peer.uid,
            message
        );
        let link = LinkId::MAX;
        let _ = io.send(
            link,
            &Frame::Reject(Reject {
                code,
                version: PROTOCOL_VERSION,
                message,
            }),
        );
        io.log(link, message);
        io.close(link, message);
        None
    }

    /// A link closed (by the peer, an error, or the platform). Its machine ids leave the
    /// registry and registry subscribers are told.
    pub fn link_closed(&mut self, link: LinkId, io: &mut dyn HubIo) {
        let Some(l) = self.links.get_mut(link as usize) else {
            return;
        };
        if link == LOCAL_LINK || l.state == LinkState::Free {
            return;
        }
        self.close_direct_of(link, io);
        let l = &mut self.links[link as usize];
        if l.monitor {
            self.monitors -= 1;
        }
        *l = Link::FREE;
        self.stats.links = self.stats.links.saturating_sub(1);
        self.topic_link_closed(link);
        let routes = &self.routes;
        self.watches.drop_link(link, &mut |machine| {
            if let Some(owner) = routes.get(machine).map(|r| r.link) {
                // Best effort: an owner that keeps reporting costs only its own link.
                let _ = io.send(owner, &Frame::Report { machine, on: false });
            }
        });
        loop {
            let Some(key) = self
                .routes
                .iter()
                .find(|(_, r)| r.link == link)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(r) = self.routes.remove(key.0.as_str()) {
                if r.durable && self.hold_durable(&key, io) {
                    continue;
                }
            }
            self.broadcast_removed(&key.0, io);
        }
        // Closes are rare: the deadline is taken again exactly (none once no link is open
        // and no id is held).
        self.deadline = self.scan_deadline();
    }

    /// `link` is not silent, though the platform is not reading it: it is stalled behind a
    /// full receiver (backpressure). Keeps the idle timeout from blaming it for the receiver.
    pub fn link_stalled(&mut self, link: LinkId, now: Instant) {
        if let Some(l) = self.links.get_mut(link as usize) {
            if l.state == LinkState::Ready {
                l.last_rx = now;
            }
        }
    }

    /// Closes links that did not say Hello in time or went silent.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut dyn HubIo) {
        self.now = self.now.max(now);
        self.release_held(now, io);
        for i in 1..L {
            let l = &self.links[i];
            let reason = match l.state {
                LinkState::AwaitHello if now >= l.opened_at + self.config.hello_timeout => {
                    "no hello in time"
                }
                LinkState::Ready if now >= l.last_rx + self.config.idle_timeout => {
                    "silent for longer than the idle timeout"
                }
                LinkState::Ready => {
                    if l.unconfirmed.ask_at().is_some_and(|at| at <= now) {
                        self.ask_confirmation(now, i as LinkId, io);
                    }
                    continue;
                }
                _ => continue,
            };
            io.log(i as LinkId, reason);
            io.close(i as LinkId, reason);
            self.link_closed(i as LinkId, io);
        }
        // Links heard from since the deadline was last taken made it early: take it again.
        self.deadline = self.scan_deadline();
    }

    pub(super) fn violation(&mut self, link: LinkId, reason: &str, io: &mut dyn HubIo) -> Handled {
        self.stats.protocol_errors += 1;
        core_log!(warn, "hub: closing link {}: {}", link, reason);
        io.log(link, reason);
        io.close(link, reason);
        self.link_closed(link, io);
        Handled::Closed
    }

    pub(super) fn hello(&mut self, link: LinkId, h: Hello<'_>, io: &mut dyn HubIo) -> Handled {
        let max_frame = match HelloRules::PROCESS.check(&h, self.config.max_frame) {
            Ok(max_frame) => max_frame,
            Err(refusal) => {
                self.stats.rejected += 1;
                core_log!(warn, "hub: refused link {}: {}", link, refusal.message);
                let _ = io.send(link, &refusal.reject());
                io.log(link, refusal.message);
                io.close(link, refusal.message);
                self.link_closed(link, io);
                return Handled::Closed;
            }
        };
        let l = &mut self.links[link as usize];
        l.executable = truncated(h.executable);
        l.state = LinkState::Ready;
        l.max_frame = max_frame;
        self.link_deadline_changed(link);
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            max_frame,
            link,
            hub_pid: self.config.pid,
        };
        match io.send(link, &Frame::Welcome(welcome)) {
            Ok(()) => Handled::Done,
            Err(LinkFull) => self.violation(link, "no room for the welcome", io),
        }
    }
}
