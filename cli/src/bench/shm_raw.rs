//! The raw shared-memory baseline: a memfd mapped by this process and a peer
//! (`interstate bench-peer shm`), a busy-spin ping-pong through it and a stream through the
//! transport's own [`Ring`]; the peer's side is here too.
//!
//! All of the benchmark's `unsafe` is in this file: mapping the region, reaching into it, and
//! taking over the inherited descriptor. Each block says why it is sound.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate_platform::transport::ring::{Ring, HEADER};

use super::{ChildGuard, Peers, Session};

/// Layout of the raw shared-memory region:
/// - `0`: the doorbell line, written by the sender: `seq` (u64), `op` (u64), `arg` (u64);
/// - `64`: the answer line, written by the peer: the last `seq` it finished;
/// - `256`: the ping payload, then the pong payload, `MAX_PAYLOAD` rounded up each;
/// - then a [`Ring`] (header and data), sender to peer.
const DOORBELL: usize = 0;
const ANSWER: usize = 64;
const PING_AT: usize = 256;
const AREA: usize = 64 * 1024;
const PONG_AT: usize = PING_AT + AREA;
const RING_AT: usize = PONG_AT + AREA;
/// The raw ring's capacity: the shared-memory transport's default ring.
const RAW_RING: usize = interstate_platform::transport::shm::DEFAULT_RING;
const OP_PING: u64 = 1;
const OP_STREAM: u64 = 2;
const OP_QUIT: u64 = 3;

fn region_len() -> usize {
    RING_AT + HEADER + RAW_RING
}

/// A shared mapping of a memfd.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn map(fd: &OwnedFd, len: usize) -> Result<Region, String> {
        // SAFETY: a fresh shared mapping of a memfd the caller sized to at least `len` bytes;
        // nothing else in this process aliases it, and it is unmapped only on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| format!("mapping shared memory: {e}"))?;
        Ok(Region {
            ptr: ptr as *mut u8,
            len,
        })
    }
    fn word(&self, at: usize) -> &AtomicU64 {
        assert!(at + 8 <= self.len && at % 8 == 0);
        // SAFETY: in bounds and aligned (the mapping is page-aligned); the memory is shared
        // with the peer, which is why it is only ever accessed through atomics here.
        unsafe { &*(self.ptr.add(at) as *const AtomicU64) }
    }
    fn area(&self, at: usize) -> *mut u8 {
        assert!(at + AREA <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.ptr.add(at) }
    }
    fn ring(&self) -> Ring {
        assert!(RING_AT + HEADER + RAW_RING <= self.len);
        // SAFETY: the ring's bytes lie inside the mapping, 64-aligned, and stay mapped as
        // long as the session owning both; one producer (the sender) and one consumer (the
        // peer) per process.
        unsafe { Ring::new(self.ptr.add(RING_AT), RAW_RING) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr as *mut _, self.len) };
    }
}

/// Busy-spins until `done()`; gives up after 30 s or when `alive()` says the other side is
/// gone (checked every 64K turns, so the check costs nothing measurable).
fn spin_until(
    what: &str,
    mut done: impl FnMut() -> bool,
    alive: impl Fn() -> bool,
) -> Result<(), String> {
    let mut turns = 0u32;
    let mut start = None;
    loop {
        if done() {
            return Ok(());
        }
        std::hint::spin_loop();
        turns = turns.wrapping_add(1);
        if turns % (1 << 16) == 0 {
            let s = *start.get_or_insert_with(StdInstant::now);
            if s.elapsed() > StdDuration::from_secs(30) || !alive() {
                return Err(format!("shared-memory baseline: no {what} within 30 s"));
            }
        }
    }
}

/// The raw shared-memory path: a spin ping-pong through the region, and the ring.
pub struct ShmRawSession {
    region: Region,
    ring: Ring,
    seq: u64,
    payload: usize,
    msg: Vec<u8>,
    back: Vec<u8>,
    batch: Vec<u8>,
    _peer: ChildGuard,
}

impl ShmRawSession {
    /// Creates the region, starts `exe bench-peer shm FD PAYLOAD` on it.
    pub fn start(peers: &Peers, payload: usize) -> Result<ShmRawSession, String> {
        if payload > AREA {
            return Err(format!("payloads up to {AREA} bytes"));
        }
        // Not close-on-exec: the peer inherits it (and this process closes its copy as soon
        // as the peer is started, so that no other child does).
        let fd = rustix::fs::memfd_create("interstate-bench", rustix::fs::MemfdFlags::empty())
            .map_err(|e| format!("memfd_create: {e}"))?;
        rustix::fs::ftruncate(&fd, region_len() as u64)
            .map_err(|e| format!("sizing shared memory: {e}"))?;
        let region = Region::map(&fd, region_len())?;
        let mut ring = region.ring();
        ring.init();
        let peer = peers.spawn(
            &[
                "bench-peer",
                "shm",
                &fd.as_fd().as_raw_fd().to_string(),
                &payload.to_string(),
            ],
            &[],
        )?;
        drop(fd);
        Ok(ShmRawSession {
            region,
            ring,
            seq: 0,
            payload,
            msg: vec![7u8; payload],
            back: vec![0u8; payload],
            batch: Vec::with_capacity(256 * (4 + payload)),
            _peer: peer,
        })
    }

