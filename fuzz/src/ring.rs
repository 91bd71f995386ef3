//! Fuzz logic for the shared-memory ring (`interstate_platform::transport::ring`): one side of
//! a ring over memory a hostile peer writes anything into, at any time.
//!
//! The region is heap-backed and laid out like a real ring (header words at offsets 0, 64,
//! 128, 192, data after 256 bytes). The operations interleave this side's calls (as the
//! consumer and as the producer) with the peer's writes of arbitrary header words and data
//! bytes, and with honest pushes and pops by the peer. A model of the two positions predicts
//! every result: a position out of range must be reported as `Corrupt`, never trusted, and
//! nothing may panic or touch memory outside the region.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arbitrary::Arbitrary;
use interstate_platform::transport::ring::{Ring, HEADER};

/// What happens to the ring.
#[derive(Arbitrary, Debug, Clone)]
pub enum RingOp {
    /// The peer writes the producer's position.
    SetHead(u64),
    /// The peer moves the producer's position by a small amount (either way).
    NudgeHead(i16),
    /// The peer writes the consumer's position.
    SetTail(u64),
    /// The peer moves the consumer's position by a small amount.
    NudgeTail(i16),
    /// The peer writes the sleeping flag.
    SetSleeping(u32),
    /// The peer writes the waiting flag.
    SetWaiting(u32),
    /// The peer writes data bytes at an offset.
    Scribble(u16, Vec<u8>),
    /// This side, as the consumer, pops up to this many bytes.
    Pop(u16),
    /// This side, as the consumer, asks how much is waiting.
    Available,
    /// This side, as the consumer, gets ready to sleep, then wakes up.
    Sleep,
    /// This side, as the producer, pushes bytes.
    Push(Vec<u8>),
    /// This side, as the producer, asks for free space.
    Free,
    /// This side, as the producer, waits for space, then stops waiting.
    WaitForSpace,
    /// This side, as the producer, asks whether the consumer sleeps.
    ConsumerSleeping,
}

/// A `shm_ring` input: the capacity (a power of two) and the operations.
#[derive(Arbitrary, Debug, Clone)]
pub struct RingSession {
    /// log2 of the capacity (taken modulo 12).
    pub capacity_log2: u8,
    /// Operations.
    pub ops: Vec<RingOp>,
}

/// A region aligned to 64 bytes holding `HEADER + capacity` bytes (plus guard words that
/// must stay untouched).
struct Region {
    words: Vec<u64>,
    offset: usize,
    capacity: usize,
}

const GUARD: u64 = 0xDEAD_BEEF_F00D_CAFE;

impl Region {
    fn new(capacity: usize) -> Region {
        let total = (HEADER + capacity) / 8 + 16;
        let mut words = vec![GUARD; total];
        let p = words.as_mut_ptr() as usize;
        let offset = (64 - p % 64) % 64;
        // Zero the ring itself.
        let mut r = Region {
            words,
            offset,
            capacity,
        };
        for b in r.bytes_mut().iter_mut() {
            *b = 0;
        }
        r
    }
    fn base(&mut self) -> *mut u8 {
        // SAFETY: `offset` < 64 and the allocation has 16 spare words.
        unsafe { (self.words.as_mut_ptr() as *mut u8).add(self.offset) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = HEADER + self.capacity;
        let base = self.base();
        // SAFETY: the region holds `len` bytes from `base`.
        unsafe { std::slice::from_raw_parts_mut(base, len) }
    }
    fn word64(&mut self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is 0 or 64, 8-aligned inside the header.
        unsafe { &*(self.base().add(at) as *const AtomicU64) }
    }
    fn word32(&mut self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is 128 or 192, 4-aligned inside the header.
        unsafe { &*(self.base().add(at) as *const AtomicU32) }
    }
    fn guards_intact(&self) -> bool {
        let first = self.offset / 8;
        let last = (self.offset + HEADER + self.capacity).div_ceil(8);
        self.words[..first].iter().all(|&w| w == GUARD)
            && self.words[last..].iter().all(|&w| w == GUARD)
    }
}

/// Target `shm_ring`: decodes a [`RingSession`] and runs it.
pub fn shm_ring(data: &[u8]) {
    if let Ok(s) = RingSession::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_ring(&s);
    }
}

