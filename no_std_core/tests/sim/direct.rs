//! Direct peer rings on the simulated bus: what the platform does with the rings the hub
//! asks for (`HubIo::open_direct`), and a process's host reading and writing them.
//!
//! A ring pair is two in-memory queues between two processes, each frame arriving
//! `SimConfig::direct_delay` after it was written, in order. The rings outlive the processes'
//! links as shared memory outlives a process: what a killed process wrote stays readable
//! until the other side drops the pair (on the hub's `DirectClose`). A side that takes the
//! hub's close first reads what has arrived on the ring (as the platform does); a side that
//! drops the pair otherwise (its own close, a lost hub link) loses what it had not read.

use std::collections::VecDeque;

use interstate_core::bus::client::{DirectSink, Incoming};
use interstate_core::bus::MAX_DIRECT_PAIRS;
use interstate_core::wire::Frame;
use interstate_core::{Duration, Instant};

use super::{Process, Sink};

/// One ring pair.
#[derive(Debug)]
pub struct SimRing {
    pub pair: u32,
    /// The two processes (by index), and the queue towards each.
    pub procs: [usize; 2],
    queues: [VecDeque<(Instant, Vec<u8>)>; 2],
    /// Each side still holds the pair.
    held: [bool; 2],
}

impl SimRing {
    pub fn new(pair: u32, a: usize, b: usize) -> Self {
        SimRing {
            pair,
            procs: [a, b],
            queues: [VecDeque::new(), VecDeque::new()],
            held: [true, true],
        }
    }

    fn side(&self, p: usize) -> usize {
        usize::from(self.procs[1] == p)
    }

    /// Frames waiting towards a side that still holds the pair, `holds(p)` telling whether
    /// process `p` has it mapped (a process that died, or lost its link, before it took the
    /// offer never reads it).
    pub fn pending<'a>(
        &'a self,
        holds: &'a dyn Fn(usize, u32) -> bool,
    ) -> impl Iterator<Item = Instant> + 'a {
        (0..2)
            .filter(move |&i| self.held[i] && holds(self.procs[i], self.pair))
            .filter_map(|i| self.queues[i].front().map(|f| f.0))
    }

    /// Process `p` drops the pair: what waits towards it is gone.
    pub fn drop_side(&mut self, p: usize) {
        let i = self.side(p);
        self.held[i] = false;
        self.queues[i].clear();
    }
}

/// The rings a process writes to, by its pair slots.
pub struct RingSink<'a> {
    pub rings: &'a mut Vec<SimRing>,
    pub slots: [Option<u32>; MAX_DIRECT_PAIRS],
    pub from: usize,
    pub now: Instant,
    pub delay: Duration,
    pub written: usize,
}

impl DirectSink for RingSink<'_> {
    fn send_body(&mut self, slot: usize, body: &[u8]) -> bool {
        let Some(pair) = self.slots.get(slot).copied().flatten() else {
            return false;
        };
        let Some(r) = self.rings.iter_mut().find(|r| r.pair == pair) else {
            return false;
        };
        let to = 1 - r.side(self.from);
        let at = self.now + self.delay;
        let at = r.queues[to].back().map_or(at, |(last, _)| at.max(*last));
        r.queues[to].push_back((at, body.to_vec()));
        self.written += 1;
        true
    }
    fn has_pending(&self) -> bool {
        // (A ring's frames are written at once: nothing waits to ride along.)
        self.written > 0
    }
}

/// What a process's host does with the direct-ring part of an `Incoming` (the rest goes to
/// `drive::host`). Returns true when it was one of them.
pub(super) fn host_direct(
    p: usize,
    pr: &mut Process,
    rings: &mut [SimRing],
    incoming: &Incoming<'_>,
    sink: &mut Sink<'_>,
) -> bool {
    match *incoming {
        Incoming::DirectOffer { pair, peer_pid } => {
            // The rings came with the offer (over the control socket, on a real bus).
            if rings.iter().any(|r| r.pair == pair && r.procs.contains(&p)) {
                if let Some(slot) = pr.client.direct_mapped(pair, peer_pid, &mut *sink) {
                    pr.rings[slot] = Some(pair);
                }
            } else {
                pr.client.direct_refused(pair, &mut *sink);
            }
            true
        }
        Incoming::DirectReadable { .. } => true,
        Incoming::DirectClosed { slot, .. } => {
            if let Some(pair) = pr.rings[slot].take() {
                if let Some(r) = rings.iter_mut().find(|r| r.pair == pair) {
                    r.drop_side(p);
                }
            }
            true
        }
        _ => false,
    }
}

/// Process `p` lost its hub link: it drops every pair.
pub(super) fn drop_all(p: usize, pr: &mut Process, rings: &mut [SimRing]) {
    for slot in pr.rings.iter_mut() {
        if let Some(pair) = slot.take() {
            if let Some(r) = rings.iter_mut().find(|r| r.pair == pair) {
                r.drop_side(p);
            }
        }
    }
}

/// The next frame due on one of `p`'s readable rings: (slot, body).
pub(super) fn next_frame(
    p: usize,
    pr: &Process,
    rings: &mut [SimRing],
    now: Instant,
) -> Option<(usize, Vec<u8>)> {
    for (slot, pair) in pr.rings.iter().enumerate() {
        let Some(pair) = pair else { continue };
        if !pr.client.direct().readable(slot) {
            continue;
        }
        let Some(r) = rings.iter_mut().find(|r| r.pair == *pair) else {
            continue;
        };
        let i = r.side(p);
        if r.queues[i].front().is_some_and(|f| f.0 <= now) {
            return r.queues[i].pop_front().map(|(_, b)| (slot, b));
        }
    }
    None
}

/// Whether `body`, the next frame from the hub to process `p`, is the hub's close of a pair
/// whose ring `p` reads and which holds a frame that has arrived: the platform reads those
/// first (the other side's last acknowledgements and messages), and so does the simulated
/// host.
pub(super) fn close_waits_for_ring(
    p: usize,
    pr: &Process,
    rings: &[SimRing],
    body: &[u8],
    now: Instant,
) -> bool {
    let Ok(Frame::DirectClose { pair }) = Frame::decode(body) else {
        return false;
    };
    let Some(slot) = pr.client.direct().slot_of(pair) else {
        return false;
    };
    if !pr.client.direct().readable(slot) || pr.rings[slot] != Some(pair) {
        return false;
    }
    rings
        .iter()
        .find(|r| r.pair == pair)
        .is_some_and(|r| r.queues[r.side(p)].front().is_some_and(|f| f.0 <= now))
}

/// Decodes a ring frame (the tests write only valid ones, forged ones included).
pub fn decode(body: &[u8]) -> Frame<'_> {
    Frame::decode(body).expect("ring frames decode")
}

/// Writes a raw frame body from process `from` into its ring with process `to` (bad input
/// on a ring). False when they hold no pair.
pub fn inject(rings: &mut [SimRing], from: usize, to: usize, now: Instant, body: &[u8]) -> bool {
    let Some(r) = rings
        .iter_mut()
        .find(|r| r.procs.contains(&from) && r.procs.contains(&to) && r.held.iter().all(|h| *h))
    else {
        return false;
    };
    let i = 1 - r.side(from);
    r.queues[i].push_back((now, body.to_vec()));
    true
}
