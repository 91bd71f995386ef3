//! A single-producer single-consumer byte ring in memory shared by two processes.
//!
//! Layout of one ring (all integers native-endian; both processes are on one machine):
//!
//! | offset | field            | written by |
//! |--------|------------------|------------|
//! | 0      | `head: u64`      | producer: bytes ever written |
//! | 8      | `producer_cpu: u32` | producer: 1 + the CPU it last waited on (0: not said) |
//! | 64     | `tail: u64`      | consumer: bytes ever read |
//! | 128    | `sleeping: u32`  | consumer: 1 while it may block waiting for data |
//! | 192    | `waiting: u32`   | producer: 1 while it may block waiting for space |
//! | 256    | data, `capacity` bytes (a power of two) | |
//!
//! Each field has its own cache line so the two sides do not false-share (`producer_cpu`
//! shares the producer's line: it is written only when it changes, and the consumer reads
//! that line anyway). Positions only grow; `head - tail` is the number of bytes in the ring.
//! The producer publishes bytes with a release store of `head`, the consumer frees them with
//! a release store of `tail`.
//!
//! **Few cache-line transfers per message.** The producer remembers the consumer's position
//! it last read and reads `tail` again only when that remembered value leaves too little
//! room: the space it computes is never more than there is (positions only grow), and in a
//! ping-pong the line holding `tail` no longer moves between the cores for every message.
//! A message then costs the consumer the line holding `head` and the data lines, and the
//! producer nothing it does not own.
//!
//! **Written in place, shown in batches.** The producer may copy bytes into the ring without
//! publishing them ([`Ring::stage`]): a connection encodes its frames straight into the
//! ring instead of into a queue of its own, and one store of `head` ([`Ring::publish`], or
//! the next [`Ring::push`]) shows them all, so a batch of messages still costs the consumer
//! one look. Until then they lie beyond `head`, where the consumer does not read.
//!
//! **A hint, not a protocol.** `producer_cpu` says where the producer last waited, so that a
//! consumer on the same CPU does not spin against it (the spin would only delay the data it
//! waits for). Any value is harmless: a wrong one costs a spin or a wake-up, never a message.
//!
//! **Wake-ups only when needed.** A consumer about to block sets `sleeping` (a swap) and then
//! looks at `head` again; a producer stores `head` (release) and then reads `sleeping` with a
//! read-modify-write. Read-modify-writes of one flag are totally ordered and each reads the
//! latest value: either the producer's comes later and sees the consumer asleep (and signals
//! it, through an eventfd outside this module), or the consumer's swap reads from it and so
//! sees everything the producer did before, the new `head` included. No wake-up is lost, and
//! none is sent to a consumer that is awake. Every write to a flag is a read-modify-write, so
//! that no plain store breaks that chain. The same handshake with `waiting` wakes a producer
//! blocked on a full ring.
//!
//! **Trust nothing.** The peer can write anything into the shared mapping at any time. Every
//! position read from it is checked (`tail <= head <= tail + capacity` as this side knows
//! them); a violation is [`Corrupt`], and the link is closed. Data bytes are copied out before
//! they are looked at, and a frame decoder validates them like any bytes from a socket: no
//! reference (`&[u8]`, let alone a UTF-8-checked `&str`) is ever made over the data area,
//! since the peer could change the bytes between a check and their use. The copy reads only
//! `[tail, head)`, which the protocol gives the consumer (a well-behaved producer does not
//! write there), so a misbehaving one can garble its own bytes and nothing more. That copy
//! is the receiver's only one for a machine (its step borrows the payload from the read
//! buffer): docs/performance.md, "Copies of a large message, counted".

#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes before the data: four cache lines.
pub const HEADER: usize = 256;

/// The peer broke the ring's invariants: the link cannot be trusted any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shared memory ring corrupted: {}", self.0)
    }
}

