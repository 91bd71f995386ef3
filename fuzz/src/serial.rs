//! Fuzz logic for serial links (`interstate_core::serial`): the COBS frame decoder against a
//! reference decoder, the encoder's round trip through line noise, and the device-side
//! `DeviceLink` driven by arbitrary bytes, time and sends.

use arbitrary::Arbitrary;
use interstate_core::serial::{
    cobs_decode_in_place, crc16, encode_frame, max_line_len, DeviceLink, FrameDecoder, Incoming,
    SerialStats, CRC_LEN,
};
use interstate_core::wire::{Deliver, Frame, RegisterStatus, Reject, RejectCode, Welcome};
use interstate_core::{Duration, Error, Instant};

/// Reference decoding of a whole stream with a receive buffer of `n` bytes: the bodies, and
/// the drop counters, computed the simple way (split at zeros, then check each segment).
fn reference(stream: &[u8], n: usize) -> (Vec<Vec<u8>>, SerialStats) {
    let mut stats = SerialStats::default();
    let mut bodies = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
    // The part after the last zero is not a complete frame yet.
    segments.pop();
    for seg in segments {
        if seg.is_empty() {
            continue;
        }
        if seg.len() > n {
            stats.oversized += 1;
            continue;
        }
        let mut buf = seg.to_vec();
        let Some(m) = reference_cobs(&mut buf) else {
            stats.cobs_errors += 1;
            continue;
        };
        if m < 1 + CRC_LEN {
            stats.too_short += 1;
            continue;
        }
        let body = &buf[..m - CRC_LEN];
        let crc = u16::from_le_bytes([buf[m - CRC_LEN], buf[m - 1]]);
        if crc16(body) != crc {
            stats.crc_errors += 1;
            continue;
        }
        stats.frames += 1;
        bodies.push(body.to_vec());
    }
    (bodies, stats)
}

/// COBS decoding written from the definition, into a new vector.
fn reference_cobs(buf: &mut Vec<u8>) -> Option<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let code = buf[i] as usize;
        if code == 0 || i + code > buf.len() {
            return None;
        }
        out.extend_from_slice(&buf[i + 1..i + code]);
        i += code;
        if code != 0xFF && i < buf.len() {
            out.push(0);
        }
    }
    let n = out.len();
    *buf = out;
    Some(n)
}

fn decode_chunked<const N: usize>(stream: &[u8], cuts: &[u8]) -> (Vec<Vec<u8>>, SerialStats) {
    let mut dec = FrameDecoder::<N>::new();
    let mut bodies = Vec::new();
    let mut rest = stream;
    let mut c = cuts.iter().cycle();
    while !rest.is_empty() {
        let take = (*c.next().unwrap_or(&255) as usize % 97 + 1).min(rest.len());
        let mut chunk = &rest[..take];
        rest = &rest[take..];
        while let Some(len) = dec.next_frame(&mut chunk) {
            let body = dec.body();
            assert_eq!(body.len(), len, "body() disagrees with next_frame");
            assert!(len + CRC_LEN < N, "a body longer than the buffer allows");
            bodies.push(body.to_vec());
        }
        assert!(chunk.is_empty(), "next_frame returned None with input left");
    }
    (bodies, dec.stats())
}

fn same_counts(a: &SerialStats, b: &SerialStats) -> bool {
    (
        a.frames,
        a.crc_errors,
        a.cobs_errors,
        a.too_short,
        a.oversized,
    ) == (
        b.frames,
        b.crc_errors,
        b.cobs_errors,
        b.too_short,
        b.oversized,
    )
}

/// A frame to put on the line.
#[derive(Arbitrary, Debug, Clone)]
pub enum LineFrame {
    /// A message with a payload of this length.
    Deliver(u16, u64),
    /// A ping.
    Ping(u64),
    /// A welcome.
    Welcome(u16),
    /// A registration answer.
    Registered(bool),
    /// A refusal.
    Reject,
    /// Goodbye.
    Goodbye,
}

fn line_frame<'a>(f: &LineFrame, payload: &'a [u8]) -> Frame<'a> {
    match f {
        LineFrame::Deliver(_, seq) => Frame::Deliver(Deliver {
            from: "bridge-peer",
            to: "dev",
            event: "E",
            payload,
            seq: *seq,
            correlation: Default::default(),
        }),
        LineFrame::Ping(n) => Frame::Ping { nonce: *n },
        LineFrame::Welcome(m) => Frame::Welcome(Welcome {
            version: 1,
            max_frame: u32::from(*m),
            link: 1,
            hub_pid: 1,
        }),
        LineFrame::Registered(ok) => Frame::RegisterResult {
            machine: "dev",
            status: if *ok {
                RegisterStatus::Ok
            } else {
                RegisterStatus::Taken
            },
        },
        LineFrame::Reject => Frame::Reject(Reject {
            code: RejectCode::TooManyLinks,
            version: 1,
            message: "busy",
        }),
        LineFrame::Goodbye => Frame::Goodbye { reason: "bye" },
    }
}