    fn ring_bell(&mut self, op: u64, arg: u64) -> u64 {
        self.seq += 1;
        let r = &self.region;
        r.word(DOORBELL + 8).store(op, Ordering::Relaxed);
        r.word(DOORBELL + 16).store(arg, Ordering::Relaxed);
        r.word(DOORBELL).store(self.seq, Ordering::Release);
        self.seq
    }

    fn wait_answer(&self, seq: u64) -> Result<(), String> {
        let w = self.region.word(ANSWER);
        spin_until("answer", || w.load(Ordering::Acquire) == seq, || true)
    }
}

impl Drop for ShmRawSession {
    fn drop(&mut self) {
        self.ring_bell(OP_QUIT, 0);
    }
}

impl Session for ShmRawSession {
    fn round_trip(&mut self) -> Result<(), String> {
        // SAFETY: the ping area is `AREA >= payload` bytes inside the mapping; the peer reads
        // it only after the doorbell's release store below, and does not write it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.msg.as_ptr(),
                self.region.area(PING_AT),
                self.payload,
            )
        };
        let seq = self.ring_bell(OP_PING, 0);
        self.wait_answer(seq)?;
        // SAFETY: the peer wrote the pong area before its release store of the answer that
        // our acquire load saw; it does not touch it again until the next ping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.region.area(PONG_AT),
                self.back.as_mut_ptr(),
                self.payload,
            )
        };
        Ok(())
    }

    /// Length-prefixed messages through the ring, 256 per push (as many pushes as it takes),
    /// busy-spinning while it is full; the peer answers once it popped them all.
    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let t = StdInstant::now();
        let seq = self.ring_bell(OP_STREAM, (n * (4 + self.payload)) as u64);
        let mut sent = 0;
        while sent < n {
            self.batch.clear();
            for _ in 0..256.min(n - sent) {
                self.batch
                    .extend_from_slice(&(self.payload as u32).to_le_bytes());
                self.batch.extend_from_slice(&self.msg);
                sent += 1;
            }
            let mut off = 0;
            let ring = &mut self.ring;
            let batch = &self.batch;
            spin_until(
                "room in the ring",
                || {
                    off += ring.push(&batch[off..]).unwrap_or(0);
                    off == batch.len()
                },
                || true,
            )?;
        }
        self.wait_answer(seq)?;
        Ok(t.elapsed())
    }
}

pub(super) fn shm_peer(fd: &str, payload: usize) -> Result<(), String> {
    let raw: i32 = fd.parse().map_err(|_| "bad descriptor")?;
    // SAFETY: the descriptor was inherited from the parent for exactly this; nothing else in
    // this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?.st_size as usize;
    if size < region_len() || payload > AREA {
        return Err("the shared region is too small".into());
    }
    let region = Region::map(&fd, region_len())?;
    let mut ring = region.ring();
    let parent = std::os::unix::process::parent_id();
    let alive = || std::os::unix::process::parent_id() == parent;
    let mut buf = vec![0u8; 1 << 16];
    let mut last = 0u64;
    let bell = region.word(DOORBELL);
    loop {
        spin_until("request", || bell.load(Ordering::Acquire) != last, alive).or_else(|e| {
            if alive() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let seq = bell.load(Ordering::Acquire);
        if seq == last {
            continue;
        }
        last = seq;
        match region.word(DOORBELL + 8).load(Ordering::Relaxed) {
            OP_PING => {
                // SAFETY: both areas are `AREA >= payload` bytes inside the mapping; the
                // sender wrote the ping before the doorbell's release store we acquired, and
                // reads the pong only after our answer.
                unsafe {
                    std::ptr::copy_nonoverlapping(region.area(PING_AT), buf.as_mut_ptr(), payload);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), region.area(PONG_AT), payload);
                }
            }
            OP_STREAM => {
                let total = region.word(DOORBELL + 16).load(Ordering::Relaxed) as usize;
                let mut got = 0;
                spin_until(
                    "stream",
                    || {
                        got += ring.pop(&mut buf).unwrap_or(0);
                        got >= total
                    },
                    alive,
                )?;
            }
            _ => return Ok(()),
        }
        region.word(ANSWER).store(seq, Ordering::Release);
    }
}
