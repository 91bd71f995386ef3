//! The hub keeps its next deadline instead of scanning every link slot per loop turn
//! (`hub/deadline.rs`): a floor that may be early, never late. These tests drive two hubs
//! with the same random links, frames and full queues on a virtual clock: the reference
//! has `handle_timeout` called at every step (so every timeout fires at the first step it is
//! due, as with an exact deadline), the other only when its `poll_timeout` has come, as a
//! node's loop does. Both must say and close exactly the same things at the same steps.
//! (In debug builds `poll_timeout` also checks its floor against a full scan each call.)

use interstate_core::hub::{Handled, Hub, HubConfig, LinkId, PeerCredentials};
use interstate_core::time::Duration;
use interstate_core::wire::{Deliver, Frame, Hello, MAGIC, PROTOCOL_VERSION};
use interstate_core::Instant;

mod recorder;
use recorder::{body, Recorder, UID};

type TestHub = Hub<8, 16, 4>;

/// Short timeouts, so that a few thousand steps see many of each.
fn hub() -> TestHub {
    let mut config = HubConfig::new(UID, 1);
    config.hello_timeout = Duration::from_millis(300);
    config.idle_timeout = Duration::from_millis(2_000);
    // Shorter than the others: a held id is often the earliest timeout.
    config.durable_hold = Duration::from_millis(200);
    Hub::new(config, "hub")
}

/// A small deterministic generator (xorshift), so that a failing seed can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One side: a hub, what it said, and how it is driven.
struct Side {
    hub: TestHub,
    io: Recorder,
    /// Every step (the reference) or only once `poll_timeout` has come.
    every_step: bool,
    /// Steps at which `handle_timeout` was called.
    timeout_calls: usize,
}

impl Side {
    fn new(every_step: bool) -> Self {
        Side {
            hub: hub(),
            io: Recorder::default(),
            every_step,
            timeout_calls: 0,
        }
    }

    fn frame(&mut self, now: Instant, link: LinkId, frame: &Frame<'_>) -> Handled {
        let handled = self.hub.handle_frame(now, link, &body(frame), &mut self.io);
        if let Handled::Stalled(_) = handled {
            // As a node does: the sender is waiting, not silent.
            self.hub.link_stalled(link, now);
        }
        handled
    }

    /// The end of a loop turn: the hub's timeouts, if the driver says so.
    fn timeouts(&mut self, now: Instant) {
        let due = self.every_step || self.hub.poll_timeout().is_some_and(|t| t <= now);
        if due {
            self.timeout_calls += 1;
            self.hub.handle_timeout(now, &mut self.io);
        }
    }
}

/// The last Ping the hub queued on `link` (what a client would answer).
fn last_ping(io: &Recorder, link: LinkId) -> Option<u64> {
    io.frames(link)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Ping { nonce } => Some(nonce),
            _ => None,
        })
        .next_back()
}

