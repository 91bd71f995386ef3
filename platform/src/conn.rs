//! A framed, non-blocking stream connection with fixed-size buffers.
//!
//! Reading fills a buffer of `LEN_PREFIX + max_frame` bytes and hands out whole frame bodies;
//! writing appends encoded frames to a bounded buffer flushed when the socket is writable.
//! Both buffers are allocated once, when the connection is made: moving messages allocates
//! nothing.
//!
//! **Few copies.** A frame is decoded where it was read: [`Conn::lend_frame`] lends the read
//! buffer out (a pointer swap) so that the caller can decode the frame in it while it queues
//! on this or any other connection, instead of copying the body out first. A stream that
//! can take bytes where its peer reads them without showing them yet ([`Staging`]: shared
//! memory, straight into the ring) gets a frame there when nothing waits in the write buffer
//! before it, instead of in the write buffer and then again in the ring; [`Conn::flush`]
//! makes the staged frames visible, so writes are batched as before.

use std::io::{self, ErrorKind, Read, Write};
use std::ops::Range;

use interstate_core::hub::LinkFull;
use interstate_core::wire::{split_frame, Frame, LEN_PREFIX};
use interstate_core::Error;

/// A stream that may take frames where its peer reads them, visible only once published
/// (see the module docs). Sockets and pipes take none: their frames wait in the write
/// buffer, so that one system call writes many.
pub trait Staging {
    /// Writes `parts`, one after another, where the peer will read them, all or nothing,
    /// without showing them to the peer yet. Returns false when the stream has no room for
    /// all of them (or stages nothing at all).
    fn stage(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
        let _ = parts;
        Ok(false)
    }
    /// Shows the peer everything staged (and wakes it if it sleeps).
    fn publish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staging for std::os::unix::net::UnixStream {}
impl Staging for mio::net::UnixStream {}

impl Staging for Box<dyn crate::transport::LinkIo> {
    fn stage(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
        (**self).stage(parts)
    }
    fn publish(&mut self) -> io::Result<()> {
        (**self).publish()
    }
}

/// The read buffer of a [`Conn`], lent out with the next complete frame in it (see
/// [`Conn::lend_frame`]); give it back with [`Conn::give_back`].
pub struct LentFrame {
    buf: Box<[u8]>,
    body: Range<usize>,
    /// Where the frame ends (its length prefix included), in the read buffer.
    end: usize,
}

impl LentFrame {
    /// The frame body.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }
}

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
    /// Bytes of whole frames staged in the stream (see [`Staging`]) and not yet published:
    /// they come before everything in the write buffer.
    staged: usize,
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

impl<S: Read + Write + Staging> Conn<S> {
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
            staged: 0,
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
        if self.rbuf.is_empty() {
            // Lent out (see `lend_frame`): read when it is back.
            return;
        }
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
        // (Nothing while the buffer is lent out.)
        let Some(buffered) = self.rbuf.get(self.rstart..self.rend) else {
            return Ok(None);
        };
        Ok(split_frame(buffered, self.max_frame)?.map(|(body, _)| body))
    }

    /// Lends the read buffer out with the next complete frame body in it, so that the frame
    /// can be decoded in place while this connection (or any other) is written to. Until it
    /// is given back ([`give_back`](Self::give_back)), this connection reads nothing and
    /// shows no frame. `Ok(None)`: no complete frame is buffered (nothing is lent).
    pub fn lend_frame(&mut self) -> Result<Option<LentFrame>, Error> {
        let Some(buffered) = self.rbuf.get(self.rstart..self.rend) else {
            return Ok(None);
        };
        let Some((body, used)) = split_frame(buffered, self.max_frame)? else {
            return Ok(None);
        };
        let start = self.rstart + LEN_PREFIX;
        let body = start..start + body.len();
        let end = self.rstart + used;
        Ok(Some(LentFrame {
            buf: std::mem::take(&mut self.rbuf),
            body,
            end,
        }))
    }

    /// Takes the read buffer back; `consumed`: the lent frame was handled (else it is shown
    /// again, as when it is left unhandled for backpressure).
    pub fn give_back(&mut self, lent: LentFrame, consumed: bool) {
        self.rbuf = lent.buf;
        if consumed {
            self.rstart = lent.end;
        }
    }

    /// Consumes the frame [`peek_frame`](Self::peek_frame) returned.
    pub fn consume_frame(&mut self) {
        if let Ok(Some((_, used))) = self
            .peek_frame()
            .map(|f| f.map(|b| ((), LEN_PREFIX + b.len())))
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
        // Nothing waits in the write buffer: the frame may go straight where the peer reads
        // it (a copy of a small control frame, not of a message).
        if self.wend == self.wstart
            && matches!(
                self.stream.stage(&[&self.wbuf[self.wend..self.wend + n]]),
                Ok(true)
            )
        {
            self.staged += n;
            return Ok(());
        }
        self.wend += n;
        Ok(())
    }