/// The control words of a ring, as they lie in memory.
#[repr(C, align(64))]
pub struct Header {
    head: AtomicU64,
    producer_cpu: AtomicU32,
    _pad0: [u8; 52],
    tail: AtomicU64,
    _pad1: [u8; 56],
    sleeping: AtomicU32,
    _pad2: [u8; 60],
    waiting: AtomicU32,
    _pad3: [u8; 60],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Header>() == HEADER);

impl Header {
    /// A header for a heap-backed ring (the model tests); real rings live in shared memory.
    pub fn new() -> Header {
        Header {
            head: AtomicU64::new(0),
            producer_cpu: AtomicU32::new(0),
            _pad0: [0; 52],
            tail: AtomicU64::new(0),
            _pad1: [0; 56],
            sleeping: AtomicU32::new(0),
            _pad2: [0; 60],
            waiting: AtomicU32::new(0),
            _pad3: [0; 60],
        }
    }
}

impl Default for Header {
    fn default() -> Self {
        Self::new()
    }
}

/// One side's view of a ring: the header and the data area, plus the position this side
/// owns (so it never has to trust the shared copy of its own counter).
pub struct Ring {
    header: *const Header,
    data: *mut u8,
    capacity: usize,
    /// The producer's `head` (staged bytes included) or the consumer's `tail`, as this side
    /// last wrote it.
    mine: u64,
    /// Producer: the `head` last stored in the shared header (`mine` less what is staged).
    published: u64,
    /// Producer: the consumer's `tail` as last read (and checked); never more than the real
    /// one, so the room it leaves is never overstated.
    seen_tail: u64,
}

// SAFETY: a `Ring` is one side of a single-producer single-consumer channel; the pointers it
// holds are only dereferenced through `&mut self` methods, so moving it to another thread is
// no different from using it on this one.
unsafe impl Send for Ring {}

impl Ring {
    /// Views the ring at `base`.
    ///
    /// # Safety
    /// `base` must point to `HEADER + capacity` bytes that stay mapped, readable and writable
    /// for the life of the `Ring`, aligned to 64 bytes; `capacity` must be a power of two.
    /// Exactly one `Ring` per process may act as the producer and one as the consumer.
    pub unsafe fn new(base: *mut u8, capacity: usize) -> Ring {
        debug_assert!(capacity.is_power_of_two());
        debug_assert_eq!(base as usize % 64, 0);
        Ring {
            header: base as *const Header,
            // SAFETY: the caller guarantees `HEADER + capacity` bytes at `base`.
            data: unsafe { base.add(HEADER) },
            capacity,
            mine: 0,
            published: 0,
            seen_tail: 0,
        }
    }

    /// Views a ring whose header and data live apart (heap-backed rings in model tests).
    ///
    /// # Safety
    /// As for [`Ring::new`]: `header` and `capacity` bytes at `data` stay valid for the life
    /// of the `Ring`, `capacity` is a power of two, one producer and one consumer.
    pub unsafe fn from_parts(header: *const Header, data: *mut u8, capacity: usize) -> Ring {
        Ring {
            header,
            data,
            capacity,
            mine: 0,
            published: 0,
            seen_tail: 0,
        }
    }

    /// Sets up a fresh ring: zero positions and flags. Only the side creating the memory does
    /// this, before handing it to the peer.
    pub fn init(&mut self) {
        let h = self.header();
        h.head.store(0, Ordering::SeqCst);
        h.tail.store(0, Ordering::SeqCst);
        h.sleeping.store(0, Ordering::SeqCst);
        h.waiting.store(0, Ordering::SeqCst);
        h.producer_cpu.store(0, Ordering::SeqCst);
        self.mine = 0;
        self.published = 0;
        self.seen_tail = 0;
    }

