//! Copies for monitoring links (`Subscribe { monitor: true }`): every routed `Deliver`, and
//! every `DeliveryFailed` the hub reports, as `Monitored` frames. Lossy by design: a copy a
//! monitor has no room for is dropped and counted.

use super::{Hub, HubIo, LinkId, LinkState};
use crate::topic::SubscriptionSlots;
use crate::wire::{DeliveryFailed, Frame};

/// The largest failure report copied to monitors (its ids and event name included).
const FAILURE_COPY: usize = 512;

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// Copies a frame body that came from (or was answered to) `link` to every monitor.
    pub(super) fn copy_to_monitors(&mut self, link: LinkId, body: &[u8], io: &mut dyn HubIo) {
        let at_ms = self.config.epoch_unix_ms + self.now.as_millis();
        for i in 0..L {
            if !self.links[i].monitor || self.links[i].state != LinkState::Ready {
                continue;
            }
            // A copy larger than the monitor accepts (with its envelope) is dropped and counted.
            let fits = body.len() + 32 <= self.links[i].max_frame as usize;
            let copy = Frame::Monitored {
                link,
                at_ms,
                frame: body,
            };
            if !fits || io.send(i as LinkId, &copy).is_err() {
                self.stats.monitor_dropped += 1;
            }
        }
    }

    /// Copies a failure report sent to `link` to every monitor.
    pub(super) fn copy_failure_to_monitors(
        &mut self,
        link: LinkId,
        f: &DeliveryFailed<'_>,
        io: &mut dyn HubIo,
    ) {
        let mut buf = [0u8; FAILURE_COPY];
        match Frame::DeliveryFailed(*f).encode(&mut buf) {
            Ok(n) => self.copy_to_monitors(link, &buf[crate::wire::LEN_PREFIX..n], io),
            Err(_) => self.stats.monitor_dropped += 1,
        }
    }
}