    /// Queues an encoded frame body (adds the length prefix).
    pub fn queue_body(&mut self, body: &[u8]) -> Result<(), LinkFull> {
        let need = LEN_PREFIX + body.len();
        if body.len() > self.max_frame as usize {
            return Err(LinkFull);
        }
        // Nothing waits in the write buffer: straight where the peer reads it, one copy
        // instead of two (a failure to stage leaves it to the write buffer, whose write
        // reports a broken stream).
        if self.wend == self.wstart {
            let prefix = (body.len() as u32).to_le_bytes();
            if let Ok(true) = self.stream.stage(&[&prefix, body]) {
                self.staged += need;
                return Ok(());
            }
        }
        if !self.make_room(need, true) {
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

    /// The outgoing queue's size in bytes.
    pub fn capacity(&self) -> usize {
        self.wbuf.len()
    }

    /// Bytes waiting to be written (or staged, and waiting to be shown to the peer).
    pub fn pending(&self) -> usize {
        self.wend - self.wstart + self.staged
    }

    /// Writes what the socket takes. Returns whether everything queued was written.
    pub fn flush(&mut self) -> bool {
        if self.staged > 0 {
            // Staged frames come before the write buffer's.
            self.staged = 0;
            if self.stream.publish().is_err() {
                self.write_failed = true;
                return false;
            }
        }
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

    /// A stream that stages: what the peer sees (`shown`), what waits to be shown
    /// (`staged`), and room for `room` staged bytes.
    #[derive(Default)]
    struct Staged {
        shown: Vec<u8>,
        staged: Vec<u8>,
        room: usize,
        writes: usize,
    }

    impl Read for Staged {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(ErrorKind::WouldBlock.into())
        }
    }

    impl Write for Staged {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            // A write shows what is staged first (as the ring's push does).
            self.writes += 1;
            self.shown.append(&mut self.staged);
            self.shown.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Staging for Staged {
        fn stage(&mut self, parts: &[&[u8]]) -> io::Result<bool> {
            let need: usize = parts.iter().map(|p| p.len()).sum();
            if self.staged.len() + need > self.room {
                return Ok(false);
            }
            for p in parts {
                self.staged.extend_from_slice(p);
            }
            Ok(true)
        }
        fn publish(&mut self) -> io::Result<()> {
            self.shown.append(&mut self.staged);
            Ok(())
        }
    }

    fn bodies(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Some((body, used))) = split_frame(bytes, u32::MAX) {
            out.push(body.to_vec());
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty(), "whole frames only");
        out
    }

    /// Frames go straight into a staging stream while nothing waits in the write buffer,
    /// into the buffer once something does (so the order holds), and the peer sees none of
    /// them before the flush, which shows the staged ones first.
    #[test]
    fn frames_are_staged_in_order_and_shown_at_the_flush() {
        let stream = Staged {
            room: 40,
            ..Staged::default()
        };
        let mut conn = Conn::new(stream, 1024, 4096);
        conn.queue_body(&[1; 10]).expect("room");
        conn.queue(&Frame::Ping { nonce: 9 }).expect("room");
        assert_eq!(conn.wend, 0, "both staged, none in the write buffer");
        conn.queue_body(&[2; 30]).expect("room");
        assert!(conn.wend > 0, "no room left to stage: buffered");
        conn.queue_body(&[3; 1]).expect("room");
        assert_eq!(
            conn.stream.staged.len(),
            14 + encoded(&Frame::Ping { nonce: 9 }).len(),
            "something waits in the write buffer: not staged before it"
        );
        assert!(
            conn.stream.shown.is_empty(),
            "nothing shown before the flush"
        );
        assert!(conn.pending() > 0);
        assert!(conn.flush());
        assert_eq!(conn.pending(), 0);
        let got = bodies(&conn.stream.shown);
        let ping = encoded(&Frame::Ping { nonce: 9 });
        assert_eq!(
            got,
            vec![
                vec![1; 10],
                ping[LEN_PREFIX..].to_vec(),
                vec![2; 30],
                vec![3; 1]
            ]
        );
        assert_eq!(conn.stream.writes, 1, "one write for what was buffered");
    }

    /// A frame is decoded in the lent read buffer; given back unhandled it shows again,
    /// handled it is gone; while lent, the connection shows and reads nothing.
    #[test]
    fn a_lent_frame_is_shown_again_until_it_is_given_back_handled() {
        let (ours, mut peer) = UnixStream::pair().expect("a socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let mut conn = Conn::new(ours, 1024, 4096);
        let ack = Frame::Ack {
            from: "k1",
            to: "s0",
            seq: 7,
        };
        peer.write_all(&encoded(&ack)).expect("the peer writes");
        peer.write_all(&encoded(&Frame::Ping { nonce: 3 }))
            .expect("the peer writes");
        conn.fill();
        let lent = conn.lend_frame().expect("a frame").expect("the ack");
        assert_eq!(Frame::decode(lent.body()).expect("decodes"), ack);
        assert_eq!(conn.peek_frame().expect("no error"), None, "lent out");
        conn.fill();
        assert!(conn.lend_frame().expect("no error").is_none());
        conn.queue(&Frame::Ping { nonce: 1 }).expect("writes go on");
        conn.give_back(lent, false);
        let lent = conn.lend_frame().expect("a frame").expect("the ack again");
        assert_eq!(Frame::decode(lent.body()).expect("decodes"), ack);
        conn.give_back(lent, true);
        let lent = conn.lend_frame().expect("a frame").expect("the ping");
        assert_eq!(
            Frame::decode(lent.body()).expect("decodes"),
            Frame::Ping { nonce: 3 }
        );
        conn.give_back(lent, true);
        assert!(!conn.has_partial());
    }
}