/// Line damage applied to an encoded frame.
#[derive(Arbitrary, Debug, Clone)]
pub enum Noise {
    /// None.
    Clean,
    /// Flip bits of a byte.
    Flip(u16, u8),
    /// Drop a byte.
    Drop(u16),
    /// Insert a byte.
    Insert(u16, u8),
    /// Garbage before the frame.
    Garbage(Vec<u8>),
}

/// What the `serial` target does with its input.
#[derive(Arbitrary, Debug, Clone)]
pub enum SerialCase {
    /// Raw bytes to the decoder, cut into chunks.
    Decode {
        /// The stream.
        stream: Vec<u8>,
        /// Chunk sizes.
        cuts: Vec<u8>,
    },
    /// Frames encoded, damaged, concatenated and decoded.
    RoundTrip {
        /// Frames with the damage done to each.
        frames: Vec<(LineFrame, Noise)>,
        /// The encoder's buffer size.
        out: u16,
        /// Chunk sizes.
        cuts: Vec<u8>,
    },
    /// A device link driven by the operations.
    Device(Vec<DeviceOp>),
}

/// What happens to a device link.
#[derive(Arbitrary, Debug, Clone)]
pub enum DeviceOp {
    /// Bytes from the line.
    Bytes(Vec<u8>),
    /// A well-formed frame from the bridge.
    Frame(LineFrame),
    /// Time passes.
    Advance(u16),
    /// The application sends (payload length).
    Send(u16),
    /// The UART takes this many bytes.
    Consume(u16),
    /// Goodbye.
    Goodbye,
}

/// Target `serial`.
pub fn serial(data: &[u8]) {
    let Ok(case) = SerialCase::arbitrary_take_rest(arbitrary::Unstructured::new(data)) else {
        return;
    };
    match case {
        SerialCase::Decode { stream, cuts } => {
            check_decoders(&stream, &cuts);
            // Raw COBS decoding never panics and agrees with the reference.
            for seg in stream.split(|&b| b == 0) {
                let mut a = seg.to_vec();
                let mut b = seg.to_vec();
                let got = cobs_decode_in_place(&mut a);
                let want = reference_cobs(&mut b);
                assert_eq!(got, want, "COBS decoding of {seg:?}");
                if let Some(n) = got {
                    assert_eq!(&a[..n], &b[..n]);
                }
            }
        }
        SerialCase::RoundTrip { frames, out, cuts } => {
            let mut stream = Vec::new();
            let mut expect = Vec::new();
            let payload = vec![0u8; 600];
            for (f, noise) in frames.iter().take(32) {
                let len = match f {
                    LineFrame::Deliver(n, _) => *n as usize % 600,
                    _ => 0,
                };
                let frame = line_frame(f, &payload[..len]);
                let mut buf = vec![0u8; out as usize % 1400];
                match encode_frame(&frame, &mut buf) {
                    Ok(n) => {
                        assert!(n <= buf.len());
                        let line = &buf[..n];
                        let body_len = frame.encoded_len() - 4;
                        assert!(n <= max_line_len(body_len), "longer than max_line_len");
                        assert_eq!((line[0], line[n - 1]), (0, 0), "delimiters");
                        assert!(
                            !line[1..n - 1].contains(&0),
                            "a zero inside an encoded frame"
                        );
                        let mut body = vec![0u8; frame.encoded_len()];
                        let m = frame.encode(&mut body).expect("encodes");
                        let mut line = line.to_vec();
                        let clean = matches!(noise, Noise::Clean | Noise::Garbage(_));
                        match noise {
                            Noise::Clean => {}
                            Noise::Flip(at, bits) => {
                                let i = *at as usize % line.len();
                                line[i] ^= bits;
                            }
                            Noise::Drop(at) => {
                                line.remove(*at as usize % line.len());
                            }
                            Noise::Insert(at, b) => line.insert(*at as usize % line.len(), *b),
                            Noise::Garbage(g) => {
                                // Garbage ends at the frame's leading zero.
                                stream.extend_from_slice(&g[..g.len().min(64)]);
                            }
                        }
                        stream.extend_from_slice(&line);
                        if clean {
                            expect.push(body[4..m].to_vec());
                        }
                    }
                    Err(Error::TxFull { needed, free }) => {
                        assert_eq!(free, buf.len());
                        assert!(needed > free || needed > 0, "TxFull with room");
                        let mut bigger = vec![0u8; needed.max(free + 1) + 8];
                        assert!(
                            encode_frame(&frame, &mut bigger).is_ok(),
                            "encode_frame needed more than it said ({needed})"
                        );
                    }
                    Err(e) => panic!("encode_frame: unexpected error {e:?}"),
                }
            }
            let (bodies, _) = decode_chunked::<2048>(&stream, &cuts);
            // Every clean frame comes out; damaged ones are dropped (a CRC-16 collision, or a
            // byte dropped that only merges nothing, could let one through: allow extras, but
            // each must be a valid body).
            let mut it = bodies.iter();
            for want in &expect {
                assert!(it.any(|b| b == want), "a clean frame was lost in the noise");
            }
            check_decoders(&stream, &cuts);
        }
        SerialCase::Device(ops) => run_device(&ops),
    }
}