/// One random step's input, applied to both sides alike.
fn step(rng: &mut Rng, now: Instant, sides: &mut [Side; 2]) {
    let link = 1 + rng.below(7) as LinkId;
    let op = rng.below(100);
    // The reference decides what the link can do; the other hub must agree with it anyway.
    let open = sides[0].hub.peer(link).is_some();
    let ready = sides[0].hub.executable(link).is_some();
    let pong = last_ping(&sides[0].io, link);
    let names = [
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7"],
        ["d1", "d2", "d3", "d4", "d5", "d6", "d7"],
    ];
    let own = names[0][link as usize - 1];
    let durable = names[1][link as usize - 1];
    let other = names[rng.below(2) as usize][rng.below(7) as usize];
    for side in sides.iter_mut() {
        match op {
            0..=9 if !open => {
                let peer = PeerCredentials {
                    pid: 100 + link,
                    uid: UID,
                    gid: 0,
                };
                let _ = side.hub.link_opened(now, peer, &mut side.io);
            }
            // Some links never say hello (their hello time runs out).
            10..=29 if open && !ready && op % 4 != 0 => {
                side.frame(
                    now,
                    link,
                    &Frame::Hello(Hello {
                        magic: MAGIC,
                        version: PROTOCOL_VERSION,
                        max_frame: 65536,
                        pid: 100 + link,
                        executable: "test",
                    }),
                );
            }
            30..=37 if ready => {
                side.frame(now, link, &Frame::Register { machine: own });
            }
            38..=41 if ready => {
                side.frame(now, link, &Frame::RegisterDurable { machine: durable });
            }
            42..=54 if ready => {
                side.frame(now, link, &Frame::Ping { nonce: 7 });
            }
            // To an id that may be anyone's, held, or no one's: routed, dropped or failed
            // (a failure holds the pair and asks for a confirmation).
            55..=69 if ready => {
                let d = Deliver {
                    from: own,
                    to: other,
                    event: "E",
                    payload: b"{}",
                    seq: 1,
                    correlation: Default::default(),
                };
                side.frame(now, link, &Frame::Deliver(d));
            }
            70..=77 if ready => {
                if let Some(nonce) = pong {
                    side.frame(now, link, &Frame::Pong { nonce });
                }
                side.frame(now, link, &Frame::Resending { machine: other });
            }
            // A full queue: the confirmation's Ping finds no room (asked again at once).
            78..=83 => {
                if side.io.full.contains(&link) {
                    side.io.full.retain(|l| *l != link);
                } else {
                    side.io.full.push(link);
                }
            }
            84..=86 if ready => side.hub.link_stalled(link, now),
            87..=89 if open => {
                side.frame(now, link, &Frame::Goodbye { reason: "done" });
            }
            _ => {}
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut sides = [Side::new(true), Side::new(false)];
    let mut now = Instant::ZERO;
    for i in 0..steps {
        // Quiet stretches now and then, so that idle links time out.
        let gap = if rng.below(50) == 0 { 1_500 } else { 7 };
        now = now + Duration::from_millis(gap);
        if rng.below(3) != 0 {
            step(&mut rng, now, &mut sides);
        }
        for side in sides.iter_mut() {
            side.timeouts(now);
        }
        let [a, b] = &sides;
        assert_eq!(a.io.closed, b.io.closed, "seed {seed}, step {i}: closes");
        assert_eq!(a.io.logs, b.io.logs, "seed {seed}, step {i}: logs");
        assert_eq!(a.io.sent, b.io.sent, "seed {seed}, step {i}: frames");
        // After a call, the deadline is exact: nothing is due at once again (unless a full
        // queue refused the confirmation's Ping, which is asked again at every turn).
        if b.io.full.is_empty() {
            assert!(
                b.hub.poll_timeout().is_none_or(|t| t > now),
                "seed {seed}, step {i}: a deadline already due after handle_timeout"
            );
        }
    }
    let [a, b] = &sides;
    // The run saw what it is about: links closed by each timeout, and reports confirmed.
    let closed = |why: &str| a.io.closed.iter().filter(|c| c.1.contains(why)).count();
    assert!(closed("no hello") > 0, "seed {seed}: no hello timeout");
    assert!(closed("silent") > 0, "seed {seed}: no idle timeout");
    assert!(a
        .io
        .sent
        .iter()
        .any(|s| matches!(Frame::decode(&s.1), Ok(Frame::Ping { .. }))));
    // And the kept deadline spared calls: far fewer than one per step.
    assert!(
        b.timeout_calls * 4 < a.timeout_calls,
        "seed {seed}: {} calls against {}",
        b.timeout_calls,
        a.timeout_calls
    );
}

#[test]
fn timeouts_fire_at_the_same_steps_as_with_a_deadline_taken_by_a_scan() {
    for seed in 1..=24u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 3_000);
    }
}

#[test]
fn a_held_durable_id_is_released_on_time() {
    let mut sides = [Side::new(true), Side::new(false)];
    let peer = PeerCredentials {
        pid: 5,
        uid: UID,
        gid: 0,
    };
    let hello = Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: 65536,
        pid: 5,
        executable: "test",
    });
    for side in sides.iter_mut() {
        let link = side
            .hub
            .link_opened(Instant::ZERO, peer, &mut side.io)
            .unwrap();
        side.frame(Instant::ZERO, link, &hello);
        side.frame(
            Instant::ZERO,
            link,
            &Frame::RegisterDurable { machine: "d" },
        );
        // A turn after the hello time: the deadline is taken again, the link's idle time.
        side.timeouts(Instant::from_millis(400));
        assert_eq!(side.hub.poll_timeout(), Some(Instant::from_millis(2_000)));
        // The link goes at 500 ms: the id is held until 700 ms, before that idle time.
        side.frame(
            Instant::from_millis(500),
            link,
            &Frame::Goodbye { reason: "done" },
        );
        assert!(side.hub.is_held("d"));
        assert_eq!(side.hub.poll_timeout(), Some(Instant::from_millis(700)));
    }
    for ms in (510..=900).step_by(10) {
        let now = Instant::from_millis(ms);
        for side in sides.iter_mut() {
            side.timeouts(now);
            assert_eq!(side.hub.is_held("d"), ms < 700, "at {ms} ms");
        }
    }
    assert_eq!(sides[0].io.sent, sides[1].io.sent);
}
