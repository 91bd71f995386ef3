//! A framed, non-blocking stream connection with fixed-size buffers.
//!
//! Reading fills a buffer of `LEN_PREFIX + max_frame` bytes and hands out whole frame bodies;
//! writing appends encoded frames to a bounded buffer flushed when the socket is writable.
//! Both buffers are allocated once, when the connection is made: moving messages allocates
//! nothing.

use std::io::{ErrorKind, Read, Write};

use interstate_core::hub::LinkFull;
use interstate_core::wire::{split_frame, Frame, LEN_PREFIX};
use interstate_core::Error;

/// A framed connection over any non-blocking byte stream.
pub struct Conn<S> {
    /// The stream.
    pub stream: S,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    wbuf: Box<[u8]>,
    wstart: usize,
    wend: usize,
    /// The first frame start at or after `wstart` (frames before it are at least partly
    /// written), so unwritten whole frames can be recovered when the link dies.
    wnext: usize,
    max_frame: u32,
    /// Set when the peer has closed or a read failed: nothing more will come in.
    pub dead: bool,
    /// Set when a write failed (the peer closed, typically): nothing more goes out, but what
    /// the peer wrote before it went may still wait unread in the socket (its last
    /// acknowledgements, its goodbye), so the link is not finished until [`dead`](Self::dead).
    pub write_failed: bool,
    /// The last read filled the buffer: the socket may hold more.
    pub more: bool,
    /// The stream is registered for write readiness (only while a flush is blocked).
    pub want_write: bool,
}

impl<S: Read + Write> Conn<S> {
    /// Wraps a stream: frames up to `max_frame` bytes in, and `write_capacity` bytes of
    /// outgoing queue.
    pub fn new(stream: S, max_frame: u32, write_capacity: usize) -> Self {
        Conn {
            stream,
            rbuf: vec![0; LEN_PREFIX + max_frame as usize].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            wbuf: vec![0; write_capacity.max(LEN_PREFIX + max_frame as usize)].into_boxed_slice(),
            wstart: 0,
            wend: 0,
            wnext: 0,
            max_frame,
            dead: false,
            write_failed: false,
            more: true,
            want_write: false,
        }
    }

    /// The largest frame body read or written.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Lowers the largest frame (after the handshake agreed on a smaller one).
    pub fn set_max_frame(&mut self, max: u32) {
        self.max_frame = self.max_frame.min(max);
    }