fn check_decoders(stream: &[u8], cuts: &[u8]) {
    let (a, sa) = decode_chunked::<64>(stream, cuts);
    let (ra, rsa) = reference(stream, 64);
    assert_eq!(a, ra, "FrameDecoder<64> disagrees with the reference");
    assert!(same_counts(&sa, &rsa), "counters {sa:?} vs {rsa:?}");
    let (b, sb) = decode_chunked::<300>(stream, cuts);
    let (rb, rsb) = reference(stream, 300);
    assert_eq!(b, rb, "FrameDecoder<300> disagrees with the reference");
    assert!(same_counts(&sb, &rsb), "counters {sb:?} vs {rsb:?}");
}

/// Everything a device link has queued for the line must be well-formed frames of the
/// device's kinds.
fn check_tx(tx: &[u8]) {
    let (bodies, stats) = reference(tx, 4096);
    assert_eq!(
        stats.dropped(),
        0,
        "the device queued a damaged frame: {stats:?}"
    );
    for b in bodies {
        match Frame::decode(&b) {
            Ok(
                Frame::Hello(_)
                | Frame::Register { .. }
                | Frame::Deliver(_)
                | Frame::Ping { .. }
                | Frame::Pong { .. }
                | Frame::Goodbye { .. },
            ) => {}
            other => panic!("the device queued {other:?}"),
        }
    }
}

fn run_device(ops: &[DeviceOp]) {
    const MACHINES: &[&str] = &["dev", "dev2"];
    let mut now = Instant::ZERO;
    let mut link: DeviceLink<'_, 128, 256> = DeviceLink::new(MACHINES, "fuzz-dev", now);
    let payload = vec![7u8; 300];
    // Bytes the UART took, and the frames queued: only whole frames are consumed here, so
    // that the pending bytes always start at a frame boundary.
    for op in ops.iter().take(256) {
        match op {
            DeviceOp::Bytes(b) => {
                let mut input = b.as_slice();
                while let Some(inc) = link.handle_input(now, &mut input) {
                    if let Incoming::Ready { max_frame } = inc {
                        assert!(max_frame as usize <= 128);
                    }
                }
                assert!(input.is_empty());
            }
            DeviceOp::Frame(f) => {
                let len = match f {
                    LineFrame::Deliver(n, _) => *n as usize % 300,
                    _ => 0,
                };
                let frame = line_frame(f, &payload[..len]);
                let mut buf = vec![0u8; 1024];
                if let Ok(n) = encode_frame(&frame, &mut buf) {
                    let mut input = &buf[..n];
                    let was_ready = link.is_ready();
                    while let Some(inc) = link.handle_input(now, &mut input) {
                        match inc {
                            Incoming::Ready { max_frame } => {
                                assert!(!was_ready, "welcomed twice without losing the link");
                                assert!(max_frame as usize <= 128, "agreed more than the buffer");
                                assert!(link.is_ready());
                            }
                            Incoming::Rejected(_) | Incoming::Lost => {}
                            Incoming::Deliver(d) => assert_eq!(d.to, "dev"),
                            Incoming::Registered { .. } | Incoming::DeliveryFailed(_) => {}
                        }
                    }
                }
            }
            DeviceOp::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(*ms) * 4);
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = link.handle_timeout(now);
                }
            }
            DeviceOp::Send(n) => {
                let p = &payload[..(*n as usize % 300)];
                match link.send("dev", "peer", "EV", p) {
                    Ok(()) => assert!(link.is_ready()),
                    Err(Error::NotConnected) => assert!(!link.is_ready()),
                    Err(Error::TxFull { .. }) => {}
                    Err(e) => panic!("send: unexpected error {e:?}"),
                }
            }
            DeviceOp::Consume(n) => {
                // The UART takes whole frames (so the check below sees frame boundaries).
                let tx = link.pending_tx();
                let mut cut = 0;
                let want = *n as usize % (tx.len() + 1);
                let mut i = 0;
                while i < tx.len() {
                    // A frame is 00 .. 00.
                    if tx[i] == 0 {
                        if let Some(end) = tx[i + 1..].iter().position(|&b| b == 0) {
                            let next = i + 1 + end + 1;
                            if next > want {
                                break;
                            }
                            cut = next;
                            i = next;
                            continue;
                        }
                    }
                    break;
                }
                link.consume_tx(cut);
            }
            DeviceOp::Goodbye => {
                let _ = link.goodbye("fuzz");
            }
        }
        assert_eq!(link.tx_free() + link.pending_tx().len(), 256);
        check_tx(link.pending_tx());
        // A due timeout is handled at once, never left due.
        if link.poll_timeout().is_some_and(|t| t <= now) {
            let _ = link.handle_timeout(now);
            assert!(link.poll_timeout().is_none_or(|t| t > now), "left due");
        }
    }
}