/// Runs a ring session against the model.
pub fn run_ring(s: &RingSession) {
    let capacity = 1usize << (s.capacity_log2 % 12);
    let mut region = Region::new(capacity);
    let base = region.base();
    // SAFETY: the region outlives both rings (dropped at the end of this function, after
    // them), holds HEADER + capacity bytes aligned to 64, and capacity is a power of two.
    let (mut producer, mut consumer) =
        unsafe { (Ring::new(base, capacity), Ring::new(base, capacity)) };
    producer.init();
    let cap = capacity as u64;
    // This side's own positions, as the ring keeps them.
    let mut tail_mine: u64 = 0;
    let mut head_mine: u64 = 0;
    // The producer's remembered consumer position: it reads the shared one only when this
    // leaves too little room for a push, and a position behind it is corrupt.
    let mut seen_tail: u64 = 0;
    let mut out = vec![0u8; 70_000];
    for op in s.ops.iter().take(512) {
        match op {
            RingOp::SetHead(v) => region.word64(0).store(*v, Ordering::SeqCst),
            RingOp::NudgeHead(d) => {
                let w = region.word64(0);
                let v = w.load(Ordering::SeqCst).wrapping_add_signed(i64::from(*d));
                w.store(v, Ordering::SeqCst);
            }
            RingOp::SetTail(v) => region.word64(64).store(*v, Ordering::SeqCst),
            RingOp::NudgeTail(d) => {
                let w = region.word64(64);
                let v = w.load(Ordering::SeqCst).wrapping_add_signed(i64::from(*d));
                w.store(v, Ordering::SeqCst);
            }
            RingOp::SetSleeping(v) => region.word32(128).store(*v, Ordering::SeqCst),
            RingOp::SetWaiting(v) => region.word32(192).store(*v, Ordering::SeqCst),
            RingOp::Scribble(at, bytes) => {
                let data = &mut region.bytes_mut()[HEADER..];
                for (i, b) in bytes.iter().enumerate() {
                    let j = (*at as usize + i) % capacity;
                    data[j] = *b;
                }
            }
            RingOp::Pop(n) => {
                let head = region.word64(0).load(Ordering::SeqCst);
                let expect_ok = head >= tail_mine && head - tail_mine <= cap;
                // What the bytes must be (copied now: no one writes during the pop).
                let data = region.bytes_mut()[HEADER..].to_vec();
                let want = (*n as usize).min(out.len());
                match consumer.pop(&mut out[..want]) {
                    Ok(k) => {
                        assert!(expect_ok, "pop trusted a producer position out of range (head {head}, tail {tail_mine}, capacity {cap})");
                        assert_eq!(k as u64, (head - tail_mine).min(want as u64), "pop length");
                        for (i, b) in out[..k].iter().enumerate() {
                            let j = ((tail_mine + i as u64) % cap) as usize;
                            assert_eq!(*b, data[j], "pop returned the wrong byte");
                        }
                        tail_mine += k as u64;
                        if k > 0 {
                            assert_eq!(
                                region.word64(64).load(Ordering::SeqCst),
                                tail_mine,
                                "pop did not publish its position"
                            );
                        }
                    }
                    Err(_) => assert!(
                        !expect_ok,
                        "pop refused a ring in range (head {head}, tail {tail_mine})"
                    ),
                }
            }
            RingOp::Available => {
                let head = region.word64(0).load(Ordering::SeqCst);
                let expect_ok = head >= tail_mine && head - tail_mine <= cap;
                match consumer.available() {
                    Ok(k) => {
                        assert!(expect_ok, "available trusted a position out of range");
                        assert_eq!(k as u64, head - tail_mine);
                    }
                    Err(_) => assert!(!expect_ok, "available refused a ring in range"),
                }
            }
            RingOp::Sleep => {
                let head = region.word64(0).load(Ordering::SeqCst);
                let expect_ok = head >= tail_mine && head - tail_mine <= cap;
                match consumer.prepare_sleep() {
                    Ok(data_waiting) => {
                        assert!(expect_ok);
                        assert_eq!(data_waiting, head > tail_mine);
                        let flag = region.word32(128).load(Ordering::SeqCst);
                        assert_eq!(flag, u32::from(!data_waiting), "sleeping flag");
                    }
                    Err(_) => assert!(!expect_ok),
                }
                consumer.wake_up();
                assert_eq!(region.word32(128).load(Ordering::SeqCst), 0);
            }
            RingOp::Push(bytes) => {
                let shared = region.word64(64).load(Ordering::SeqCst);
                // Enough room as remembered: the shared position is not read at all.
                let rereads = cap - (head_mine - seen_tail) < bytes.len() as u64;
                let tail = if rereads { shared } else { seen_tail };
                let expect_ok = tail <= head_mine && head_mine - tail <= cap && tail >= seen_tail;
                let before = region.bytes_mut()[HEADER..].to_vec();
                match producer.push(bytes) {
                    Ok(k) => {
                        assert!(expect_ok, "push trusted a consumer position out of range (tail {tail}, head {head_mine})");
                        seen_tail = tail;
                        let room = cap - (head_mine - tail);
                        assert_eq!(k as u64, room.min(bytes.len() as u64), "push length");
                        let after = region.bytes_mut()[HEADER..].to_vec();
                        for j in 0..capacity {
                            // Bytes written are exactly [head, head + k).
                            let pos = (j as u64).wrapping_sub(head_mine % cap) % cap;
                            if pos < k as u64 {
                                assert_eq!(
                                    after[j], bytes[pos as usize],
                                    "push wrote the wrong byte"
                                );
                            } else {
                                assert_eq!(after[j], before[j], "push wrote outside its span");
                            }
                        }
                        head_mine += k as u64;
                        if k > 0 {
                            assert_eq!(region.word64(0).load(Ordering::SeqCst), head_mine);
                        }
                    }
                    Err(_) => assert!(!expect_ok, "push refused a ring in range"),
                }
            }
            RingOp::Free => {
                let tail = region.word64(64).load(Ordering::SeqCst);
                let expect_ok = tail <= head_mine && head_mine - tail <= cap && tail >= seen_tail;
                match producer.free() {
                    Ok(k) => {
                        assert!(expect_ok, "free trusted a position out of range");
                        assert_eq!(k as u64, cap - (head_mine - tail));
                    }
                    Err(_) => assert!(!expect_ok),
                }
            }
            RingOp::WaitForSpace => {
                let tail = region.word64(64).load(Ordering::SeqCst);
                let expect_ok = tail <= head_mine && head_mine - tail <= cap && tail >= seen_tail;
                match producer.prepare_wait_for_space() {
                    Ok(space) => {
                        assert!(expect_ok);
                        assert_eq!(space, head_mine - tail < cap);
                    }
                    Err(_) => assert!(!expect_ok),
                }
                producer.space_wait_over();
                assert_eq!(region.word32(192).load(Ordering::SeqCst), 0);
            }
            RingOp::ConsumerSleeping => {
                let flag = region.word32(128).load(Ordering::SeqCst);
                assert_eq!(producer.consumer_sleeping(), flag != 0);
                assert_eq!(
                    consumer.producer_waiting(),
                    region.word32(192).load(Ordering::SeqCst) != 0
                );
            }
        }
        assert!(region.guards_intact(), "the ring wrote outside its region");
    }
    assert!(region.guards_intact());
}