    /// Reads what the socket has, into the read buffer. Sets [`dead`](Self::dead) when the
    /// peer has closed (or the read failed) and [`more`](Self::more) when the buffer filled up.
    pub fn fill(&mut self) {
        if self.rstart > 0 && self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rend == self.rbuf.len() && self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        loop {
            if self.rend == self.rbuf.len() {
                self.more = true;
                return;
            }
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    let asked = self.rbuf.len() - self.rend;
                    self.rend += n;
                    // A short read drained the socket: skip the read that would only say so
                    // (unless the peer hung up: the node sets `more` then, to read the EOF).
                    if n < asked && !self.more {
                        self.more = false;
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.more = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// The next complete frame body in the read buffer, without consuming it.
    pub fn peek_frame(&self) -> Result<Option<&[u8]>, Error> {
        Ok(split_frame(&self.rbuf[self.rstart..self.rend], self.max_frame)?.map(|(body, _)| body))
    }

    /// Consumes the frame [`peek_frame`](Self::peek_frame) returned.
    pub fn consume_frame(&mut self) {
        if let Ok(Some((_, used))) = split_frame(&self.rbuf[self.rstart..self.rend], self.max_frame)
        {
            self.rstart += used;
        }
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub fn has_partial(&self) -> bool {
        self.rend > self.rstart
    }

    /// Room for `need` bytes at the end of the write buffer, moving what waits to its start
    /// if that helps. For messages (`thrifty`), only when the move copies at most four bytes
    /// per byte it frees: behind a slow reader, moving a nearly full queue to gain the little
    /// just written at every message took a sixth of a sender's time. Control frames (acks,
    /// registrations, pings) always get the room there is.
    fn make_room(&mut self, need: usize, thrifty: bool) -> bool {
        if self.wbuf.len() - self.wend >= need {
            return true;
        }
        let waiting = self.wend - self.wstart;
        if thrifty && waiting > 4 * self.wstart {
            return false;
        }
        if self.wstart > 0 {
            self.wbuf.copy_within(self.wstart..self.wend, 0);
            self.wend -= self.wstart;
            self.wnext -= self.wstart;
            self.wstart = 0;
        }
        self.wbuf.len() - self.wend >= need
    }

    /// Queues a frame. `Err(LinkFull)` when the outgoing queue has no room for it (backpressure).
    pub fn queue(&mut self, frame: &Frame<'_>) -> Result<(), LinkFull> {
        let need = frame.encoded_len();
        if need > LEN_PREFIX + self.max_frame as usize || !self.make_room(need, false) {
            return Err(LinkFull);
        }
        let n = frame
            .encode(&mut self.wbuf[self.wend..])
            .map_err(|_| LinkFull)?;
        self.wend += n;
        Ok(())
    }

    /// Queues an encoded frame body (adds the length prefix).
    pub fn queue_body(&mut self, body: &[u8]) -> Result<(), LinkFull> {
        let need = LEN_PREFIX + body.len();
        if body.len() > self.max_frame as usize || !self.make_room(need, true) {
            return Err(LinkFull);
        }
        self.wbuf[self.wend..self.wend + LEN_PREFIX]
            .copy_from_slice(&(body.len() as u32).to_le_bytes());
        self.wbuf[self.wend + LEN_PREFIX..self.wend + need].copy_from_slice(body);
        self.wend += need;
        Ok(())
    }

    /// Whether a message of `bytes` (length prefix included) can be queued now with
    /// [`queue_body`](Self::queue_body).
    pub fn has_room(&self, bytes: usize) -> bool {
        let waiting = self.wend - self.wstart;
        self.wbuf.len() - self.wend >= bytes
            || waiting <= 4 * self.wstart && self.wbuf.len() - waiting >= bytes
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.wend - self.wstart
    }

    /// Writes what the socket takes. Returns whether everything queued was written.
    pub fn flush(&mut self) -> bool {
        while self.wstart < self.wend {
            if self.write_failed {
                return false;
            }
            match self.stream.write(&self.wbuf[self.wstart..self.wend]) {
                Ok(0) => {
                    self.write_failed = true;
                    return false;
                }
                Ok(n) => {
                    self.wstart += n;
                    while self.wnext < self.wstart {
                        let at = self.wnext;
                        let len = u32::from_le_bytes([
                            self.wbuf[at],
                            self.wbuf[at + 1],
                            self.wbuf[at + 2],
                            self.wbuf[at + 3],
                        ]);
                        self.wnext += LEN_PREFIX + len as usize;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.write_failed = true;
                    return false;
                }
            }
        }
        self.wstart = 0;
        self.wend = 0;
        self.wnext = 0;
        true
    }

    /// The frames queued but not yet written, as bodies (for reporting undelivered messages
    /// when the connection dies). Only whole frames after the write position are returned.
    pub fn unwritten_frames(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = self.wnext.min(self.wend);
        while let Ok(Some((body, used))) = split_frame(&self.wbuf[at..self.wend], u32::MAX) {
            out.push(body.to_vec());
            at += used;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn encoded(frame: &Frame<'_>) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = frame.encode(&mut buf).expect("encode");
        buf[..n].to_vec()
    }

    /// A peer that writes its last frames (the acknowledgements it owed, its goodbye) and
    /// exits with frames of ours unread makes our next write fail; what it wrote is still in
    /// the socket, and must be read before the connection counts as finished.
    #[test]
    fn a_failed_write_leaves_the_peers_last_frames_readable() {
        let (ours, mut peer) = UnixStream::pair().expect("a socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let mut conn = Conn::new(ours, 1024, 4096);
        // Something of ours the peer never reads.
        conn.queue(&Frame::Ping { nonce: 1 }).expect("room");
        assert!(conn.flush());
        let ack = Frame::Ack {
            from: "k1",
            to: "s0",
            seq: 7,
        };
        let bye = Frame::Goodbye {
            reason: "shutting down",
        };
        peer.write_all(&encoded(&ack)).expect("the peer writes");
        peer.write_all(&encoded(&bye)).expect("the peer writes");
        drop(peer);

        conn.queue(&Frame::Ping { nonce: 2 }).expect("room");
        assert!(!conn.flush(), "a write to a peer that is gone fails");
        assert!(conn.write_failed);
        assert!(
            !conn.dead,
            "a failed write says nothing about what is left to read"
        );

        conn.more = true;
        conn.fill();
        let first = conn
            .peek_frame()
            .expect("a frame")
            .expect("the ack")
            .to_vec();
        assert_eq!(Frame::decode(&first).expect("decodes"), ack);
        conn.consume_frame();
        let second = conn
            .peek_frame()
            .expect("a frame")
            .expect("the goodbye")
            .to_vec();
        assert_eq!(Frame::decode(&second).expect("decodes"), bye);
        conn.consume_frame();
        conn.fill();
        assert!(conn.dead, "read to its end, the connection is finished");
    }
}