    fn header(&self) -> &Header {
        // SAFETY: `new`'s contract keeps the header mapped and aligned for our lifetime; its
        // fields are atomics, so shared access from both processes is sound.
        unsafe { &*self.header }
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Producer: room for at least `need` bytes, as the remembered consumer position says
    /// or else the shared one (read only then: see the module docs). Returns the room.
    fn room_for(&mut self, need: usize) -> Result<usize, Corrupt> {
        let mut room = self.capacity - (self.mine - self.seen_tail) as usize;
        if room < need {
            self.seen_tail = self.read_tail()?;
            room = self.capacity - (self.mine - self.seen_tail) as usize;
        }
        Ok(room)
    }

    /// Producer: copies `bytes` to the ring at `mine` (unpublished); the caller checked the
    /// room.
    fn copy_in(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        debug_assert!(n <= self.capacity - (self.mine - self.seen_tail) as usize);
        let at = (self.mine as usize) & (self.capacity - 1);
        let first = n.min(self.capacity - at);
        // SAFETY: `at + first <= capacity` and `n - first <= capacity - first`, so both copies
        // stay inside the data area; `n` is within the room the consumer's position leaves,
        // so no unread byte is overwritten, and the consumer does not read [mine, mine + n)
        // until a release store of `head` publishes it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), self.data, n - first);
        }
        self.mine += n as u64;
    }

    /// Producer: copies as much of `bytes` as fits and publishes it (with anything staged
    /// before); returns how many. Never blocks.
    pub fn push(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let room = self.room_for(bytes.len())?;
        let n = bytes.len().min(room);
        if n == 0 {
            return Ok(0);
        }
        self.copy_in(&bytes[..n]);
        self.publish();
        Ok(n)
    }

    /// Producer: copies all of `parts`, one after another, without publishing them (see
    /// the module docs), or nothing when they do not fit. Returns whether they were copied.
    pub fn stage(&mut self, parts: &[&[u8]]) -> Result<bool, Corrupt> {
        let need: usize = parts.iter().map(|p| p.len()).sum();
        if self.room_for(need)? < need {
            return Ok(false);
        }
        for p in parts {
            self.copy_in(p);
        }
        Ok(true)
    }

    /// Producer: shows the consumer everything staged. Returns whether there was anything.
    pub fn publish(&mut self) -> bool {
        if self.published == self.mine {
            return false;
        }
        self.published = self.mine;
        self.header().head.store(self.mine, Ordering::Release);
        true
    }

