//! Target `conn`: the platform's framed stream (`interstate_platform::conn::Conn`) over a
//! fake socket.

use arbitrary::Arbitrary;
use interstate_core::hub::LinkFull;
use interstate_core::wire::{split_frame, Deliver, Frame, LEN_PREFIX};

/// What the fake socket does on the next read.
#[derive(Arbitrary, Debug, Clone)]
pub enum ReadStep {
    /// Hands out up to this many of the peer's bytes.
    Bytes(u16),
    /// Nothing now.
    WouldBlock,
    /// Interrupted by a signal.
    Interrupted,
    /// The peer closed.
    Eof,
    /// An I/O error.
    Error,
}

/// What the node does with the connection.
#[derive(Arbitrary, Debug, Clone)]
pub enum ConnOp {
    /// `fill`, then take every complete frame.
    Read,
    /// Queue a frame (a Deliver with this payload length).
    Queue(u16),
    /// Queue a raw body.
    QueueBody(Vec<u8>),
    /// `flush`, the socket taking at most this many bytes per write.
    Flush(u16),
    /// The socket's writes fail with WouldBlock until the next Flush.
    Block,
}

/// A `conn` input.
#[derive(Arbitrary, Debug, Clone)]
pub struct ConnSession {
    /// Largest frame (16 + this modulo 4096).
    pub max_frame: u16,
    /// Write queue capacity.
    pub write_capacity: u16,
    /// The peer's byte stream.
    pub incoming: Vec<u8>,
    /// How the socket hands it out.
    pub reads: Vec<ReadStep>,
    /// What the node does.
    pub ops: Vec<ConnOp>,
}

struct FakeSocket {
    incoming: Vec<u8>,
    pos: usize,
    reads: Vec<ReadStep>,
    next_read: usize,
    written: Vec<u8>,
    write_limit: usize,
    blocked: bool,
}

impl std::io::Read for FakeSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        let step = self
            .reads
            .get(self.next_read)
            .cloned()
            .unwrap_or(ReadStep::WouldBlock);
        self.next_read += 1;
        match step {
            ReadStep::Bytes(n) => {
                let n = (n as usize)
                    .max(1)
                    .min(buf.len())
                    .min(self.incoming.len() - self.pos);
                if n == 0 && self.pos == self.incoming.len() {
                    return Err(ErrorKind::WouldBlock.into());
                }
                buf[..n].copy_from_slice(&self.incoming[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
            ReadStep::WouldBlock => Err(ErrorKind::WouldBlock.into()),
            ReadStep::Interrupted => Err(ErrorKind::Interrupted.into()),
            ReadStep::Eof => Ok(0),
            ReadStep::Error => Err(Error::other("boom")),
        }
    }
}

impl std::io::Write for FakeSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.blocked || self.write_limit == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.write_limit);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Stages nothing: every frame goes through the write buffer.
impl interstate_platform::conn::Staging for FakeSocket {}

/// Target `conn`: decodes a [`ConnSession`] and runs it.
pub fn conn(data: &[u8]) {
    if let Ok(s) = ConnSession::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        run_conn(&s);
    }
}

/// Runs a conn session: the frames read are exactly those `split_frame` finds in the bytes
/// the socket handed out, up to the first oversized prefix; what was written plus what is
/// still queued is exactly what was queued, and the unwritten whole frames are its tail.
pub fn run_conn(s: &ConnSession) {
    use interstate_platform::conn::Conn;
    // Small buffers keep the fuzzer fast; the logic does not depend on their size.
    let max_frame = 16 + u32::from(s.max_frame % 4096);
    let sock = FakeSocket {
        incoming: s.incoming.clone(),
        pos: 0,
        reads: s.reads.iter().take(256).cloned().collect(),
        next_read: 0,
        written: Vec::new(),
        write_limit: 0,
        blocked: false,
    };
    let mut c = Conn::new(sock, max_frame, s.write_capacity as usize % 8192);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut broken = false;
    let mut queued: Vec<u8> = Vec::new();
    let payload = [0x5Au8; 4200];
    for op in s.ops.iter().take(256) {
        match op {
            ConnOp::Read => {
                if c.dead {
                    continue;
                }
                c.fill();
                loop {
                    match c.peek_frame() {
                        Ok(Some(body)) => {
                            assert!(body.len() as u32 <= max_frame);
                            got.push(body.to_vec());
                            c.consume_frame();
                        }
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    break;
                }
            }
            ConnOp::Queue(n) => {
                let f = Frame::Deliver(Deliver {
                    from: "a",
                    to: "b",
                    event: "E",
                    payload: &payload[..(*n as usize % payload.len())],
                    seq: 1,
                    correlation: Default::default(),
                });
                let before = c.pending();
                match c.queue(&f) {
                    Ok(()) => {
                        let mut buf = vec![0u8; f.encoded_len()];
                        let k = f.encode(&mut buf).expect("encodes");
                        assert_eq!(c.pending(), before + k);
                        queued.extend_from_slice(&buf[..k]);
                    }
                    Err(LinkFull) => {
                        assert_eq!(c.pending(), before, "a refused frame changed the queue")
                    }
                }
            }
            ConnOp::QueueBody(b) => {
                let before = c.pending();
                match c.queue_body(b) {
                    Ok(()) => {
                        assert!(b.len() as u32 <= max_frame);
                        queued.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        queued.extend_from_slice(b);
                        assert_eq!(c.pending(), before + LEN_PREFIX + b.len());
                    }
                    Err(LinkFull) => assert_eq!(c.pending(), before),
                }
            }
            ConnOp::Flush(limit) => {
                c.stream.blocked = false;
                c.stream.write_limit = *limit as usize;
                let all = c.flush();
                assert_eq!(all, c.pending() == 0);
            }
            ConnOp::Block => c.stream.blocked = true,
        }
        // Written + pending is what was queued.
        let written = c.stream.written.len();
        assert_eq!(
            written + c.pending(),
            queued.len(),
            "bytes lost or made up in the write queue"
        );
        assert_eq!(
            &c.stream.written[..],
            &queued[..written],
            "written bytes differ from the queued ones"
        );
        // The unwritten whole frames are the queue's tail.
        let unwritten: Vec<u8> = c
            .unwritten_frames()
            .iter()
            .flat_map(|b| {
                (b.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(b.iter().copied())
            })
            .collect();
        assert!(
            queued.ends_with(&unwritten),
            "unwritten_frames is not the tail of the queue"
        );
        assert!(
            unwritten.len() <= c.pending(),
            "more unwritten than pending"
        );
    }
    // The frames read are the stream's, in order.
    let handed = &c.stream.incoming[..c.stream.pos];
    let mut rest = handed;
    let mut expected: Vec<Vec<u8>> = Vec::new();
    loop {
        match split_frame(rest, max_frame) {
            Ok(Some((body, used))) => {
                expected.push(body.to_vec());
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(_) => {
                assert!(
                    broken || got.len() <= expected.len(),
                    "read past an oversized prefix"
                );
                break;
            }
        }
    }
    assert!(
        got.len() <= expected.len(),
        "more frames read than the stream holds"
    );
    assert_eq!(
        &got[..],
        &expected[..got.len()],
        "the frames read differ from the stream's"
    );
}