    /// Consumer: copies out up to `buf.len()` bytes; returns how many (0: empty). Never blocks.
    pub fn pop(&mut self, buf: &mut [u8]) -> Result<usize, Corrupt> {
        let tail = self.mine;
        let head = self.header().head.load(Ordering::Acquire);
        if head < tail {
            return Err(Corrupt("the producer's position went backwards"));
        }
        let avail = head - tail;
        if avail > self.capacity as u64 {
            return Err(Corrupt("more bytes announced than the ring holds"));
        }
        let n = buf.len().min(avail as usize);
        if n == 0 {
            return Ok(0);
        }
        let at = (tail as usize) & (self.capacity - 1);
        let first = n.min(self.capacity - at);
        // SAFETY: both copies stay inside the data area (as in `push`); the bytes in
        // [tail, head) were published by the producer's store of `head` that our load saw.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(at), buf.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.data, buf.as_mut_ptr().add(first), n - first);
        }
        self.mine = tail + n as u64;
        self.header().tail.store(self.mine, Ordering::Release);
        Ok(n)
    }

    /// Consumer: a watch on the producer's position, for a spinning loop that looks at it
    /// many times in a row without reading (see [`InputWatch`]).
    pub fn input_watch(&self) -> InputWatch<'_> {
        InputWatch {
            head: &self.header().head,
            tail: self.mine,
        }
    }

    /// Consumer: bytes waiting, as the producer's position says (checked).
    pub fn available(&self) -> Result<usize, Corrupt> {
        let head = self.header().head.load(Ordering::Acquire);
        if head < self.mine || head - self.mine > self.capacity as u64 {
            return Err(Corrupt("the producer's position is out of range"));
        }
        Ok((head - self.mine) as usize)
    }

    /// Producer: the consumer's position, checked against what this side knows.
    fn read_tail(&self) -> Result<u64, Corrupt> {
        let tail = self.header().tail.load(Ordering::Acquire);
        // (Staged bytes are not the consumer's to read: its position stops at `published`.)
        if tail > self.published {
            return Err(Corrupt(
                "the consumer's position is ahead of the producer's",
            ));
        }
        if self.mine - tail > self.capacity as u64 || tail < self.seen_tail {
            return Err(Corrupt("the consumer's position is out of range"));
        }
        Ok(tail)
    }

    /// Producer: free space, as the consumer's position says (checked).
    pub fn free(&self) -> Result<usize, Corrupt> {
        Ok(self.capacity - (self.mine - self.read_tail()?) as usize)
    }

    /// Producer: says which CPU this side waits on (`None`: unknown), for the consumer's
    /// choice between spinning and parking. Written only when it changes.
    pub fn publish_cpu(&self, cpu: Option<u32>) {
        let v = cpu.map_or(0, |c| c.saturating_add(1));
        let h = self.header();
        if h.producer_cpu.load(Ordering::Relaxed) != v {
            h.producer_cpu.store(v, Ordering::Relaxed);
        }
    }

    /// Consumer: the CPU the producer last said it waits on (a hint: see the module docs).
    pub fn producer_cpu(&self) -> Option<u32> {
        self.header()
            .producer_cpu
            .load(Ordering::Relaxed)
            .checked_sub(1)
    }

    /// Consumer: about to block. Returns true when data arrived meanwhile (do not block).
    /// After a false return the producer will see `sleeping` and signal.
    pub fn prepare_sleep(&self) -> Result<bool, Corrupt> {
        self.header().sleeping.swap(1, Ordering::AcqRel);
        if self.available()? > 0 {
            self.header().sleeping.swap(0, Ordering::AcqRel);
            return Ok(true);
        }
        Ok(false)
    }

    /// Consumer: awake again.
    pub fn wake_up(&self) {
        // A swap, not a store: a plain store here could come between the producer's
        // read-modify-write and our next swap and break the chain that makes the producer's
        // `head` visible to us (found by the loom model test).
        self.header().sleeping.swap(0, Ordering::AcqRel);
    }

    /// Producer: whether the consumer may be blocked and needs a signal after new bytes.
    pub fn consumer_sleeping(&self) -> bool {
        // A read-modify-write, not a load: it reads the latest value, and pairs with the
        // consumer's swap in `prepare_sleep` (see the module docs).
        self.header().sleeping.fetch_add(0, Ordering::AcqRel) != 0
    }

    /// Producer: blocked on a full ring. Returns true when space appeared meanwhile.
    pub fn prepare_wait_for_space(&self) -> Result<bool, Corrupt> {
        self.header().waiting.swap(1, Ordering::AcqRel);
        if self.free()? > 0 {
            self.header().waiting.swap(0, Ordering::AcqRel);
            return Ok(true);
        }
        Ok(false)
    }

    /// Producer: no longer waiting for space.
    pub fn space_wait_over(&self) {
        // A swap for the same reason as `wake_up`.
        self.header().waiting.swap(0, Ordering::AcqRel);
    }

    /// Consumer: whether the producer may be blocked on a full ring and needs a signal after
    /// bytes were taken out.
    pub fn producer_waiting(&self) -> bool {
        // A read-modify-write, pairing with the producer's swap (as `consumer_sleeping`).
        self.header().waiting.fetch_add(0, Ordering::AcqRel) != 0
    }
}

/// The consumer's look at a ring while it spins: one load of the producer's position and a
/// comparison, with no call through the link's trait object. Valid while nothing is read
/// from the ring (it holds the consumer's position of the moment it was made).
pub struct InputWatch<'a> {
    head: &'a AtomicU64,
    tail: u64,
}

impl InputWatch<'_> {
    /// Whether the producer's position moved away from the consumer's: input, or a position
    /// out of range, which reading reports as [`Corrupt`] (as [`Ring::available`] would).
    #[inline]
    pub fn ready(&self) -> bool {
        self.head.load(Ordering::Acquire) != self.tail
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A heap-backed ring region, aligned like a mapping.
    struct Region {
        words: Vec<u64>,
    }

    impl Region {
        fn new(capacity: usize) -> Region {
            Region {
                words: vec![0; (HEADER + capacity) / 8 + 8],
            }
        }
        fn base(&mut self) -> *mut u8 {
            let p = self.words.as_mut_ptr() as *mut u8;
            // Align to 64 within the allocation.
            let off = (64 - (p as usize % 64)) % 64;
            // SAFETY: the allocation has 64 spare bytes for this.
            unsafe { p.add(off) }
        }
    }

    fn pair(region: &mut Region, capacity: usize) -> (Ring, Ring) {
        let base = region.base();
        // SAFETY: the region outlives both rings in each test and holds HEADER + capacity
        // aligned bytes.
        let (mut p, c) = unsafe { (Ring::new(base, capacity), Ring::new(base, capacity)) };
        p.init();
        (p, c)
    }

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        let mut out = Vec::new();
        let mut buf = [0u8; 23];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut sent = 0;
        while out.len() < data.len() {
            sent += p.push(&data[sent..(sent + 37).min(data.len())]).unwrap();
            let n = c.pop(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
    }

    #[test]
    fn a_full_ring_takes_nothing_and_an_empty_one_gives_nothing() {
        let mut region = Region::new(16);
        let (mut p, mut c) = pair(&mut region, 16);
        assert_eq!(p.push(&[1; 20]).unwrap(), 16);
        assert_eq!(p.push(&[1]).unwrap(), 0);
        assert_eq!(p.free().unwrap(), 0);
        let mut buf = [0u8; 32];
        assert_eq!(c.pop(&mut buf).unwrap(), 16);
        assert_eq!(c.pop(&mut buf).unwrap(), 0);
    }

    #[test]
    fn garbage_positions_are_detected_not_trusted() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        p.push(&[7; 10]).unwrap();
        // A hostile peer writes nonsense into the header.
        let words = region.words.as_mut_ptr() as usize;
        let base = region.base() as usize;
        let _ = words;
        // SAFETY: `base` points at the ring header inside `region`.
        unsafe { (*(base as *const AtomicU64)).store(1 << 40, Ordering::SeqCst) };
        let mut buf = [0u8; 8];
        assert!(c.pop(&mut buf).is_err());
        assert!(c.available().is_err());
        // SAFETY: as above; `tail` lives 64 bytes in.
        unsafe { (*((base + 64) as *const AtomicU64)).store(u64::MAX, Ordering::SeqCst) };
        // (A push within the room the producer remembers does not read the position: see
        // the next test.)
        assert!(p.push(&[1; 64]).is_err());
        assert!(p.free().is_err());
    }

    #[test]
    fn an_input_watch_sees_published_bytes_only_and_garbage_as_input() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        assert!(!c.input_watch().ready());
        // Staged bytes are not shown yet.
        assert!(p.stage(&[&[1; 5]]).unwrap());
        let watch = c.input_watch();
        assert!(!watch.ready());
        p.publish();
        assert!(watch.ready());
        let mut buf = [0u8; 8];
        assert_eq!(c.pop(&mut buf).unwrap(), 5);
        assert!(!c.input_watch().ready());
        // A position out of range counts as input: the read that follows reports it.
        let base = region.base() as usize;
        // SAFETY: `base` points at the ring header inside `region`.
        unsafe { (*(base as *const AtomicU64)).store(1, Ordering::SeqCst) };
        assert!(c.input_watch().ready());
        assert!(c.pop(&mut buf).is_err());
    }

    #[test]
    fn the_producer_reads_the_consumers_position_only_when_it_needs_room() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        assert_eq!(p.push(&[1; 40]).unwrap(), 40);
        let mut buf = [0u8; 40];
        assert_eq!(c.pop(&mut buf).unwrap(), 40);
        // A hostile consumer position: not read while the remembered one leaves room (24
        // bytes), read and refused as soon as more is needed.
        let base = region.base() as usize;
        // SAFETY: `tail` lives 64 bytes into the header inside `region`.
        unsafe { (*((base + 64) as *const AtomicU64)).store(u64::MAX, Ordering::SeqCst) };
        assert_eq!(p.push(&[2; 20]).unwrap(), 20);
        assert!(p.push(&[3; 10]).is_err());
    }

    #[test]
    fn a_consumer_position_going_backwards_is_corruption() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        p.push(&[1; 64]).unwrap();
        let mut buf = [0u8; 32];
        c.pop(&mut buf).unwrap();
        assert_eq!(
            p.push(&[1; 40]).unwrap(),
            32,
            "reads the position: 32 bytes free"
        );
        let base = region.base() as usize;
        // SAFETY: `tail` lives 64 bytes into the header inside `region`.
        unsafe { (*((base + 64) as *const AtomicU64)).store(16, Ordering::SeqCst) };
        assert!(
            p.free().is_err(),
            "the consumer cannot take back what it freed"
        );
    }

    #[test]
    fn staged_bytes_are_shown_by_the_next_publish_or_push_and_take_room_until_read() {
        let mut region = Region::new(64);
        let (mut p, mut c) = pair(&mut region, 64);
        let mut buf = [0u8; 64];
        assert!(p.stage(&[&[1; 10], &[2; 20]]).unwrap());
        assert_eq!(c.available().unwrap(), 0, "staged: not shown yet");
        assert_eq!(c.pop(&mut buf).unwrap(), 0);
        assert!(p.publish());
        assert!(!p.publish(), "nothing more to show");
        assert_eq!(c.pop(&mut buf).unwrap(), 30);
        assert_eq!(&buf[..30], &[[1; 10].as_slice(), &[2; 20]].concat()[..]);
        // Staged bytes take room: all or nothing, across the wrap.
        assert!(p.stage(&[&[3; 40]]).unwrap());
        assert!(!p.stage(&[&[4; 10], &[4; 20]]).unwrap(), "24 bytes left");
        assert!(p.stage(&[&[5; 24]]).unwrap());
        assert_eq!(p.push(&[6; 1]).unwrap(), 0, "full");
        assert!(p.publish());
        assert_eq!(c.available().unwrap(), 64);
        assert_eq!(c.pop(&mut buf).unwrap(), 64);
        assert_eq!(&buf[..64], &[[3; 40].as_slice(), &[5; 24]].concat()[..]);
        // A push shows what was staged before it, in order.
        assert!(p.stage(&[&[7; 3]]).unwrap());
        assert_eq!(p.push(&[8; 2]).unwrap(), 2);
        assert_eq!(c.pop(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], &[7, 7, 7, 8, 8]);
    }

    #[test]
    fn a_consumer_position_beyond_what_was_shown_is_corruption() {
        let mut region = Region::new(64);
        let (mut p, _c) = pair(&mut region, 64);
        assert!(p.stage(&[&[1; 8]]).unwrap());
        let base = region.base() as usize;
        // SAFETY: `tail` lives 64 bytes into the header inside `region`.
        unsafe { (*((base + 64) as *const AtomicU64)).store(4, Ordering::SeqCst) };
        assert!(
            p.free().is_err(),
            "the consumer cannot have read bytes never shown"
        );
    }

    #[test]
    fn the_producers_cpu_is_a_hint_in_its_own_line() {
        let mut region = Region::new(64);
        let (p, c) = pair(&mut region, 64);
        assert_eq!(c.producer_cpu(), None, "not said yet");
        p.publish_cpu(Some(0));
        assert_eq!(c.producer_cpu(), Some(0));
        p.publish_cpu(Some(3));
        assert_eq!(c.producer_cpu(), Some(3));
        p.publish_cpu(None);
        assert_eq!(c.producer_cpu(), None);
    }

    #[test]
    fn a_sleeping_consumer_is_seen_by_the_producer() {
        let mut region = Region::new(64);
        let (mut p, c) = pair(&mut region, 64);
        assert!(!c.prepare_sleep().unwrap());
        p.push(b"x").unwrap();
        assert!(p.consumer_sleeping(), "the producer must signal");
        c.wake_up();
        assert!(c.prepare_sleep().unwrap(), "data is there: do not block");
    }
}
